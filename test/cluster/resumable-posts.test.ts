import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { SseResponse } from '../backend/harness';
import { AnswerBackend, type PostedChat, postChat } from '../support/answer-backend';
import { RedisServer } from '../support/redis';
import { RelayProcess } from '../support/relay-process';
import { type RunningRelay, authHeader, startRelay } from '../support/relay-server';
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

/** Two relays on the test's Redis, each keeping an answer `graceMs` after its last client left. */
async function twoRelays(graceMs: number, leaseMs = LEASE_MS): Promise<[RunningRelay, RunningRelay]> {
  const pair: RunningRelay[] = [];
  for (let i = 0; i < 2; i += 1) pair.push(await startRelay(backend.url, { redisUrl: redis.url, postResumeGraceMs: graceMs, clusterLeaseMs: leaseMs }));
  started.push(...pair);
  await until(() => pair.every((r) => r.relay.cluster!.ready), 5000, 'both relays on redis');
  return pair as [RunningRelay, RunningRelay];
}

const chatOn = (relayUrl: string): Promise<PostedChat> => postChat(relayUrl, backend);

/** A resume on `relayUrl`: its stream when it opens, else its status and error code; `ms` until it answered. */
async function resumeOn(relayUrl: string, streamId: string, lastEventId: string, user = 'alice'): Promise<{ status: number; ms: number; answer?: SseResponse; code?: string }> {
  const begun = Date.now();
  const res = await request(`${relayUrl}/api/streams/${streamId}`, { headers: { ...authHeader(user), accept: 'text/event-stream', 'last-event-id': lastEventId } });
  const ms = Date.now() - begun;
  if (res.statusCode === 204) return { status: 204, ms };
  if (res.statusCode !== 200) {
    const code = ((await res.body.json()) as { error: { code: string } }).error.code;
    return { status: res.statusCode, ms, code };
  }
  return { status: res.statusCode, ms, answer: new SseResponse(res.statusCode, res.headers, res.body) };
}

function idsAndData(response: SseResponse): [string | undefined, string][] {
  return response.events.map((e) => [e.event === undefined ? e.id : `${e.event}`, e.data]);
}

test('POST on one relay, resume on the other: what followed the last id, live to the end, through the shared history; the backend saw no abort', async () => {
  const [receiving, other] = await twoRelays(60_000);
  const { first, streamId, answer, drop } = await chatOn(receiving.url);
  answer.send('a');
  await first.waitFor((e) => e.data === 'a');
  await drop();
  answer.send('b');

  // The answer is in Redis, under one hash tag that names its id.
  const inspector = new Redis(redis.url);
  await until(async () => (await inspector.xlen((await inspector.keys(`*${streamId}*:events`))[0] ?? 'none')) === 2, 2000, 'b appended');
  const keys = await inspector.keys(`*${streamId}*`);
  let bytes = 0;
  for (const key of keys) bytes += (await inspector.memory('USAGE', key)) ?? 0;
  console.log(`a pending answer of two events in Redis: ${keys.length} keys, ${bytes} bytes`);
  inspector.disconnect();

  const asked = Date.now();
  const elsewhere = await resumeOn(other.url, streamId, '1');
  expect(elsewhere.status).toBe(200);
  const resumed = elsewhere.answer!;
  await resumed.waitFor((e) => e.data === 'b');
  console.log(`resume on another relay: ${elsewhere.ms} ms to its headers, ${Date.now() - asked} ms to the first missed event`);
  // A live event reaches the client on the other relay as the backend sends it, through Redis.
  const liveSent = Date.now();
  answer.send('c');
  await resumed.waitFor((e) => e.data === 'c');
  console.log(`a live event on the other relay: ${Date.now() - liveSent} ms from the backend's write`);
  answer.end();
  await resumed.ended;
  expect(idsAndData(resumed)).toEqual([
    ['2', 'b'],
    ['3', 'c'],
  ]);
  expect(answer.abortedAt).toBe(0);

  // Finished: its last id gets 204 on either relay, an earlier one what followed it.
  expect((await resumeOn(other.url, streamId, '3')).status).toBe(204);
  expect((await resumeOn(receiving.url, streamId, '3')).status).toBe(204);
  const again = await resumeOn(other.url, streamId, '2');
  await again.answer!.ended;
  expect(idsAndData(again.answer!)).toEqual([['3', 'c']]);
});

test('only its user may resume or cancel it on another relay: anyone else, a made-up id, a malformed one get 404 at once', async () => {
  const [receiving, other] = await twoRelays(60_000);
  const { first, streamId, answer, drop } = await chatOn(receiving.url);
  answer.send('a');
  await first.waitFor((e) => e.data === 'a');
  await drop();

  for (const [id, user] of [
    [streamId, 'mallory'],
    ['AAAAAAAAAAAAAAAAAAAAAAAA', 'alice'],
  ] as const) {
    const refused = await resumeOn(other.url, id, '1', user);
    expect([refused.status, refused.code]).toEqual([404, 'stream_not_found']);
    expect(refused.ms).toBeLessThan(1000);
    const cancel = await request(`${other.url}/api/streams/${id}`, { method: 'DELETE', headers: authHeader(user) });
    expect(cancel.statusCode).toBe(404);
    await cancel.body.dump();
  }
  expect(answer.abortedAt).toBe(0);
  answer.end();
});

test('DELETE on another relay aborts the upstream at once on the relay that reads it; its clients anywhere get the end, and the id is gone', async () => {
  // A long lease: the owner's renewals (every third of it) would find the lease gone too, but later.
  const leaseMs = 3000;
  const [receiving, other] = await twoRelays(60_000, leaseMs);
  const { first, streamId, answer } = await chatOn(receiving.url);
  answer.send('a');
  await first.waitFor((e) => e.data === 'a');
  const follower = (await resumeOn(other.url, streamId, '1')).answer!;

  const sent = Date.now();
  const cancel = await request(`${other.url}/api/streams/${streamId}`, { method: 'DELETE', headers: authHeader() });
  expect(cancel.statusCode).toBe(204);
  await cancel.body.dump();
  await until(() => answer.abortedAt > 0, 2000, 'the backend sees the abort');
  // At once: the message over Redis, not the owner's next lease renewal.
  expect(answer.abortedAt - sent).toBeLessThan(leaseMs / 3);
  await first.ended.catch(() => undefined);
  await follower.ended;
  for (const relay of [receiving, other]) {
    const gone = await resumeOn(relay.url, streamId, '1');
    expect([gone.status, gone.code]).toEqual([404, 'stream_not_found']);
  }
});

test('a client reading on another relay keeps the answer past the grace period; once it leaves, the backend sees the abort after the grace period', async () => {
  const graceMs = 400;
  const [receiving, other] = await twoRelays(graceMs);
  const { first, streamId, answer, drop } = await chatOn(receiving.url);
  answer.send('a');
  await first.waitFor((e) => e.data === 'a');
  await drop();
  const controller = new AbortController();
  const res = await request(`${other.url}/api/streams/${streamId}`, { headers: { ...authHeader(), 'last-event-id': '1' }, signal: controller.signal });
  const reading = new SseResponse(res.statusCode, res.headers, res.body);

  // Three grace periods with its only client on the other relay: still read, still relayed.
  for (let i = 0; i < 3; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, graceMs));
    answer.send(`t${i}`);
    await reading.waitFor((e) => e.data === `t${i}`);
  }
  expect(answer.abortedAt).toBe(0);

  const left = Date.now();
  controller.abort();
  await reading.ended.catch(() => undefined);
  await until(() => answer.abortedAt > 0, 5000, 'the abort once nobody reads');
  const waited = answer.abortedAt - left;
  // The reader's mark lapses within a lease, then the grace period runs.
  expect(waited).toBeGreaterThanOrEqual(graceMs);
  expect(waited).toBeLessThan(graceMs + 3 * LEASE_MS + 1000);
  const gone = await resumeOn(other.url, streamId, '4');
  expect([gone.status, gone.code]).toEqual([404, 'stream_not_found']);
});

test('the relay that received the POST dies (kill -9): a client resuming elsewhere gets what was appended, then relay_error answer_lost and the end, never a hang', async () => {
  const [other] = await twoRelays(60_000);
  const owner = await RelayProcess.start({
    BACKEND_URL: backend.url,
    REDIS_URL: redis.url,
    CLUSTER_LEASE_MS: String(LEASE_MS),
    POST_RESUME_GRACE_MS: '60000',
  });
  try {
    const { first, streamId, answer } = await chatOn(owner.url);
    answer.send('a');
    answer.send('b');
    await first.waitFor((e) => e.data === 'b');
    const reading = (await resumeOn(other.url, streamId, '1')).answer!;
    await reading.waitFor((e) => e.data === 'b');

    await owner.kill();
    await first.ended.catch(() => undefined);
    const ended = Date.now();
    await reading.ended;
    expect(Date.now() - ended).toBeLessThan(LEASE_MS * 3 + 1000);
    expect(idsAndData(reading)).toEqual([
      ['2', 'b'],
      ['relay_error', JSON.stringify({ reason: 'answer_lost' })],
    ]);

    // A resume after the death: what the history holds after its id, then the same end.
    const late = await resumeOn(other.url, streamId, '1');
    expect(late.status).toBe(200);
    await late.answer!.ended;
    expect(idsAndData(late.answer!)).toEqual([
      ['2', 'b'],
      ['relay_error', JSON.stringify({ reason: 'answer_lost' })],
    ]);
  } finally {
    await owner.kill();
  }
});

test('with a signing secret, a cancel message no relay signed is dropped and counted: the answer goes on; its keys do not tell whose it is, and it resumes elsewhere', async () => {
  const pair: RunningRelay[] = [];
  for (let i = 0; i < 2; i += 1) {
    pair.push(await startRelay(backend.url, { redisUrl: redis.url, postResumeGraceMs: 60_000, clusterLeaseMs: 3000, redisSigningSecret: 'a-cluster-secret-long-enough-to-sign-with!' }));
  }
  started.push(...pair);
  const [receiving, other] = pair as [RunningRelay, RunningRelay];
  await until(() => pair.every((r) => r.relay.cluster!.ready), 5000, 'both relays on redis');
  const { first, streamId, answer } = await chatOn(receiving.url);
  answer.send('a');
  await first.waitFor((e) => e.data === 'a');

  const inspector = new Redis(redis.url);
  const meta = (await inspector.keys(`*${streamId}*:meta`))[0]!;
  const topic = meta.slice(meta.indexOf('{') + 1, meta.indexOf('}'));
  // Someone who reads Redis cannot test candidate users against the key: the digest is keyed.
  expect(topic.startsWith(`post:${streamId}.`)).toBe(true);
  expect(topic).not.toContain(createHash('sha256').update('alice').digest('base64url').slice(0, 22));
  await inspector.publish('sse-relay:cancel-answer', JSON.stringify({ from: 'someone', topic, sig: 'forged' }));
  inspector.disconnect();
  await until(() => (receiving.relay.stats.forged.get('cancel_answer') ?? 0) === 1, 2000, 'the forged cancel counted');

  answer.send('b');
  await first.waitFor((e) => e.data === 'b');
  expect(answer.abortedAt).toBe(0);
  const elsewhere = await resumeOn(other.url, streamId, '1');
  expect(elsewhere.status).toBe(200);
  await elsewhere.answer!.waitFor((e) => e.data === 'b');
  answer.end();
  await elsewhere.answer!.ended;
  await first.ended;
});

test('Redis goes away mid-answer: after a lease the relay that received the POST goes on without the cluster, its client gets every event once and in order, and the backend saw no abort', async () => {
  const own = new RedisServer();
  await own.start();
  const relay = await startRelay(backend.url, { redisUrl: own.url, postResumeGraceMs: 60_000, clusterLeaseMs: LEASE_MS });
  started.push(relay);
  try {
    await until(() => relay.relay.cluster!.ready, 5000, 'the relay on redis');
    const { first, answer } = await chatOn(relay.url);
    answer.send('a');
    await first.waitFor((e) => e.data === 'a');
    await own.kill();
    // Held while the relay still hopes for Redis, then relayed without it.
    answer.send('b');
    answer.send('c');
    await first.waitFor((e) => e.data === 'c', 5000);
    answer.send('d');
    answer.end();
    await first.ended;
    expect(first.events.map((e) => [e.id, e.data])).toEqual([
      ['1', 'a'],
      ['2', 'b'],
      ['3', 'c'],
      ['4', 'd'],
    ]);
    expect(answer.abortedAt).toBe(0);
  } finally {
    await own.kill();
  }
});

test('with POST_RESUME_GRACE_MS=0 (no resume) an answer stays in its relay\'s memory: nothing of it in Redis', async () => {
  const relay = await startRelay(backend.url, { redisUrl: redis.url, postResumeGraceMs: 0, clusterLeaseMs: LEASE_MS });
  started.push(relay);
  await until(() => relay.relay.cluster!.ready, 5000, 'the relay on redis');
  const { first, streamId, answer } = await chatOn(relay.url);
  answer.send('a');
  await first.waitFor((e) => e.data === 'a');
  const inspector = new Redis(redis.url);
  expect(await inspector.keys(`*${streamId}*`)).toEqual([]);
  inspector.disconnect();
  answer.end();
  await first.ended;
});

test('a finished answer is kept TOPIC_LINGER_MS after its end, on every relay, however many resumes came since: then 404 everywhere', async () => {
  const lingerMs = 800;
  const pair: RunningRelay[] = [];
  for (let i = 0; i < 2; i += 1) pair.push(await startRelay(backend.url, { redisUrl: redis.url, postResumeGraceMs: 60_000, clusterLeaseMs: LEASE_MS, topicLingerMs: lingerMs }));
  started.push(...pair);
  const [receiving, other] = pair as [RunningRelay, RunningRelay];
  await until(() => pair.every((r) => r.relay.cluster!.ready), 5000, 'both relays on redis');
  const { first, streamId, answer } = await chatOn(receiving.url);
  answer.send('a');
  answer.end();
  await first.ended;
  const endedAt = Date.now();
  // Resumes with the last id, on both relays, all through the linger period and past it.
  const seen: { at: number; status: number }[] = [];
  while (Date.now() - endedAt < lingerMs + 700) {
    for (const relay of [receiving, other]) {
      const { status } = await resumeOn(relay.url, streamId, '1');
      seen.push({ at: Date.now() - endedAt, status });
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  // 204 well within the period, 404 on both once it is over (Redis's copy and each relay's).
  expect(seen.filter((s) => s.at < lingerMs - 200).every((s) => s.status === 204)).toBe(true);
  expect(seen.filter((s) => s.at > lingerMs + 400).map((s) => s.status)).toEqual(expect.arrayContaining([404]));
  expect(seen.filter((s) => s.at > lingerMs + 400).every((s) => s.status === 404)).toBe(true);
});
