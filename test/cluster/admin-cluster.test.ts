import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { EventSource } from 'eventsource';
import { createAdminServer } from '../../routes/admin';
import { FixtureBackend } from '../support/fixture-backend';
import { RedisServer } from '../support/redis';
import { type RunningRelay, eventSourceAs, startRelay } from '../support/relay-server';
import { until } from '../support/until';

const KEY = 'cluster-admin-key-0123456789abcdef0123';
const PATH = '/downloads/shared/events';
const redis = new RedisServer();
let backend: FixtureBackend;
const relays: { relay: RunningRelay; admin: Server; url: string }[] = [];
const clients: EventSource[] = [];

beforeAll(async () => {
  await redis.start();
  backend = await new FixtureBackend().start();
  for (let i = 0; i < 2; i += 1) {
    const relay = await startRelay(backend.url, { redisUrl: redis.url, retryHintMs: 60_000, clusterSlotTtlMs: 600 });
    const admin = createAdminServer(relay.relay, { apiKey: KEY });
    admin.listen(0, '127.0.0.1');
    await once(admin, 'listening');
    relays.push({ relay, admin, url: `http://127.0.0.1:${(admin.address() as AddressInfo).port}` });
  }
  await until(() => relays.every(({ relay }) => relay.relay.cluster!.ready), 5000, 'both relays on redis');
});

afterAll(async () => {
  for (const client of clients) client.close();
  for (const { relay, admin } of relays) {
    admin.closeAllConnections();
    admin.close();
    await relay.close();
  }
  await backend.close();
  await redis.kill();
});

async function call(url: string, path: string, method = 'GET'): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${KEY}` } });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

test('each relay answers for itself, says which one it is, and lists the members of the cluster', async () => {
  const [a, b] = relays as [(typeof relays)[0], (typeof relays)[0]];
  const idA = a.relay.relay.cluster!.self.id;
  const idB = b.relay.relay.cluster!.self.id;
  await until(async () => ((await call(a.url, '/admin/overview')).body.cluster as { members: unknown[] | null }).members?.length === 2, 5000, 'two members');
  for (const [node, self, other] of [
    [a, idA, idB],
    [b, idB, idA],
  ] as const) {
    const { body } = await call(node.url, '/admin/overview');
    expect(body.relay).toEqual({ id: self, hostname: expect.any(String) as string, pid: process.pid, startedAt: expect.any(String) as string });
    const cluster = body.cluster as { self: string; members: { id: string; self: boolean; pid: number }[] };
    expect(cluster.self).toBe(self);
    expect(cluster.members.map((member) => [member.id, member.self]).sort()).toEqual([[self, true], [other, false]].sort());
  }
});

test('a topic read by one relay shows as following on the other', async () => {
  const [a, b] = relays as [(typeof relays)[0], (typeof relays)[0]];
  clients.push(eventSourceAs(`${a.relay.url}/api${PATH}`, 'alice'));
  await until(() => backend.listeners(PATH) === 1, 5000, 'the owner reading the backend');
  clients.push(eventSourceAs(`${b.relay.url}/api${PATH}`, 'bob'));
  await until(() => b.relay.relay.hub.topic('download:shared')?.subscribers.size === 1, 5000, "bob's stream on b");
  expect((await call(a.url, '/admin/topics')).body.topics).toEqual([expect.objectContaining({ topic: 'download:shared', upstream: 'open', subscribers: 1 })]);
  expect((await call(b.url, '/admin/topics')).body.topics).toEqual([expect.objectContaining({ topic: 'download:shared', upstream: 'following', subscribers: 1 })]);
  expect((await call(a.url, '/admin/overview')).body.upstreams).toEqual({ open: 1, reconnecting: 0, following: 0, finished: 0 });
  expect((await call(b.url, '/admin/overview')).body.upstreams).toEqual({ open: 0, reconnecting: 0, following: 1, finished: 0 });
});

test("ending a user on one relay ends their streams on the other, which lists the cut; each answers for its own streams", async () => {
  const [a, b] = relays as [(typeof relays)[0], (typeof relays)[0]];
  expect((await call(b.url, '/admin/users/bob')).body.streams).toEqual([expect.objectContaining({ kind: 'shared', topics: ['download:shared'] })]);
  expect((await call(a.url, '/admin/users/bob')).body.streams).toEqual([]);
  expect(await call(a.url, '/admin/users/bob/streams', 'DELETE')).toEqual({ status: 200, body: { ended: 0 } });
  await until(() => b.relay.relay.stats.closeReasons.get('ended_by_app') === 1, 5000, "bob's stream ended on b");
  expect(b.relay.relay.ops.cuts.latest()).toEqual([expect.objectContaining({ reason: 'ended_by_app', user: 'bob' })]);
  expect(a.relay.relay.ops.cuts.latest()).toEqual([]);
});

test('a relay that stops leaves the list; with Redis away, ending a user says the others were not told; once it is back the relay is listed again', async () => {
  const [a, b] = relays as [(typeof relays)[0], (typeof relays)[0]];
  b.admin.closeAllConnections();
  b.admin.close();
  await b.relay.close();
  relays.pop();
  await until(async () => ((await call(a.url, '/admin/overview')).body.cluster as { members: unknown[] }).members.length === 1, 5000, 'one member left');

  await redis.kill();
  await until(() => !a.relay.relay.cluster!.ready, 5000, 'redis gone');
  const overview = await call(a.url, '/admin/overview');
  expect(overview.body).toMatchObject({ ready: 'redis_unavailable', cluster: { self: a.relay.relay.cluster!.self.id, members: null } });
  const ending = await call(a.url, '/admin/users/alice/streams', 'DELETE');
  expect(ending).toEqual({ status: 503, body: { error: { code: 'redis_unavailable', message: expect.any(String) as string } } });
  // This relay's own streams of the user were ended all the same.
  await until(() => a.relay.relay.stats.closeReasons.get('ended_by_app') === 1, 5000, "alice's stream ended on a");

  // Redis comes back empty: the relay says it is there again.
  await redis.start();
  await until(async () => ((await call(a.url, '/admin/overview')).body.cluster as { members: { self: boolean }[] | null }).members?.[0]?.self === true, 5000, 'a listed again');
});
