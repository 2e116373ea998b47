/**
 * The restart scenario's clients: `clients` streams over `codes`, each its own user, each behaving
 * as a browser's `EventSource` does: when its stream ends or its connection fails, it waits the last
 * `retry:` it was told and connects again with `Last-Event-ID` (the last seq + 1, the bench
 * backend's id). Tokens carry a `topics` claim granting the stream's topic when `grants` is set.
 *
 * Says `connected` once every stream is open, then `complete` once every stream has every event
 * of its code. On `{"cmd":"report","exitedAt","listeningAt","lastSeqBefore":{code: seq}}` (a stdin
 * line) it says `done` with, per stream, when it resumed after the restart: its first 200 after
 * the old relay exited, or the arrival of the last event its code published before the new relay
 * listened, whichever came later; and what it lost (skipped: a later event came first), got twice, had
 * not received yet at the end, and the resyncs it was sent.
 * Usage: node dist/bench/restart-client.js '<RestartClientConfig as JSON>'   (BENCH_JWT_SECRET in the environment)
 */
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import jwt from 'jsonwebtoken';
import { nowMs, report, runBounded } from './common';
import { type RestartClientConfig, type RestartDoneReport, relayOf } from './restart';
import { SseWire, connectWire } from './sse-wire';

interface Stream {
  readonly index: number;
  readonly code: string;
  readonly url: URL;
  readonly authorization: string;
  lastSeq: number;
  distinct: number;
  repeated: number;
  resyncs: number;
  /** When each seq first arrived (0: never). */
  readonly arrivals: Float64Array;
  /** After the stop began: when each connection attempt started, and when it was answered 200 (NaN: it was not). */
  readonly attempts: { at: number; opened: number }[];
  retryMs: number;
  timer: NodeJS.Timeout | undefined;
  socket: Socket | undefined;
}

const config = JSON.parse(process.argv[2] ?? '{}') as RestartClientConfig;
const secret = process.env.BENCH_JWT_SECRET ?? '';
/** What an EventSource waits before its first reconnect when no `retry:` was sent. */
const DEFAULT_RETRY_MS = 3000;

const streams: Stream[] = [];
const failures: Record<string, number> = {};
let stopping = false;
let attempts = 0;
let complete = 0;
let finished = false;

function count(key: string): void {
  failures[key] = (failures[key] ?? 0) + 1;
}

function makeStream(index: number): Stream {
  const code = config.codes[index % config.codes.length] as string;
  const base = config.baseUrls[relayOf(index, config.codes.length, config.baseUrls.length)] as string;
  const claims = config.grants ? { topics: [`download:${code}`] } : {};
  const token = jwt.sign(claims, secret, { subject: `storm-${index}`, expiresIn: '2h', algorithm: 'HS256' });
  return {
    index,
    code,
    url: new URL(config.pathTemplate.replace('{code}', encodeURIComponent(code)), base),
    authorization: `Bearer ${token}`,
    lastSeq: -1,
    distinct: 0,
    repeated: 0,
    resyncs: 0,
    arrivals: new Float64Array(config.eventsPerCode),
    attempts: [],
    retryMs: DEFAULT_RETRY_MS,
    timer: undefined,
    socket: undefined,
  };
}

function onEvent(stream: Stream, name: string | undefined, data: string): void {
  if (name === 'resync') {
    stream.resyncs += 1;
    return;
  }
  if (name !== undefined) return;
  const match = /"seq":(\d+)/.exec(data);
  if (match === null) return;
  const seq = Number(match[1]);
  if (seq <= stream.lastSeq || stream.arrivals[seq] !== 0) {
    stream.repeated += 1;
    return;
  }
  stream.lastSeq = seq;
  stream.distinct += 1;
  stream.arrivals[seq] = nowMs();
  if (seq === config.eventsPerCode - 1) {
    complete += 1;
    if (complete === streams.length) report({ type: 'complete' });
  }
}

/** Connects `stream` once; `settled` (first connects only) is called when it streams or failed. */
function open(stream: Stream, settled?: () => void): void {
  if (finished) return;
  const attempt = { at: nowMs(), opened: NaN };
  if (stopping) {
    attempts += 1;
    stream.attempts.push(attempt);
  }
  const { url } = stream;
  const head = [
    `GET ${url.pathname} HTTP/1.1`,
    `Host: ${url.host}`,
    'Accept: text/event-stream',
    'Cache-Control: no-cache',
    'Connection: keep-alive',
    `Authorization: ${stream.authorization}`,
    ...(stream.lastSeq >= 0 ? [`Last-Event-ID: ${stream.lastSeq + 1}`] : []),
    '',
    '',
  ].join('\r\n');
  let streaming = false;
  let done = false;
  const settle = (): void => {
    if (done) return;
    done = true;
    settled?.();
  };
  const wire = new SseWire({
    onHead: (status) => {
      if (status !== 200) {
        count(`status ${status}`);
        wire.close();
        socket.destroy();
        return;
      }
      streaming = true;
      attempt.opened = nowMs();
      settle();
    },
    onEvent: (name, data) => onEvent(stream, name, data),
    onRetry: (ms) => (stream.retryMs = ms),
    onEnd: () => socket.destroy(),
    onError: (message) => {
      count(message);
      socket.destroy();
    },
  });
  const socket = connectWire(url, wire);
  stream.socket = socket;
  socket.on('error', (err) => {
    if (!streaming) count((err as { code?: string }).code ?? err.message);
  });
  socket.on('close', () => {
    settle();
    // [spec] EventSource: a stream that ended or failed to connect is reestablished after the reconnection time.
    if (!finished) stream.timer = setTimeout(() => open(stream), stream.retryMs);
  });
  socket.write(head);
}

function finish(command: { exitedAt: number; listeningAt: number; lastSeqBefore: Record<string, number> }): void {
  finished = true;
  for (const stream of streams) {
    clearTimeout(stream.timer);
    stream.socket?.destroy();
  }
  let delivered = 0;
  let lost = 0;
  let pending = 0;
  let repeated = 0;
  let resyncs = 0;
  const reopenedMs: number[] = [];
  const answerMs: number[] = [];
  const resumedMs = streams.map((stream) => {
    delivered += stream.distinct;
    lost += stream.lastSeq + 1 - stream.distinct;
    pending += config.eventsPerCode - 1 - stream.lastSeq;
    repeated += stream.repeated;
    resyncs += stream.resyncs;
    const attempt = stream.attempts.find((a) => a.opened > command.exitedAt);
    if (attempt === undefined) return NaN;
    reopenedMs.push(attempt.opened - command.listeningAt);
    answerMs.push(attempt.opened - attempt.at);
    const needed = command.lastSeqBefore[stream.code] ?? -1;
    const caughtUp = needed < 0 ? 0 : (stream.arrivals[needed] ?? 0);
    if (needed >= 0 && caughtUp === 0) return NaN;
    return Math.max(attempt.opened, caughtUp) - command.listeningAt;
  });
  const expected = streams.length * config.eventsPerCode;
  const cpu = process.cpuUsage();
  const message: RestartDoneReport = {
    type: 'done',
    resumedMs,
    reopenedMs,
    answerMs,
    expected,
    delivered,
    lost,
    pending,
    repeated,
    resyncs,
    attempts,
    failures,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
  report(message, () => process.exit(0));
}

async function main(): Promise<void> {
  for (let i = 0; i < config.clients; i++) streams.push(makeStream(i));
  const connectStart = nowMs();
  // Each topic's first stream alone first: with several relays, the first relay opens, and owns, every topic.
  const first = Math.min(config.codes.length, config.clients);
  await runBounded(0, first, 1, (index, settled) => open(streams[index] as Stream, settled));
  await runBounded(first, config.clients - first, config.concurrency, (index, settled) => open(streams[index] as Stream, settled));
  report({ type: 'connected', failures, connectMs: nowMs() - connectStart });
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const command = JSON.parse(line) as { cmd?: string; exitedAt: number; listeningAt: number; lastSeqBefore: Record<string, number> };
    if (command.cmd === 'stopping') stopping = true;
    else if (command.cmd === 'report' && !finished) finish(command);
  });
  lines.on('close', () => {
    if (!finished) process.exit(2);
  });
}

main().catch((err: unknown) => {
  report({ type: 'error', message: err instanceof Error ? err.message : String(err) }, () => process.exit(1));
});
