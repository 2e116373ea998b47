import type { EventSource } from 'eventsource';
import { keySlot } from '../../src/cluster/key-slot';
import { clusterSubscriber, idRange } from '../support/cluster-subscriber';
import { FixtureBackend } from '../support/fixture-backend';
import { RedisCluster } from '../support/redis';
import { RelayProcess } from '../support/relay-process';
import { until } from '../support/until';

// A three-master Redis Cluster with one replica per master: a master's crash is a failover.

/** How long the nodes wait before calling a silent one failed; its replica is promoted soon after. */
const NODE_TIMEOUT_MS = 1000;

let redis: RedisCluster;
let backend: FixtureBackend;
const relays: RelayProcess[] = [];
const clients: EventSource[] = [];

beforeAll(async () => {
  redis = await new RedisCluster(3, 1, NODE_TIMEOUT_MS).start();
  backend = await new FixtureBackend().start();
}, 30_000);

afterAll(async () => {
  for (const es of clients) es.close();
  await Promise.all(relays.map((relay) => relay.kill()));
  await backend.close();
  await redis.stop();
});

test("a topic's master crashes and its replica takes over: every subscriber on every relay gets every event once and in order", async () => {
  // A topic on the master that also holds the connection counts, so its loss costs both.
  const countsMaster = await redis.ownerOf(keySlot('{sse-relay:slots}:total'));
  let code = 'failover-0';
  for (let i = 1; (await redis.ownerOf(keySlot(`sse-relay:{download:${code}}:events`))) !== countsMaster; i++) code = `failover-${i}`;
  const path = `/downloads/${code}/events`;
  const pool = await Promise.all(
    Array.from({ length: 3 }, () =>
      RelayProcess.start({
        BACKEND_URL: backend.url,
        REDIS_CLUSTER_NODES: redis.seeds,
        CLUSTER_LEASE_MS: '3000',
        RETRY_HINT_MS: '100',
        RATE_LIMIT_PER_MINUTE: '0',
        MAX_CONNECTIONS_PER_USER: '1000',
      }),
    ),
  );
  relays.push(...pool);
  const ready = async (relay: RelayProcess): Promise<boolean> => {
    const res = await fetch(`${relay.url}/readyz`);
    await res.body?.cancel();
    return res.status === 200;
  };
  await Promise.all(pool.map((relay) => until(() => ready(relay), 10_000, 'relay ready')));
  const subs = pool.flatMap((relay) => [0, 1].map(() => clusterSubscriber(`/api${path}`, relay, pool)));
  clients.push(...subs.map((sub) => sub.es));
  await until(() => subs.every((sub) => sub.opened()), 10_000, 'every subscriber open');
  for (let i = 1; i <= 5; i++) backend.emit(path, `data: e${i}\n`);
  await until(() => subs.every((sub) => sub.ids.length === 5), 10_000, 'first five');

  const master = await redis.ownerOf(keySlot(`sse-relay:{download:${code}}:events`));
  const killedAt = Date.now();
  await redis.killNode(master);
  const promoted = until(async () => {
    const masters = await redis.masterPorts();
    return masters.length === 3 && !masters.includes(master);
  }, 10_000, 'a replica promoted').then(() => Date.now() - killedAt);
  // The backend goes on through the failover, an event every 100 ms.
  for (let i = 6; i <= 40; i++) {
    backend.emit(path, `data: e${i}\n`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const promotedMs = await promoted;
  await until(() => subs.every((sub) => sub.ids.length >= 40), 15_000, 'all forty everywhere').catch((err) => {
    console.log(subs.map((sub) => `${sub.opens()} opens: ${sub.ids.join(',')}`).join('\n'));
    for (const relay of pool) console.log(relay.log.filter((line) => !/stream (opened|closed)|request/.test(line.msg)).map((l) => `${l.time as number} ${l.msg} ${JSON.stringify({ ...l, msg: undefined, time: undefined, level: undefined, pid: undefined, hostname: undefined, redis: undefined })}`).join('\n'));
    throw err;
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  for (const sub of subs) expect(sub.ids).toEqual(idRange(1, 40));
  // Ready again soon after the promotion: the slot counts are written back without waiting for their next heartbeat.
  await Promise.all(pool.map((relay) => until(() => ready(relay), 3000, 'ready after the failover')));
  const readyMs = Date.now() - killedAt;

  const reopened = subs.filter((sub) => sub.opens() > 1).length;
  const upstreams = backend.requests.filter((request) => request.path === path).length;
  console.log(`failover: replica promoted ${promotedMs} ms after the kill, every relay ready by ${readyMs} ms; ${reopened} of ${subs.length} streams reconnected; ${upstreams} upstream requests in all (1 before the kill)`);
}, 60_000);
