import { Redis } from 'ioredis';
import { request } from 'undici';
import { FixtureBackend } from '../support/fixture-backend';
import { RedisServer } from '../support/redis';
import { createRelay } from '../../src/create-relay';
import { type RunningRelay, TEST_SECRET, authHeader, startRelay } from '../support/relay-server';
import { until } from '../support/until';

const PATH = '/downloads/abc/events';
const TOPIC = 'download:abc';
const EVENTS_KEY = `sse-relay:{${TOPIC}}:events`;
const APPENDS_CHANNEL = `sse-relay:{${TOPIC}}:appends`;
const SECRET = 'a cluster secret that is long enough';

const redis = new RedisServer();
let backend: FixtureBackend;
let writer: Redis;
const relays: RunningRelay[] = [];
const aborts: AbortController[] = [];

beforeAll(async () => {
  await redis.start();
  backend = await new FixtureBackend().start();
  writer = new Redis(redis.url);
});

afterAll(async () => {
  for (const controller of aborts) controller.abort();
  for (const relay of relays) await relay.close();
  writer.disconnect();
  await backend.close();
  await redis.kill();
});

async function cluster(count: number, secret: string | undefined = SECRET): Promise<RunningRelay[]> {
  const started: RunningRelay[] = [];
  for (let i = 0; i < count; i += 1) started.push(await startRelay(backend.url, { redisUrl: redis.url, redisSigningSecret: secret, clusterLeaseMs: 500, topicLingerMs: 5000 }));
  relays.push(...started);
  await until(() => started.every((relay) => relay.relay.cluster?.ready === true), 5000, 'every relay on redis');
  return started;
}

/** A raw stream of `relay`'s topic, as alice; `text()` is what came so far, `ended` when it ends. */
async function subscribe(relay: RunningRelay, path = PATH): Promise<{ text: () => string; ended: Promise<void> }> {
  const controller = new AbortController();
  aborts.push(controller);
  const res = await request(`${relay.url}/api${path}`, { headers: authHeader('alice'), signal: controller.signal });
  let text = '';
  const ended = (async () => {
    for await (const chunk of res.body) text += String(chunk);
  })().catch(() => undefined);
  return { text: () => text, ended };
}

test('entries and end-user messages that someone else wrote into Redis are dropped and counted; what the relays signed goes through', async () => {
  const [owner, follower] = (await cluster(2)) as [RunningRelay, RunningRelay];
  const first = await subscribe(owner);
  await until(() => backend.listeners(PATH) === 1, 5000, 'the owner reading the backend');
  const second = await subscribe(follower);
  backend.emit(PATH, 'data: real1\n');
  await until(() => second.text().includes('data: real1\n'), 5000, 'real1 through the follower');

  // Someone with write access to Redis appends to the history: an event (HTML), a finish, an end, with no or a wrong signature,
  // and announces them as the append script does: the first with its fields, the others by their ids (followers read those).
  const [[real1]] = (await writer.xrevrange(EVENTS_KEY, '+', '-', 'COUNT', 1)) as [[string, string[]]];
  const html = ['k', 'v', 'i', '99', 'e', '99', 'd', '<script>alert(1)</script>'];
  const forged = [
    await writer.xadd(EVENTS_KEY, '*', 's', '0', ...html),
    await writer.xadd(EVENTS_KEY, '*', 's', '0', 'k', 'f', 'h', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'),
    await writer.xadd(EVENTS_KEY, '*', 's', '0', 'k', 'x'),
  ] as [string, string, string];
  expect(await writer.publish(APPENDS_CHANNEL, JSON.stringify([real1, forged[0], [forged[0], html]]))).toBe(1);
  await until(() => follower.relay.stats.forged.get('entry') === 1, 5000, 'the announced entry dropped');
  expect(await writer.publish(APPENDS_CHANNEL, JSON.stringify([forged[0], forged[2]]))).toBe(1);
  // The first is counted again as read: an announced entry that failed moved the follower's position nowhere.
  await until(() => follower.relay.stats.forged.get('entry') === 4, 5000, 'the entries read after an announcement dropped');
  // ...and tells every relay to end alice's streams.
  expect(await writer.publish('sse-relay:end-user', JSON.stringify({ from: 'forger', user: 'alice' }))).toBe(2);
  expect(await writer.publish('sse-relay:end-user', 'null')).toBe(2);
  backend.emit(PATH, 'data: real2\n');
  await until(() => second.text().includes('data: real2\n'), 5000, 'real2 through the follower');

  expect(second.text()).toBe('retry: 2000\n\ndata: real1\nid: 1\n\ndata: real2\nid: 2\n\n');
  expect(first.text()).toBe(second.text());
  expect(follower.relay.stats.forged).toEqual(new Map([['entry', 4], ['end_user', 1]]));
  // The owner reads no history of its own topic, but it hears the channel.
  expect(owner.relay.stats.forged).toEqual(new Map([['end_user', 1]]));
  expect(follower.relay.hub.topic(TOPIC)?.state).toBe('live');
  const metrics = await (await fetch(`${follower.url}/metrics`)).text();
  expect(metrics).toContain('sse_relay_cluster_forged_total{kind="entry"} 4');

  // A relay that joins later loads the history: the forged entries are dropped there too.
  const [late] = (await cluster(1)) as [RunningRelay];
  const third = await subscribe(late, PATH);
  await until(() => third.text().includes('data: real2\n'), 5000, 'the history on the late relay');
  expect(third.text()).not.toContain('script');
  expect(late.relay.stats.forged.get('entry')).toBe(3);

  // A signed end-user message goes through: alice's streams end on every relay.
  await owner.relay.endUserStreams('alice');
  await Promise.all([first.ended, second.ended, third.ended]);
  expect(follower.relay.stats.closeReasons.get('ended_by_app')).toBe(1);
}, 20_000);

test('a forged announcement of an entry far ahead of the history does not stall a follower: the appends after it still reach its clients, once and in order', async () => {
  const path = '/downloads/stall/events';
  const [owner, follower] = (await cluster(2)) as [RunningRelay, RunningRelay];
  const first = await subscribe(owner, path);
  await until(() => backend.listeners(path) === 1, 5000, 'the owner reading the backend');
  const second = await subscribe(follower, path);
  backend.emit(path, 'data: real1\n');
  await until(() => second.text().includes('data: real1\n'), 5000, 'real1 through the follower');

  // Announced only, never appended: its id is past anything the stream will hold for centuries.
  const [[real1]] = (await writer.xrevrange('sse-relay:{download:stall}:events', '+', '-', 'COUNT', 1)) as [[string, string[]]];
  const far = '99999999999999-0';
  const forged = JSON.stringify([real1, far, [far, ['k', 'v', 'i', '99', 'e', '99', 'd', 'forged']]]);
  expect(await writer.publish('sse-relay:{download:stall}:appends', forged)).toBe(1);
  for (const n of [2, 3, 4]) backend.emit(path, `data: real${n}\n`);
  await until(() => second.text().includes('data: real4\n'), 5000, 'real4 through the follower');

  const expected = 'retry: 2000\n\ndata: real1\nid: 1\n\ndata: real2\nid: 2\n\ndata: real3\nid: 3\n\ndata: real4\nid: 4\n\n';
  expect(second.text()).toBe(expected);
  expect(first.text()).toBe(expected);
});

test('an announced entry that does not verify moves a follower nowhere, even at an id the stream could hold next', async () => {
  const path = '/downloads/ahead/events';
  const events = 'sse-relay:{download:ahead}:events';
  const channel = 'sse-relay:{download:ahead}:appends';
  const [owner, follower] = (await cluster(2)) as [RunningRelay, RunningRelay];
  const first = await subscribe(owner, path);
  await until(() => backend.listeners(path) === 1, 5000, 'the owner reading the backend');
  const second = await subscribe(follower, path);
  backend.emit(path, 'data: real1\n');
  await until(() => second.text().includes('data: real1\n'), 5000, 'real1 through the follower');

  // An entry written far ahead: Redis gives the appends after it the same milliseconds and the next
  // sequence numbers, so an id a few sequence numbers on is one the stream is about to hold.
  const [[real1]] = (await writer.xrevrange(events, '+', '-', 'COUNT', 1)) as [[string, string[]]];
  const far = '99999999999990';
  await writer.xadd(events, `${far}-0`, 's', '0', 'k', 'v', 'd', 'forged');
  expect(await writer.publish(channel, JSON.stringify([real1, `${far}-0`]))).toBe(1);
  await until(() => follower.relay.stats.forged.get('entry') === 1, 5000, 'the entry read and dropped');
  expect(await writer.publish(channel, JSON.stringify([`${far}-0`, `${far}-5`, [`${far}-5`, ['k', 'v', 'd', 'forged']]]))).toBe(1);
  await until(() => follower.relay.stats.forged.get('entry') === 2, 5000, 'the announced entry dropped');
  for (const n of [2, 3, 4]) backend.emit(path, `data: real${n}\n`);
  await until(() => second.text().includes('data: real4\n'), 5000, 'real4 through the follower');

  const expected = 'retry: 2000\n\ndata: real1\nid: 1\n\ndata: real2\nid: 2\n\ndata: real3\nid: 3\n\ndata: real4\nid: 4\n\n';
  expect(second.text()).toBe(expected);
  expect(first.text()).toBe(expected);
});

test('a relay with another secret is not believed by the others: its entries are dropped, as forged ones', async () => {
  const path = '/downloads/other/events';
  const [owner] = (await cluster(1, 'another secret, just as long as the first')) as [RunningRelay];
  const [follower] = (await cluster(1)) as [RunningRelay];
  const first = await subscribe(owner, path);
  await until(() => backend.listeners(path) === 1, 5000, 'the owner reading the backend');
  const second = await subscribe(follower, path);
  backend.emit(path, 'data: real\n');
  await until(() => first.text().includes('data: real\n'), 5000, 'the owner relays it');
  await until(() => follower.relay.stats.forged.get('entry') === 1, 5000, 'the follower dropping it');
  expect(second.text()).toBe('retry: 2000\n\n');
});

test('a signing secret shorter than 32 characters is refused when the relay is made', () => {
  const options = { backendUrl: backend.url, jwt: { secret: TEST_SECRET }, redisUrl: redis.url };
  expect(() => createRelay({ ...options, redisSigningSecret: ` ${'x'.repeat(30)} ` })).toThrow(/^redisSigningSecret must be at least 32 characters/);
});
