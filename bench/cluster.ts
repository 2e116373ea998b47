/**
 * Cluster scenario (issue 15): the same fan-out clients against one relay alone, one relay on
 * Redis and three relays on Redis (subscribers spread evenly), every relay, Redis and the
 * backend on the subject CPU. Then Redis's work per event across event rates (issue 28: the
 * commands and CPU each event costs Redis, above its idle background, and the delay it adds),
 * and the takeover time after `kill -9` of a topic's owner.
 */
import { request } from 'node:http';
import jwt from 'jsonwebtoken';
import { type ConnectedReport, type DoneReport, type ChildMessage, fixed, sampleProcs } from './common';
import { END_AFTER_MS, type ScenarioOutcome, codeNames, describe, postJson, startPublishing } from './fanout';
import { CLK_TCK, type Lab, type RelayName, type Subject, load1 } from './lab';
import type { LoadConfig } from './load';
import { type Proc, waitHealthy } from './proc';
import { startRedis, startRedisCluster } from './redis';

/** Which parts of the scenario run. */
export const CLUSTER_PARTS = ['fanout', 'cost', 'takeover'] as const;

export interface ClusterSettings {
  parts: (typeof CLUSTER_PARTS)[number][];
  subscribers: number;
  codes: number;
  events: number;
  rate: number;
  concurrency: number;
  graceMs: number;
  /** Redis cost: events per second over all codes, one run per rate and setup. */
  costRates: number[];
  costCodes: number;
  costSubscribers: number;
  /** Redis cost: how long each rate is published. */
  costSeconds: number;
  /** Redis cost: events the backend writes at once per code. */
  costBurst: number;
  /** Redis cost: which setups run. */
  costSetups: CostSetupName[];
  /** Redis cost: which builds of the relay run each setup on Redis, in turn at each rate (`relay-before`: the `--before` checkout's). */
  costBuilds: CostBuild[];
  /** Takeovers measured (each a fresh cluster). */
  takeovers: number;
  /** `CLUSTER_LEASE_MS` of the takeover runs. */
  leaseMs: number;
}

/** The cost sweep's setups, as `--cluster-setups` names them. */
export const COST_SETUP_NAMES = ['alone', 'redis1', 'redis3', 'cluster3', 'redis1-signed', 'redis3-signed'] as const;
type CostSetupName = (typeof COST_SETUP_NAMES)[number];
/** The setups the cost sweep runs unless told. */
export const DEFAULT_COST_SETUPS: readonly CostSetupName[] = ['alone', 'redis1', 'redis3', 'cluster3'];
type CostBuild = Extract<RelayName, 'relay' | 'relay-before'>;

interface Setup {
  readonly name: CostSetupName;
  readonly label: string;
  readonly relays: number;
  readonly redis: 'none' | 'single' | 'cluster';
  readonly env?: NodeJS.ProcessEnv;
}

const SETUPS: readonly Setup[] = [
  { name: 'alone', label: '1 relay, no Redis', relays: 1, redis: 'none' },
  { name: 'redis1', label: '1 relay on Redis', relays: 1, redis: 'single' },
  { name: 'redis3', label: '3 relays on Redis', relays: 3, redis: 'single' },
];

const SIGNED = { REDIS_SIGNING_SECRET: 'the bench signing secret, long enough for the relay' };

/** The cost sweep adds a Redis Cluster (its figures are the sum over its masters), and signed entries. */
const COST_SETUPS: readonly Setup[] = [
  ...SETUPS,
  { name: 'cluster3', label: '3 relays on a 3-master Redis Cluster', relays: 3, redis: 'cluster' },
  { name: 'redis1-signed', label: '1 relay on Redis, signed', relays: 1, redis: 'single', env: SIGNED },
  { name: 'redis3-signed', label: '3 relays on Redis, signed', relays: 3, redis: 'single', env: SIGNED },
];

/** One fan-out run's shape. */
interface FanoutRun {
  subscribers: number;
  codes: number;
  events: number;
  rate: number;
  concurrency: number;
  graceMs: number;
  /** Redis's idle work is sampled this long before publishing (0: not sampled). */
  idleMs: number;
  /** Events the backend writes at once per code (1: one at a time). */
  burst: number;
}

/** Redis's own work while nothing is published (heartbeats, lease renewals, its timers). */
interface Background {
  cpuMsPerS: number;
  callsPerS: number;
}

interface FanoutRow {
  setup: string;
  done: DoneReport | undefined;
  upstreamPeak: number;
  relayCpuS: number;
  redisCalls: number;
  redisCpuS: number;
  topCommands: string;
  /** Calls per command over the publishing window. */
  calls: Record<string, number>;
  /** The publishing window: start signal to the last expected event, ms. */
  windowMs: number;
  background: Background | undefined;
  events: number;
  /** Events per second over all codes. */
  rate: number;
  load1: number;
  notes: string[];
}

interface TakeoverRow {
  /** From the kill to the backend seeing the new owner's request. */
  upstreamMs: number;
  /** From the kill to the first event after it on a surviving relay's subscriber. */
  firstEventMs: number;
  /** Every surviving subscriber got every event once, in order. */
  exact: boolean;
  /** When not exact: what the subscribers lacked, repeated or got out of order. */
  faults: string[];
}

async function startCluster(lab: Lab, backendUrl: string, setup: Setup, maxStreams: number, env: NodeJS.ProcessEnv = {}, build: CostBuild = 'relay') {
  const redis = setup.redis === 'single' ? await startRedis(lab, lab.subjectCore) : setup.redis === 'cluster' ? await startRedisCluster(lab.subjectCore) : undefined;
  const relays: Subject[] = [];
  for (let i = 0; i < setup.relays; i++) relays.push(await lab.startRelay(backendUrl, lab.subjectCore, maxStreams, { ...redis?.env, ...setup.env, ...env }, build));
  await Promise.all(relays.map((relay) => waitHealthy(`${relay.baseUrl}/readyz`, relay.node as Proc, 15_000)));
  return {
    redis,
    relays,
    async stop(): Promise<void> {
      await Promise.all(relays.map((relay) => relay.stop()));
      await redis?.stop();
    },
  };
}

/** Per command, what grew from `before` to `after` (INFO itself left out). */
function diffCalls(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const diff = new Map<string, number>();
  for (const [name, calls] of after) {
    const delta = calls - (before.get(name) ?? 0);
    if (delta > 0 && name !== 'info') diff.set(name, delta);
  }
  return diff;
}

function sum(calls: Map<string, number>): number {
  let total = 0;
  for (const value of calls.values()) total += value;
  return total;
}

async function runFanoutSetup(lab: Lab, settings: FanoutRun, setup: Setup, build: CostBuild = 'relay'): Promise<FanoutRow> {
  const codes = codeNames(settings.codes);
  const startLoad = load1();
  const backend = await lab.startBenchBackend(lab.subjectCore);
  let cluster: Awaited<ReturnType<typeof startCluster>> | undefined;
  let load: Proc | undefined;
  try {
    cluster = await startCluster(lab, backend.url, setup, settings.subscribers, {}, build);
    const first = cluster.relays[0] as Subject;
    const loadConfig: LoadConfig = {
      baseUrl: first.baseUrl,
      baseUrls: cluster.relays.map((relay) => relay.baseUrl),
      pathTemplate: `${first.prefix}/downloads/{code}/events`,
      codes,
      subscribers: settings.subscribers,
      eventsPerCode: settings.events,
      concurrency: settings.concurrency,
      auth: first.auth,
      backendUrl: backend.url,
      connectTimeoutMs: 15_000,
      graceMs: settings.graceMs,
    };
    load = lab.spawnClient('load', 'load', loadConfig);
    const connected = await load.message<ConnectedReport>('connected', 30_000 + settings.subscribers * 20);
    const notes: string[] = [];
    if (connected.failed > 0) notes.push(`${connected.failed} streams failed to open (${describe(connected.failures)})`);
    const pids = cluster.relays.flatMap((relay) => relay.pids());
    let background: Background | undefined;
    if (cluster.redis && settings.idleMs > 0) {
      const idleStart = await cluster.redis.stats();
      const idleAt = performance.now();
      await new Promise((resolve) => setTimeout(resolve, settings.idleMs));
      const idleEnd = await cluster.redis.stats();
      const seconds = (performance.now() - idleAt) / 1000;
      background = { cpuMsPerS: ((idleEnd.cpuS - idleStart.cpuS) * 1000) / seconds, callsPerS: sum(diffCalls(idleStart.calls, idleEnd.calls)) / seconds };
    }
    const before = sampleProcs(pids);
    const redisBefore = cluster.redis ? await cluster.redis.stats() : undefined;
    const windowAt = performance.now();
    const lastEventInMs = await startPublishing(backend.url, load, { codes, events: settings.events, rate: settings.rate, burst: settings.burst });
    const received = await load.message<ChildMessage>(['received', 'done'], lastEventInMs + END_AFTER_MS + settings.graceMs + 30_000);
    const after = sampleProcs(pids);
    const redisAfter = cluster.redis ? await cluster.redis.stats() : undefined;
    const windowMs = performance.now() - windowAt;
    const done = received.type === 'done' ? (received as DoneReport) : await load.message<DoneReport>('done', END_AFTER_MS + settings.graceMs + 30_000);
    const stats = (await (await fetch(`${backend.url}/stats`)).json()) as { peakConnections: number };
    if (done.delivered < done.expected) notes.push(`${done.expected - done.delivered} events lost`);
    if (done.duplicates > 0) notes.push(`${done.duplicates} duplicates`);
    if (done.gaps > 0) notes.push(`${done.gaps} gaps in seq`);
    if (Object.keys(done.streamErrors).length > 0) notes.push(`stream errors: ${describe(done.streamErrors)}`);
    const diff = redisBefore && redisAfter ? diffCalls(redisBefore.calls, redisAfter.calls) : new Map<string, number>();
    const events = settings.codes * settings.events;
    const top = [...diff]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([name, calls]) => `${name} ${fixed((calls / events) * 1000, 0)}`)
      .join(', ');
    return {
      setup: build === 'relay-before' ? `${setup.label} (before)` : setup.label,
      done,
      upstreamPeak: stats.peakConnections,
      relayCpuS: (after.ticks - before.ticks) / CLK_TCK,
      redisCalls: sum(diff),
      redisCpuS: redisBefore && redisAfter ? redisAfter.cpuS - redisBefore.cpuS : NaN,
      topCommands: top,
      calls: Object.fromEntries(diff),
      windowMs,
      background,
      events,
      rate: settings.codes * settings.rate,
      load1: startLoad,
      notes,
    };
  } finally {
    await load?.stop('SIGTERM', 2000);
    await cluster?.stop();
    await backend.proc.stop();
  }
}

/** A subscriber in this process: the seqs it got, and when. */
function follow(url: string, headers: Record<string, string>): { seqs: number[]; times: number[]; opened: Promise<void>; close: () => void } {
  const seqs: number[] = [];
  const times: number[] = [];
  let buffered = '';
  let close = (): void => undefined;
  const opened = new Promise<void>((resolve, reject) => {
    const req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`${url}: ${res.statusCode}`));
      resolve();
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffered += chunk;
        const frames = buffered.split('\n\n');
        buffered = frames.pop() ?? '';
        for (const frame of frames) {
          const seq = /"seq":(\d+)/.exec(frame)?.[1];
          if (seq === undefined) continue;
          seqs.push(Number(seq));
          times.push(performance.now());
        }
      });
      res.on('error', () => undefined);
    });
    req.on('error', reject);
    req.end();
    close = () => req.destroy();
  });
  return { seqs, times, opened, close };
}

async function runTakeover(lab: Lab, settings: ClusterSettings, round: number): Promise<TakeoverRow> {
  const backend = await lab.startBenchBackend(lab.subjectCore);
  let cluster: Awaited<ReturnType<typeof startCluster>> | undefined;
  const subs: ReturnType<typeof follow>[] = [];
  try {
    cluster = await startCluster(lab, backend.url, { name: 'redis3', label: 'takeover', relays: 3, redis: 'single' }, 100, { CLUSTER_LEASE_MS: String(settings.leaseMs), LOG_LEVEL: 'warn' });
    const [owner, ...survivors] = cluster.relays as [Subject, Subject, Subject];
    const code = `takeover${round}`;
    const path = `/api/downloads/${code}/events`;
    const headers = { authorization: `Bearer ${jwt.sign({}, lab.jwtSecret, { subject: 'bench-takeover', expiresIn: '1h', algorithm: 'HS256' })}` };
    // The first relay to open the topic owns it.
    const first = follow(`${owner.baseUrl}${path}`, headers);
    await first.opened;
    for (const relay of survivors) for (let i = 0; i < 5; i++) subs.push(follow(`${relay.baseUrl}${path}`, headers));
    await Promise.all(subs.map((sub) => sub.opened));
    const rate = 50;
    const seconds = Math.ceil(settings.leaseMs / 1000) + 6;
    const opened = async (): Promise<number> => ((await (await fetch(`${backend.url}/stats`)).json()) as { opened: number }).opened;
    const openedBefore = await opened();
    const { lastEventInMs } = await postJson<{ lastEventInMs: number }>(`${backend.url}/start`, { codes: [code], events: rate * seconds, rate, leadMs: 100, endAfterMs: END_AFTER_MS });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const killedAt = performance.now();
    (owner.node as Proc).killNow();
    const seqAtKill = Math.max(-1, ...subs.flatMap((sub) => sub.seqs));
    let upstreamMs = NaN;
    while (performance.now() - killedAt < settings.leaseMs * 4 + 10_000) {
      if ((await opened()) > openedBefore) {
        upstreamMs = performance.now() - killedAt;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, lastEventInMs - (performance.now() - killedAt) - 1000) + 2000));
    const expected = Array.from({ length: rate * seconds }, (_, i) => i);
    const exact = subs.every((sub) => sub.seqs.length === expected.length && sub.seqs.every((seq, i) => seq === i));
    const faults = subs.flatMap((sub, i) => {
      const seen = new Set(sub.seqs);
      const missing = expected.filter((seq) => !seen.has(seq));
      const repeated = sub.seqs.length - seen.size;
      const disordered = sub.seqs.filter((seq, j) => j > 0 && seq < (sub.seqs[j - 1] as number)).length;
      if (missing.length === 0 && repeated === 0 && disordered === 0) return [];
      const range = missing.length === 0 ? '' : ` missing ${missing.length} (seqs ${missing[0]} to ${missing.at(-1)}; last received ${sub.seqs.at(-1) ?? 'none'}, killed at ${seqAtKill})`;
      return [`subscriber ${i}:${range}${repeated > 0 ? ` ${repeated} repeated` : ''}${disordered > 0 ? ` ${disordered} out of order` : ''}`];
    });
    const firstAfter = subs.map((sub) => {
      const index = sub.seqs.findIndex((seq) => seq > seqAtKill + 1);
      return index < 0 ? NaN : (sub.times[index] as number) - killedAt;
    });
    first.close();
    return { upstreamMs, firstEventMs: Math.max(...firstAfter), exact, faults };
  } finally {
    for (const sub of subs) sub.close();
    await cluster?.stop();
    await backend.proc.stop();
  }
}

export async function runCluster(lab: Lab, settings: ClusterSettings): Promise<ScenarioOutcome> {
  const rows: FanoutRow[] = [];
  const costRows: FanoutRow[] = [];
  const failures: string[] = [];
  const failed = (label: string, err: unknown): void => {
    failures.push(`${label}: FAILED: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  };
  if (settings.parts.includes('fanout')) {
    for (const setup of SETUPS) {
      console.error(`bench: cluster fan-out: ${setup.label} …`);
      try {
        const row = await runFanoutSetup(lab, { ...settings, idleMs: 0, burst: 1 }, setup);
        rows.push(row);
        console.error(`bench: cluster fan-out: ${setup.label}: p50 ${fixed(row.done?.delay.p50 ?? NaN, 2)} ms, p99 ${fixed(row.done?.delay.p99 ?? NaN, 2)} ms`);
      } catch (err) {
        failed(setup.label, err);
      }
    }
  }
  if (settings.parts.includes('cost')) {
    for (const setup of COST_SETUPS.filter((candidate) => settings.costSetups.includes(candidate.name))) {
      for (const total of settings.costRates) {
        const rate = total / settings.costCodes;
        const run: FanoutRun = {
          subscribers: settings.costSubscribers,
          codes: settings.costCodes,
          events: Math.max(1, Math.round(rate * settings.costSeconds)),
          rate,
          concurrency: settings.concurrency,
          graceMs: settings.graceMs,
          idleMs: COST_IDLE_MS,
          burst: settings.costBurst,
        };
        // Before and after in turn at each rate, so both meet the same load from the machine's other users.
        for (const build of setup.redis === 'none' ? (['relay'] as const) : settings.costBuilds) {
          const label = build === 'relay-before' ? `${setup.label} (before)` : setup.label;
          console.error(`bench: cluster cost: ${label}, ${total} events/s …`);
          try {
            const row = await runFanoutSetup(lab, run, setup, build);
            costRows.push(row);
            console.error(`bench: cluster cost: ${label}, ${total}/s: ${costLine(row)}`);
          } catch (err) {
            failed(`${label} at ${total}/s`, err);
          }
        }
      }
    }
  }
  const takeovers: TakeoverRow[] = [];
  const takeoverRuns = settings.parts.includes('takeover') ? settings.takeovers : 0;
  for (let round = 0; round < takeoverRuns; round++) {
    console.error(`bench: cluster takeover ${round + 1}/${settings.takeovers} …`);
    try {
      const row = await runTakeover(lab, settings, round);
      takeovers.push(row);
      console.error(`bench: takeover: upstream back ${fixed(row.upstreamMs, 0)} ms after the kill, exact: ${row.exact}${row.exact ? '' : `: ${row.faults.join('; ')}`}`);
    } catch (err) {
      failed(`takeover ${round + 1}`, err);
    }
  }
  const markdown = [rows.length > 0 || takeovers.length > 0 ? table(settings, rows, takeovers, []) : '', costRows.length > 0 ? costTable(settings, costRows) : '', ...failures.map((line) => `- ${line}\n`)]
    .filter((part) => part !== '')
    .join('\n');
  return { markdown, data: { settings, rows, costRows, takeovers, failures }, failed: failures.length > 0 };
}

/** How long Redis's background work is sampled before each cost run. */
const COST_IDLE_MS = 3000;

/** Redis work per event above its background: [commands, CPU ms], or NaN without Redis. */
function perEvent(row: FanoutRow): { calls: number; cpuMs: number; rawCpuMs: number } {
  if (!Number.isFinite(row.redisCpuS) || row.events === 0) return { calls: NaN, cpuMs: NaN, rawCpuMs: NaN };
  const seconds = row.windowMs / 1000;
  const bgCpuMs = (row.background?.cpuMsPerS ?? 0) * seconds;
  const bgCalls = (row.background?.callsPerS ?? 0) * seconds;
  return {
    calls: Math.max(0, row.redisCalls - bgCalls) / row.events,
    cpuMs: Math.max(0, row.redisCpuS * 1000 - bgCpuMs) / row.events,
    rawCpuMs: (row.redisCpuS * 1000) / row.events,
  };
}

/** Entries appended per script call: the batching actually achieved. */
function entriesPerScript(row: FanoutRow): number {
  const scripts = (row.calls.evalsha ?? 0) + (row.calls.eval ?? 0);
  return scripts > 0 ? (row.calls.xadd ?? 0) / scripts : NaN;
}

function costLine(row: FanoutRow): string {
  const cost = perEvent(row);
  return `${fixed(cost.calls, 2)} commands and ${fixed(cost.cpuMs * 1000, 1)} µs of Redis CPU per event above background; p50 ${fixed(row.done?.delay.p50 ?? NaN, 2)} ms`;
}

function costTable(settings: ClusterSettings, rows: readonly FanoutRow[]): string {
  const lines = [
    `### Redis work per event: ${settings.costSubscribers} subscribers over ${settings.costCodes} codes, ${settings.costSeconds} s per rate${settings.costBurst > 1 ? `, the backend writing ${settings.costBurst} events at once per code` : ''}`,
    '',
    '| setup | events/s | delivered / expected | p50 ms | p99 ms | p50 / p99 added ms | Redis commands / event | Redis CPU µs / event (above background) | Redis CPU µs / event (raw) | background CPU ms/s | XADDs per script | top commands / event | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const d = row.done;
    const alone = rows.find((other) => other.rate === row.rate && other.setup === SETUPS[0]?.label)?.done?.delay;
    const added = alone && d && row.setup !== SETUPS[0]?.label ? `${fixed(d.delay.p50 - alone.p50, 2)} / ${fixed(d.delay.p99 - alone.p99, 2)}` : '-';
    const cost = perEvent(row);
    const top = Object.entries(row.calls)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 6)
      .map(([name, calls]) => `${name} ${fixed(calls / row.events, 2)}`)
      .join(', ');
    const redis = Number.isFinite(cost.calls);
    lines.push(
      `| ${row.setup} | ${row.rate} | ${d?.delivered ?? 0} / ${d?.expected ?? '?'} | ${fixed(d?.delay.p50 ?? NaN, 2)} | ${fixed(d?.delay.p99 ?? NaN, 2)} | ${added} | ${redis ? fixed(cost.calls, 2) : '-'} | ${redis ? fixed(cost.cpuMs * 1000, 1) : '-'} | ${redis ? fixed(cost.rawCpuMs * 1000, 1) : '-'} | ${row.background ? fixed(row.background.cpuMsPerS, 2) : '-'} | ${redis ? fixed(entriesPerScript(row), 2) : '-'} | ${top || '-'} | ${fixed(row.load1, 1)} |`,
    );
  }
  lines.push('');
  for (const row of rows) if (row.notes.length > 0) lines.push(`- ${row.setup} at ${row.rate}/s: ${row.notes.join('; ')}`);
  lines.push(
    '',
    `Each row a fresh setup; Redis's background work (idle relays' renewals and heartbeats, its own timers) is sampled for ${COST_IDLE_MS / 1000} s with every subscriber connected before publishing, and taken off the publishing window's figures pro rata ("above background"). ` +
      'Commands: `INFO commandstats` calls (INFO excluded; a script counts once as EVALSHA plus once per command it runs). CPU: `INFO cpu` used_cpu_user+sys, all of Redis\'s process, socket writes included (on loopback a write also does the receiving side\'s kernel work). On the Redis Cluster both are summed over its three masters. Delay: backend write to client parse. Every relay, Redis and the backend share the subject CPU.',
  );
  return `${lines.join('\n')}\n`;
}

function table(settings: ClusterSettings, rows: readonly FanoutRow[], takeovers: readonly TakeoverRow[], failures: readonly string[]): string {
  const alone = rows.find((row) => row.setup === SETUPS[0]?.label)?.done?.delay;
  const lines = [
    `### Cluster: ${settings.subscribers} subscribers over ${settings.codes} codes, ${settings.events} events per code at ${settings.rate}/s`,
    '',
    '| setup | delivered / expected | p50 ms | p99 ms | p50 / p99 added ms | upstream conns (peak) | relays CPU s / 100k deliveries | Redis commands / 1,000 events | Redis CPU ms / 1,000 events | top commands / 1,000 events | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const d = row.done;
    const delivered = d?.delivered ?? 0;
    const added = alone && d ? `${fixed(d.delay.p50 - alone.p50, 2)} / ${fixed(d.delay.p99 - alone.p99, 2)}` : 'n/a';
    lines.push(
      `| ${row.setup} | ${delivered} / ${d?.expected ?? '?'} | ${fixed(d?.delay.p50 ?? NaN, 2)} | ${fixed(d?.delay.p99 ?? NaN, 2)} | ${added} | ${row.upstreamPeak} | ${delivered > 0 ? fixed((row.relayCpuS / delivered) * 100_000, 2) : 'n/a'} | ${Number.isFinite(row.redisCpuS) ? fixed((row.redisCalls / row.events) * 1000, 0) : '-'} | ${Number.isFinite(row.redisCpuS) ? fixed(((row.redisCpuS * 1000) / row.events) * 1000, 1) : '-'} | ${row.topCommands || '-'} | ${fixed(row.load1, 1)} |`,
    );
  }
  lines.push('');
  for (const row of rows) if (row.notes.length > 0) lines.push(`- ${row.setup}: ${row.notes.join('; ')}`);
  if (takeovers.length > 0) {
    const ups = takeovers.map((t) => t.upstreamMs);
    const firsts = takeovers.map((t) => t.firstEventMs);
    lines.push(
      '',
      `Takeover (\`CLUSTER_LEASE_MS=${settings.leaseMs}\`, three relays, 5 subscribers on each survivor, 50 events/s, owner killed with SIGKILL 1 s in), ${takeovers.length} runs: ` +
        `backend asked again ${ups.map((ms) => fixed(ms, 0)).join(', ')} ms after the kill; first new event on every survivor's subscribers ${firsts.map((ms) => fixed(ms, 0)).join(', ')} ms after it; ` +
        `every surviving subscriber got every event once and in order: ${takeovers.every((t) => t.exact) ? 'yes' : `NO (${takeovers.filter((t) => !t.exact).length} runs)`}.`,
    );
    for (const [i, t] of takeovers.entries()) if (!t.exact) lines.push(`- run ${i + 1}: ${t.faults.join('; ')}`);
  }
  for (const line of failures) lines.push(`- ${line}`);
  lines.push(
    '',
    'Same load client and subscribers in every setup; with three relays subscriber i connects to relay i mod 3. Every relay, Redis and the backend share the subject CPU. ' +
      'Delay: backend write to client parse. Redis figures: `INFO commandstats` (calls, INFO excluded) and `INFO cpu` (used_cpu_user+sys) between the start signal and the last expected event.',
  );
  return `${lines.join('\n')}\n`;
}
