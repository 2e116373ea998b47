import { Redis } from 'ioredis';
import { pino } from 'pino';
import { RedisConnectionCounter } from '../../src/cluster/connection-counter';
import { RedisLink } from '../../src/cluster/redis';
import { AppendWatch } from '../../src/cluster/append-watch';
import { type HistoryEntry, SharedTopicStore } from '../../src/cluster/shared-topic';
import { until } from '../support/until';
import { RedisServer } from '../support/redis';

const redis = new RedisServer();
const links: RedisLink[] = [];

function link(prefix = 'test'): RedisLink {
  const made = new RedisLink({ url: new URL(redis.url) }, prefix, pino({ level: 'silent' }));
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
    expect(await storeA.append('download:x', holderA ?? '', '0-0', 'tok1', [{ fields: ['e', '1', 'd', 'one'], size: 3 }])).toBeDefined();

    await new Promise((resolve) => setTimeout(resolve, 250));
    const holderB = await storeB.claim('download:x', '1');
    expect(holderB).toBeDefined();
    expect(Number(holderB?.split('/')[1])).toBeGreaterThan(Number(holderA?.split('/')[1]));
    expect(await storeA.append('download:x', holderA ?? '', '0-0', 'tok2', [{ fields: ['e', '2', 'd', 'stale'], size: 5 }])).toBeUndefined();
    expect(await storeA.renew('download:x', holderA ?? '')).toBe(false);
    expect(await storeB.append('download:x', holderB ?? '', '0-0', 'tok3', [{ fields: ['e', '2', 'd', 'two'], size: 3 }])).toBeDefined();

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
      await store.append('t', holder, '0-0', `retention-${i}`, [{ fields: ['e', String(i)], size: 1 }]);
      const ttl = await a.commands.pttl('retention:{t}:events');
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60_000);
    }
  });

  test('the history is bounded by entries and by bytes, like the in-memory one, and says it was truncated', async () => {
    const a = link('bounds');
    await until(() => a.ready, 5000, 'redis connected');
    const store = new SharedTopicStore(a, { maxEntries: 3, maxBytes: 10 }, 5000, 5000);
    const holder = (await store.claim('t', undefined)) ?? '';
    for (let i = 1; i <= 5; i++) await store.append('t', holder, '0-0', `bounds-${i}`, [{ fields: ['e', String(i)], size: 1 }]);
    let history = await store.load('t');
    expect(history.entries.map((entry) => entry.fields.get('e'))).toEqual(['3', '4', '5']);
    expect(history.truncated).toBe(true);
    await store.append('t', holder, '0-0', 'tok6', [{ fields: ['e', '6'], size: 9 }]);
    history = await store.load('t');
    expect(history.entries.map((entry) => entry.fields.get('e'))).toEqual(['5', '6']);
  });

  test('a full history is trimmed back to its entry bound once it is a sixteenth over, not at every append', async () => {
    const a = link('steps');
    await until(() => a.ready, 5000, 'redis connected');
    const store = new SharedTopicStore(a, { maxEntries: 32, maxBytes: 1 << 20 }, 5000, 5000);
    const holder = (await store.claim('t', undefined)) ?? '';
    const held = async (): Promise<string[]> => (await store.load('t')).entries.map((entry) => entry.fields.get('e') ?? '');
    for (let i = 1; i <= 34; i++) await store.append('t', holder, '0-0', `steps-${i}`, [{ fields: ['e', String(i)], size: 1 }]);
    expect(await held()).toHaveLength(34);
    expect((await store.load('t')).truncated).toBe(false);
    await store.append('t', holder, '0-0', 'steps-35', [{ fields: ['e', '35'], size: 1 }]);
    expect(await held()).toEqual(Array.from({ length: 32 }, (_, i) => String(i + 4)));
    expect((await store.load('t')).truncated).toBe(true);
    expect(Number(await a.commands.hget('steps:{t}:meta', 'bytes'))).toBe(32);
  });
});

/** Scripts Redis ran so far (EVALSHA, and EVAL when the script was not cached yet). */
async function scriptCalls(made: RedisLink): Promise<number> {
  const stats = await made.commands.info('commandstats');
  let calls = 0;
  for (const match of stats.matchAll(/^cmdstat_(?:eval|evalsha):calls=(\d+)/gm)) calls += Number(match[1]);
  return calls;
}

describe('following a topic through its append announcements', () => {
  const bounds = { maxEntries: 1000, maxBytes: 1 << 24 };
  const entry = (value: string): { fields: string[]; size: number } => ({ fields: ['k', 'v', 'd', value], size: value.length });

  test('a batch is one script call: its ids in order, announced with the id before it and its entries', async () => {
    const a = link('batch');
    await until(() => a.ready, 5000, 'redis connected');
    const store = new SharedTopicStore(a, bounds, 5000, 60_000);
    const holder = (await store.claim('t', undefined)) ?? '';
    const listener = new Redis(redis.url);
    const heard: unknown[] = [];
    listener.on('message', (_channel: string, message: string) => heard.push(JSON.parse(message)));
    await listener.subscribe(store.channel('t'));
    try {
      const before = await scriptCalls(a);
      const first = (await store.append('t', holder, '0-0', 'tok7', [entry('one')])) ?? [];
      const ids = (await store.append('t', holder, first[0] ?? '', 'tok8', ['two', 'three', 'four'].map(entry))) ?? [];
      expect((await scriptCalls(a)) - before).toBe(2);
      expect(ids).toHaveLength(3);
      expect((await store.load('t')).entries.map((e) => e.fields.get('d'))).toEqual(['one', 'two', 'three', 'four']);
      await until(() => heard.length === 2, 2000, 'two announcements');
      expect(heard[1]).toEqual([first[0], ids[2], [ids[0], ['k', 'v', 'd', 'two']], [ids[1], ['k', 'v', 'd', 'three']], [ids[2], ['k', 'v', 'd', 'four']]]);
    } finally {
      listener.disconnect();
    }
  });

  test('a batch sent again after its reply was lost is not appended twice: the same ids come back', async () => {
    const a = link('again');
    await until(() => a.ready, 5000, 'redis connected');
    const store = new SharedTopicStore(a, bounds, 5000, 60_000);
    const holder = (await store.claim('t', undefined)) ?? '';
    const first = (await store.append('t', holder, '0-0', 'batch-1', ['1', '2'].map(entry))) ?? [];
    expect(await store.append('t', holder, '0-0', 'batch-1', ['1', '2'].map(entry))).toEqual(first);
    const next = (await store.append('t', holder, first[1] ?? '', 'batch-2', ['3'].map(entry))) ?? [];
    expect(await store.append('t', holder, first[1] ?? '', 'batch-2', ['3'].map(entry))).toEqual(next);
    expect((await store.load('t')).entries.map((e) => e.fields.get('d'))).toEqual(['1', '2', '3']);
  });

  test('a follower that joins mid-stream gets every later entry once and in order, big ones read from the stream', async () => {
    const a = link('follow');
    const b = link('follow');
    await until(() => a.ready && b.ready, 5000, 'redis connected');
    const owner = new SharedTopicStore(a, bounds, 5000, 60_000);
    const holder = (await owner.claim('t', undefined)) ?? '';
    let last = '0-0';
    /** Appends as the owner does: each batch announced after the last id it appended. */
    const append = async (values: string[]): Promise<string[]> => {
      const ids = (await owner.append('t', holder, last, `follow-${last}`, values.map(entry))) ?? [];
      last = ids[ids.length - 1] ?? last;
      return ids;
    };
    const early = await append(['1', '2']);
    const store = new SharedTopicStore(b, bounds, 5000, 60_000);
    const watch = new AppendWatch(b, store);
    const got: HistoryEntry[] = [];
    let lost = false;
    watch.follow('t', early[0] ?? '', { accepts: () => true, onEntries: (entries) => got.push(...entries), onLost: () => (lost = true) });
    // Appended while the watch subscribes and reads what it missed: each still comes once, in order.
    const big = 'x'.repeat(70 * 1024);
    for (let i = 3; i <= 30; i++) await append([i === 20 ? big : String(i)]);
    await append(['31', '32', '33']);
    await until(() => got.length === 32, 5000, 'entries 2..33');
    expect(got.map((e) => (e.fields.get('d') === big ? 'big' : e.fields.get('d')))).toEqual(['2', ...Array.from({ length: 31 }, (_, i) => (i + 3 === 20 ? 'big' : String(i + 3)))]);
    expect(lost).toBe(false);
    watch.close();
  });

  test('an entry whose announcement never came is read from the stream when the next one says what came before it', async () => {
    const a = link('missed');
    const b = link('missed');
    await until(() => a.ready && b.ready, 5000, 'redis connected');
    const owner = new SharedTopicStore(a, bounds, 5000, 60_000);
    const holder = (await owner.claim('t', undefined)) ?? '';
    const watch = new AppendWatch(b, new SharedTopicStore(b, bounds, 5000, 60_000));
    const got: string[] = [];
    watch.follow('t', '0-0', { accepts: () => true, onEntries: (entries) => got.push(...entries.map((e) => e.fields.get('d') ?? '')), onLost: () => undefined });
    const [first] = (await owner.append('t', holder, '0-0', 'tok10', [entry('1')])) ?? [];
    await until(() => got.length === 1, 5000, 'the first entry');
    // In the stream, never announced: as if the announcement was lost on the way.
    const silent = (await a.commands.xadd('missed:{t}:events', '*', 's', '1', 'k', 'v', 'd', '2')) as string;
    expect(first).toBeDefined();
    await owner.append('t', holder, silent, 'tok11', [entry('3')]);
    await until(() => got.length === 3, 5000, 'the silent entry and the next');
    expect(got).toEqual(['1', '2', '3']);
    watch.close();
  });

  test('an announcement of ids far ahead of the stream is checked against the stream: without signing, its entry is not handed on and the appends after it are', async () => {
    const a = link('ahead');
    const b = link('ahead');
    await until(() => a.ready && b.ready, 5000, 'redis connected');
    const owner = new SharedTopicStore(a, bounds, 5000, 60_000);
    const holder = (await owner.claim('t', undefined)) ?? '';
    const watch = new AppendWatch(b, new SharedTopicStore(b, bounds, 5000, 60_000));
    const got: string[] = [];
    watch.follow('t', '0-0', { accepts: () => true, onEntries: (entries) => got.push(...entries.map((e) => e.fields.get('d') ?? '')), onLost: () => undefined });
    const [first = ''] = (await owner.append('t', holder, '0-0', 'tok13', [entry('1')])) ?? [];
    await until(() => got.length === 1, 5000, 'the first entry');
    const far = '99999999999999-0';
    expect(await a.commands.publish('ahead:{t}:appends', JSON.stringify([first, far, [far, ['k', 'v', 'd', 'forged']]]))).toBe(1);
    const [second = ''] = (await owner.append('t', holder, first, 'tok14', [entry('2')])) ?? [];
    await owner.append('t', holder, second, 'tok15', [entry('3')]);
    await until(() => got.length >= 3, 5000, 'the entries after the forged announcement');
    expect(got).toEqual(['1', '2', '3']);
    watch.close();
  });

  test('an announcement whose entries are not stream ids in order after the one it names first is dropped, and the follower goes on', async () => {
    const a = link('malformed');
    const b = link('malformed');
    await until(() => a.ready && b.ready, 5000, 'redis connected');
    const owner = new SharedTopicStore(a, bounds, 5000, 60_000);
    const holder = (await owner.claim('t', undefined)) ?? '';
    const watch = new AppendWatch(b, new SharedTopicStore(b, bounds, 5000, 60_000));
    const got: string[] = [];
    watch.follow('t', '0-0', { accepts: () => true, onEntries: (entries) => got.push(...entries.map((e) => e.fields.get('d') ?? '')), onLost: () => undefined });
    const [first = ''] = (await owner.append('t', holder, '0-0', 'tok16', [entry('1')])) ?? [];
    await until(() => got.length === 1, 5000, 'the first entry');
    const ms = Number(first.split('-')[0]);
    const [later, earlier] = [`${ms}-9`, `${ms}-5`];
    for (const message of [
      [first, earlier, [later, ['d', 'backwards']], [earlier, ['d', 'backwards']]],
      [first, later, [later, ['d', 'not the last']], [`${ms}-7`, ['d', 'not the last']]],
      [first, later, ['1e3-0', ['d', 'not an id']], [later, ['d', 'not an id']]],
    ]) {
      expect(await a.commands.publish('malformed:{t}:appends', JSON.stringify(message))).toBe(1);
    }
    await owner.append('t', holder, first, 'tok17', [entry('2')]);
    await until(() => got.length >= 2, 5000, 'the next entry');
    expect(got).toEqual(['1', '2']);
    watch.close();
  });

  test('a follower whose listening connection is cut gives up: what was announced meanwhile is unknown', async () => {
    const a = link('cut');
    const b = link('cut');
    await until(() => a.ready && b.ready, 5000, 'redis connected');
    const owner = new SharedTopicStore(a, bounds, 5000, 60_000);
    const holder = (await owner.claim('t', undefined)) ?? '';
    const store = new SharedTopicStore(b, bounds, 5000, 60_000);
    const watch = new AppendWatch(b, store);
    const got: string[] = [];
    let lost = false;
    watch.follow('t', '0-0', { accepts: () => true, onEntries: (entries) => got.push(...entries.map((e) => e.fields.get('d') ?? '')), onLost: () => (lost = true) });
    await owner.append('t', holder, '0-0', 'tok12', [entry('1')]);
    await until(() => got.length === 1, 5000, 'the first entry');
    await a.commands.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await until(() => lost, 5000, 'the follower told it lost the topic');
    watch.close();
  });
});
