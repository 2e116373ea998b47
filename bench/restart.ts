/**
 * Restart scenario (issue 28): N clients on T topics, each its own user (with a token granting its
 * topic, unless `--restart-no-grants`), events flowing; the relay is restarted as a process
 * manager does it (SIGTERM, wait for the exit, start again on the same port) while the backend
 * goes on publishing. Reported: time from the new relay listening to 50 %, 99 % and 100 % of the
 * clients resumed, events lost and repeated, what the backend was asked (stream opens per topic,
 * status requests), the catch-ups and resyncs, and the relay's CPU. With `--restart-relays 3`, three
 * relays share one Redis (clients spread over them) and the first of them is restarted; with
 * `--restart-redis-cluster`, that Redis is a three-master Redis Cluster the bench starts and stops.
 */
import { type ChildMessage, nowMs, sampleProc } from './common';
import { type ScenarioOutcome, codeNames, describe, postJson } from './fanout';
import { fixed } from './common';
import { lineChart } from './chart';
import { type BenchRedis, startRedis, startRedisCluster } from './redis';
import { CLK_TCK, type Lab, type Subject, load1 } from './lab';
import type { Proc } from './proc';
import { freePort } from '../test/support/free-port';

export interface RestartClientConfig {
  /** Relays' base URLs: stream i connects to the one `relayOf` says. */
  readonly baseUrls: readonly string[];
  /** Path of a code's stream with `{code}` in it. */
  readonly pathTemplate: string;
  readonly codes: readonly string[];
  readonly clients: number;
  readonly eventsPerCode: number;
  /** Connection attempts in flight at once, for the first connects. */
  readonly concurrency: number;
  /** Tokens carry `topics: ["download:<code>"]`. */
  readonly grants: boolean;
}

/** What the restart client says at the end. */
export interface RestartDoneReport extends ChildMessage {
  readonly type: 'done';
  /** Per stream, resumed at (ms after the new relay listened); NaN (null in JSON) for a stream that did not resume. */
  readonly resumedMs: number[];
  /** Of the streams that reconnected: when, ms after the new relay listened; and how long that attempt waited for its 200. */
  readonly reopenedMs: number[];
  readonly answerMs: number[];
  readonly expected: number;
  /** Distinct events received, over all streams. */
  readonly delivered: number;
  /** Events a client skipped: a later one of its topic came first. */
  readonly lost: number;
  /** Events of its topic a client had not received when the run ended (late, not lost). */
  readonly pending: number;
  readonly repeated: number;
  readonly resyncs: number;
  /** Connection attempts after the stop, and how the ones that did not stream ended. */
  readonly attempts: number;
  readonly failures: Record<string, number>;
  readonly cpuMs: number;
}

/**
 * The relay of stream `index`: the first stream of each topic on the first relay (which it connects
 * to before any other stream, so that relay owns every topic in a cluster), the rest round robin.
 */
export function relayOf(index: number, topics: number, relays: number): number {
  return index < topics ? 0 : index % relays;
}

export interface RestartSettings {
  clients: number;
  topics: number;
  /** Events per topic, published at `rate` per second from before the stop to after the restart. */
  events: number;
  rate: number;
  concurrency: number;
  graceMs: number;
  grants: boolean;
  /** The relay's `DRAIN_WINDOW_MS`: streams end at random moments within it, so clients resume from different ids. */
  drainWindowMs: number;
  /** How long events flow before the stop. */
  stopAfterMs: number;
  /** Runs, each a fresh backend, relay and clients. */
  runs: number;
  /** 1: one relay alone; more: that many on one Redis, the first restarted. */
  relays: number;
  /** What the relays share: nothing (one relay alone), one redis-server, or a three-master Redis Cluster. */
  redis: 'none' | 'single' | 'cluster';
}

interface BackendStats {
  opened: number;
  resumed: number;
  statusRequests: number;
}

interface RestartRow {
  run: number;
  clients: number;
  topics: number;
  relays: number;
  redis: RestartSettings['redis'];
  grants: boolean;
  /** SIGTERM to exit, exit to listening (first /healthz 200, polled every 50 ms). */
  stopMs: number;
  /** SIGTERM to the old relay's first `/readyz` 503 (it handled the signal and drains); NaN if none came before the exit. */
  drainingMs: number;
  /** The old relay's longest event-loop delay while events flowed before the SIGTERM (prom-client's `nodejs_eventloop_lag_max_seconds`). */
  loopDelayBeforeMs: number;
  startMs: number;
  /** On Redis: exit to the first `/readyz` 200 (its Redis connection up and its slots shared), polled every 20 ms. */
  readyMs: number;
  /** Resumed: ms after listening, per client of the restarted relay; NaN for one that did not. */
  resumedMs: number[];
  /** Reconnected (200), ms after listening; and the wait of that attempt for its 200 (the relay's answer time under the storm). */
  reopened: ReturnType<typeof summary>;
  answer: ReturnType<typeof summary>;
  done: RestartDoneReport;
  backend: BackendStats;
  /** The restarted relay's counters, from its start. */
  relay: { catchUps: number; catchUpFallbacks: number; resyncs: number };
  /** The new relay's CPU from listening to 100 % resumed, and to the end of the run. */
  cpuToAllS: number;
  cpuTotalS: number;
  /** The relays that were not restarted, together, from listening to the end of the run. */
  othersCpuS: number;
  backendCpuToAllS: number;
  /** Redis (every master of a cluster) from just before the SIGTERM to the end: CPU s and commands (INFO left out). */
  redisCpuS: number;
  redisCalls: number;
  loadStart: number;
  loadEnd: number;
  notes: string[];
}

async function backendStats(url: string): Promise<BackendStats> {
  return (await (await fetch(`${url}/stats`)).json()) as BackendStats;
}

/** A counter of the relay's `/metrics`, 0 when absent. */
function metric(text: string, name: string): number {
  const match = new RegExp(`^${name} (\\d+(?:\\.\\d+)?)$`, 'm').exec(text);
  return match ? Number(match[1]) : 0;
}

/** CPU ticks of `pids` every 100 ms, to read what was spent between two moments. */
function sampleEvery100Ms(pids: () => number[]): { samples: { at: number; ticks: number[] }[]; stop(): void } {
  const samples: { at: number; ticks: number[] }[] = [];
  const take = (): void => {
    samples.push({ at: nowMs(), ticks: pids().map((pid) => sampleProc(pid)?.ticks ?? NaN) });
  };
  take();
  const timer = setInterval(take, 100);
  return {
    samples,
    stop: () => {
      clearInterval(timer);
      take();
    },
  };
}

/** Seconds of CPU process `i` of the samples spent from `from` to the first sample at or after `to`. */
function cpuBetween(samples: readonly { at: number; ticks: number[] }[], i: number, from: number, to: number): number {
  const first = samples.find((s) => s.at >= from) ?? samples[0];
  const last = samples.find((s) => s.at >= to) ?? samples[samples.length - 1];
  if (!first || !last) return NaN;
  return ((last.ticks[i] ?? NaN) - (first.ticks[i] ?? NaN)) / CLK_TCK;
}

/** The `q` quantile (0..1] of `sorted`, NaN past the values it has (clients that never resumed). */
function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

async function runOne(lab: Lab, settings: RestartSettings, run: number): Promise<RestartRow> {
  const codes = codeNames(settings.topics);
  const loadStart = load1();
  const notes: string[] = [];
  const backend = await lab.startBenchBackend(lab.subjectCore);
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    PORT: String(port),
    DRAIN_WINDOW_MS: String(settings.drainWindowMs),
    ...(settings.grants ? { JWT_TOPICS_CLAIM: 'topics' } : {}),
  };
  let relay: Subject | undefined;
  const others: Subject[] = [];
  let redis: BenchRedis | undefined;
  let client: Proc | undefined;
  let sampler: ReturnType<typeof sampleEvery100Ms> | undefined;
  try {
    if (settings.redis !== 'none') {
      redis = settings.redis === 'cluster' ? await startRedisCluster(lab.subjectCore) : await startRedis(lab, lab.subjectCore);
      Object.assign(env, redis.env);
    }
    relay = await lab.startRelay(backend.url, lab.subjectCore, settings.clients, env);
    for (let i = 1; i < settings.relays; i++) others.push(await lab.startRelay(backend.url, lab.subjectCore, settings.clients, { ...env, PORT: String(await freePort()) }));
    // A relay on Redis says ready once its slots are shared: the cluster is whole before anyone connects.
    for (const subject of [relay, ...others]) if (redis) await waitReady(subject.baseUrl);
    const config: RestartClientConfig = {
      baseUrls: [relay.baseUrl, ...others.map((other) => other.baseUrl)],
      pathTemplate: `${relay.prefix}/downloads/{code}/events`,
      codes,
      clients: settings.clients,
      eventsPerCode: settings.events,
      concurrency: settings.concurrency,
      grants: settings.grants,
    };
    client = lab.spawnClient('restart', 'restart-client', config);
    const connected = await client.message<ChildMessage & { failures: Record<string, number>; connectMs: number }>('connected', 30_000 + settings.clients * 20);
    if (Object.keys(connected.failures).length > 0) notes.push(`first connects failed: ${describe(connected.failures)}`);
    const { lastEventInMs, startAt } = await postJson<{ lastEventInMs: number; startAt: number }>(`${backend.url}/start`, {
      codes,
      events: settings.events,
      rate: settings.rate,
      leadMs: 200,
      endAfterMs: -1,
    });
    const lastEventAt = nowMs() + lastEventInMs;
    // A scrape resets the relay's event-loop delay histogram: the next one reads the delay while events flow.
    const oldRelay = relay;
    await loopDelayMaxMs(oldRelay.baseUrl);
    await new Promise((resolve) => setTimeout(resolve, settings.stopAfterMs));

    const loopDelayBeforeMs = await loopDelayMaxMs(oldRelay.baseUrl);
    const before = await backendStats(backend.url);
    const redisBefore = await redis?.stats();
    client.send({ cmd: 'stopping' });
    const stoppingAt = nowMs();
    // As systemd or Kubernetes: SIGTERM, then wait for the exit (the relay drains within SHUTDOWN_TIMEOUT_MS).
    const stopped = (oldRelay.node as Proc).stop('SIGTERM', 35_000);
    const drainingAt = untilDraining(oldRelay.baseUrl, stopped);
    await stopped;
    const exitedAt = nowMs();
    const drainingMs = ((await drainingAt) ?? NaN) - stoppingAt;
    relay = await lab.startRelay(backend.url, lab.subjectCore, settings.clients, env);
    const listeningAt = nowMs();
    const newRelay = relay;
    // From listening: clients come back whether or not the relay says ready.
    sampler = sampleEvery100Ms(() => [...newRelay.pids(), backend.proc.pid, ...others.flatMap((other) => other.pids())]);
    // Not waited on: a relay its clients keep busy may say ready late, or not before the run ends.
    let readyAt = NaN;
    const readiness = new AbortController();
    if (redis) void waitReady(relay.baseUrl, readiness.signal).then(() => (readyAt = nowMs()), () => undefined);

    const deadline = Math.max(0, lastEventAt - nowMs()) + settings.graceMs;
    const completed = await client.message('complete', deadline).then(
      () => true,
      () => false,
    );
    if (!completed) notes.push(`not every client had every event ${fixed(deadline / 1000, 0)} s after the restart`);
    const period = 1000 / settings.rate;
    const lastSeqBefore: Record<string, number> = {};
    codes.forEach((code, i) => {
      const offset = (i * period) / codes.length;
      lastSeqBefore[code] = Math.min(settings.events - 1, Math.floor((listeningAt - startAt - offset) / period));
    });
    readiness.abort();
    if (redis && Number.isNaN(readyAt)) notes.push('the restarted relay did not say ready (`/readyz` 200) before the run ended');
    client.send({ cmd: 'report', exitedAt, listeningAt, lastSeqBefore });
    const done = await client.message<RestartDoneReport>('done', 30_000);
    sampler.stop();
    const samples = sampler.samples;
    const after = await backendStats(backend.url);
    const redisAfter = await redis?.stats();
    const metrics = await (await fetch(`${relay.baseUrl}/metrics`)).text();
    // The restarted relay's clients: the others never left.
    const restarted = done.resumedMs.filter((_, i) => relayOf(i, settings.topics, settings.relays) === 0);
    const resumedMs = restarted.filter(Number.isFinite).sort((a, b) => a - b);
    if (resumedMs.length < restarted.length) notes.push(`${restarted.length - resumedMs.length} clients did not resume`);
    if (Object.keys(done.failures).length > 0) notes.push(`connection attempts that did not stream after the stop: ${describe(done.failures)}`);
    const allResumedAt = listeningAt + (resumedMs[resumedMs.length - 1] ?? NaN);
    return {
      run,
      clients: settings.clients,
      topics: settings.topics,
      relays: settings.relays,
      redis: settings.redis,
      grants: settings.grants,
      stopMs: exitedAt - stoppingAt,
      drainingMs,
      loopDelayBeforeMs,
      startMs: listeningAt - exitedAt,
      readyMs: redis ? readyAt - exitedAt : NaN,
      resumedMs: restarted,
      reopened: summary(done.reopenedMs),
      answer: summary(done.answerMs),
      // One figure per client: kept in `resumedMs` for the table and chart, out of the JSON.
      done: { ...done, resumedMs: [], reopenedMs: [], answerMs: [] },
      backend: { opened: after.opened - before.opened, resumed: after.resumed - before.resumed, statusRequests: after.statusRequests - before.statusRequests },
      relay: {
        catchUps: metric(metrics, 'sse_relay_catch_ups_total'),
        catchUpFallbacks: metric(metrics, 'sse_relay_catch_up_fallbacks_total'),
        resyncs: metric(metrics, 'sse_relay_resyncs_total'),
      },
      cpuToAllS: cpuBetween(sampler.samples, 0, listeningAt, allResumedAt),
      cpuTotalS: cpuBetween(sampler.samples, 0, listeningAt, Infinity),
      othersCpuS: others.reduce((sum, _, i) => sum + cpuBetween(samples, 2 + i, listeningAt, Infinity), 0),
      backendCpuToAllS: cpuBetween(sampler.samples, 1, listeningAt, allResumedAt),
      redisCpuS: redisBefore && redisAfter ? redisAfter.cpuS - redisBefore.cpuS : NaN,
      redisCalls: redisBefore && redisAfter ? callsBetween(redisBefore.calls, redisAfter.calls) : NaN,
      loadStart,
      loadEnd: load1(),
      notes,
    };
  } finally {
    sampler?.stop();
    await client?.stop('SIGTERM', 2000);
    await relay?.stop();
    for (const other of others) await other.stop();
    await redis?.stop();
    await backend.proc.stop();
  }
}

/** The relay's longest event-loop delay since the previous scrape, in ms (NaN if it does not answer within 10 s). */
async function loopDelayMaxMs(baseUrl: string): Promise<number> {
  const answer = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(10_000) }).catch(() => undefined);
  const text = (await answer?.text().catch(() => undefined)) ?? '';
  const match = /^nodejs_eventloop_lag_max_seconds ([\d.e+-]+)$/m.exec(text);
  return match ? Number(match[1]) * 1000 : NaN;
}

/**
 * When the relay first answers `/readyz` with 503 (it took the signal and drains), polled every
 * 50 ms until `exited` settles: a relay whose event loop is busy takes the signal only when it
 * gets to it.
 */
async function untilDraining(baseUrl: string, exited: Promise<void>): Promise<number | undefined> {
  let gone = false;
  void exited.then(() => (gone = true));
  while (!gone) {
    const answer = await fetch(`${baseUrl}/readyz`).catch(() => undefined);
    await answer?.arrayBuffer().catch(() => undefined);
    if (answer?.status === 503) return nowMs();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return undefined;
}

/** Commands Redis ran from `before` to `after`, INFO (the bench's own reads) left out. */
function callsBetween(before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>): number {
  let calls = 0;
  for (const [name, count] of after) if (name !== 'info') calls += count - (before.get(name) ?? 0);
  return calls;
}

/** Waits until `/readyz` answers 200 (on Redis: the relay's slots are shared); throws after 20 s, or when `signal` aborts. */
async function waitReady(baseUrl: string, signal?: AbortSignal): Promise<void> {
  const until = Date.now() + 20_000;
  while (Date.now() < until || signal !== undefined) {
    signal?.throwIfAborted();
    const answer = await fetch(`${baseUrl}/readyz`, { signal }).catch(() => undefined);
    await answer?.arrayBuffer().catch(() => undefined);
    if (answer?.status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`${baseUrl}/readyz not 200 within 20 s`);
}

export async function runRestart(lab: Lab, settings: RestartSettings): Promise<ScenarioOutcome> {
  const rows: RestartRow[] = [];
  const failures: string[] = [];
  for (let run = 1; run <= settings.runs; run++) {
    console.error(`bench: restart: ${settings.clients} clients on ${settings.topics} topics, run ${run}/${settings.runs} …`);
    try {
      const row = await runOne(lab, settings, run);
      rows.push(row);
      const sorted = row.resumedMs.filter(Number.isFinite).sort((a, b) => a - b);
      console.error(
        `bench: restart run ${run}: 50 % resumed ${fixed(quantile(sorted, 0.5) / 1000, 2)} s, 100 % ${fixed((sorted[sorted.length - 1] ?? NaN) / 1000, 2)} s after listening; lost ${row.done.lost}, repeated ${row.done.repeated}, not received by the end ${row.done.pending}, status requests ${row.backend.statusRequests}`,
      );
    } catch (err) {
      failures.push(`run ${run}: FAILED: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    }
  }
  const failed = failures.length > 0 || rows.some((row) => row.done.lost + row.done.repeated + row.done.pending > 0 || row.resumedMs.some((ms) => !Number.isFinite(ms)));
  const data = { settings, rows: rows.map(({ resumedMs, ...row }) => ({ ...row, resumed: summary(resumedMs) })), failures };
  return { markdown: table(settings, rows, failures), data, svg: chart(rows), svgAlt: 'clients resumed against seconds since the new relay listened', failed };
}

function summary(resumedMs: readonly number[]): { p50: number; p99: number; max: number; notResumed: number } {
  const sorted = resumedMs.filter(Number.isFinite).sort((a, b) => a - b);
  return { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted[sorted.length - 1] ?? NaN, notResumed: resumedMs.length - sorted.length };
}

/** The setup, as the table's title says it. */
function setupLabel(settings: RestartSettings): string {
  const shared = settings.redis === 'cluster' ? 'a three-master Redis Cluster' : 'one Redis';
  if (settings.relays === 1) return settings.redis === 'none' ? 'one relay' : `one relay on ${shared}`;
  return `${settings.relays} relays on ${shared} (clients spread evenly; the first relay opened, and owns, every topic), the first restarted`;
}

function table(settings: RestartSettings, rows: readonly RestartRow[], failures: readonly string[]): string {
  const onRedis = settings.redis !== 'none';
  const several = settings.relays > 1;
  const lines = [
    `### Restart: ${settings.clients} clients on ${settings.topics} topics, ${setupLabel(settings)}, each client its own user${settings.grants ? ' with a token granting its topic' : ', no grants'}; ${settings.events} events per topic at ${settings.rate}/s; DRAIN_WINDOW_MS=${settings.drainWindowMs}`,
    '',
    `| run | stop s: SIGTERM → draining / → exit | event-loop delay before the stop, max ms | start s (exit → listening${onRedis ? ' / → ready' : ''}) | ${several ? 'its clients ' : ''}resumed after listening: 50 % / 99 % / 100 % s | reconnected (200) after listening: 50 % / 100 % s | reconnect answered in: p50 / p99 ms | lost | repeated | not received by the end | resync events | catch-ups (fell back) | backend stream opens (per topic, catch-ups aside) | status requests | relay CPU s: to 100 % / whole run |${several ? ' other relays CPU s, whole run |' : ''}${onRedis ? ' Redis CPU s / commands |' : ''} backend CPU s to 100 % | load avg start → end |`,
    `|${'---|'.repeat(17 + (several ? 1 : 0) + (onRedis ? 1 : 0))}`,
  ];
  for (const row of rows) {
    const s = summary(row.resumedMs);
    const all = s.notResumed > 0 ? `not all (${s.notResumed} missing)` : fixed(s.max / 1000, 2);
    lines.push(
      `| ${row.run} | ${fixed(row.drainingMs / 1000, 2)} / ${fixed(row.stopMs / 1000, 2)} | ${fixed(row.loopDelayBeforeMs, 0)} | ${fixed(row.startMs / 1000, 2)}${onRedis ? ` / ${fixed(row.readyMs / 1000, 2)}` : ''} | ${fixed(s.p50 / 1000, 2)} / ${fixed(s.p99 / 1000, 2)} / ${all} | ${fixed(row.reopened.p50 / 1000, 2)} / ${fixed(row.reopened.max / 1000, 2)} | ${fixed(row.answer.p50, 0)} / ${fixed(row.answer.p99, 0)} | ${row.done.lost} | ${row.done.repeated} | ${row.done.pending} | ${row.done.resyncs} | ${row.relay.catchUps} (${row.relay.catchUpFallbacks}) | ${row.backend.opened} (${fixed((row.backend.opened - row.relay.catchUps) / row.topics, 2)}) | ${row.backend.statusRequests} | ${fixed(row.cpuToAllS, 2)} / ${fixed(row.cpuTotalS, 2)} |${several ? ` ${fixed(row.othersCpuS, 2)} |` : ''}${onRedis ? ` ${fixed(row.redisCpuS, 2)} / ${row.redisCalls} |` : ''} ${fixed(row.backendCpuToAllS, 2)} | ${fixed(row.loadStart, 1)} → ${fixed(row.loadEnd, 1)} |`,
    );
  }
  lines.push('');
  for (const row of rows) if (row.notes.length > 0) lines.push(`- run ${row.run}: ${row.notes.join('; ')}`);
  for (const line of failures) lines.push(`- ${line}`);
  lines.push(
    '',
    'Each client is a raw-socket `EventSource`: when its stream ends or a connection fails it waits the last `retry:` it was told (the drain says `DRAIN_RETRY_MS`, 3 s, plus up to 50 %) and reconnects with `Last-Event-ID`. ' +
      `Stop: from the SIGTERM to the old relay's first \`/readyz\` 503 (polled every 50 ms: it has taken the signal and drains), and to its exit; before it, the longest delay of its event loop while events flowed for ${fixed(settings.stopAfterMs / 1000, 0)} s (prom-client's \`nodejs_eventloop_lag_max_seconds\`): a loop that late takes the signal that late. ` +
      'A client has *resumed* once its first connection after the old relay exited was answered 200 and it has the last event its topic published before the new relay listened (listening: the first `/healthz` 200, polled every 50 ms). ' +
      'Lost, repeated, not received: per client (all of them), events of its topic skipped (a later one came first), received twice, and not received when the run ended (late: the run waits until every client has every event, or `--grace-ms` past the last one). ' +
      `Backend${onRedis ? ' and Redis' : ''} figures count from just before the SIGTERM to the end; the relay's (catch-ups) from its new start. ` +
      (onRedis
        ? `Redis: \`INFO cpu\` (used_cpu_user+sys) and \`INFO commandstats\` calls (INFO left out)${settings.redis === 'cluster' ? ', summed over the three masters' : ''}. Every relay, Redis${settings.redis === 'cluster' ? ' node' : ''} and the backend share the subject CPU; the clients have the other.`
        : 'The relay and the backend share the subject CPU; the clients have the other.'),
  );
  return `${lines.join('\n')}\n`;
}

/** Share of clients resumed against seconds since listening, one line per run. */
function chart(rows: readonly RestartRow[]): string | undefined {
  if (rows.length === 0) return undefined;
  const colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd'];
  return lineChart({
    title: `Clients resumed after a restart (${rows[0]?.clients ?? 0} clients, ${rows[0]?.topics ?? 0} topics)`,
    xLabel: 'seconds since the new relay listened',
    yLabel: '% of clients resumed',
    series: rows.map((row, i) => {
      const sorted = row.resumedMs.filter(Number.isFinite).sort((a, b) => a - b);
      const step = Math.max(1, Math.floor(sorted.length / 200));
      const points: [number, number][] = [[0, 0]];
      // A client seen back a few ms before the first /healthz 200 counts at 0.
      const at = (k: number): number => Math.max(0, sorted[k] as number) / 1000;
      for (let k = 0; k < sorted.length; k += step) points.push([at(k), ((k + 1) / row.resumedMs.length) * 100]);
      if (sorted.length > 0) points.push([at(sorted.length - 1), (sorted.length / row.resumedMs.length) * 100]);
      return { name: `run ${row.run}`, points, color: colors[i % colors.length] as string, dashed: false };
    }),
  });
}
