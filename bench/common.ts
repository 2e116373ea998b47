import { readFileSync, readdirSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import jwt from 'jsonwebtoken';

/** Epoch milliseconds with sub-millisecond resolution, comparable between processes of one machine. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** One line of JSON a bench child prints on stdout for the coordinator. */
export interface ChildMessage {
  readonly type: string;
  readonly [field: string]: unknown;
}

/** Prints one message for the coordinator; `then` runs once it is written. */
export function report(message: ChildMessage, then?: () => void): void {
  process.stdout.write(`${JSON.stringify(message)}\n`, then);
}

/**
 * Listens, says `ready` with the port, and exits on SIGTERM, SIGINT, or when the coordinator,
 * which holds this child's stdin, goes away.
 */
export function serveChild(server: Server, port: number, host: string): void {
  const stop = (): void => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop).on('error', stop).resume();
  server.listen({ port, host, backlog: 4096 }, () => {
    report({ type: 'ready', port: (server.address() as AddressInfo).port });
  });
}

/** What the load client says when every stream is open (or failed). */
export interface ConnectedReport extends ChildMessage {
  readonly type: 'connected';
  readonly open: number;
  readonly failed: number;
  /** Failure causes and how often each happened ("status 429", "ECONNRESET", ...). */
  readonly failures: Record<string, number>;
  readonly connectMs: number;
  /** Backend clock minus this process's clock, estimated on the lowest-RTT probe. */
  readonly clockOffsetMs: number;
  readonly clockRttMs: number;
}

/** What the load client says at the end. */
export interface DoneReport extends ChildMessage {
  readonly type: 'done';
  readonly expected: number;
  /** Events with a bench payload, duplicates included. */
  readonly received: number;
  /** Distinct (stream, seq) pairs. */
  readonly delivered: number;
  readonly duplicates: number;
  /** Times a stream skipped one or more seq numbers. */
  readonly gaps: number;
  /** Events that were not bench payloads (relay_error, resync, ...), by name. */
  readonly otherEvents: Record<string, number>;
  /** Streams that got every event. */
  readonly completeStreams: number;
  /** Streams that ended (or broke) before their last event. */
  readonly shortStreams: number;
  /** Streams still open at the deadline (destroyed by the client). */
  readonly timedOutStreams: number;
  readonly streamErrors: Record<string, number>;
  readonly delay: DelaySummary;
  /** The delays of events with seq >= steadyFromSeq (a quarter of the events per code): no warm-up. */
  readonly steadyDelay: DelaySummary;
  readonly steadyFromSeq: number;
  /** The load process's CPU use over the delivery window, in % of one core. */
  readonly cpuPercent: number;
  /** The load process's own event-loop delay over the window (10 ms resolution): p99 and max, ms. */
  readonly loopDelayP99Ms: number;
  readonly loopDelayMaxMs: number;
  /** The load process's own GC pauses over the window: how many, their sum and the longest, ms. */
  readonly gcCount: number;
  readonly gcPauseMs: number;
  readonly gcMaxPauseMs: number;
  readonly windowMs: number;
}

export interface DelaySummary {
  readonly count: number;
  readonly min: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

/** Percentiles of `values` (sorted in place). NaN for an empty set. */
export function summarize(input: Float64Array): DelaySummary {
  // A sorted copy: callers' arrays may be paired with others by index.
  const values = Float64Array.from(input).sort();
  const count = values.length;
  const at = (q: number): number => (count === 0 ? NaN : (values[Math.min(count - 1, Math.ceil(q * count) - 1)] ?? NaN));
  let sum = 0;
  for (const v of values) sum += v;
  return {
    count,
    min: count === 0 ? NaN : (values[0] ?? NaN),
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    p999: at(0.999),
    max: count === 0 ? NaN : (values[count - 1] ?? NaN),
    mean: count === 0 ? NaN : sum / count,
  };
}

/**
 * The header that names `user` to a subject: for the relay (`jwt`) a Bearer token signed with
 * BENCH_JWT_SECRET, for the others (`header`) the X-User-Id the relay would send.
 */
export function identityHeader(auth: 'jwt' | 'header', user: string): Record<string, string> {
  if (auth === 'header') return { 'X-User-Id': user };
  const secret = process.env.BENCH_JWT_SECRET;
  if (secret === undefined || secret === '') throw new Error('BENCH_JWT_SECRET is not set');
  return { Authorization: `Bearer ${jwt.sign({}, secret, { subject: user, expiresIn: '1h', algorithm: 'HS256' })}` };
}

/**
 * Calls `start(index, done)` for each index in [from, from + count), at most `concurrency`
 * in flight; resolves once every one has called `done`.
 */
export function runBounded(from: number, count: number, concurrency: number, start: (index: number, done: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    if (count === 0) return resolve();
    let next = from;
    let inFlight = 0;
    let settled = 0;
    const launch = (): void => {
      while (inFlight < concurrency && next < from + count) {
        inFlight += 1;
        start(next++, () => {
          inFlight -= 1;
          settled += 1;
          if (settled === count) resolve();
          else launch();
        });
      }
    };
    launch();
  });
}

/** CPU time (user + system, in clock ticks) and memory of one process, from /proc. */
export interface ProcSample {
  readonly ticks: number;
  readonly userTicks: number;
  readonly systemTicks: number;
  readonly rssKb: number;
  readonly hwmKb: number;
}

export function sampleProc(pid: number): ProcSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const userTicks = Number(fields[11]);
    const systemTicks = Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return { ticks: userTicks + systemTicks, userTicks, systemTicks, rssKb: statusKb(status, 'VmRSS'), hwmKb: statusKb(status, 'VmHWM') };
  } catch {
    return undefined;
  }
}

function statusKb(status: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match?.[1] === undefined ? 0 : Number(match[1]);
}

/** Pids whose parent is `ppid` (nginx workers of a master). */
export function childPids(ppid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Sums samples of several processes (a master and its workers). */
export function sampleProcs(pids: readonly number[]): ProcSample {
  let ticks = 0;
  let userTicks = 0;
  let systemTicks = 0;
  let rssKb = 0;
  let hwmKb = 0;
  for (const pid of pids) {
    const sample = sampleProc(pid);
    if (!sample) continue;
    ticks += sample.ticks;
    userTicks += sample.userTicks;
    systemTicks += sample.systemTicks;
    rssKb += sample.rssKb;
    hwmKb += sample.hwmKb;
  }
  return { ticks, userTicks, systemTicks, rssKb, hwmKb };
}

/** Busy and stolen clock ticks per CPU, from /proc/stat (busy: everything but idle, iowait and steal). */
export interface CpuTicks {
  readonly busy: ReadonlyMap<number, number>;
  readonly steal: ReadonlyMap<number, number>;
}

export function sampleCpus(): CpuTicks {
  const busy = new Map<number, number>();
  const steal = new Map<number, number>();
  try {
    for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
      const match = /^cpu(\d+)\s+(.*)$/.exec(line);
      if (match === null) continue;
      // user nice system idle iowait irq softirq steal guest guest_nice (guest time is in user already)
      const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, stolen = 0] = (match[2] ?? '').split(/\s+/).map(Number);
      busy.set(Number(match[1]), user + nice + system + irq + softirq);
      steal.set(Number(match[1]), stolen);
    }
  } catch {
    // not Linux: no figures
  }
  return { busy, steal };
}

/** GC pauses of one process within a window, from the CSV gc-probe.ts writes. */
export interface GcSummary {
  readonly count: number;
  readonly totalMs: number;
  readonly maxMs: number;
}

export function gcPauses(file: string, fromMs: number, toMs: number): GcSummary | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  let count = 0;
  let totalMs = 0;
  let maxMs = 0;
  for (const line of text.split('\n')) {
    const [at, duration] = line.split(',').map(Number);
    if (at === undefined || duration === undefined || !(at >= fromMs && at <= toMs)) continue;
    count += 1;
    totalMs += duration;
    maxMs = Math.max(maxMs, duration);
  }
  return { count, totalMs, maxMs };
}

/** A figure with `digits` decimals; `n/a` for a missing (NaN) or infinite one. */
export function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a';
}
