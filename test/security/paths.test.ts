import { type Socket, connect } from 'node:net';
import { getGlobalDispatcher } from 'undici';
import type { CreateRelayOptions } from '../../src/create-relay';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, authHeader, startRelay } from '../support/relay-server';
import { until } from '../support/until';

let backend: FixtureBackend;
let relay: RunningRelay | undefined;
const sockets: Socket[] = [];

beforeEach(async () => {
  backend = await new FixtureBackend().start();
});

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await relay?.close();
  relay = undefined;
  await backend.close();
});

async function start(options: Partial<CreateRelayOptions> = {}): Promise<RunningRelay> {
  relay = await startRelay(backend.url, { topicLingerMs: 20, ...options });
  return relay;
}

/** A request written byte for byte (a URL, and so fetch, would normalize the path before sending); resolves with the socket and all it reads. */
function rawRequest(target: string, method = 'GET', extra = '', body = ''): { socket: Socket; answer: Promise<string>; received: () => string } {
  const { port } = new URL((relay as RunningRelay).url);
  let text = '';
  const socket = connect(Number(port), '127.0.0.1', () =>
    socket.write(`${method} ${target} HTTP/1.1\r\nHost: relay.test\r\nAuthorization: ${authHeader().authorization}\r\n${extra}Connection: close\r\n\r\n${body}`),
  );
  sockets.push(socket);
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  const answer = new Promise<string>((resolve) => socket.on('close', () => resolve(text)));
  return { socket, answer, received: () => text };
}

const INVALID_PATH = /^HTTP\/1\.1 400 [^]*\{"error":\{"code":"invalid_path","message":"[^"]{20,}"\}\}$/;

test('no spelling of a stream path (dot segments raw or encoded, //, \\, %2f, %5c) reaches the backend around the shared stream route', async () => {
  await start();
  const targets = [
    '/api/downloads/abc/./events',
    '/api/downloads/abc/%2e/events',
    '/api/downloads/abc/%2E/events',
    '/api/downloads/x/../abc/events',
    '/api/downloads/x/%2e%2e/abc/events',
    '/api/downloads/x/.%2E/abc/events',
    '/api/./downloads/abc/events',
    '/api/%2e/downloads/abc/events',
    '/api/downloads//abc/events',
    '/api/downloads%2Fabc%2Fevents',
    '/api/downloads%2fabc/events',
    '/api/downloads\\abc\\events',
    '/api/downloads%5Cabc%5Cevents',
    '/api/downloads/abc/events/.',
    '/api/downloads/abc/./events?lastEventId=1',
    'http://relay.test/api/downloads/abc/./events',
  ];
  for (const target of targets) expect([target, await rawRequest(target).answer]).toEqual([target, expect.stringMatching(INVALID_PATH)]);
  for (const target of ['/api/documents/./upload-sse', '/api/chat/%2e/stream']) {
    const answer = await rawRequest(target, 'POST', 'Content-Type: application/json\r\nContent-Length: 2\r\n', '{}').answer;
    expect([target, answer]).toEqual([target, expect.stringMatching(INVALID_PATH)]);
  }
  expect(backend.requests).toEqual([]);
  expect(relay?.relay.connections.snapshot().total).toBe(0);
  // The one spelling still works.
  const res = await getGlobalDispatcher().request({ origin: relay?.url as string, path: '/api/downloads/abc/status', method: 'GET', headers: authHeader() });
  expect([res.statusCode, await res.body.text()]).toEqual([200, '{"ok":true}']);
});

test('every proxied request holds a connection slot while it is open: an event stream from any route counts against the user', async () => {
  await start({ maxConnectionsPerUser: 2 });
  const first = rawRequest('/api/feeds/one');
  const second = rawRequest('/api/feeds/two');
  await until(() => backend.listeners('/feeds/one') === 1 && backend.listeners('/feeds/two') === 1, 5000, 'two proxied streams');
  expect(relay?.relay.connections.snapshot().total).toBe(2);
  // A third request of the same user, stream or not, is over the limit.
  expect(await rawRequest('/api/downloads/abc/status').answer).toMatch(/^HTTP\/1\.1 429 [^]*Retry-After: 10[^]*"code":"too_many_connections"/i);
  first.socket.destroy();
  await until(() => relay?.relay.connections.snapshot().total === 1, 5000, 'the slot to be released');
  expect(await rawRequest('/api/downloads/abc/status').answer).toMatch(/^HTTP\/1\.1 200 /);
  second.socket.destroy();
  await until(() => relay?.relay.connections.snapshot().total === 0, 5000, 'every slot released');
});

test('a proxied event stream with no event for IDLE_TIMEOUT_MS ends cleanly, and frees its upstream and slot', async () => {
  // Idle and lifetime are judged at every half heartbeat, as on every stream.
  await start({ idleTimeoutMs: 200, heartbeatMs: 100, maxStreamLifetimeMs: 0 });
  const started = Date.now();
  const quiet = rawRequest('/api/feeds/quiet');
  await until(() => backend.listeners('/feeds/quiet') === 1, 5000, 'the proxied stream');
  backend.emit('/feeds/quiet', 'data: one\n');
  const answer = await quiet.answer;
  expect(Date.now() - started).toBeGreaterThanOrEqual(200);
  // The relay's heartbeats, if any came after the event, then the end.
  expect(answer).toMatch(/^HTTP\/1\.1 200 [^]*content-type: text\/event-stream[^]*data: one\nid: 1\n\n\r\n(6\r\n: hb\n\n\r\n)*0\r\n\r\n$/i);
  await until(() => backend.listeners('/feeds/quiet') === 0 && relay?.relay.connections.snapshot().total === 0, 5000, 'upstream and slot released');
});

test('a proxied event stream ends at MAX_STREAM_LIFETIME_MS however busy it is', async () => {
  await start({ idleTimeoutMs: 0, heartbeatMs: 100, maxStreamLifetimeMs: 300 });
  const started = Date.now();
  const busy = rawRequest('/api/feeds/busy');
  await until(() => backend.listeners('/feeds/busy') === 1, 5000, 'the proxied stream');
  const ticker = setInterval(() => backend.emit('/feeds/busy', 'data: tick\n'), 20);
  try {
    const answer = await busy.answer;
    // 300 ms plus at most 10% jitter, and some slack for a loaded machine.
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(answer).toMatch(/data: tick\n[^]*\r\n0\r\n\r\n$/);
  } finally {
    clearInterval(ticker);
  }
  await until(() => backend.listeners('/feeds/busy') === 0 && relay?.relay.connections.snapshot().total === 0, 5000, 'upstream and slot released');
});

test('a client that never reads a proxied event stream is cut alone, its upstream aborted and its slot freed', async () => {
  await start({ idleTimeoutMs: 300, heartbeatMs: 100, maxStreamLifetimeMs: 0 });
  const stalled = rawRequest('/api/feeds/big');
  const reader = rawRequest('/api/feeds/small');
  await until(() => backend.listeners('/feeds/big') === 1 && backend.listeners('/feeds/small') === 1, 5000, 'two proxied streams');
  stalled.socket.pause();
  // Far past what loopback kernel buffers absorb, so the relay sees the client stop draining.
  const frame = `data: ${'x'.repeat(64 * 1024)}\n\n`;
  for (let i = 0; i < 256; i++) backend.writeRaw('/feeds/big', frame);
  const ticker = setInterval(() => backend.emit('/feeds/small', 'data: alive\n'), 50);
  try {
    await until(() => backend.listeners('/feeds/big') === 0, 10_000, 'the stalled client’s upstream to be aborted');
    await until(() => relay?.relay.connections.snapshot().total === 1, 5000, 'the stalled client’s slot to be freed');
    // The reader next to it was not touched.
    expect(backend.listeners('/feeds/small')).toBe(1);
    const before = reader.received().length;
    await until(() => reader.received().length > before, 5000, 'the reader to get more');
  } finally {
    clearInterval(ticker);
  }
});
