import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, authHeader, startRelay } from '../support/relay-server';
import { until } from '../support/until';

const PATH = '/downloads/drain/events';
const RETRY_MS = 4000;

let backend: FixtureBackend;
let relay: RunningRelay;

beforeAll(async () => {
  backend = await new FixtureBackend().start();
});
afterAll(() => backend.close());
afterEach(() => relay.close());

/** The `retry:` value of a body, or undefined when it carries none. */
function retryOf(body: string): number | undefined {
  const match = /^retry: (\d+)$/m.exec(body);
  return match ? Number(match[1]) : undefined;
}

test('while draining, event-stream requests get a 200 that only says when to come back (a native EventSource retries it; a 503 kills it)', async () => {
  relay = await startRelay(backend.url, { drainRetryMs: RETRY_MS });
  await relay.relay.drain(0);
  const shared = await fetch(`${relay.url}/api${PATH}`, { headers: authHeader() });
  const proxied = await fetch(`${relay.url}/api/feeds/x/events`, { headers: { ...authHeader(), accept: 'text/event-stream' } });
  for (const answer of [shared, proxied]) {
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(answer.headers.get('connection')).toBe('close');
    const retry = retryOf(await answer.text());
    expect(retry).toBeGreaterThanOrEqual(RETRY_MS);
    expect(retry).toBeLessThanOrEqual(RETRY_MS * 1.5);
  }
  // Nothing was opened upstream for them, and no slot is held.
  expect(backend.requests.filter((r) => r.path === PATH)).toHaveLength(0);
  expect(relay.relay.connections.snapshot().total).toBe(0);
  // A streaming POST (fetch, not EventSource) keeps its 503 with Retry-After.
  const chat = await fetch(`${relay.url}/api/chat/stream`, {
    method: 'POST',
    headers: { ...authHeader(), 'content-type': 'application/json' },
    body: JSON.stringify({ chatbotId: 'b', message: 'hi' }),
  });
  expect(chat.status).toBe(503);
  expect(chat.headers.get('retry-after')).toBe('1');
});

async function readAll(body: ReadableStream<Uint8Array>, until?: string): Promise<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return text;
    text += decoder.decode(value, { stream: true });
    if (until !== undefined && text.includes(until)) {
      reader.releaseLock();
      return text;
    }
  }
}

test('a drain ends open streams with a jittered retry that covers a restart', async () => {
  relay = await startRelay(backend.url, { drainRetryMs: RETRY_MS });
  backend.emit(PATH, 'data: one\n');
  const open = await fetch(`${relay.url}/api${PATH}`, { headers: authHeader() });
  await readAll(open.body!, 'data: one');
  await relay.relay.drain(0);
  const rest = await readAll(open.body!);
  const retry = retryOf(rest);
  expect(retry).toBeGreaterThanOrEqual(RETRY_MS);
  expect(retry).toBeLessThanOrEqual(RETRY_MS * 1.5);
});

test('a stream still waiting for its upstream when the drain starts gets a 200 with retry, not a 503', async () => {
  // A backend that never answers a stream request: the subscriber waits for its headers.
  const held = createServer(() => undefined);
  held.listen(0, '127.0.0.1');
  await once(held, 'listening');
  try {
    relay = await startRelay(`http://127.0.0.1:${(held.address() as AddressInfo).port}`, { drainRetryMs: RETRY_MS });
    const answer = fetch(`${relay.url}/api${PATH}`, { headers: authHeader() });
    await until(() => relay.relay.hub.streamCount === 1, 2000, 'the stream attached');
    await relay.relay.drain(0);
    const waiting = await answer;
    expect(waiting.status).toBe(200);
    const retry = retryOf(await waiting.text());
    expect(retry).toBeGreaterThanOrEqual(RETRY_MS);
    expect(retry).toBeLessThanOrEqual(RETRY_MS * 1.5);
  } finally {
    await relay.close();
    held.closeAllConnections();
    held.close();
  }
});
