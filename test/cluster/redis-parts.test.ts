import { pino } from 'pino';
import { RedisConnectionCounter } from '../../src/cluster/connection-counter';
import { RedisLink } from '../../src/cluster/redis';
import { SharedTopicStore } from '../../src/cluster/shared-topic';
import { until } from '../support/until';
import { RedisServer } from '../support/redis';

const redis = new RedisServer();
const links: RedisLink[] = [];

function link(prefix = 'test'): RedisLink {
  const made = new RedisLink(new URL(redis.url), prefix, pino({ level: 'silent' }));
  links.push(made);
  return made;
}

beforeAll(async () => {
  await redis.start();
});

afterAll(async () => {
  for (const made of links) made.close();
  await redis.kill();
});

describe('connection slots shared through Redis', () => {
  test('the per-user cap holds across relays, and a dead relay gives its slots back within the slot TTL', async () => {
    const limits = { total: 100, perUser: 2, perIp: 100 };
    const [a, b] = [link('slots'), link('slots')];
    await until(() => a.ready && b.ready, 5000, 'redis connected');
    const first = new RedisConnectionCounter(a, limits, 300);
    const second = new RedisConnectionCounter(b, limits, 300);
    await until(() => first.shared && second.shared, 2000, 'counting in redis');

    expect((await first.acquire('alice', '10.0.0.1')).ok).toBe(true);
    expect((await second.acquire('alice', '10.0.0.2')).ok).toBe(true);
    expect(await second.acquire('alice', '10.0.0.3')).toEqual({ ok: false, limit: 'perUser' });
    expect(await first.acquire('alice', '10.0.0.3')).toEqual({ ok: false, limit: 'perUser' });

    // The first relay dies: no goodbye, its heartbeat stops reaching Redis.
    a.close();
    const died = Date.now();
    await until(async () => {
      const lease = await second.acquire('alice', '10.0.0.4');
      if (lease.ok) lease.release();
      return lease.ok;
    }, 3000, 'the dead relay slot back');
    expect(Date.now() - died).toBeLessThan(1500);
    await Promise.all([first.close(), second.close()]);
  });

  test('a released slot is free for another relay at once, and the total and per-IP caps count every relay', async () => {
    const limits = { total: 3, perUser: 100, perIp: 2 };
    const [a, b] = [link('caps'), link('caps')];
    await until(() => a.ready && b.ready, 5000, 'redis connected');
    const first = new RedisConnectionCounter(a, limits, 5000);
    const second = new RedisConnectionCounter(b, limits, 5000);
    await until(() => first.shared && second.shared, 2000, 'counting in redis');

    const one = await first.acquire('u1', '1.1.1.1');
    const two = await second.acquire('u2', '1.1.1.1');
    expect(await first.acquire('u3', '1.1.1.1')).toEqual({ ok: false, limit: 'perIp' });
    const three = await first.acquire('u3', '2.2.2.2');
    expect(await second.acquire('u4', '3.3.3.3')).toEqual({ ok: false, limit: 'total' });
    if (!one.ok || !two.ok || !three.ok) throw new Error('expected three slots');
    one.release();
    await until(async () => {
      const four = await second.acquire('u4', '3.3.3.3');
      if (four.ok) four.release();
      return four.ok;
    }, 1000, 'the released slot');
    await first.close();
    await second.close();
  });
  test("a user's streams and plain calls are counted apart across relays, and a calls slot given back frees the calls count", async () => {
    const limits = { total: 100, perUser: 1, perIp: 100 };
    const [a, b] = [link('pools'), link('pools')];
    await until(() => a.ready && b.ready, 5000, 'redis connected');
    const first = new RedisConnectionCounter(a, limits, 5000);
    const second = new RedisConnectionCounter(b, limits, 5000);
    await until(() => first.shared && second.shared, 2000, 'counting in redis');

    expect((await first.acquire('alice', '10.0.0.1')).ok).toBe(true);
    const call = await first.acquire('alice', '10.0.0.1', 'calls');
    expect(await second.acquire('alice', '10.0.0.1', 'calls')).toEqual({ ok: false, limit: 'perUser' });
    expect((await second.acquire('calls:alice', '10.0.0.1')).ok).toBe(true);
    expect((await second.acquire('calls:alice', '10.0.0.1', 'calls')).ok).toBe(true);
    if (!call.ok) throw new Error('expected a calls slot');
    call.release();
    await until(async () => {
      const again = await second.acquire('alice', '10.0.0.1', 'calls');
      return again.ok;
    }, 1000, 'the calls slot back');
    expect(await second.acquire('alice', '10.0.0.2')).toEqual({ ok: false, limit: 'perUser' });
    await Promise.all([first.close(), second.close()]);
  });
});

describe('a topic shared through Redis', () => {
  test('one relay holds the lease; once it lapsed and another took it, the stale holder appends nothing', async () => {
    const [a, b] = [link('lease'), link('lease')];
    await until(() => a.ready && b.ready, 5000, 'redis connected');
    const bounds = { maxEntries: 100, maxBytes: 1 << 20 };
    const storeA = new SharedTopicStore(a, bounds, 200, 5000);
    const storeB = new SharedTopicStore(b, bounds, 200, 5000);
    const holderA = await storeA.claim('download:x', undefined);
    expect(holderA).toBeDefined();
    expect(await storeB.claim('download:x', undefined)).toBeUndefined();
    expect(await storeA.append('download:x', holderA ?? '', ['e', '1', 'd', 'one'], 3)).toBeDefined();

    await new Promise((resolve) => setTimeout(resolve, 250));
    const holderB = await storeB.claim('download:x', '1');
    expect(holderB).toBeDefined();
    expect(Number(holderB?.split('/')[1])).toBeGreaterThan(Number(holderA?.split('/')[1]));
    expect(await storeA.append('download:x', holderA ?? '', ['e', '2', 'd', 'stale'], 5)).toBeUndefined();
    expect(await storeA.renew('download:x', holderA ?? '')).toBe(false);
    expect(await storeB.append('download:x', holderB ?? '', ['e', '2', 'd', 'two'], 3)).toBeDefined();

    const history = await storeA.load('download:x');
    expect(history.entries.map((entry) => entry.fields.get('d'))).toEqual(['one', 'two']);
    expect(history.origin).toBeUndefined();
    expect(history.epoch).toBeDefined();
  });

  test('a topic\'s history expires on its own: its stream gets the retention from its first event on', async () => {
    const a = link('retention');
    await until(() => a.ready, 5000, 'redis connected');
    const store = new SharedTopicStore(a, { maxEntries: 100, maxBytes: 1 << 20 }, 5000, 60_000);
    const holder = (await store.claim('t', undefined)) ?? '';
    for (let i = 1; i <= 3; i++) {
      await store.append('t', holder, ['e', String(i)], 1);
      const ttl = await a.commands.pttl(store.eventsKey('t'));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60_000);
    }
  });

  test('the history is bounded by entries and by bytes, like the in-memory one, and says it was truncated', async () => {
    const a = link('bounds');
    await until(() => a.ready, 5000, 'redis connected');
    const store = new SharedTopicStore(a, { maxEntries: 3, maxBytes: 10 }, 5000, 5000);
    const holder = (await store.claim('t', undefined)) ?? '';
    for (let i = 1; i <= 5; i++) await store.append('t', holder, ['e', String(i)], 1);
    let history = await store.load('t');
    expect(history.entries.map((entry) => entry.fields.get('e'))).toEqual(['3', '4', '5']);
    expect(history.truncated).toBe(true);
    await store.append('t', holder, ['e', '6'], 9);
    history = await store.load('t');
    expect(history.entries.map((entry) => entry.fields.get('e'))).toEqual(['5', '6']);
  });
});
