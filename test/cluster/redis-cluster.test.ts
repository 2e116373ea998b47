import type { EventSource } from 'eventsource';
import { request } from 'undici';
import { keySlot } from '../../src/cluster/key-slot';
import { SseResponse } from '../backend/harness';
import { AnswerBackend } from '../support/answer-backend';
import { type ClusterSubscriber, clusterSubscriber, idRange } from '../support/cluster-subscriber';
import { FixtureBackend } from '../support/fixture-backend';
import { RedisCluster } from '../support/redis';
import { RelayProcess } from '../support/relay-process';
import { type RunningRelay, eventSourceAs, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

// The same cluster mode as cluster.test.ts, on a real three-master Redis Cluster (no replicas).

const LEASE_MS = 600;
/** How long the cluster's nodes wait before calling a silent one failed. */
const NODE_TIMEOUT_MS = 1000;

let redis: RedisCluster;
let backend: FixtureBackend;
const relays: RelayProcess[] = [];
const clients: EventSource[] = [];

async function startRelays(count: number, env: Record<string, string> = {}): Promise<RelayProcess[]> {
  const started = await Promise.all(
    Array.from({ length: count }, () =>
      RelayProcess.start({
        BACKEND_URL: backend.url,
        REDIS_CLUSTER_NODES: redis.seeds,
        CLUSTER_LEASE_MS: String(LEASE_MS),
        CLUSTER_SLOT_TTL_MS: '900',
        RETRY_HINT_MS: '100',
        RATE_LIMIT_PER_MINUTE: '0',
        MAX_CONNECTIONS_PER_USER: '1000',
        SHUTDOWN_TIMEOUT_MS: '500',
        ...env,
      }),
    ),
  );
  relays.push(...started);
  await Promise.all(started.map((relay) => until(async () => (await readiness(relay)).status === 200, 10_000, 'relay ready on the Redis Cluster')));
  return started;
}

async function readiness(relay: RelayProcess): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${relay.url}/readyz`);
  return { status: res.status, body: await res.json() };
}

function subscriber(path: string, relay: RelayProcess, pool: RelayProcess[], user = 'alice'): ClusterSubscriber {
  const made = clusterSubscriber(path, relay, pool, user);
  clients.push(made.es);
  return made;
}

/** The keys of a download topic all carry this hash tag. */
function topicKey(code: string): string {
  return `sse-relay:{download:${code}}:events`;
}

/** `count` download codes whose topics the master on each port serves, found by their keys' slots. */
async function codesPerMaster(prefix: string, count: number): Promise<Map<number, string[]>> {
  const wanted = new Map((await redis.masterPorts()).map((port) => [port, [] as string[]]));
  for (let i = 0; [...wanted.values()].some((codes) => codes.length < count); i++) {
    const code = `${prefix}-${i}`;
    const codes = wanted.get(await redis.ownerOf(keySlot(topicKey(code))));
    if (codes && codes.length < count) codes.push(code);
  }
  return wanted;
}

beforeAll(async () => {
  redis = await new RedisCluster(3, 0, NODE_TIMEOUT_MS).start();
  backend = await new FixtureBackend().start();
}, 30_000);

afterEach(async () => {
  for (const es of clients.splice(0)) es.close();
  await Promise.all(relays.splice(0).map((relay) => relay.kill()));
});

afterAll(async () => {
  await backend.close();
  await redis.stop();
});

test('the key slot the relay computes is the one Redis computes, hash tags included', async () => {
  const port = (await redis.masterPorts())[0] as number;
  for (const key of ['foo', 'bar', topicKey('x'), 'sse-relay:{download:x}:appends', '{}', 'a{}b', '{user1000}.following', 'é{ü}', '{{x}}']) {
    expect(keySlot(key)).toBe(Number(await redis.command(port, 'CLUSTER', 'KEYSLOT', key)));
  }
});

test('topics on all three shards: one upstream each across three relays, every event everywhere in order, one subscriber connection per shard', async () => {
  const pool = await startRelays(3);
  const perMaster = await codesPerMaster('spread', 3);
  const codes = [...perMaster.values()].flat();
  const subs = codes.map((code) => pool.map((relay) => ({ code, sub: subscriber(`/api/downloads/${code}/events`, relay, pool) })));
  await until(() => subs.flat().every(({ sub }) => sub.opened()), 10_000, 'every subscriber open');
  for (let i = 1; i <= 5; i++) for (const code of codes) backend.emit(`/downloads/${code}/events`, `data: ${code}-${i}\n`);
  await until(() => subs.flat().every(({ sub }) => sub.ids.length === 5), 10_000, 'five events on every topic everywhere');

  for (const { sub } of subs.flat()) expect(sub.ids).toEqual(idRange(1, 5));
  for (const code of codes) expect(backend.requests.filter((request) => request.path === `/downloads/${code}/events`)).toHaveLength(1);
  // Each master holds the keys of its own topics, and only those.
  const held = await redis.keysPerMaster('sse-relay:{download:spread-*');
  for (const [port, mine] of perMaster) {
    const keys = (await redis.command(port, 'KEYS', 'sse-relay:{download:spread-*')) as string[];
    expect(new Set(keys.map((key) => /\{download:([^}]+)\}/.exec(key)?.[1]))).toEqual(new Set(mine));
    expect(held.get(port)).toBeGreaterThanOrEqual(3 * 3);
  }
  // Followers hear announcements on one connection per shard, however many of its topics they follow.
  for (const port of perMaster.keys()) {
    const list = String(await redis.command(port, 'CLIENT', 'LIST'));
    const watchers = list.split('\n').filter((line) => / name=sse-relay:appends:/.test(line));
    expect(watchers.length).toBeGreaterThan(0);
    expect(watchers.length).toBeLessThanOrEqual(pool.length);
  }
}, 40_000);

test('kill -9 of the owner mid-stream: every subscriber, surviving or resumed elsewhere, gets 1..N once and in order, over one upstream again', async () => {
  const path = '/downloads/cluster-takeover/events';
  const pool = await startRelays(3);
  const subs = Array.from({ length: 15 }, (_, i) => subscriber(`/api${path}`, pool[i % 3] as RelayProcess, pool));
  await until(() => subs.every((sub) => sub.opened()), 10_000, 'every subscriber open');
  for (let i = 1; i <= 5; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => subs.every((sub) => sub.ids.length === 5), 10_000, 'first five');

  const owner = pool.find((relay) => relay.lines('topic owned').length > 0);
  if (!owner) throw new Error('no relay says it owns the topic');
  await owner.kill();
  for (let i = 6; i <= 10; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => backend.listeners(path) === 1, 10_000, 'the upstream reopened by a survivor');
  for (let i = 11; i <= 20; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => subs.every((sub) => sub.ids.length >= 20), 15_000, 'all twenty everywhere');
  await new Promise((resolve) => setTimeout(resolve, 200));

  for (const sub of subs) expect(sub.ids).toEqual(idRange(1, 20));
  const requests = backend.requests.filter((request) => request.path === path);
  expect(requests.map((request) => request.lastEventId)).toEqual([undefined, '5']);
  expect(pool.filter((relay) => relay !== owner).flatMap((relay) => relay.lines('topic taken over'))).toHaveLength(1);
}, 40_000);

test('a topic\'s slot moved to another master mid-stream (resharding): every relay\'s subscribers get every event once and in order, over one upstream', async () => {
  const code = 'resharded';
  const path = `/downloads/${code}/events`;
  const pool = await startRelays(3);
  const subs = pool.flatMap((relay) => [subscriber(`/api${path}`, relay, pool), subscriber(`/api${path}`, relay, pool)]);
  await until(() => subs.every((sub) => sub.opened()), 10_000, 'every subscriber open');
  for (let i = 1; i <= 5; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => subs.every((sub) => sub.ids.length === 5), 10_000, 'first five');

  const slot = keySlot(topicKey(code));
  const from = await redis.ownerOf(slot);
  const to = (await redis.masterPorts()).find((port) => port !== from) as number;
  let emitted = 5;
  const moving = redis.moveSlot(slot, to);
  // Events while the keys move, and after.
  while (emitted < 15) {
    backend.emit(path, `data: e${++emitted}\n`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await moving;
  expect(await redis.ownerOf(slot)).toBe(to);
  for (let i = 16; i <= 20; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => subs.every((sub) => sub.ids.length >= 20), 15_000, 'all twenty everywhere');
  await new Promise((resolve) => setTimeout(resolve, 200));

  for (const sub of subs) expect(sub.ids).toEqual(idRange(1, 20));
  expect(backend.requests.filter((request) => request.path === path)).toHaveLength(1);
  const keys = (await redis.command(to, 'KEYS', `sse-relay:{download:${code}}:*`)) as string[];
  expect(keys.sort()).toEqual([`sse-relay:{download:${code}}:events`, `sse-relay:{download:${code}}:fence`, `sse-relay:{download:${code}}:lease`, `sse-relay:{download:${code}}:meta`]);
}, 40_000);

test('the per-user cap and the rate limit count every relay on a Redis Cluster', async () => {
  const pool = await startRelays(3, { MAX_CONNECTIONS_PER_USER: '2', RATE_LIMIT_PER_MINUTE: '3' });
  const [a, b, c] = pool as [RelayProcess, RelayProcess, RelayProcess];
  const path = '/api/downloads/limited/events';
  const held = [subscriber(path, a, [], 'dora'), subscriber(path, b, [], 'dora')];
  await until(() => held.every((sub) => sub.opened()), 5000, 'two streams open');
  /** The error code of a refused stream, or its status. */
  const open = async (relay: RelayProcess, user: string): Promise<string> => {
    const res = await fetch(`${relay.url}${path}`, { headers: { authorization: `Bearer ${tokenFor(user)}` } });
    if (res.status === 200) {
      await res.body?.cancel();
      return '200';
    }
    return ((await res.json()) as { error: { code: string } }).error.code;
  };
  expect(await open(c, 'dora')).toBe('too_many_connections');
  // Three requests a minute per user, wherever they land.
  expect([await open(a, 'erin'), await open(b, 'erin'), await open(c, 'erin')]).toEqual(['200', '200', '200']);
  expect(await open(a, 'erin')).toBe('rate_limited');
  expect(await open(b, 'erin')).toBe('rate_limited');
}, 30_000);

test('/readyz says 503 redis_unavailable while a master is down and the cluster fails, then 200 again, and the topics work again', async () => {
  // The default slot TTL: its heartbeats are seconds apart, so readiness has to come from the cluster's own state.
  const pool = await startRelays(2, { CLUSTER_SLOT_TTL_MS: '30000' });
  const victim = (await redis.masterPorts())[0] as number;
  await redis.killNode(victim);
  try {
    for (const relay of pool) {
      await until(async () => (await readiness(relay)).status === 503, NODE_TIMEOUT_MS * 5, 'not ready while the cluster fails');
      expect(await readiness(relay)).toEqual({ status: 503, body: { status: 'redis_unavailable' } });
    }
  } finally {
    await redis.restartNode(victim);
  }
  await redis.untilState((info) => info.includes('cluster_state:ok'), 15_000, 'the cluster ok again');
  for (const relay of pool) await until(async () => (await readiness(relay)).status === 200, NODE_TIMEOUT_MS * 5, 'ready again');
  // A topic on the master that came back, over both relays, one upstream.
  const code = (await codesPerMaster('back', 1)).get(victim)?.[0] as string;
  const path = `/downloads/${code}/events`;
  const subs = pool.map((relay) => subscriber(`/api${path}`, relay, pool));
  await until(() => subs.every((sub) => sub.opened()), 10_000, 'open after recovery');
  backend.emit(path, 'data: x\n');
  await until(() => subs.every((sub) => sub.ids.length === 1), 10_000, 'event after recovery');
  expect(backend.requests.filter((request) => request.path === path)).toHaveLength(1);
  expect(pool.every((relay) => relay.alive)).toBe(true);
}, 60_000);

test("endUserStreams on one relay ends that user's streams on another, through the Redis Cluster's pub/sub", async () => {
  const path = '/downloads/ended/events';
  const made: RunningRelay[] = [];
  try {
    for (let i = 0; i < 2; i += 1) made.push(await startRelay(backend.url, { redisClusterNodes: redis.seeds.split(','), retryHintMs: 60_000 }));
    const [a, b] = made as [RunningRelay, RunningRelay];
    await until(() => a.relay.cluster?.ready === true && b.relay.cluster?.ready === true, 10_000, 'both relays on the Redis Cluster');
    const received = { alice: 0, bob: 0 };
    for (const user of ['alice', 'bob'] as const) {
      const es = eventSourceAs(`${b.url}/api${path}`, user);
      es.onmessage = () => (received[user] += 1);
      clients.push(es);
    }
    await until(() => backend.listeners(path) === 1, 5000, 'the upstream open');
    backend.emit(path, 'data: e1\n');
    await until(() => received.alice === 1 && received.bob === 1, 5000, 'e1 on relay b');
    expect(await a.relay.endUserStreams('alice')).toBe(0);
    await until(() => b.relay.stats.closeReasons.get('ended_by_app') === 1, 5000, "alice's stream ended on relay b");
    backend.emit(path, 'data: e2\n');
    await until(() => received.bob === 2, 5000, 'e2 to bob');
    expect(received.alice).toBe(1);
  } finally {
    for (const es of clients.splice(0)) es.close();
    for (const relay of made) await relay.close();
  }
}, 30_000);

test('a chat answer POSTed on one relay is resumed on another through its shard, and cancelled from a third', async () => {
  const answers = await new AnswerBackend().start();
  const made: RunningRelay[] = [];
  try {
    for (let i = 0; i < 3; i += 1) made.push(await startRelay(answers.url, { redisClusterNodes: redis.seeds.split(','), postResumeGraceMs: 60_000 }));
    const [a, b, c] = made as [RunningRelay, RunningRelay, RunningRelay];
    await until(() => made.every((r) => r.relay.cluster?.ready === true), 10_000, 'the relays on the Redis Cluster');
    const auth = { authorization: `Bearer ${tokenFor('alice')}` };
    const controller = new AbortController();
    const posted = await request(`${a.url}/api/chat/stream`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{}', signal: controller.signal });
    const first = new SseResponse(posted.statusCode, posted.headers, posted.body);
    const streamId = String(posted.headers['x-stream-id']);
    const answer = await answers.answer(0);
    answer.send('a');
    await first.waitFor((e) => e.data === 'a');
    controller.abort();
    await first.ended.catch(() => undefined);
    answer.send('b');

    const resumed = await request(`${b.url}/api/streams/${streamId}`, { headers: { ...auth, 'last-event-id': '1' } });
    expect(resumed.statusCode).toBe(200);
    const reading = new SseResponse(resumed.statusCode, resumed.headers, resumed.body);
    await reading.waitFor((e) => e.data === 'b');
    answer.send('c');
    await reading.waitFor((e) => e.data === 'c');
    expect(answer.abortedAt).toBe(0);

    const cancel = await request(`${c.url}/api/streams/${streamId}`, { method: 'DELETE', headers: auth });
    expect(cancel.statusCode).toBe(204);
    await cancel.body.dump();
    await until(() => answer.abortedAt > 0, 5000, 'the backend sees the cancel');
    await reading.ended;
    expect(reading.events.map((e) => [e.id, e.data])).toEqual([
      ['2', 'b'],
      ['3', 'c'],
    ]);
  } finally {
    for (const relay of made) await relay.close();
    await answers.close();
  }
}, 30_000);

test('with a signing secret on a Redis Cluster: batched appends reach the follower signed, a forged announcement is dropped and counted, and the members are listed', async () => {
  const code = 'signed';
  const path = `/downloads/${code}/events`;
  const secret = 'a cluster secret that is long enough';
  const made: RunningRelay[] = [];
  try {
    for (let i = 0; i < 2; i += 1) made.push(await startRelay(backend.url, { redisClusterNodes: redis.seeds.split(','), redisSigningSecret: secret }));
    const [a, b] = made as [RunningRelay, RunningRelay];
    await until(() => a.relay.cluster?.ready === true && b.relay.cluster?.ready === true, 10_000, 'both relays on the Redis Cluster');
    const ids = { a: [] as string[], b: [] as string[] };
    for (const [name, relay] of [['a', a], ['b', b]] as const) {
      const es = eventSourceAs(`${relay.url}/api${path}`, 'alice');
      es.onmessage = (event) => ids[name].push(String(event.data));
      clients.push(es);
      await until(() => backend.listeners(path) === 1, 5000, 'the upstream open');
    }
    backend.writeRaw(path, ['e1', 'e2', 'e3'].map((data) => `data: ${data}\n\n`).join(''));
    await until(() => ids.a.length === 3 && ids.b.length === 3, 5000, 'three events on both relays');

    // A writer on the topic's shard announces an entry no relay signed.
    const port = await redis.ownerOf(keySlot(`sse-relay:{download:${code}}:appends`));
    const [[last]] = (await redis.command(port, 'XREVRANGE', topicKey(code), '+', '-', 'COUNT', '1')) as [[string]];
    const fields = ['k', 'v', 'i', '99', 'e', '99', 'd', 'forged'];
    const forged = String(await redis.command(port, 'XADD', topicKey(code), '*', 's', '0', ...fields));
    await redis.command(port, 'SPUBLISH', `sse-relay:{download:${code}}:appends`, JSON.stringify([last, forged, [forged, fields]]));
    // Only the follower hears the channel; the owner reads no history of its own topic.
    await until(() => (a.relay.stats.forged.get('entry') ?? 0) + (b.relay.stats.forged.get('entry') ?? 0) === 1, 5000, 'the forged entry dropped');
    backend.emit(path, 'data: e4\n');
    await until(() => ids.a.length === 4 && ids.b.length === 4, 5000, 'e4 on both relays');
    expect(ids.a).toEqual(['e1', 'e2', 'e3', 'e4']);
    expect(ids.b).toEqual(ids.a);
    expect((a.relay.stats.forged.get('entry') ?? 0) + (b.relay.stats.forged.get('entry') ?? 0)).toBe(1);

    const members = (await a.relay.cluster!.members()).map((member) => member.id).sort();
    expect(members).toEqual([a.relay.cluster!.self.id, b.relay.cluster!.self.id].sort());
  } finally {
    for (const es of clients.splice(0)) es.close();
    for (const relay of made) await relay.close();
  }
}, 30_000);
