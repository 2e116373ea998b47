import { type Socket, connect } from 'node:net';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

let backend: FixtureBackend;
let relay: RunningRelay;

beforeAll(async () => {
  backend = await new FixtureBackend().start();
  relay = await startRelay(backend.url, {
    maxConnections: 2000,
    maxConnectionsPerUser: 20,
    maxConnectionsPerIp: 2000,
    heartbeatMs: 25,
    idleTimeoutMs: 200,
    topicLingerMs: 0,
    clientMaxBufferedBytes: 64 * 1024,
  });
});

afterAll(async () => {
  await relay.close();
  await backend.close();
});

interface RawStream {
  readonly socket: Socket;
  /** The status code, once the response head arrived. */
  readonly status: Promise<number>;
  readonly closed: Promise<void>;
}

/** A stream request on its own TCP connection, as a browser tab would open it. */
function open(path: string, user: string, { read = true } = {}): RawStream {
  const socket = connect(Number(new URL(relay.url).port), '127.0.0.1');
  socket.write(`GET /api${path} HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${tokenFor(user)}\r\nConnection: close\r\n\r\n`);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined);
  const status = new Promise<number>((resolve, reject) => {
    let head = '';
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      const match = /^HTTP\/1\.1 (\d{3})/.exec(head);
      if (!match) return;
      socket.off('data', onData);
      if (!read) socket.pause();
      resolve(Number(match[1]));
    };
    socket.on('data', onData);
    void closed.then(() => reject(new Error(`closed before a response: ${path}`)));
  });
  if (read) socket.resume();
  return { socket, status, closed };
}

test('after 10,000 streams that end every way there is, every connection counter reads zero', async () => {
  const ROUNDS = 20;
  const statuses = new Map<number, number>();
  const count = (status: number): void => void statuses.set(status, (statuses.get(status) ?? 0) + 1);
  let user = 0;
  const nextUser = (): string => `user-${(user += 1) % 997}`;
  backend.own('/downloads/private/events', 'owner');

  for (let round = 0; round < ROUNDS; round++) {
    const ended = `/downloads/ends-${round}/events`;
    const quiet = `/downloads/quiet-${round}/events`;
    const streams: RawStream[] = [];
    // 200 clients that hang up, 150 whose upstream ends, 100 left idle, 50 errors (400 and 404).
    for (let i = 0; i < 200; i++) {
      const stream = open('/downloads/live/events', nextUser());
      void stream.status.then(() => stream.socket.destroy(), () => undefined);
      streams.push(stream);
    }
    const ending = Array.from({ length: 150 }, () => open(ended, nextUser()));
    streams.push(...ending);
    for (let i = 0; i < 100; i++) streams.push(open(quiet, nextUser()));
    for (let i = 0; i < 25; i++) streams.push(open('/downloads/bad!code/events', nextUser()));
    for (let i = 0; i < 25; i++) streams.push(open('/downloads/private/events', nextUser()));

    // Events keep these streams from ending idle while the others open.
    const ticks = setInterval(() => backend.emit(ended, 'data: tick\n'), 40);
    await Promise.all(ending.map((stream) => stream.status)).finally(() => clearInterval(ticks));
    backend.emit(ended, 'data: last\n');
    backend.end(ended);
    for (const stream of streams) count(await stream.status.catch(() => 0));
    await Promise.all(streams.map((stream) => stream.closed));
  }

  // Clients that never read, cut off by the relay once their unsent bytes pass the cap.
  const stalled = Array.from({ length: 10 }, () => open('/downloads/flood/events', nextUser(), { read: false }));
  for (const stream of stalled) count(await stream.status);
  const big = 'x'.repeat(256 * 1024);
  for (let i = 0; relay.relay.stats.slowClientsCut < 10; i++) {
    backend.emit('/downloads/flood/events', `data: ${i} ${big}\n`);
    await new Promise((resolve) => setImmediate(resolve));
    if (i > 400) throw new Error(`only ${relay.relay.stats.slowClientsCut} slow clients were cut`);
  }
  for (const stream of stalled) stream.socket.destroy();

  await until(() => relay.relay.hub.streamCount === 0 && relay.relay.connections.snapshot().total === 0, 5000, 'every slot back');
  expect(relay.relay.connections.snapshot()).toEqual({ total: 0, users: 0, ips: 0 });
  expect(relay.relay.hub.topicCount).toBeLessThanOrEqual(1); // "live" lingers 0 ms, then goes
  expect(statuses).toEqual(
    new Map([
      [200, ROUNDS * 450 + 10],
      [400, ROUNDS * 25],
      [404, ROUNDS * 25],
    ]),
  );
  // Every admitted stream closed once, for one of the ways tried. (Which of them can
  // shift on a loaded machine: a stream whose upstream is about to end may go idle first.)
  const reasons = relay.relay.stats.closeReasons;
  const ways = ['client_closed', 'upstream_ended', 'idle_timeout', 'slow_client'];
  for (const way of ways) expect(reasons.get(way)).toBeGreaterThan(0);
  expect(ways.reduce((sum, way) => sum + (reasons.get(way) ?? 0), 0)).toBe(ROUNDS * 450 + 10);
  expect(reasons.get('slow_client')).toBe(10);
}, 120_000);
