import type { EventSource } from 'eventsource';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { FixtureBackend } from '../support/fixture-backend';
import { RedisServer } from '../support/redis';
import { type RunningRelay, eventSourceAs, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const PATH = '/downloads/abc/events';
const redis = new RedisServer();
let backend: FixtureBackend;
const relays: RunningRelay[] = [];
const clients: EventSource[] = [];

beforeAll(async () => {
  await redis.start();
  backend = await new FixtureBackend().start();
});

afterAll(async () => {
  for (const client of clients) client.close();
  for (const relay of relays) await relay.close();
  await backend.close();
  await redis.kill();
});

test("endUserStreams on one relay ends that user's streams on the others, and nobody else's", async () => {
  for (let i = 0; i < 2; i += 1) relays.push(await startRelay(backend.url, { redisUrl: redis.url, retryHintMs: 60_000 }));
  const [a, b] = relays as [RunningRelay, RunningRelay];
  await until(() => a.relay.cluster!.ready && b.relay.cluster!.ready, 5000, 'both relays on redis');
  const received = { alice: 0, bob: 0 };
  for (const user of ['alice', 'bob'] as const) {
    const es = eventSourceAs(`${b.url}/api${PATH}`, user);
    es.onmessage = () => (received[user] += 1);
    clients.push(es);
  }
  backend.emit(PATH, 'id: 1\ndata: e1\n');
  await until(() => received.alice === 1 && received.bob === 1, 5000, 'e1 on relay b');

  // Whatever else reaches the channel is ignored, and no relay stops over it.
  const publisher = new Redis(redis.url);
  expect(await publisher.publish('sse-relay:end-user', 'not json')).toBe(2);
  expect(await publisher.publish('sse-relay:end-user', '{"user":42}')).toBe(2);
  publisher.disconnect();

  // Relay a holds none of alice's streams: it tells the others.
  expect(await a.relay.endUserStreams('alice')).toBe(0);
  await until(() => b.relay.stats.closeReasons.get('ended_by_app') === 1, 5000, "alice's stream ended on relay b");
  backend.emit(PATH, 'id: 2\ndata: e2\n');
  await until(() => received.bob === 2, 5000, 'e2 to bob');
  expect(received.alice).toBe(1);
});

test("endUserStreams on one relay ends that user's proxied event stream on another, and the backend sees its request end", async () => {
  const [a, b] = relays as [RunningRelay, RunningRelay];
  const feed = await request(`${b.url}/api/feeds/carol`, { headers: { authorization: `Bearer ${tokenFor('carol')}` } });
  let text = '';
  const ended = (async () => {
    for await (const chunk of feed.body) text += String(chunk);
    return text;
  })();
  await until(() => backend.listeners('/feeds/carol') === 1, 5000, 'the proxied feed on relay b');
  backend.emit('/feeds/carol', 'data: c1\n');
  await until(() => text.includes('c1'), 5000, 'c1');

  expect(await a.relay.endUserStreams('carol')).toBe(0);
  expect(await ended).toMatch(/^data: c1\nid: 1\n\nretry: \d+\n\n$/);
  await until(() => backend.listeners('/feeds/carol') === 0, 5000, 'the upstream request aborted');
});
