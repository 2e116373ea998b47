/**
 * Load client of the multiplex scenario. `single`: every client opens one stream per code
 * (`/api/downloads/{code}/events`); `multiplex`: every client opens one `GET /api/events` with
 * `topicsPerClient` of the codes as topics. Either way each client gets the same events. Says
 * `{"type":"connected"}` when all are open; on the stdin line `{"cmd":"start"}` it records, per
 * event, the delay from the backend's write (`t`) to its parse, says `{"type":"received"}` once
 * every expected event arrived, and `{"type":"done",…}` with the summary.
 *
 * Usage: node dist/bench/multiplex-client.js '<MultiplexClientConfig as JSON>'   (BENCH_JWT_SECRET set)
 */
import { Agent, request } from 'node:http';
import { createInterface } from 'node:readline';
import { createParser } from 'eventsource-parser';
import { identityHeader, nowMs, report, runBounded, summarize } from './common';

export interface MultiplexClientConfig {
  readonly baseUrl: string;
  readonly mode: 'single' | 'multiplex';
  readonly clients: number;
  readonly codes: readonly string[];
  /** Topics per client: client i takes codes i, i+1, … (mod the number of codes). */
  readonly topicsPerClient: number;
  readonly eventsPerCode: number;
  readonly concurrency: number;
}

const config = JSON.parse(process.argv[2] ?? '{}') as MultiplexClientConfig;
const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
const expected = config.clients * config.topicsPerClient * config.eventsPerCode;
const delays = new Float64Array(expected);
let delayCount = 0;
let received = 0;
let started = false;
let receivedReported = false;
let failed = 0;
let open = 0;
const failures: Record<string, number> = {};

function codesOf(client: number): string[] {
  return Array.from({ length: config.topicsPerClient }, (_, k) => config.codes[(client + k) % config.codes.length] as string);
}

function onEvent(data: string): void {
  if (!started) return;
  // Multiplexed: the upstream data is the envelope's `data` string.
  const inner = config.mode === 'multiplex' ? (JSON.parse(data) as { data?: string }).data : data;
  if (inner === undefined) return;
  const { t } = JSON.parse(inner) as { t: number };
  const delay = nowMs() - t;
  if (delayCount < delays.length) delays[delayCount++] = delay;
  received += 1;
  if (received === expected && !receivedReported) {
    receivedReported = true;
    report({ type: 'received' });
  }
}

function openOne(path: string, user: string, settled: () => void): void {
  let answered = false;
  const req = request(`${config.baseUrl}${path}`, { agent, headers: { Accept: 'text/event-stream', ...identityHeader('jwt', user) } }, (res) => {
    answered = true;
    if (res.statusCode !== 200) {
      failed += 1;
      failures[String(res.statusCode)] = (failures[String(res.statusCode)] ?? 0) + 1;
      res.resume();
      return settled();
    }
    open += 1;
    const decoder = new TextDecoder();
    const parser = createParser({
      onEvent: (event) => {
        if (event.event === undefined) onEvent(event.data);
      },
    });
    res.on('data', (chunk: Buffer) => parser.feed(decoder.decode(chunk, { stream: true })));
    res.on('error', () => undefined);
    settled();
  });
  req.on('error', (err) => {
    if (answered) return;
    failed += 1;
    failures[err.message] = (failures[err.message] ?? 0) + 1;
    settled();
  });
  req.end();
}

async function main(): Promise<void> {
  const began = nowMs();
  const paths: [string, string][] = [];
  for (let client = 0; client < config.clients; client++) {
    const user = `bench-${client}`;
    const codes = codesOf(client);
    if (config.mode === 'multiplex') paths.push([`/api/events?${codes.map((code) => `topic=download:${code}`).join('&')}`, user]);
    else for (const code of codes) paths.push([`/api/downloads/${code}/events`, user]);
  }
  await runBounded(0, paths.length, config.concurrency, (i, done) => {
    const [path, user] = paths[i] as [string, string];
    openOne(path, user, done);
  });
  report({ type: 'connected', open, failed, failures, connectMs: nowMs() - began });
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const message = JSON.parse(line) as { cmd: string };
    if (message.cmd === 'start') started = true;
    if (message.cmd === 'report') {
      report({ type: 'done', expected, delivered: received, delay: summarize(delays.subarray(0, delayCount)) }, () => process.exit(0));
    }
  });
}

void main();
