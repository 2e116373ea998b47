/**
 * Load client of the chat scenario: `requests` chat questions one after the
 * other on one keep-alive connection (as a browser tab would), each timed from
 * the request to the first `content_block_delta` parsed (time to first token) and
 * to `message_stop`. Prints `{"type":"chat",…}`.
 *
 * Usage: node dist/bench/chat-client.js '<ChatClientConfig as JSON>'   (BENCH_JWT_SECRET for `auth: "jwt"`)
 */
import { Agent, request } from 'node:http';
import { createParser } from 'eventsource-parser';
import { type DelaySummary, identityHeader, nowMs, report, summarize } from './common';

export interface ChatClientConfig {
  readonly url: string;
  readonly auth: 'jwt' | 'header';
  readonly requests: number;
  /** Requests before these, not counted (connection set-up, JIT). */
  readonly warmup: number;
}

export interface ChatReport {
  readonly type: 'chat';
  readonly ttft: DelaySummary;
  readonly total: DelaySummary;
  readonly tokens: number;
  readonly failed: number;
  readonly failures: Record<string, number>;
  readonly [field: string]: unknown;
}

const config = JSON.parse(process.argv[2] ?? '{}') as ChatClientConfig;
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const headers: Record<string, string> = { 'Content-Type': 'application/json', Accept: 'text/event-stream', ...identityHeader(config.auth, 'chatter') };
const BODY = JSON.stringify({ chatbotId: 'bench', message: 'How fast is the first token?' });

/** One question; resolves with [ttft, total, tokens] or a failure cause. */
function ask(): Promise<[number, number, number] | string> {
  return new Promise((resolve) => {
    const t0 = nowMs();
    let first = NaN;
    let tokens = 0;
    let done = false;
    const settle = (value: [number, number, number] | string): void => {
      if (done) return;
      done = true;
      resolve(value);
    };
    const req = request(config.url, { method: 'POST', headers: { ...headers, 'Content-Length': String(Buffer.byteLength(BODY)) }, agent });
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', (err) => settle((err as { code?: string }).code ?? err.message));
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        settle(`status ${res.statusCode ?? '?'}`);
        return;
      }
      const decoder = new TextDecoder();
      const parser = createParser({
        onEvent: (event) => {
          if (event.event === 'content_block_delta') {
            tokens += 1;
            if (Number.isNaN(first)) first = nowMs() - t0;
          }
        },
      });
      res.on('data', (chunk: Buffer) => parser.feed(decoder.decode(chunk, { stream: true })));
      res.on('end', () => settle(Number.isNaN(first) ? 'no token' : [first, nowMs() - t0, tokens]));
      res.on('error', (err) => settle(err.message));
    });
    req.end(BODY);
  });
}

async function main(): Promise<void> {
  const ttft: number[] = [];
  const total: number[] = [];
  const failures: Record<string, number> = {};
  let tokens = 0;
  for (let i = 0; i < config.warmup + config.requests; i++) {
    const result = await ask();
    if (i < config.warmup) continue;
    if (typeof result === 'string') failures[result] = (failures[result] ?? 0) + 1;
    else {
      ttft.push(result[0]);
      total.push(result[1]);
      tokens = result[2];
    }
  }
  const message: ChatReport = {
    type: 'chat',
    ttft: summarize(Float64Array.from(ttft)),
    total: summarize(Float64Array.from(total)),
    tokens,
    failed: config.requests - ttft.length,
    failures,
  };
  report(message, () => process.exit(0));
}

main().catch((err: unknown) => {
  report({ type: 'error', message: err instanceof Error ? err.message : String(err) }, () => process.exit(1));
});
