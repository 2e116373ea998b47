import { type Socket, connect } from 'node:net';
import { Agent, request } from 'undici';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, authHeader, collect, eventSourceAs, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const PATH = '/downloads/busy/events';

let backend: FixtureBackend;
let relay: RunningRelay;

beforeEach(async () => {
  backend = await new FixtureBackend().start();
});

afterEach(async () => {
  await relay.close();
  await backend.close();
});

function rawSubscriber(url: string, path: string, user: string): ReturnType<typeof connect> {
  const { port } = new URL(url);
  const socket = connect(Number(port), '127.0.0.1');
  socket.write(`GET /api${path} HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${tokenFor(user)}\r\n\r\n`);
  return socket;
}

test('a subscriber that never reads is cut off alone while another gets every event', async () => {
  relay = await startRelay(backend.url, { clientMaxBufferedBytes: 256 * 1024, clientBufferCeilingFactor: 4, topicLingerMs: 10 });
  const sockets = new Set<Socket>();
  relay.server.on('connection', (socket) => sockets.add(socket));
  const stalled = rawSubscriber(relay.url, PATH, 'alice');
  stalled.pause(); // never reads: the kernel buffers fill, then the relay's
  const stalledClosed = new Promise((resolve) => stalled.once('close', resolve));
  const reader = eventSourceAs(`${relay.url}/api${PATH}`, 'alice');
  const COUNT = 1500;
  let received = 0;
  reader.addEventListener('message', () => (received += 1));
  const everything = collect(reader, COUNT);
  await until(() => relay.relay.hub.streamCount === 2 && backend.listeners(PATH) === 1);

  let mostHeld = 0;
  const payload = 'x'.repeat(16 * 1024);
  for (let i = 0; i < COUNT; i++) {
    backend.emit(PATH, `data: ${i} ${payload}\n`);
    // The reader keeps up (it is never more than 3 events behind); the stalled one cannot.
    for (const socket of sockets) mostHeld = Math.max(mostHeld, socket.writableLength);
    if (i % 3 === 2) await until(() => received > i - 3, 5000, 'the reader to keep up');
  }
  const events = await everything;
  // The relay has hung up on it: reading now drains what the kernel held, then the end.
  stalled.resume();
  await stalledClosed;
  reader.close();

  expect(events.map((e) => Number((e.data as string).split(' ')[0]))).toEqual(Array.from({ length: COUNT }, (_, i) => i));
  expect(relay.relay.stats.slowClientsCut).toBe(1);
  expect(relay.relay.stats.closeReasons.get('slow_client')).toBe(1);
  // 24 MB went out; what the relay ever held unsent for one client stayed within the ceiling.
  expect(mostHeld).toBeGreaterThan(0);
  expect(mostHeld).toBeLessThanOrEqual(4 * 256 * 1024);
});

test('after 1,000 subscribe/unsubscribe cycles the topics, streams, timers and sockets are back to zero', async () => {
  relay = await startRelay(backend.url, { topicLingerMs: 5 });
  const client = new Agent();
  const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const auth = authHeader();
  const cycle = async (i: number): Promise<void> => {
    const path = `/downloads/c${i % 7}/events`;
    const res = await request(`${relay.url}/api${path}`, { headers: auth, dispatcher: client });
    expect(res.statusCode).toBe(200);
    if (i % 3 === 0) backend.emit(path, `data: ${i}\n`);
    res.body.destroy();
  };
  for (let i = 0; i < 1000; i += 10) await Promise.all(Array.from({ length: 10 }, (_, j) => cycle(i + j)));
  // The client's own keep-alive pool is not the relay's to close.
  await client.close();
  const openConnections = (): Promise<number> =>
    new Promise((resolve, reject) => relay.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
  await until(() => relay.relay.hub.topicCount === 0 && relay.relay.hub.streamCount === 0, 5000, 'topics to close');
  await until(() => backend.sockets.size === 0, 5000, 'upstream sockets to close');
  expect(await openConnections()).toBe(0);
  expect(relay.relay.stats.streamsOpened).toBe(1000);
  expect(relay.relay.stats.streamsClosed).toBe(1000);
  // undici keeps one shared timer running for about a second after its last use: let it lapse.
  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  await until(() => timers() <= timersBefore, 3000, 'timers to return to their count before the cycles');
});

test('subscribers get SSE headers at once, a retry hint, and heartbeat comments', async () => {
  relay = await startRelay(backend.url, { heartbeatMs: 20, retryHintMs: 1500 });
  const res = await request(`${relay.url}/api${PATH}`, { headers: { authorization: `Bearer ${tokenFor('alice')}` } });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
  expect(res.headers['cache-control']).toBe('no-cache, no-transform');
  expect(res.headers['x-accel-buffering']).toBe('no');
  let text = '';
  for await (const chunk of res.body) {
    text += String(chunk);
    if ((text.match(/^: hb$/gm) ?? []).length >= 2) break;
  }
  expect(text.startsWith('retry: 1500\n\n')).toBe(true);
});

test('a stream with no event for the idle timeout is ended, and resumes without loss', async () => {
  relay = await startRelay(backend.url, { heartbeatMs: 10, idleTimeoutMs: 60, topicLingerMs: 1000 });
  const auth = authHeader();
  const keeper = eventSourceAs(`${relay.url}/api${PATH}`, 'alice');
  const firstTwo = collect(keeper, 2);
  await until(() => backend.listeners(PATH) === 1);
  backend.emit(PATH, 'data: e1\n');
  backend.emit(PATH, 'data: e2\n');
  await firstTwo;
  keeper.close();
  const res = await request(`${relay.url}/api${PATH}`, { headers: { ...auth, 'last-event-id': '1' } });
  const text = await res.body.text(); // ends by itself after the idle timeout
  expect(text.match(/^data: .*$/gm)).toEqual(['data: e2']);
  expect(relay.relay.stats.closeReasons.get('idle_timeout')).toBeGreaterThanOrEqual(1);
  backend.emit(PATH, 'data: e3\n');
  const resumed = await request(`${relay.url}/api${PATH}`, { headers: { ...auth, 'last-event-id': '2' } });
  expect((await resumed.body.text()).match(/^data: .*$/gm)).toEqual(['data: e3']);
});
