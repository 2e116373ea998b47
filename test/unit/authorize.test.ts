import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { backendAuthorizer, refusalOf } from '../../src/relay/authorize';

// A real status route: the status of each (user, code) is set by the test; every request is counted.
let server: Server;
let agent: Agent;
let base: URL;
const statuses = new Map<string, number>();
let asked: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const user = String(req.headers['x-user-id']);
    asked.push(`${user} ${req.url ?? ''}`);
    res.writeHead(statuses.get(`${user} ${req.url ?? ''}`) ?? 404, { 'content-type': 'application/json' });
    res.end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  agent = new Agent({ connections: 4 });
});

afterAll(async () => {
  await agent.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  statuses.clear();
  asked = [];
  // Only the clock is faked: the HTTP exchange with the status route runs on real timers.
  jest.useFakeTimers({ now: 1_000_000, doNotFake: ['nextTick', 'setImmediate', 'clearImmediate', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'queueMicrotask', 'hrtime', 'performance'] });
});

afterEach(() => {
  jest.useRealTimers();
});

const status = (code: string): URL => new URL(`/downloads/${code}/status`, base);

test("the backend's yes is trusted for the cache time, then the backend is asked again", async () => {
  statuses.set('alice /downloads/a/status', 200);
  const authorize = backendAuthorizer(agent, 5000, 2000);
  expect(await authorize('alice', status('a'))).toBe(200);
  jest.setSystemTime(1_000_000 + 4999);
  expect(await authorize('alice', status('a'))).toBe(200);
  expect(asked).toHaveLength(1);
  // Access revoked meanwhile: once the yes expired, the backend's no is what counts.
  statuses.set('alice /downloads/a/status', 404);
  jest.setSystemTime(1_000_000 + 5000);
  expect(await authorize('alice', status('a'))).toBe(404);
  expect(asked).toHaveLength(2);
});

test('a yes is cached per user and code: another user, or another code, is asked about', async () => {
  statuses.set('alice /downloads/a/status', 200);
  statuses.set('alice /downloads/b/status', 200);
  const authorize = backendAuthorizer(agent, 5000, 2000);
  await authorize('alice', status('a'));
  expect(await authorize('bob', status('a'))).toBe(404);
  expect(await authorize('alice', status('b'))).toBe(200);
  expect(asked).toEqual(['alice /downloads/a/status', 'bob /downloads/a/status', 'alice /downloads/b/status']);
});

test.each([403, 404, 401, 500, 503])('a %i from the status route is never cached as a yes, nor at all', async (code) => {
  statuses.set('alice /downloads/a/status', code);
  const authorize = backendAuthorizer(agent, 5000, 2000);
  expect(await authorize('alice', status('a'))).toBe(code);
  // A code made a moment later must work at once.
  statuses.set('alice /downloads/a/status', 200);
  expect(await authorize('alice', status('a'))).toBe(200);
  expect(asked).toHaveLength(2);
  expect(authorize.cached()).toBe(1);
});

test('expired yeses are dropped as new ones come in, so a relay opening streams for many users holds only the last few seconds of them', async () => {
  const authorize = backendAuthorizer(agent, 5000, 2000);
  for (let i = 0; i < 20; i++) {
    statuses.set(`user${i} /downloads/a/status`, 200);
    jest.setSystemTime(1_000_000 + i * 1000);
    await authorize(`user${i}`, status('a'));
  }
  // At t = 19 s, the yeses of t = 15 s to 19 s are still valid; the older ones are gone.
  expect(authorize.cached()).toBe(5);
  expect(await authorize('user15', status('a'))).toBe(200);
  expect(asked).toHaveLength(20);
});

test('at most maxCached yeses are held, the oldest going first', async () => {
  const authorize = backendAuthorizer(agent, 60_000, 2000, 2);
  for (const user of ['u1', 'u2', 'u3']) {
    statuses.set(`${user} /downloads/a/status`, 200);
    await authorize(user, status('a'));
  }
  expect(authorize.cached()).toBe(2);
  await authorize('u3', status('a'));
  await authorize('u2', status('a'));
  expect(asked).toHaveLength(3);
  await authorize('u1', status('a'));
  expect(asked).toHaveLength(4);
});

test("forget drops a user's yeses at once, and no one else's", async () => {
  statuses.set('alice /downloads/a/status', 200);
  statuses.set('bob /downloads/a/status', 200);
  const authorize = backendAuthorizer(agent, 5000, 2000);
  await authorize('alice', status('a'));
  await authorize('bob', status('a'));
  authorize.forget('alice');
  await authorize('alice', status('a'));
  await authorize('bob', status('a'));
  expect(asked).toEqual(['alice /downloads/a/status', 'bob /downloads/a/status', 'alice /downloads/a/status']);
});

test('a cache time of 0 asks the backend every time', async () => {
  statuses.set('alice /downloads/a/status', 200);
  const authorize = backendAuthorizer(agent, 0, 2000);
  await authorize('alice', status('a'));
  await authorize('alice', status('a'));
  expect(asked).toHaveLength(2);
});

test('a policy answer becomes what the client is told: a yes nothing, a no a 404 like an unknown topic, anything else a 502 with its cause', () => {
  for (const status of [200, 204, 299]) expect(refusalOf(status)).toBeUndefined();
  for (const status of [401, 403, 404]) expect(refusalOf(status)).toMatchObject({ code: 'not_found', status: 404 });
  for (const status of [0, 199, 302, 400, 410, 500, 503]) {
    expect(refusalOf(status)).toMatchObject({ code: 'bad_gateway', status: 502, cause: new Error(`status route answered ${status}`) });
  }
  const cause = new Error('connect ECONNREFUSED');
  expect(refusalOf(502, cause)?.cause).toBe(cause);
});
