import { createServer, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { EventSource } from 'eventsource';
import { Redis } from 'ioredis';
import { FixtureBackend } from '../support/fixture-backend';
import { type ClusterSubscriber, clusterSubscriber, idRange } from '../support/cluster-subscriber';
import { tokenFor } from '../support/relay-server';
import { until } from '../support/until';
import { RedisServer } from '../support/redis';
import { RelayProcess } from '../support/relay-process';

const LEASE_MS = 600;
const SLOT_TTL_MS = 900;

let redis: RedisServer;
let backend: FixtureBackend;
const relays: RelayProcess[] = [];
const clients: EventSource[] = [];

async function startRelays(count: number, env: Record<string, string> = {}, backendUrl = backend.url): Promise<RelayProcess[]> {
  const started = await Promise.all(
    Array.from({ length: count }, () =>
      RelayProcess.start({
        BACKEND_URL: backendUrl,
        REDIS_URL: redis.url,
        CLUSTER_LEASE_MS: String(LEASE_MS),
        CLUSTER_SLOT_TTL_MS: String(SLOT_TTL_MS),
        RETRY_HINT_MS: '100',
        RATE_LIMIT_PER_MINUTE: '0',
        MAX_CONNECTIONS_PER_USER: '1000',
        SHUTDOWN_TIMEOUT_MS: '500',
        ...env,
      }),
    ),
  );
  relays.push(...started);
  // Ready: Redis answers and holds each relay's slots, so limits count across relays from the first stream.
  const isReady = async (relay: RelayProcess): Promise<boolean> => {
    const res = await fetch(`${relay.url}/readyz`);
    await res.body?.cancel();
    return res.status === 200;
  };
  await Promise.all(started.map((relay) => until(() => isReady(relay), 5000, 'relay ready')));
  return started;
}

/** A browser behind a load balancer (see clusterSubscriber), closed after each test. */
function subscriber(path: string, relay: RelayProcess, pool: RelayProcess[], user = 'alice', lastEventId?: string): ClusterSubscriber {
  const made = clusterSubscriber(path, relay, pool, user, lastEventId);
  clients.push(made.es);
  return made;
}

/** Reads a streaming response until its text matches `pattern`; resolves with the text so far. */
async function readUntil(res: Response, pattern: RegExp, timeoutMs = 5000): Promise<string> {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const timer = setTimeout(() => void reader.cancel(), timeoutMs);
  let text = '';
  try {
    while (!pattern.test(text)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream ended before ${String(pattern)}: ${JSON.stringify(text)}`);
      text += decoder.decode(value, { stream: true });
    }
    return text;
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => undefined);
  }
}

/** Two relays, with `path`'s topic owned by the first (one subscriber there holds it). */
async function ownedTopic(path: string): Promise<{ owner: RelayProcess; follower: RelayProcess; first: ReturnType<typeof subscriber> }> {
  const [owner, follower] = (await startRelays(2)) as [RelayProcess, RelayProcess];
  const first = subscriber(`/api${path}`, owner, []);
  await until(() => first.opened() && owner.lines('topic owned').length === 1, 5000, 'the topic owned by the first relay');
  return { owner, follower, first };
}

const range = idRange;

beforeAll(async () => {
  redis = await new RedisServer().start();
  backend = await new FixtureBackend().start();
});

afterEach(async () => {
  for (const es of clients.splice(0)) es.close();
  await Promise.all(relays.splice(0).map((relay) => relay.kill()));
});

afterAll(async () => {
  await backend.close();
  await redis.kill();
});

test('30 subscribers spread over three relays cost the backend one upstream, and each gets every event', async () => {
  const path = '/downloads/thirty/events';
  const pool = await startRelays(3);
  const subs = Array.from({ length: 30 }, (_, i) => subscriber(`/api${path}`, pool[i % 3] as RelayProcess, pool));
  await until(() => subs.every((sub) => sub.opened()), 10_000, 'every subscriber open');
  for (let i = 1; i <= 5; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => subs.every((sub) => sub.ids.length === 5), 10_000, 'five events everywhere');
  for (const sub of subs) expect(sub.ids).toEqual(range(1, 5));
  expect(backend.requests.filter((request) => request.path === path)).toHaveLength(1);
  expect(backend.listeners(path)).toBe(1);
}, 30_000);

test('kill -9 of the owner mid-stream: every subscriber, surviving or resumed elsewhere, gets 1..N once and in order, over one upstream again', async () => {
  const path = '/downloads/takeover/events';
  const pool = await startRelays(3);
  const subs = Array.from({ length: 15 }, (_, i) => subscriber(`/api${path}`, pool[i % 3] as RelayProcess, pool));
  await until(() => subs.every((sub) => sub.opened()), 10_000, 'every subscriber open');
  for (let i = 1; i <= 5; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => subs.every((sub) => sub.ids.length === 5), 10_000, 'first five');

  const owner = pool.find((relay) => relay.lines('topic owned').length > 0);
  if (!owner) throw new Error('no relay says it owns the topic');
  const killedAt = Date.now();
  await owner.kill();
  // Events the backend produces while nobody reads it: the next owner asks for them with Last-Event-ID.
  for (let i = 6; i <= 10; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => backend.listeners(path) === 1, 10_000, 'the upstream reopened by a survivor');
  const takeoverMs = Date.now() - killedAt;
  for (let i = 11; i <= 20; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => subs.every((sub) => sub.ids.length >= 20), 15_000, 'all twenty everywhere');
  await new Promise((resolve) => setTimeout(resolve, 200));

  for (const sub of subs) expect(sub.ids).toEqual(range(1, 20));
  const requests = backend.requests.filter((request) => request.path === path);
  expect(requests).toHaveLength(2);
  expect(requests[1]?.lastEventId).toBe('5');
  expect(backend.listeners(path)).toBe(1);
  const survivors = pool.filter((relay) => relay !== owner);
  expect(survivors.flatMap((relay) => relay.lines('topic taken over'))).toHaveLength(1);
  console.log(`takeover after kill -9: upstream reopened ${takeoverMs} ms after the kill (lease ${LEASE_MS} ms)`);
  expect(takeoverMs).toBeLessThan(LEASE_MS * 4);
}, 40_000);

test('a client resumes on a relay that never saw the topic, from the shared history, though the backend cannot replay', async () => {
  const open = new Set<ServerResponse>();
  let requests = 0;
  // A backend without history: every connection starts live, Last-Event-ID or not.
  const forgetful = createServer((req, res) => {
    if (req.url?.endsWith('/status') || req.url === '/health') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    requests += 1;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.flushHeaders();
    open.add(res);
    res.on('close', () => open.delete(res));
  });
  forgetful.listen(0, '127.0.0.1');
  await once(forgetful, 'listening');
  const emit = (id: number): void => {
    for (const res of open) res.write(`data: e${id}\nid: ${id}\n\n`);
  };
  try {
    const [first, , third] = await startRelays(3, {}, `http://127.0.0.1:${(forgetful.address() as AddressInfo).port}`);
    const path = '/api/downloads/forgetful/events';
    const early = subscriber(path, first as RelayProcess, []);
    await until(() => early.opened(), 5000, 'first subscriber open');
    await until(() => open.size === 1, 5000, 'upstream open');
    for (let i = 1; i <= 5; i++) emit(i);
    await until(() => early.ids.length === 5, 5000, 'five events');

    const late = subscriber(path, third as RelayProcess, [], 'alice', '2');
    await until(() => late.ids.length === 3, 5000, 'the missed events');
    emit(6);
    await until(() => late.ids.length === 4 && early.ids.length === 6, 5000, 'the live event');
    expect(late.ids).toEqual(['3', '4', '5', '6']);
    // A newcomer there gets the whole history, which the shared one says is complete: no resync.
    const newcomer = subscriber(path, third as RelayProcess, []);
    await until(() => newcomer.ids.length === 6, 5000, 'the whole history');
    expect(newcomer.ids).toEqual(range(1, 6));
    expect(requests).toBe(1);
  } finally {
    forgetful.closeAllConnections();
    forgetful.close();
  }
}, 30_000);

test('the per-user cap holds across relays, and a killed relay gives its slots back within the slot TTL', async () => {
  const path = '/api/downloads/capped/events';
  const pool = await startRelays(3, { MAX_CONNECTIONS_PER_USER: '3' });
  const [a, b, c] = pool as [RelayProcess, RelayProcess, RelayProcess];
  const held = [subscriber(path, a, [], 'carol'), subscriber(path, a, [], 'carol'), subscriber(path, b, [], 'carol')];
  await until(() => held.every((sub) => sub.opened()), 5000, 'three streams open');
  const refused = await fetch(`${c.url}${path}`, { headers: { authorization: `Bearer ${tokenFor('carol')}` } });
  expect(refused.status).toBe(429);
  expect(refused.headers.get('retry-after')).toBe('10');
  await refused.body?.cancel();

  await a.kill();
  const killedAt = Date.now();
  let status = 0;
  await until(async () => {
    const res = await fetch(`${c.url}${path}`, { headers: { authorization: `Bearer ${tokenFor('carol')}` }, signal: AbortSignal.timeout(2000) });
    status = res.status;
    await res.body?.cancel();
    return status === 200;
  }, SLOT_TTL_MS * 5, 'a slot of the killed relay back');
  expect(Date.now() - killedAt).toBeLessThan(SLOT_TTL_MS * 3);
}, 30_000);

test('Redis killed and restarted: /readyz says 503 redis_unavailable, then 200 again, and no relay crashes', async () => {
  const pool = await startRelays(2);
  const ready = async (relay: RelayProcess): Promise<{ status: number; body: unknown }> => {
    const res = await fetch(`${relay.url}/readyz`);
    return { status: res.status, body: await res.json() };
  };
  await until(async () => (await ready(pool[0] as RelayProcess)).status === 200, 5000, 'ready');
  const path = '/downloads/redis-down/events';
  const sub = subscriber(`/api${path}`, pool[0] as RelayProcess, pool);
  const other = subscriber(`/api${path}`, pool[1] as RelayProcess, pool);
  await until(() => sub.opened() && other.opened(), 5000, 'open');

  await redis.kill();
  for (const relay of pool) {
    await until(async () => (await ready(relay)).status === 503, 5000, 'not ready without redis');
    expect(await ready(relay)).toEqual({ status: 503, body: { status: 'redis_unavailable' } });
  }
  await redis.start();
  for (const relay of pool) await until(async () => (await ready(relay)).status === 200, 10_000, 'ready again');
  expect(pool.every((relay) => relay.alive)).toBe(true);
  // And the cluster works again: a new topic over both relays, one upstream.
  const fresh = '/downloads/after-redis/events';
  const subs = [subscriber(`/api${fresh}`, pool[0] as RelayProcess, pool), subscriber(`/api${fresh}`, pool[1] as RelayProcess, pool)];
  await until(() => subs.every((s) => s.opened()), 5000, 'open after recovery');
  backend.emit(fresh, 'data: x\n');
  await until(() => subs.every((s) => s.ids.length === 1), 5000, 'event after recovery');
  expect(backend.requests.filter((request) => request.path === fresh)).toHaveLength(1);
  expect(pool.flatMap((relay) => relay.log.filter((line) => /unhandled|uncaught/i.test(line.msg)))).toEqual([]);
}, 40_000);

test('a stale owner (paused past its lease, then resumed) appends nothing: the shared history holds each event once', async () => {
  const path = '/downloads/stale/events';
  const pool = await startRelays(2);
  const subs = [subscriber(`/api${path}`, pool[0] as RelayProcess, []), subscriber(`/api${path}`, pool[1] as RelayProcess, [])];
  await until(() => subs.every((sub) => sub.opened()), 5000, 'open');
  for (let i = 1; i <= 3; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => subs.every((sub) => sub.ids.length === 3), 5000, 'first three');
  const owner = pool.find((relay) => relay.lines('topic owned').length > 0) as RelayProcess;
  const follower = pool.find((relay) => relay !== owner) as RelayProcess;
  const followerSub = subs[pool.indexOf(follower)] as { ids: string[] };

  owner.signal('SIGSTOP');
  try {
    // While it sleeps, the backend writes to its socket: it will read these when it wakes.
    for (let i = 4; i <= 6; i++) backend.emit(path, `data: e${i}\n`);
    await until(() => follower.lines('topic taken over').length === 1, LEASE_MS * 6, 'the follower takes over');
    await until(() => followerSub.ids.length === 6, 5000, 'the follower relays what the backend resends');
  } finally {
    owner.signal('SIGCONT');
  }
  await until(() => owner.lines('topic ownership lost; following the shared history').length === 1, 5000, 'the stale owner steps down');
  for (let i = 7; i <= 8; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => subs.every((sub) => sub.ids.length >= 8), 5000, 'everything everywhere');
  await new Promise((resolve) => setTimeout(resolve, 200));

  const client = new Redis(redis.url);
  try {
    const entries = (await client.xrange(`sse-relay:{download:stale}:events`, '-', '+')) as [string, string[]][];
    const ids = entries.map(([, fields]) => fields[fields.indexOf('e') + 1]);
    expect(ids).toEqual(range(1, 8));
  } finally {
    client.disconnect();
  }
  for (const sub of subs) expect(sub.ids).toEqual(range(1, 8));
}, 40_000);

test('a finished topic answers 204 on every relay for its linger period, without asking the backend again', async () => {
  const path = '/downloads/finished/events';
  const [first, second] = (await startRelays(2)) as [RelayProcess, RelayProcess];
  const sub = subscriber(`/api${path}`, first, []);
  await until(() => sub.opened(), 5000, 'open');
  for (let i = 1; i <= 3; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => sub.ids.length === 3, 5000, 'three events');
  sub.es.close();
  backend.end(path);
  const headers = { authorization: `Bearer ${tokenFor('alice')}`, 'last-event-id': '3' };
  let status = 0;
  await until(async () => {
    const res = await fetch(`${second.url}/api${path}`, { headers, signal: AbortSignal.timeout(2000) });
    status = res.status;
    await res.body?.cancel();
    return status === 204;
  }, 5000, '204 on the other relay');
  const onOwner = await fetch(`${first.url}/api${path}`, { headers });
  expect(onOwner.status).toBe(204);
  await onOwner.body?.cancel();
  const late = await fetch(`${second.url}/api${path}`, { headers: { authorization: headers.authorization } });
  expect(late.status).toBe(200);
  // A newcomer gets the whole history, then the end.
  expect(await late.text()).toMatch(/data: e1\nid: 1\n\ndata: e2\nid: 2\n\ndata: e3\nid: 3\n\n$/);
  // The clean end was reconnected once by the owner, as a client would, and that answer (204) held.
  expect(backend.requests.filter((request) => request.path === path).map((request) => request.lastEventId)).toEqual([undefined, '3']);
}, 30_000);

test('a clean end of the backend stream (not a finish) ends the streams on every relay, and they resume over the owner\'s one reconnect', async () => {
  const path = '/downloads/clean-end/events';
  const { follower, first } = await ownedTopic(path);
  const second = subscriber(`/api${path}`, follower, []);
  await until(() => second.opened(), 5000, 'the follower\'s subscriber open');
  for (let i = 1; i <= 3; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => first.ids.length === 3 && second.ids.length === 3, 5000, 'three events on both relays');

  backend.closeStreams(path);
  // Both clients saw their stream end and reconnected, as they would to the backend.
  await until(() => first.opens() === 2 && second.opens() === 2, 5000, 'both streams ended and reopened');
  await until(() => backend.requests.filter((request) => request.path === path).length === 2 && backend.listeners(path) === 1, 5000, 'the owner reconnected');
  for (let i = 4; i <= 5; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => first.ids.length === 5 && second.ids.length === 5, 5000, 'the events after the end on both relays');
  expect(first.ids).toEqual(range(1, 5));
  expect(second.ids).toEqual(range(1, 5));
  expect(backend.requests.filter((request) => request.path === path).map((request) => request.lastEventId)).toEqual([undefined, '3']);
}, 30_000);

test('the backend\'s retry: hint and its id-only frames reach the subscribers of another relay', async () => {
  const path = '/downloads/retry-hint/events';
  const { follower } = await ownedTopic(path);
  const res = await fetch(`${follower.url}/api${path}`, { headers: { authorization: `Bearer ${tokenFor('alice')}` } });
  expect(res.status).toBe(200);
  await until(() => follower.lines('stream opened').length === 1, 5000, 'the follower\'s stream open');
  backend.writeRaw(path, 'retry: 4321\n\nid: 7\n\ndata: after\n\n');
  const text = await readUntil(res, /data: after\n\n/);
  expect(text).toMatch(/retry: 4321\n\n[\s\S]*id: 7\n\ndata: after\n\n$/);
}, 30_000);

test('a multiplexed stream on one relay gets the events of a topic another relay owns, over its one upstream', async () => {
  const path = '/downloads/mux/events';
  const { follower } = await ownedTopic(path);
  const res = await fetch(`${follower.url}/api/events?topic=download:mux`, { headers: { authorization: `Bearer ${tokenFor('alice')}` } });
  expect(res.status).toBe(200);
  await until(() => follower.lines('stream opened').length === 1, 5000, 'the multiplexed stream open');
  for (let i = 1; i <= 2; i++) backend.emit(path, `data: e${i}\n`);
  const text = await readUntil(res, /"id":"2"/);
  expect(text).toContain('{"topic":"download:mux","id":"1","data":"e1"}');
  expect(text).toContain('{"topic":"download:mux","id":"2","data":"e2"}');
  expect(backend.requests.filter((request) => request.path === path)).toHaveLength(1);
}, 30_000);

/** The value of an unlabelled sample in a relay's /metrics. */
async function metric(relay: RelayProcess, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${relay.url}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

test("each relay's upstream metrics count what it holds itself: the owner one upstream, a follower none until it takes the topic over", async () => {
  const path = '/downloads/metered/events';
  const { owner, follower, first } = await ownedTopic(path);
  const second = subscriber(`/api${path}`, follower, []);
  await until(() => second.opened(), 5000, "the follower's subscriber");
  backend.emit(path, 'data: e1\n');
  await until(() => first.ids.length === 1 && second.ids.length === 1, 5000, 'the event on both relays');
  const upstreams = async (relay: RelayProcess): Promise<(number | undefined)[]> =>
    Promise.all(['sse_relay_topics', 'sse_relay_upstream_connections', 'sse_relay_upstream_connects_total'].map((name) => metric(relay, name)));
  expect(await upstreams(owner)).toEqual([1, 1, 1]);
  expect(await upstreams(follower)).toEqual([1, 0, 0]);
  expect(backend.listeners(path)).toBe(1);

  await owner.kill();
  await until(() => follower.lines('topic taken over').length === 1 && backend.listeners(path) === 1, 10_000, 'the follower to take the topic over');
  expect(await upstreams(follower)).toEqual([1, 1, 1]);
}, 30_000);

test('a burst the backend writes at once is appended in a few script calls, not one per event, and reaches every relay in order', async () => {
  const path = '/downloads/burst/events';
  const { follower, first } = await ownedTopic(path);
  const second = subscriber(`/api${path}`, follower, []);
  await until(() => second.opened(), 5000, "the follower's subscriber open");
  const client = new Redis(redis.url);
  /** Calls of each command so far. */
  const calls = async (): Promise<Map<string, number>> => {
    const counts = new Map<string, number>();
    for (const match of (await client.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) counts.set(match[1] as string, Number(match[2]));
    return counts;
  };
  try {
    const before = await calls();
    backend.writeRaw(path, range(1, 50).map((id) => `data: e${id}\nid: ${id}\n\n`).join(''));
    await until(() => first.ids.length === 50 && second.ids.length === 50, 5000, 'fifty events on both relays');
    const after = await calls();
    expect(first.ids).toEqual(range(1, 50));
    expect(second.ids).toEqual(range(1, 50));
    expect((after.get('xadd') ?? 0) - (before.get('xadd') ?? 0)).toBe(50);
    // Each append script announces its batch once.
    expect((after.get('publish') ?? 0) - (before.get('publish') ?? 0)).toBeLessThanOrEqual(5);
  } finally {
    client.disconnect();
  }
}, 30_000);
