/**
 * Cluster scenario (issue 15): the same fan-out clients against one relay alone, one relay on
 * Redis and three relays on Redis (subscribers spread evenly), every relay, Redis and the
 * backend on the subject CPU. Then the takeover time after `kill -9` of a topic's owner.
 */
import { request } from 'node:http';
import { Redis } from 'ioredis';
import jwt from 'jsonwebtoken';
import { type ConnectedReport, type DoneReport, type ChildMessage, fixed, sampleProcs } from './common';
import { END_AFTER_MS, type ScenarioOutcome, codeNames, describe, postJson, startPublishing } from './fanout';
import { CLK_TCK, type Lab, type Subject, load1 } from './lab';
import type { LoadConfig } from './load';
import { type Proc, waitHealthy } from './proc';
import { freePort } from '../test/support/free-port';

export interface ClusterSettings {
  subscribers: number;
  codes: number;
  events: number;
  rate: number;
  concurrency: number;
  graceMs: number;
  /** Takeovers measured (each a fresh cluster). */
  takeovers: number;
  /** `CLUSTER_LEASE_MS` of the takeover runs. */
  leaseMs: number;
}

const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server';

interface Setup {
  readonly label: string;
  readonly relays: number;
  readonly redis: boolean;
}

const SETUPS: readonly Setup[] = [
  { label: '1 relay, no Redis', relays: 1, redis: false },
  { label: '1 relay on Redis', relays: 1, redis: true },
  { label: '3 relays on Redis', relays: 3, redis: true },
];

interface RedisStats {
  calls: Map<string, number>;
  cpuS: number;
}

interface FanoutRow {
  setup: string;
  done: DoneReport | undefined;
  upstreamPeak: number;
  relayCpuS: number;
  redisCalls: number;
  redisCpuS: number;
  topCommands: string;
  events: number;
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
}

/** A redis-server without persistence on a free loopback port, on `core`. */
export async function startRedis(lab: Lab, core: number | undefined): Promise<{ proc: Proc; url: string; client: Redis }> {
  const port = await freePort();
  const proc = lab.spawn('redis', REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], core);
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.ping();
      return { proc, url, client };
    } catch (err) {
      client.disconnect();
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

async function redisStats(client: Redis): Promise<RedisStats> {
  const calls = new Map<string, number>();
  for (const match of (await client.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(match[1] as string, Number(match[2]));
  const cpu = await client.info('cpu');
  const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? NaN);
  return { calls, cpuS: field('used_cpu_user') + field('used_cpu_sys') };
}

async function startCluster(lab: Lab, backendUrl: string, setup: Setup, maxStreams: number, env: NodeJS.ProcessEnv = {}) {
  const redis = setup.redis ? await startRedis(lab, lab.subjectCore) : undefined;
  const relays: Subject[] = [];
  for (let i = 0; i < setup.relays; i++) relays.push(await lab.startRelay(backendUrl, lab.subjectCore, maxStreams, redis ? { REDIS_URL: redis.url, ...env } : env));
  await Promise.all(relays.map((relay) => waitHealthy(`${relay.baseUrl}/readyz`, relay.node as Proc, 15_000)));
  return {
    redis,
    relays,
    async stop(): Promise<void> {
      await Promise.all(relays.map((relay) => relay.stop()));
      redis?.client.disconnect();
      await redis?.proc.stop();
    },
  };
}

async function runFanoutSetup(lab: Lab, settings: ClusterSettings, setup: Setup): Promise<FanoutRow> {
  const codes = codeNames(settings.codes);
  const startLoad = load1();
  const backend = await lab.startBenchBackend(lab.subjectCore);
  let cluster: Awaited<ReturnType<typeof startCluster>> | undefined;
  let load: Proc | undefined;
  try {
    cluster = await startCluster(lab, backend.url, setup, settings.subscribers);
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
    const before = sampleProcs(pids);
    const redisBefore = cluster.redis ? await redisStats(cluster.redis.client) : undefined;
    const lastEventInMs = await startPublishing(backend.url, load, { codes, events: settings.events, rate: settings.rate });
    const received = await load.message<ChildMessage>(['received', 'done'], lastEventInMs + END_AFTER_MS + settings.graceMs + 30_000);
    const after = sampleProcs(pids);
    const redisAfter = cluster.redis ? await redisStats(cluster.redis.client) : undefined;
    const done = received.type === 'done' ? (received as DoneReport) : await load.message<DoneReport>('done', END_AFTER_MS + settings.graceMs + 30_000);
    const stats = (await (await fetch(`${backend.url}/stats`)).json()) as { peakConnections: number };
    if (done.delivered < done.expected) notes.push(`${done.expected - done.delivered} events lost`);
    if (done.duplicates > 0) notes.push(`${done.duplicates} duplicates`);
    if (done.gaps > 0) notes.push(`${done.gaps} gaps in seq`);
    if (Object.keys(done.streamErrors).length > 0) notes.push(`stream errors: ${describe(done.streamErrors)}`);
    const diff = new Map<string, number>();
    if (redisBefore && redisAfter) {
      for (const [name, calls] of redisAfter.calls) {
        const delta = calls - (redisBefore.calls.get(name) ?? 0);
        if (delta > 0) diff.set(name, delta);
      }
    }
    const events = settings.codes * settings.events;
    const top = [...diff]
      .filter(([name]) => name !== 'info')
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([name, calls]) => `${name} ${fixed((calls / events) * 1000, 0)}`)
      .join(', ');
    return {
      setup: setup.label,
      done,
      upstreamPeak: stats.peakConnections,
      relayCpuS: (after.ticks - before.ticks) / CLK_TCK,
      redisCalls: [...diff].filter(([name]) => name !== 'info').reduce((sum, [, calls]) => sum + calls, 0),
      redisCpuS: redisBefore && redisAfter ? redisAfter.cpuS - redisBefore.cpuS : NaN,
      topCommands: top,
      events,
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
    cluster = await startCluster(lab, backend.url, { label: 'takeover', relays: 3, redis: true }, 100, { CLUSTER_LEASE_MS: String(settings.leaseMs), LOG_LEVEL: 'warn' });
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
    const firstAfter = subs.map((sub) => {
      const index = sub.seqs.findIndex((seq) => seq > seqAtKill + 1);
      return index < 0 ? NaN : (sub.times[index] as number) - killedAt;
    });
    first.close();
    return { upstreamMs, firstEventMs: Math.max(...firstAfter), exact };
  } finally {
    for (const sub of subs) sub.close();
    await cluster?.stop();
    await backend.proc.stop();
  }
}

export async function runCluster(lab: Lab, settings: ClusterSettings): Promise<ScenarioOutcome> {
  const rows: FanoutRow[] = [];
  const failures: string[] = [];
  for (const setup of SETUPS) {
    console.error(`bench: cluster fan-out: ${setup.label} …`);
    try {
      const row = await runFanoutSetup(lab, settings, setup);
      rows.push(row);
      console.error(`bench: cluster fan-out: ${setup.label}: p50 ${fixed(row.done?.delay.p50 ?? NaN, 2)} ms, p99 ${fixed(row.done?.delay.p99 ?? NaN, 2)} ms`);
    } catch (err) {
      failures.push(`${setup.label}: FAILED: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    }
  }
  const takeovers: TakeoverRow[] = [];
  for (let round = 0; round < settings.takeovers; round++) {
    console.error(`bench: cluster takeover ${round + 1}/${settings.takeovers} …`);
    try {
      const row = await runTakeover(lab, settings, round);
      takeovers.push(row);
      console.error(`bench: takeover: upstream back ${fixed(row.upstreamMs, 0)} ms after the kill, exact: ${row.exact}`);
    } catch (err) {
      failures.push(`takeover ${round + 1}: FAILED: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    }
  }
  return { markdown: table(settings, rows, takeovers, failures), data: { settings, rows, takeovers, failures }, failed: failures.length > 0 };
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
  }
  for (const line of failures) lines.push(`- ${line}`);
  lines.push(
    '',
    'Same load client and subscribers in every setup; with three relays subscriber i connects to relay i mod 3. Every relay, Redis and the backend share the subject CPU. ' +
      'Delay: backend write to client parse. Redis figures: `INFO commandstats` (calls, INFO excluded) and `INFO cpu` (used_cpu_user+sys) between the start signal and the last expected event.',
  );
  return `${lines.join('\n')}\n`;
}
