import type { Request } from 'express';
import { ipKeyGenerator } from 'express-rate-limit';
import { clientIp } from '../../middleware/limits';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, collect, eventSourceAs, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';
import { RedisServer } from '../support/redis';

const PATH = '/downloads/limits/events';

let backend: FixtureBackend;
let relay: RunningRelay | undefined;
const controllers: AbortController[] = [];

beforeEach(async () => {
  backend = await new FixtureBackend().start();
});

afterEach(async () => {
  for (const controller of controllers.splice(0)) controller.abort();
  await relay?.close();
  relay = undefined;
  await backend.close();
});

/** Opens a stream and keeps it open (its body unread) until the test ends. */
async function openStream(base: string, user: string, headers: Record<string, string> = {}, path = PATH): Promise<Response> {
  const controller = new AbortController();
  controllers.push(controller);
  return fetch(`${base}/api${path}`, {
    headers: { authorization: `Bearer ${tokenFor(user)}`, ...headers },
    signal: controller.signal,
  });
}

async function expectRefused(response: Response, status: number, code: string): Promise<void> {
  expect(response.status).toBe(status);
  expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
  expect(await response.json()).toEqual({ error: { code, message: expect.any(String) as string } });
}

test('a user over MAX_CONNECTIONS_PER_USER gets 429 with Retry-After; a closed stream frees its slot', async () => {
  relay = await startRelay(backend.url, { maxConnectionsPerUser: 2 });
  const first = await openStream(relay.url, 'alice');
  expect((await openStream(relay.url, 'alice')).status).toBe(200);
  await expectRefused(await openStream(relay.url, 'alice'), 429, 'too_many_connections');
  expect((await openStream(relay.url, 'bob')).status).toBe(200);

  await first.body?.cancel();
  await until(() => relay?.relay.connections.snapshot().total === 2);
  expect((await openStream(relay.url, 'alice')).status).toBe(200);
  expect(relay.relay.stats.rejections.get('perUser')).toBe(1);
});

describe.each(['memory', 'redis'] as const)('slots counted in %s', (where) => {
  let redis: RedisServer | undefined;

  beforeAll(async () => {
    if (where === 'redis') redis = await new RedisServer().start();
  });

  afterAll(async () => {
    await redis?.kill();
  });

  test("a user id that reads like another count's name spends only its own budget: streams and plain calls are counted apart per user", async () => {
    relay = await startRelay(backend.url, { maxConnectionsPerUser: 2, ...(redis ? { redisUrl: redis.url } : {}) });
    await until(() => relay?.relay.cluster?.ready ?? true, 5000, 'slots counted in redis');
    // Plain calls that stay open (a backend route answering with a stream) hold a slot of the calls count.
    for (let i = 0; i < 2; i++) expect((await openStream(relay.url, 'alice', {}, `/feeds/${i}`)).status).toBe(200);
    expect((await openStream(relay.url, 'alice', {}, '/feeds/2')).status).toBe(429);
    // Whose id is `calls:alice` has streams of their own, whatever Alice's calls hold...
    for (let i = 0; i < 2; i++) expect((await openStream(relay.url, 'calls:alice')).status).toBe(200);
    await expectRefused(await openStream(relay.url, 'calls:alice'), 429, 'too_many_connections');
    // ...and their full stream count is not Alice's: her streams and calls still go through once hers free up.
    expect((await openStream(relay.url, 'alice')).status).toBe(200);
    for (const controller of controllers.splice(0, 2)) controller.abort();
    await until(() => relay?.relay.connections.snapshot().total === 3, 5000, 'the calls released');
    const call = await fetch(`${relay.url}/api/downloads/x/status`, { headers: { authorization: `Bearer ${tokenFor('alice')}` } });
    expect(call.status).toBe(200);
    await call.body?.cancel();
  });
});

test('over MAX_CONNECTIONS the relay answers 503 with Retry-After', async () => {
  relay = await startRelay(backend.url, { maxConnections: 2 });
  await openStream(relay.url, 'alice');
  await openStream(relay.url, 'bob');
  await expectRefused(await openStream(relay.url, 'carol'), 503, 'over_capacity');
});

test('the per-IP limit counts X-Forwarded-For clients apart only when trust proxy says so', async () => {
  relay = await startRelay(backend.url, { maxConnectionsPerIp: 1 }, { trustProxy: 1 });
  expect((await openStream(relay.url, 'a', { 'x-forwarded-for': '203.0.113.1' })).status).toBe(200);
  expect((await openStream(relay.url, 'b', { 'x-forwarded-for': '203.0.113.2' })).status).toBe(200);
  await expectRefused(await openStream(relay.url, 'c', { 'x-forwarded-for': '203.0.113.1' }), 429, 'too_many_connections');
  await relay.close();

  // Trusting nothing, the header is the client's word: everyone is 127.0.0.1.
  relay = await startRelay(backend.url, { maxConnectionsPerIp: 1 }, { trustProxy: false });
  expect((await openStream(relay.url, 'a', { 'x-forwarded-for': '203.0.113.1' })).status).toBe(200);
  await expectRefused(await openStream(relay.url, 'b', { 'x-forwarded-for': '203.0.113.2' }), 429, 'too_many_connections');
});

test('stream opens and POSTs are rate limited per user, with RateLimit headers; requests without a valid token per IP', async () => {
  relay = await startRelay(backend.url, { rateLimitPerMinute: 3 });
  const opened = await openStream(relay.url, 'alice');
  expect(opened.headers.get('ratelimit')).toMatch(/^"requests"; r=2; t=(60|59)$/);
  expect(opened.headers.get('ratelimit-policy')).toMatch(/^"requests"; q=3; w=60\b/);
  await openStream(relay.url, 'alice');
  const post = await fetch(`${relay.url}/api/downloads`, { method: 'POST', headers: { authorization: `Bearer ${tokenFor('alice')}` } });
  expect(post.headers.get('ratelimit')).toMatch(/^"requests"; r=0; t=(60|59)$/);
  await expectRefused(await openStream(relay.url, 'alice'), 429, 'rate_limited');
  // Another user has a budget of their own; plain GETs are not counted.
  expect((await openStream(relay.url, 'bob')).status).toBe(200);
  const rest = await fetch(`${relay.url}/api/downloads/x/status`, { headers: { authorization: `Bearer ${tokenFor('alice')}` } });
  expect(rest.status).toBe(200);

  const guesses = [];
  for (let i = 0; i < 4; i++) guesses.push((await fetch(`${relay.url}/api${PATH}`, { headers: { authorization: 'Bearer guess' } })).status);
  expect(guesses).toEqual([401, 401, 401, 429]);
  expect(relay.relay.stats.authFailures).toBe(3);
});

test('CORS answers preflights and credentialed requests for CORS_ORIGINS only', async () => {
  relay = await startRelay(backend.url, { corsOrigins: ['https://app.example.com'] });
  const preflight = await fetch(`${relay.url}/api${PATH}`, {
    method: 'OPTIONS',
    headers: { origin: 'https://app.example.com', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization,last-event-id' },
  });
  expect(preflight.status).toBe(204);
  expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
  expect(preflight.headers.get('access-control-allow-credentials')).toBe('true');
  expect(preflight.headers.get('access-control-allow-headers')).toBe('authorization,last-event-id');

  const stream = await openStream(relay.url, 'alice', { origin: 'https://app.example.com' });
  expect(stream.status).toBe(200);
  expect(stream.headers.get('access-control-allow-origin')).toBe('https://app.example.com');

  const stranger = await openStream(relay.url, 'alice', { origin: 'https://evil.example.com' });
  expect(stranger.headers.get('access-control-allow-origin')).toBeNull();
  const strangerPreflight = await fetch(`${relay.url}/api${PATH}`, {
    method: 'OPTIONS',
    headers: { origin: 'https://evil.example.com', 'access-control-request-method': 'GET' },
  });
  expect(strangerPreflight.headers.get('access-control-allow-origin')).toBeNull();
});

test('streams carry nosniff and same-origin CORP, their errors nosniff, every other answer helmet, and none X-Powered-By', async () => {
  relay = await startRelay(backend.url);
  const stream = await openStream(relay.url, 'alice');
  expect(stream.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
  expect(stream.headers.get('x-content-type-options')).toBe('nosniff');
  expect(stream.headers.get('cross-origin-resource-policy')).toBe('same-origin');
  expect(stream.headers.get('x-powered-by')).toBeNull();
  // The stream routes' errors: refused by the relay, and refused by the backend for a new topic.
  const denied = await fetch(`${relay.url}/api${PATH}`);
  expect(denied.status).toBe(401);
  backend.own('/downloads/bobs/events', 'bob');
  const notYours = await openStream(relay.url, 'alice', {}, '/downloads/bobs/events');
  expect(notYours.status).toBe(404);
  for (const answer of [denied, notYours]) {
    expect(answer.headers.get('x-content-type-options')).toBe('nosniff');
    expect(answer.headers.get('x-powered-by')).toBeNull();
  }
  const health = await fetch(`${relay.url}/healthz`);
  const proxied = await fetch(`${relay.url}/api/downloads/x/status`, { headers: { authorization: `Bearer ${tokenFor('alice')}` } });
  const anonymous = await fetch(`${relay.url}/api/downloads/x/status`);
  expect(anonymous.status).toBe(401);
  for (const answer of [health, proxied, anonymous]) {
    expect(answer.headers.get('content-security-policy')).not.toBeNull();
    expect(answer.headers.get('strict-transport-security')).not.toBeNull();
    expect(answer.headers.get('x-powered-by')).toBeNull();
  }
});

test('a stream past its lifetime is ended, and the client resumes without loss', async () => {
  relay = await startRelay(backend.url, { maxStreamLifetimeMs: 150, heartbeatMs: 20, idleTimeoutMs: 0, retryHintMs: 10 });
  backend.emit(PATH, 'data: e1\n');
  const es = eventSourceAs(`${relay.url}/api${PATH}`, 'alice');
  const events = collect(es, 4);
  await until(() => (relay?.relay.stats.closeReasons.get('lifetime') ?? 0) >= 1, 5000, 'the lifetime end');
  backend.emit(PATH, 'data: e2\n');
  backend.emit(PATH, 'data: e3\n');
  backend.emit(PATH, 'data: e4\n');
  expect((await events).map((e) => e.data as string)).toEqual(['e1', 'e2', 'e3', 'e4']);
  es.close();
});

test('clientIp keys IPv4 (plain or mapped into IPv6) as itself and IPv6 by its /56, as express-rate-limit does', () => {
  const key = (ip: string): string => clientIp({ ip, socket: {} } as unknown as Request);
  for (const ip of ['127.0.0.1', '::ffff:10.1.2.3', '::ffff:7f00:1', '::1', '2001:db8::1', '2001:db8:0:ff::7']) expect([ip, key(ip)]).toEqual([ip, ipKeyGenerator(ip)]);
  expect(key('::ffff:10.1.2.3')).toBe('10.1.2.3');
  expect(key('2001:db8:0:ff::7')).toBe(key('2001:db8:0:1::9'));
});
