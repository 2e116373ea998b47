import { request } from 'undici';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, STREAMS_WITHOUT_REPLAY, authHeader, collect, eventSourceAs, startRelay, tokenFor } from '../support/relay-server';
import type { EventSource } from 'eventsource';
import { until } from '../support/until';

const PATH = '/downloads/abc/events';

let backend: FixtureBackend;
let relay: RunningRelay;
const clients: EventSource[] = [];

function open(user: string, headers: Record<string, string> = {}, url = `${relay.url}/api${PATH}`): EventSource {
  const es = eventSourceAs(url, user, headers);
  clients.push(es);
  return es;
}

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  relay = await startRelay(backend.url, { topicLingerMs: 50, reconnectBaseDelayMs: 5, reconnectMaxDelayMs: 20 });
});

afterEach(async () => {
  for (const es of clients.splice(0)) es.close();
  await relay.close();
  await backend.close();
});

test('200 subscribers of one code over 3 users share one upstream and each gets every event in order', async () => {
  backend.own(PATH, 'u0', 'u1', 'u2');
  const streams = Array.from({ length: 200 }, (_, i) => open(`u${i % 3}`));
  const received = streams.map((es) => collect(es, 20));
  await until(() => relay.relay.hub.streamCount === 200 && backend.listeners(PATH) === 1, 10_000, 'all subscribers attached');
  for (let i = 0; i < 20; i++) backend.emit(PATH, `data: {"progress":${i * 5}}\n`);
  for (const events of await Promise.all(received)) {
    expect(events.map((e) => e.lastEventId)).toEqual(Array.from({ length: 20 }, (_, i) => String(i + 1)));
    expect(JSON.parse(events[19]!.data as string)).toEqual({ progress: 95 });
  }
  expect(backend.requests.filter((r) => r.path === PATH)).toHaveLength(1);
  for (const es of streams) es.close();
  await until(() => backend.listeners(PATH) === 0 && relay.relay.hub.topicCount === 0, 5000, 'upstream closed after linger');
});

test('a subscriber who reconnects with Last-Event-ID (header or query) gets exactly the missed events', async () => {
  const first = open('alice');
  const firstEvents = collect(first, 5);
  await until(() => backend.listeners(PATH) === 1);
  for (let i = 1; i <= 5; i++) backend.emit(PATH, `data: e${i}\n`);
  await firstEvents;
  // A second client keeps the topic live while the first is away.
  const keeper = open('alice');
  await collect(keeper, 5);
  first.close();
  for (let i = 6; i <= 8; i++) backend.emit(PATH, `data: e${i}\n`);

  const byHeader = open('alice', { 'last-event-id': '3' });
  expect((await collect(byHeader, 5)).map((e) => e.data)).toEqual(['e4', 'e5', 'e6', 'e7', 'e8']);
  const byQuery = open('alice', {}, `${relay.url}/api${PATH}?lastEventId=6`);
  expect((await collect(byQuery, 2)).map((e) => e.data)).toEqual(['e7', 'e8']);
  expect(backend.requests.filter((r) => r.path === PATH)).toHaveLength(1);
});

test('with a backend that cannot replay, an id older than the replay buffer gets one resync event, then the buffer and live events', async () => {
  await relay.close();
  relay = await startRelay(backend.url, { replayBufferSize: 3, topicLingerMs: 50, streams: STREAMS_WITHOUT_REPLAY });
  const keeper = open('alice');
  const all = collect(keeper, 6);
  await until(() => backend.listeners(PATH) === 1);
  for (let i = 1; i <= 6; i++) backend.emit(PATH, `data: e${i}\n`);
  await all;

  const late = open('alice', { 'last-event-id': '1' });
  const resync = collect(late, 1, 'resync');
  const rest = collect(late, 4);
  expect(JSON.parse((await resync)[0]!.data as string)).toEqual({ reason: 'history_gap' });
  backend.emit(PATH, 'data: e7\n');
  expect((await rest).map((e) => e.data)).toEqual(['e4', 'e5', 'e6', 'e7']);
});

test('a finished topic replays to late subscribers, and answers 204 to one that has the last event', async () => {
  await relay.close();
  relay = await startRelay(backend.url, { topicLingerMs: 10_000 });
  const es = open('alice');
  const events = collect(es, 3);
  await until(() => backend.listeners(PATH) === 1);
  for (let i = 1; i <= 3; i++) backend.emit(PATH, `data: e${i}\n`);
  await events;
  es.close();
  backend.end(PATH);
  await until(() => relay.relay.hub.topic('download:abc')?.state === 'ended');

  // The first subscriber back makes the relay ask again with Last-Event-ID: 204, the stream is over.
  const late = await request(`${relay.url}/api${PATH}`, { headers: { authorization: `Bearer ${tokenFor('alice')}` } });
  expect(late.statusCode).toBe(200);
  const text = await late.body.text();
  expect(text.match(/^data: e\d$/gm)).toEqual(['data: e1', 'data: e2', 'data: e3']);
  expect(relay.relay.hub.topic('download:abc')?.state).toBe('finished');

  const done = await request(`${relay.url}/api${PATH}`, {
    headers: { authorization: `Bearer ${tokenFor('alice')}`, 'last-event-id': '3' },
  });
  expect(done.statusCode).toBe(204);
  await done.body.dump();
  // The finished topic answered the last one itself: the backend saw the stream and one reconnect.
  expect(backend.requests.filter((r) => r.path === PATH).map((r) => r.lastEventId)).toEqual([undefined, '3']);
});

test('a topic opened with Last-Event-ID asks the upstream from that id (resume on a fresh relay)', async () => {
  for (let i = 1; i <= 4; i++) backend.emit(PATH, `data: e${i}\n`);
  const es = open('alice', { 'last-event-id': '2' });
  const events = collect(es, 3);
  await until(() => backend.listeners(PATH) === 1);
  backend.emit(PATH, 'data: e5\n');
  expect((await events).map((e) => e.data)).toEqual(['e3', 'e4', 'e5']);
  expect(backend.requests[0]?.lastEventId).toBe('2');
});

test('an upstream killed mid-stream is reconnected: subscribers stay and get every event exactly once, in order', async () => {
  const subscribers = [open('alice'), open('alice')];
  const received = subscribers.map((es) => collect(es, 9));
  let errors = 0;
  for (const es of subscribers) es.addEventListener('error', () => (errors += 1));
  await until(() => backend.listeners(PATH) === 1);
  for (let i = 1; i <= 3; i++) backend.emit(PATH, `data: e${i}\n`);
  await until(() => relay.relay.stats.eventsRelayed === 3);
  // A backend that resends too much on resume (e2 and e3, at and before the resume point) must not cause duplicates.
  backend.resendBeforeResume = 2;
  backend.drop(PATH);
  // Published while the relay is reconnecting: the resume must fetch them.
  for (let i = 4; i <= 6; i++) backend.emit(PATH, `data: e${i}\n`);
  await until(() => backend.requests.length === 2 && backend.listeners(PATH) === 1, 5000, 'relay reconnected');
  for (let i = 7; i <= 9; i++) backend.emit(PATH, `data: e${i}\n`);
  for (const events of await Promise.all(received)) {
    expect(events.map((e) => e.data)).toEqual(['e1', 'e2', 'e3', 'e4', 'e5', 'e6', 'e7', 'e8', 'e9']);
  }
  expect(errors).toBe(0);
  expect(backend.requests.map((r) => r.lastEventId)).toEqual([undefined, '3']);
  expect(relay.relay.stats.duplicatesDropped).toBe(2);
});

test('an upstream 4xx before any event reaches the subscriber as that status with a JSON error', async () => {
  backend.own(PATH, 'bob');
  const res = await request(`${relay.url}/api${PATH}`, { headers: { authorization: `Bearer ${tokenFor('alice')}` } });
  expect(res.statusCode).toBe(404);
  expect(await res.body.json()).toEqual({ error: { code: 'not_found', message: 'No such code.' } });
  expect(relay.relay.hub.topicCount).toBe(0);
});

test("another user cannot join a live code: 404 and not one event", async () => {
  backend.own(PATH, 'alice');
  const owner = open('alice');
  const events = collect(owner, 1);
  await until(() => backend.listeners(PATH) === 1);
  backend.emit(PATH, 'data: secret\n');
  await events;
  const res = await request(`${relay.url}/api${PATH}`, { headers: { authorization: `Bearer ${tokenFor('mallory')}` } });
  expect(res.statusCode).toBe(404);
  expect(await res.body.text()).not.toContain('secret');
  expect(backend.statusChecks).toBe(1);
});

test('a bad code or Last-Event-ID is a 400, and a missing token a 401, all as JSON', async () => {
  const auth = authHeader();
  const bad = await request(`${relay.url}/api/downloads/${'x'.repeat(200)}/events`, { headers: auth });
  expect(bad.statusCode).toBe(400);
  expect(((await bad.body.json()) as { error: { code: string } }).error.code).toBe('invalid_id');
  const badId = await request(`${relay.url}/api${PATH}?lastEventId=${'9'.repeat(300)}`, { headers: auth });
  expect(badId.statusCode).toBe(400);
  await badId.body.dump();
  const anonymous = await request(`${relay.url}/api${PATH}`);
  expect(anonymous.statusCode).toBe(401);
  expect(((await anonymous.body.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
});

test('the relay gives up after its retry budget with one relay_error event, then ends the stream', async () => {
  await relay.close();
  relay = await startRelay(backend.url, { reconnectMaxAttempts: 2, reconnectBaseDelayMs: 1, reconnectMaxDelayMs: 2, topicLingerMs: 50 });
  const es = open('alice');
  const first = collect(es, 1);
  const failure = collect(es, 1, 'relay_error');
  await until(() => backend.listeners(PATH) === 1);
  backend.emit(PATH, 'data: e1\n');
  await first;
  backend.refuseWith = 503;
  backend.drop(PATH);
  expect(JSON.parse((await failure)[0]!.data as string)).toEqual({ reason: 'upstream_unavailable' });
  await until(() => relay.relay.hub.topicCount === 0 && relay.relay.hub.streamCount === 0);
});

test('a stream path spelled in another case, with a trailing slash or with its id percent-encoded joins the same shared stream, as Express routes it', async () => {
  backend.own(PATH, 'alice');
  const spellings = [`${relay.url}/api${PATH}`, `${relay.url}/API/Downloads/abc/EVENTS`, `${relay.url}/api${PATH}/`, `${relay.url}/api/downloads/%61bc/events`];
  const received = spellings.map((url) => collect(open('alice', {}, url), 1));
  await until(() => relay.relay.hub.streamCount === spellings.length, 5000, 'every spelling attached');
  backend.emit(PATH, 'data: one\n');
  for (const events of await Promise.all(received)) expect(events.map((e) => e.data)).toEqual(['one']);
  expect(backend.requests.filter((r) => r.path === PATH)).toHaveLength(1);
});
