import { Readable } from 'node:stream';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { resolveReconnect } from '../../src/client/backoff';
import { streamChat } from '../../src/client/chat';
import { Transport } from '../../src/client/transport';
import { SseResponse } from '../backend/harness';
import { AnswerBackend, type PostedChat, postChat } from '../support/answer-backend';
import { RedisServer } from '../support/redis';
import { RelayProcess } from '../support/relay-process';
import { type RunningRelay, authHeader, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const LEASE_MS = 300;
const redis = new RedisServer();
let backend: AnswerBackend;
const started: RunningRelay[] = [];

beforeAll(async () => {
  await redis.start();
  backend = await new AnswerBackend().start();
});

afterAll(async () => {
  for (const relay of started) await relay.close();
  await backend.close();
  await redis.kill();
});

/** Relays on `redisUrl`, each keeping an answer a minute after its last client left. */
async function relaysOn(redisUrl: string, count: number, leaseMs = LEASE_MS): Promise<RunningRelay[]> {
  const relays: RunningRelay[] = [];
  for (let i = 0; i < count; i += 1) relays.push(await startRelay(backend.url, { redisUrl, postResumeGraceMs: 60_000, clusterLeaseMs: leaseMs }));
  started.push(...relays);
  await until(() => relays.every((r) => r.relay.cluster!.ready), 5000, 'the relays on redis');
  return relays;
}

const chatOn = (relayUrl: string): Promise<PostedChat> => postChat(relayUrl, backend);

test('DELETE on the relay that received the POST ends the clients following it on another relay at once, not at their next check', async () => {
  // A long lease: a follower looks at the answer's state every third of it, which would end it too, but later.
  const leaseMs = 6000;
  const [receiving, other] = (await relaysOn(redis.url, 2, leaseMs)) as [RunningRelay, RunningRelay];
  const { first, streamId, answer } = await chatOn(receiving.url);
  answer.send('a');
  await first.waitFor((e) => e.data === 'a');
  const res = await request(`${other.url}/api/streams/${streamId}`, { headers: { ...authHeader(), 'last-event-id': '1' } });
  expect(res.statusCode).toBe(200);
  const following = new SseResponse(res.statusCode, res.headers, res.body);
  // Past the follower's first look at the answer's state, made as it opened.
  await new Promise((resolve) => setTimeout(resolve, 200));

  const sent = Date.now();
  const cancel = await request(`${receiving.url}/api/streams/${streamId}`, { method: 'DELETE', headers: authHeader() });
  expect(cancel.statusCode).toBe(204);
  await cancel.body.dump();
  await following.ended;
  expect(Date.now() - sent).toBeLessThan(leaseMs / 6);
  // The end, as a cancel's: not an error that says the message was missed.
  expect(following.events.filter((e) => e.event === 'relay_error')).toEqual([]);
  await until(() => answer.abortedAt > 0, 2000, 'the backend sees the abort');
});

test.each([
  ['quiet while Redis was away', false],
  ['sending while Redis was away', true],
])('Redis restarted empty mid-answer (%s): the relay that received the POST goes on without the cluster, its client gets every event once and in order, and the backend saw no abort', async (_, sendingMeanwhile) => {
  const own = new RedisServer();
  await own.start();
  try {
    const [relay] = (await relaysOn(own.url, 1)) as [RunningRelay];
    const { first, answer } = await chatOn(relay.url);
    answer.send('a');
    await first.waitFor((e) => e.data === 'a');
    await own.kill();
    if (sendingMeanwhile) answer.send('b');
    await own.start();
    await until(() => relay.relay.cluster!.ready, 5000, 'the relay on redis again');
    // Past the owner's next lease renewal, which finds its lease gone with everything else.
    await new Promise((resolve) => setTimeout(resolve, LEASE_MS));
    if (!sendingMeanwhile) answer.send('b');
    answer.send('c');
    answer.end();
    await first.ended;
    expect(first.events.map((e) => [e.id, e.event ?? e.data])).toEqual([
      ['1', 'a'],
      ['2', 'b'],
      ['3', 'c'],
    ]);
    expect(answer.abortedAt).toBe(0);
  } finally {
    await own.kill();
  }
});

test('the browser client resumes an answer again after relay_error redis_unavailable on a relay following it: that relay lost Redis for a moment, the answer did not', async () => {
  const [receiving, other] = (await relaysOn(redis.url, 2, 3000)) as [RunningRelay, RunningRelay];
  // A load balancer in the client's fetch: the POST goes to one relay, the resumes to the other.
  const cut = new AbortController();
  const transport = new Transport({
    token: tokenFor('alice'),
    fetch: (input, init) => {
      const url = String(input);
      if (init?.method === 'POST') return fetch(`${receiving.url}${url}`, { ...init, signal: AbortSignal.any([init.signal ?? new AbortController().signal, cut.signal]) });
      return fetch(`${other.url}${url}`, init);
    },
  });
  const statuses: string[] = [];
  const posted = backend.answers.length;
  const reply = streamChat(transport, resolveReconnect({ initialDelayMs: 20, maxDelayMs: 100 }), { chatbotId: 'b', message: 'hi' }, { onStatus: (status) => statuses.push(status) });
  const answer = await backend.answer(posted);
  const token = (text: string): void => answer.send(JSON.stringify({ delta: { text } }), 'content_block_delta');
  token('one ');
  await new Promise((resolve) => setTimeout(resolve, 100));
  cut.abort();
  await until(() => statuses.includes('open'), 5000, 'resumed on the other relay');
  token('two ');
  await new Promise((resolve) => setTimeout(resolve, 100));

  // The other relay's connection that hears the appends is cut: its clients of the answer get relay_error redis_unavailable.
  const inspector = new Redis(redis.url);
  const clients = String(await inspector.client('LIST')).split('\n');
  for (const line of clients.filter((entry) => / name=sse-relay:appends:/.test(entry))) await inspector.client('KILL', 'ID', /\bid=(\d+)/.exec(line)![1]!);
  inspector.disconnect();
  await until(() => statuses.filter((status) => status === 'open').length === 2, 5000, 'resumed again');
  token('three');
  answer.send('{}', 'message_stop');
  answer.end();
  expect(await reply.done).toBe('one two three');
  expect(answer.abortedAt).toBe(0);
});

test('a relay stopped with SIGTERM reads an answer its client now reads on another relay to its end before it exits, within its shutdown budget', async () => {
  const [other] = (await relaysOn(redis.url, 1, 3000)) as [RunningRelay];
  const receiving = await RelayProcess.start({ BACKEND_URL: backend.url, REDIS_URL: redis.url, CLUSTER_LEASE_MS: '3000', POST_RESUME_GRACE_MS: '60000', SHUTDOWN_TIMEOUT_MS: '10000' });
  try {
    const posted = backend.answers.length;
    const controller = new AbortController();
    const res = await request(`${receiving.url}/api/chat/stream`, { method: 'POST', headers: { ...authHeader(), 'content-type': 'application/json' }, body: '{}', signal: controller.signal });
    const first = new SseResponse(res.statusCode, res.headers, res.body);
    const answer = await backend.answer(posted);
    answer.send('a');
    await first.waitFor((e) => e.data === 'a');
    controller.abort();
    await first.ended.catch(() => undefined);
    const resumed = await request(`${other.url}/api/streams/${String(first.headers['x-stream-id'])}`, { headers: { ...authHeader(), 'last-event-id': '1' } });
    const reading = new SseResponse(resumed.statusCode, resumed.headers, resumed.body);
    // Past the follower's first look at the answer's state.
    await new Promise((resolve) => setTimeout(resolve, 100));

    const stopped = receiving.stop();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(answer.abortedAt).toBe(0);
    answer.send('b');
    answer.end();
    await reading.ended;
    expect(reading.events.map((e) => [e.id, e.event ?? e.data])).toEqual([['2', 'b']]);
    expect(await stopped).toBe(0);
    expect(answer.abortedAt).toBe(0);
  } finally {
    await receiving.kill();
  }
});

test('a resume on a relay that lost Redis says so (503 redis_unavailable), not that the backend could not be reached', async () => {
  const own = new RedisServer();
  await own.start();
  try {
    const [relay] = (await relaysOn(own.url, 1)) as [RunningRelay];
    await own.kill();
    await until(() => !relay.relay.cluster!.ready, 5000, 'the relay without redis');
    const res = await request(`${relay.url}/api/streams/AAAAAAAAAAAAAAAAAAAAAAAA`, { headers: { ...authHeader(), 'last-event-id': '1' } });
    expect([res.statusCode, ((await res.body.json()) as { error: { code: string } }).error.code]).toEqual([503, 'redis_unavailable']);
  } finally {
    await own.kill();
  }
});

test('an upload dropped while its body was still being sent ends its clients on another relay at once, not at their next check', async () => {
  const leaseMs = 6000;
  const [receiving, other] = (await relaysOn(redis.url, 2, leaseMs)) as [RunningRelay, RunningRelay];
  const posted = backend.answers.length;
  const controller = new AbortController();
  const body = new Readable({ read: () => undefined });
  body.push('the first part of the file');
  const res = await request(`${receiving.url}/api/documents/upload-sse`, { method: 'POST', headers: { ...authHeader(), 'content-type': 'application/octet-stream' }, body, signal: controller.signal });
  const first = new SseResponse(res.statusCode, res.headers, res.body);
  const answer = await backend.answer(posted);
  answer.send('a');
  await first.waitFor((e) => e.data === 'a');
  const resumed = await request(`${other.url}/api/streams/${String(first.headers['x-stream-id'])}`, { headers: { ...authHeader(), 'last-event-id': '1' } });
  const following = new SseResponse(resumed.statusCode, resumed.headers, resumed.body);
  // Past the follower's first look at the answer's state, made as it opened.
  await new Promise((resolve) => setTimeout(resolve, 200));

  const dropped = Date.now();
  controller.abort();
  await following.ended;
  expect(Date.now() - dropped).toBeLessThan(leaseMs / 6);
  expect(following.events.filter((e) => e.event === 'relay_error')).toEqual([]);
  await until(() => answer.abortedAt > 0, 2000, 'the backend sees the abort');
});
