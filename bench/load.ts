/**
 * The benchmark's load generator: opens `subscribers` SSE streams spread over
 * `codes`, a bounded number of connection attempts in flight at a time, and
 * reports when all are open. On `{"cmd":"start","durationMs":n}` (a stdin line)
 * it starts the clock and records, for every event, the delay from the
 * backend's write (the event's `t`) to this process's parse. It says
 * `{"type":"received"}` once every open stream got every event, ends when every
 * stream has ended, or at the deadline, and prints a summary.
 *
 * Raw sockets (one per stream), the request written by hand and the response read by
 * `SseWire`: only the status, the chunk framing and each event's name and data, so that
 * the client costs far less than the subject it measures. It also reports its own CPU,
 * event-loop delay and GC pauses over the delivery window, so a report can tell the
 * subject's delays from the client's.
 * Usage: node dist/bench/load.js '<LoadConfig as JSON>'   (BENCH_JWT_SECRET in the environment for `auth: "jwt"`)
 */
import { writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { type IntervalHistogram, PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { type ConnectedReport, type DoneReport, identityHeader, nowMs, report, runBounded, summarize } from './common';
import { SseWire, connectWire } from './sse-wire';

export interface LoadConfig {
  /** Base URL of the subject, e.g. http://127.0.0.1:8080 */
  readonly baseUrl: string;
  /** Several relays of one cluster: subscriber i connects to entry i mod their number instead of `baseUrl`. */
  readonly baseUrls?: readonly string[];
  /** Path of a code's stream with `{code}` in it, e.g. /api/downloads/{code}/events */
  readonly pathTemplate: string;
  readonly codes: readonly string[];
  readonly subscribers: number;
  /** Events each stream should get. */
  readonly eventsPerCode: number;
  /** Connection attempts in flight at once. */
  readonly concurrency: number;
  /** `jwt`: a Bearer token per subscriber (user bench-<i>); `header`: X-User-Id as the relay would send it. */
  readonly auth: 'jwt' | 'header';
  /** Backend base URL, for the clock offset probe. */
  readonly backendUrl: string;
  /** How long a stream may take to answer with headers. */
  readonly connectTimeoutMs: number;
  /** How long after the last event is due the client waits for streams to end. */
  readonly graceMs: number;
}

interface Payload {
  t: number;
  seq: number;
}

/** One subscriber stream's bookkeeping. */
interface Stream {
  index: number;
  socket: Socket | undefined;
  received: number;
  lastSeq: number;
  duplicates: number;
  gaps: number;
  done: boolean;
}

const config = JSON.parse(process.argv[2] ?? '{}') as LoadConfig;
const streams: Stream[] = [];
const failures: Record<string, number> = {};
const streamErrors: Record<string, number> = {};
const otherEvents: Record<string, number> = {};
let delays = new Float64Array(config.subscribers * config.eventsPerCode);
let delaySeqs = new Uint32Array(delays.length);
let delayCount = 0;
/** Events with a lower seq are the warm-up (JIT, first GC) and left out of the steady-state summary. */
const steadyFromSeq = Math.floor(config.eventsPerCode / 4);
/** BENCH_DUMP=file: every timed event as `at,stream,seq,delay` (ms since start), for looking at tails. */
const dumpPath = process.env.BENCH_DUMP;
const dump: string[] = [];
let openStreams = 0;
/** Distinct events so far, over all streams. */
let deliveredTotal = 0;
let receivedReported = false;
let started = false;
let finished = false;

function count(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}

function errorKey(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
}

function record(delay: number, seq: number): void {
  if (delayCount === delays.length) {
    const bigger = new Float64Array(Math.max(1024, delays.length * 2));
    bigger.set(delays);
    delays = bigger;
    const biggerSeqs = new Uint32Array(bigger.length);
    biggerSeqs.set(delaySeqs);
    delaySeqs = biggerSeqs;
  }
  delays[delayCount] = delay;
  delaySeqs[delayCount] = seq;
  delayCount += 1;
}

/** The delays of events with seq >= steadyFromSeq. */
function steadyDelays(): Float64Array {
  const steady = new Float64Array(delayCount);
  let n = 0;
  for (let i = 0; i < delayCount; i++) if ((delaySeqs[i] ?? 0) >= steadyFromSeq) steady[n++] = delays[i] ?? 0;
  return steady.subarray(0, n);
}

function onEvent(stream: Stream, name: string | undefined, data: string): void {
  const at = nowMs();
  if (name !== undefined && name !== 'message') return count(otherEvents, name);
  let payload: Payload;
  try {
    payload = JSON.parse(data) as Payload;
  } catch {
    return count(otherEvents, '(not JSON)');
  }
  if (typeof payload.t !== 'number' || typeof payload.seq !== 'number') return count(otherEvents, '(no t/seq)');
  stream.received += 1;
  if (payload.seq <= stream.lastSeq) {
    stream.duplicates += 1;
    return;
  }
  if (payload.seq !== stream.lastSeq + 1) stream.gaps += 1;
  stream.lastSeq = payload.seq;
  deliveredTotal += 1;
  // Every event for every stream that opened: the coordinator reads CPU now, before teardown.
  // Events that arrive before `start` (a replay, a stray) are counted but not timed.
  if (!started) return;
  if (!receivedReported && deliveredTotal >= streams.length * config.eventsPerCode) {
    receivedReported = true;
    windowEnd = { ms: at - windowStart, cpu: process.cpuUsage(cpuStart) };
    loopDelay.disable();
    report({ type: 'received', afterMs: at - windowStart });
  }
  record(at - payload.t, payload.seq);
  if (dumpPath !== undefined) dump.push(`${(at - windowStart).toFixed(3)},${stream.index},${payload.seq},${(at - payload.t).toFixed(3)}`);
}

function streamEnded(stream: Stream, cause?: string): void {
  if (stream.done) return;
  stream.done = true;
  openStreams -= 1;
  if (cause !== undefined) count(streamErrors, cause);
  if (started && openStreams === 0) finish(0);
}


/** Opens stream `index`; `settled` is called once it is open or has failed. */
function open(index: number, identity: Record<string, string>, settled: () => void): void {
  const code = config.codes[index % config.codes.length] as string;
  const base = config.baseUrls === undefined ? config.baseUrl : (config.baseUrls[index % config.baseUrls.length] as string);
  const url = new URL(config.pathTemplate.replace('{code}', encodeURIComponent(code)), base);
  const head = [
    `GET ${url.pathname}${url.search} HTTP/1.1`,
    `Host: ${url.host}`,
    'Accept: text/event-stream',
    'Cache-Control: no-cache',
    // What a browser sends; the client never reuses the socket anyway.
    'Connection: keep-alive',
    ...Object.entries(identity).map(([name, value]) => `${name}: ${value}`),
    '',
    '',
  ].join('\r\n');
  const stream: Stream = { index, socket: undefined, received: 0, lastSeq: -1, duplicates: 0, gaps: 0, done: true };
  let answered = false;
  const fail = (cause: string): void => {
    if (answered) return;
    answered = true;
    count(failures, cause);
    socket.destroy();
    settled();
  };
  const wire = new SseWire({
    onHead: (status) => {
      if (status !== 200) {
        wire.close();
        return fail(`status ${status}`);
      }
      answered = true;
      socket.setTimeout(0);
      stream.done = false;
      streams.push(stream);
      openStreams += 1;
      settled();
    },
    onEvent: (name, data) => onEvent(stream, name, data),
    onEnd: () => {
      streamEnded(stream);
      socket.destroy();
    },
    onError: (message) => {
      if (!answered) fail(message);
      else streamEnded(stream, message);
      socket.destroy();
    },
  });
  const socket = connectWire(url, wire);
  stream.socket = socket;
  socket.setTimeout(config.connectTimeoutMs, () => fail('headers timeout'));
  socket.on('error', (err) => {
    if (!answered) fail(errorKey(err));
    else streamEnded(stream, errorKey(err));
  });
  socket.on('close', () => {
    if (!answered) fail('closed before headers');
    else streamEnded(stream, 'closed before end');
  });
  socket.write(head);
}

/** Opens every stream with at most `concurrency` attempts in flight. */
function connectAll(identities: readonly Record<string, string>[]): Promise<void> {
  return runBounded(0, config.subscribers, config.concurrency, (index, done) => open(index, identities[index] ?? {}, done));
}

/** Backend clock minus ours, from the probe with the lowest round trip. */
async function clockOffset(): Promise<{ offset: number; rtt: number }> {
  let best = { offset: NaN, rtt: Infinity };
  for (let i = 0; i < 20; i++) {
    const t0 = nowMs();
    const response = await fetch(new URL('/clock', config.backendUrl));
    const { now } = (await response.json()) as { now: number };
    const t1 = nowMs();
    if (t1 - t0 < best.rtt) best = { offset: now - (t0 + t1) / 2, rtt: t1 - t0 };
  }
  return best;
}

let windowStart = 0;
let cpuStart = process.cpuUsage();
/** This process's own event-loop delay over the delivery window: a late event may be late here. */
const loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
/** This process's own GC pauses over the delivery window. */
const gc = { count: 0, totalMs: 0, maxMs: 0 };
new PerformanceObserver((list) => {
  if (!started || windowEnd !== undefined) return;
  for (const entry of list.getEntries()) {
    gc.count += 1;
    gc.totalMs += entry.duration;
    gc.maxMs = Math.max(gc.maxMs, entry.duration);
  }
}).observe({ entryTypes: ['gc'] });
/** The window the client's CPU % covers: start to the last expected event, as the subject's does. */
let windowEnd: { ms: number; cpu: NodeJS.CpuUsage } | undefined;

function finish(timedOut: number): void {
  if (finished) return;
  finished = true;
  const { ms: windowMs, cpu } = windowEnd ?? { ms: nowMs() - windowStart, cpu: process.cpuUsage(cpuStart) };
  loopDelay.disable();
  for (const stream of streams) {
    if (!stream.done) {
      stream.done = true;
      stream.socket?.destroy();
    }
  }
  let received = 0;
  let duplicates = 0;
  let gaps = 0;
  let completeStreams = 0;
  for (const stream of streams) {
    received += stream.received;
    duplicates += stream.duplicates;
    gaps += stream.gaps;
    if (stream.received - stream.duplicates === config.eventsPerCode && stream.lastSeq === config.eventsPerCode - 1) completeStreams += 1;
  }
  const message: DoneReport = {
    type: 'done',
    expected: config.subscribers * config.eventsPerCode,
    received,
    delivered: received - duplicates,
    duplicates,
    gaps,
    otherEvents,
    completeStreams,
    shortStreams: streams.length - completeStreams - timedOut,
    timedOutStreams: timedOut,
    streamErrors,
    steadyDelay: summarize(steadyDelays()),
    steadyFromSeq,
    delay: summarize(delays.subarray(0, delayCount)),
    cpuPercent: windowMs > 0 ? ((cpu.user + cpu.system) / 1000 / windowMs) * 100 : 0,
    loopDelayP99Ms: loopDelay.count > 0 ? loopDelay.percentile(99) / 1e6 : NaN,
    loopDelayMaxMs: loopDelay.count > 0 ? loopDelay.max / 1e6 : NaN,
    gcCount: gc.count,
    gcPauseMs: gc.totalMs,
    gcMaxPauseMs: gc.maxMs,
    windowMs,
  };
  if (dumpPath !== undefined) writeFileSync(dumpPath, `at,stream,seq,delay\n${dump.join('\n')}\n`);
  report(message, () => process.exit(0));
}

async function main(): Promise<void> {
  const identities = Array.from({ length: config.subscribers }, (_, i) => identityHeader(config.auth, `bench-${i}`));
  const clock = await clockOffset();

  const connectStart = nowMs();
  await connectAll(identities);
  const connected: ConnectedReport = {
    type: 'connected',
    open: openStreams,
    failed: config.subscribers - streams.length,
    failures,
    connectMs: nowMs() - connectStart,
    clockOffsetMs: clock.offset,
    clockRttMs: clock.rtt,
  };
  report(connected);

  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const command = JSON.parse(line) as { cmd?: string; durationMs?: number };
    if (command.cmd !== 'start' || started) return;
    started = true;
    windowStart = nowMs();
    if (dumpPath !== undefined) process.stderr.write(`window starts at load uptime ${performance.now().toFixed(0)} ms\n`);
    cpuStart = process.cpuUsage();
    loopDelay.enable();
    setTimeout(() => finish(openStreams), (command.durationMs ?? 0) + config.graceMs);
    if (openStreams === 0) finish(0);
  });
  // The coordinator went away: stop.
  lines.on('close', () => {
    if (!finished) process.exit(2);
  });
}

main().catch((err: unknown) => {
  report({ type: 'error', message: err instanceof Error ? err.message : String(err) }, () => process.exit(1));
});
