import { Redis } from 'ioredis';
import { request } from 'undici';
import { SseResponse } from '../backend/harness';
import { AnswerBackend } from '../support/answer-backend';
import { RedisServer } from '../support/redis';
import { type RunningRelay, authHeader, startRelay } from '../support/relay-server';
import { until } from '../support/until';

const redis = new RedisServer();
let backend: AnswerBackend;
const relays: RunningRelay[] = [];

beforeAll(async () => {
  await redis.start();
  backend = await new AnswerBackend().start();
  for (let i = 0; i < 2; i += 1) relays.push(await startRelay(backend.url, { redisUrl: redis.url, postResumeGraceMs: 60_000 }));
  await until(() => relays.every((r) => r.relay.cluster!.ready), 5000, 'both relays on redis');
});

afterAll(async () => {
  for (const relay of relays) await relay.close();
  await backend.close();
  await redis.kill();
});

/** A resume on `relay`: its stream when it opens, else its error code; `ms` until it answered. */
async function resumeOn(relay: RunningRelay, streamId: string, lastEventId: string): Promise<{ status: number; ms: number; answer?: SseResponse; code?: string }> {
  const started = Date.now();
  const res = await request(`${relay.url}/api/streams/${streamId}`, { headers: { ...authHeader(), accept: 'text/event-stream', 'last-event-id': lastEventId } });
  const ms = Date.now() - started;
  if (res.statusCode !== 200) {
    const code = ((await res.body.json()) as { error: { code: string } }).error.code;
    return { status: res.statusCode, ms, code };
  }
  return { status: res.statusCode, ms, answer: new SseResponse(res.statusCode, res.headers, res.body) };
}

test('with several relays an answer is kept by the relay that received the POST: another relay answers 404 at once, the receiving one resumes it', async () => {
  const [receiving, other] = relays as [RunningRelay, RunningRelay];
  const controller = new AbortController();
  const res = await request(`${receiving.url}/api/chat/stream`, {
    method: 'POST',
    headers: { ...authHeader(), 'content-type': 'application/json' },
    body: '{}',
    signal: controller.signal,
  });
  const first = new SseResponse(res.statusCode, res.headers, res.body);
  const streamId = String(first.headers['x-stream-id']);
  const answer = await backend.answer(0);
  answer.send('a');
  await first.waitFor(() => first.events.length === 1);
  controller.abort();
  await first.ended.catch(() => undefined);
  answer.send('b');

  // Elsewhere: not found, answered at once (the relay never waits for an owner it does not have).
  const elsewhere = await resumeOn(other, streamId, '1');
  expect(elsewhere.status).toBe(404);
  expect(elsewhere.code).toBe('stream_not_found');
  expect(elsewhere.ms).toBeLessThan(1000);
  const cancel = await request(`${other.url}/api/streams/${streamId}`, { method: 'DELETE', headers: authHeader() });
  expect(cancel.statusCode).toBe(404);
  await cancel.body.dump();
  expect(answer.abortedAt).toBe(0);

  // The answer went nowhere near Redis: nothing shared names it.
  const inspector = new Redis(redis.url);
  const keys = await inspector.keys('*');
  inspector.disconnect();
  expect(keys.filter((key) => key.includes('post:') || key.includes(streamId))).toEqual([]);

  // Back at the relay that received it: what followed, to the end, and the backend never saw an abort.
  const back = await resumeOn(receiving, streamId, '1');
  expect(back.status).toBe(200);
  answer.send('c');
  answer.end();
  await back.answer!.ended;
  expect(back.answer!.events.map((e) => [e.id, e.data])).toEqual([
    ['2', 'b'],
    ['3', 'c'],
  ]);
  expect(answer.abortedAt).toBe(0);
});
