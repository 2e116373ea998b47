import { Redis } from 'ioredis';
import { request } from 'undici';
import { SseResponse } from '../backend/harness';
import { AnswerBackend } from '../support/answer-backend';
import { FixtureBackend } from '../support/fixture-backend';
import { freePort } from '../support/free-port';
import { RedisServer } from '../support/redis';
import { type RunningRelay, authHeader, eventSourceAs, startRelay } from '../support/relay-server';
import { until } from '../support/until';

// A relay restarted while its clients come straight back: their streams may arrive before its
// Redis connection is up. A topic it opened alone then would be a second upstream beside the
// owner's; it waits for Redis instead, up to a lease.

const LEASE_MS = 3000;
const redis = new RedisServer();
let backend: FixtureBackend;
const relays: RunningRelay[] = [];

beforeAll(async () => {
  backend = await new FixtureBackend().start();
  redis.port = await freePort();
});

afterAll(async () => {
  for (const relay of relays) await relay.close();
  await backend.close();
  await redis.kill();
});

test('a stream that arrives before the relay first reached Redis waits for it and opens the topic in the cluster: one upstream across relays', async () => {
  const path = '/downloads/early/events';
  const early = await startRelay(backend.url, { redisUrl: redis.url, clusterLeaseMs: LEASE_MS });
  relays.push(early);
  expect(early.relay.cluster!.ready).toBe(false);
  const first = eventSourceAs(`${early.url}/api${path}`, 'alice');
  const firstData: string[] = [];
  first.onmessage = (event) => firstData.push(String(event.data));
  try {
    // The request waits: no upstream while Redis is not there.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(backend.listeners(path)).toBe(0);
    await redis.start();
    await until(() => backend.listeners(path) === 1, LEASE_MS, 'the upstream once Redis answers');
    const inspector = new Redis(redis.url);
    expect(await inspector.keys('*{download:early}:lease')).toHaveLength(1);
    inspector.disconnect();

    // Another relay of the cluster follows it: still one upstream.
    const later = await startRelay(backend.url, { redisUrl: redis.url, clusterLeaseMs: LEASE_MS });
    relays.push(later);
    await until(() => later.relay.cluster!.ready, 5000, 'the second relay on redis');
    const second = eventSourceAs(`${later.url}/api${path}`, 'bob');
    const secondData: string[] = [];
    second.onmessage = (event) => secondData.push(String(event.data));
    try {
      await until(() => second.readyState === second.OPEN, 5000, 'the second stream open');
      backend.emit(path, 'data: e1\nid: 1\n');
      await until(() => firstData.length === 1 && secondData.length === 1, 5000, 'e1 on both relays');
      expect(backend.requests.filter((request) => request.path === path)).toHaveLength(1);
    } finally {
      second.close();
    }
  } finally {
    first.close();
  }
});

test("a chat answer does not wait for a Redis the relay has not reached: only this relay can read it, so it is kept in memory at once", async () => {
  const answers = await new AnswerBackend().start();
  const nowhere = `redis://127.0.0.1:${await freePort()}`;
  const relay = await startRelay(answers.url, { redisUrl: nowhere, clusterLeaseMs: LEASE_MS });
  relays.push(relay);
  try {
    const asked = Date.now();
    const res = await request(`${relay.url}/api/chat/stream`, { method: 'POST', headers: { ...authHeader(), 'content-type': 'application/json' }, body: '{}' });
    const answer = await answers.answer(0);
    answer.send('a');
    const first = new SseResponse(res.statusCode, res.headers, res.body);
    await first.waitFor((e) => e.data === 'a');
    expect(Date.now() - asked).toBeLessThan(LEASE_MS / 2);
    answer.end();
    await first.ended;
  } finally {
    await answers.close();
  }
});
