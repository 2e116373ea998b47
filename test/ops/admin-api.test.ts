import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { EventSource } from 'eventsource';
import { request } from 'undici';
import { createAdminServer } from '../../routes/admin';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, eventSourceAs, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const KEY = 'k'.repeat(20) + '-admin-key-0123456789';

let backend: FixtureBackend;
let relay: RunningRelay | undefined;
let admin: Server | undefined;
let adminUrl = '';
const sources: EventSource[] = [];

beforeEach(async () => {
  backend = await new FixtureBackend().start();
});

afterEach(async () => {
  for (const es of sources.splice(0)) es.close();
  admin?.closeAllConnections();
  admin?.close();
  admin = undefined;
  await relay?.close();
  relay = undefined;
  await backend.close();
});

async function start(options: Parameters<typeof startRelay>[1] = {}): Promise<RunningRelay> {
  relay = await startRelay(backend.url, options);
  admin = createAdminServer(relay.relay, { apiKey: KEY });
  admin.listen(0, '127.0.0.1');
  await once(admin, 'listening');
  adminUrl = `http://127.0.0.1:${(admin.address() as AddressInfo).port}`;
  return relay;
}

const bearer = { authorization: `Bearer ${KEY}` };
const basic = (user: string, password: string): Record<string, string> => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });

async function call(path: string, headers: Record<string, string> = bearer, method = 'GET'): Promise<{ status: number; headers: Headers; body: unknown }> {
  const response = await fetch(`${adminUrl}${path}`, { method, headers });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: response.headers.get('content-type')?.includes('json') === true ? JSON.parse(text) : text };
}

function open(path: string, user: string): EventSource {
  const es = eventSourceAs(`${relay!.url}/api${path}`, user);
  sources.push(es);
  return es;
}

describe('the admin key', () => {
  test('without it, with a wrong one, as a Basic user name, or in the URL, every route answers the same 401 with a Basic challenge', async () => {
    await start();
    const refusals = [
      {},
      { authorization: `Bearer ${KEY}x` },
      { authorization: `Bearer ${KEY.slice(0, -1)}` },
      { authorization: 'Bearer ' },
      basic('admin', 'wrong'),
      basic('alice', `${KEY} `),
      basic(KEY, 'wrong'),
      { authorization: `Basic ${KEY}` },
      { authorization: KEY },
      { 'x-api-key': KEY },
    ];
    const paths = ['/admin/', '/admin/overview', '/admin/topics', '/admin/users/alice', '/admin/users/nobody', '/admin/events', '/admin/no-such-route', `/admin/overview?key=${KEY}`, `/admin/overview?access_token=${KEY}`];
    const answers = new Set<string>();
    for (const headers of refusals) {
      for (const path of paths) {
        const answer = await call(path, headers);
        expect({ path, status: answer.status }).toEqual({ path, status: 401 });
        expect(answer.headers.get('www-authenticate')).toBe('Basic realm="sse-relay admin", charset="UTF-8"');
        answers.add(JSON.stringify(answer.body));
      }
      const ending = await call('/admin/users/alice/streams', headers, 'DELETE');
      expect(ending.status).toBe(401);
      answers.add(JSON.stringify(ending.body));
    }
    // One body for every refusal: it tells nothing of which part was wrong, nor of any user.
    expect(answers.size).toBe(1);
    expect(JSON.parse([...answers][0]!)).toEqual({
      error: { code: 'admin_unauthorized', message: 'Send the admin key: Authorization: Bearer <ADMIN_API_KEY>, or as the password of HTTP Basic auth (any user name).' },
    });
  });

  test('is accepted as a Bearer token, or as the Basic password under any user name', async () => {
    await start();
    for (const headers of [bearer, basic('admin', KEY), basic('', KEY), basic('ops team', KEY)]) {
      const answer = await call('/admin/overview', headers);
      expect(answer.status).toBe(200);
      expect(answer.headers.get('cache-control')).toBe('no-store');
    }
  });

  test('shorter than 32 characters is refused when the server is made', async () => {
    await start();
    expect(() => createAdminServer(relay!.relay, { apiKey: 'x'.repeat(31) })).toThrow('the admin key must be at least 32 characters, got 31');
  });
});

test('the overview counts streams by kind, topics, upstreams and users, and says which relay answers', async () => {
  await start();
  open('/downloads/a/events', 'alice');
  open('/downloads/a/events', 'bob');
  open('/events?topic=download:b&topic=download:c', 'alice');
  const post = await request(`${relay!.url}/api/chat/stream`, { method: 'POST', headers: { authorization: `Bearer ${tokenFor('carol')}`, 'content-type': 'application/json' }, body: '{}' });
  await until(() => relay!.relay.hub.streamCount === 3 && relay!.relay.ops.userStreams.userCount === 3, 5000, 'four streams of three users');

  const { status, body } = await call('/admin/overview');
  expect(status).toBe(200);
  expect(body).toEqual({
    relay: { id: null, hostname: expect.any(String) as string, pid: process.pid, startedAt: expect.any(String) as string },
    streams: { shared: 2, multiplexed: 1, posts: 1, other: 0 },
    topics: 3,
    upstreams: { open: 3, reconnecting: 0, following: 0, finished: 0 },
    users: 3,
    connections: { open: 4, limit: 20_000 },
    ready: 'ready',
    cluster: null,
  });
  post.body.destroy();
});

test('topics come most subscribers first, with their upstream state, last event and history; ?limit bounds them', async () => {
  await start({ reconnectBaseDelayMs: 50, reconnectMaxDelayMs: 50 });
  for (const user of ['alice', 'bob', 'carol']) open('/downloads/busy/events', user);
  open('/downloads/quiet/events', 'alice');
  await until(() => backend.listeners('/downloads/busy/events') === 1 && backend.listeners('/downloads/quiet/events') === 1, 5000, 'both upstreams');
  await until(() => relay!.relay.hub.topic('download:busy')?.subscribers.size === 3, 5000, 'three subscribers');
  const before = Date.now();
  backend.emit('/downloads/busy/events', 'data: one\n');
  backend.emit('/downloads/busy/events', 'data: two\n');
  await until(() => relay!.relay.stats.deliveries === 6, 5000, 'two events to three subscribers');

  const { body } = await call('/admin/topics');
  const topics = (body as { topics: Record<string, unknown>[] }).topics;
  expect(topics.map((topic) => topic.topic)).toEqual(['download:busy', 'download:quiet']);
  expect(topics[0]).toEqual({ topic: 'download:busy', subscribers: 3, upstream: 'open', lastEventAt: expect.any(String) as string, history: { events: 2, bytes: expect.any(Number) as number } });
  expect(Date.parse(topics[0]!.lastEventAt as string)).toBeGreaterThanOrEqual(before - 1);
  expect(topics[1]).toEqual({ topic: 'download:quiet', subscribers: 1, upstream: 'open', lastEventAt: null, history: { events: 0, bytes: 0 } });
  expect(((await call('/admin/topics?limit=1')).body as { topics: unknown[] }).topics).toHaveLength(1);
  for (const bad of ['0', '1001', 'ten', '-1', '1.5']) {
    const answer = await call(`/admin/topics?limit=${bad}`);
    expect(answer.status).toBe(400);
    expect(answer.body).toEqual({ error: { code: 'bad_request', message: 'limit must be an integer from 1 to 1000.' } });
  }

  // The backend drops the stream and refuses to come back: the topic is reconnecting.
  backend.refuseWith = 503;
  backend.drop('/downloads/quiet/events');
  await until(async () => ((await call('/admin/topics')).body as { topics: { upstream: string }[] }).topics[1]?.upstream === 'reconnecting', 5000, 'quiet reconnecting');
  backend.refuseWith = undefined;
  await until(async () => ((await call('/admin/topics')).body as { topics: { upstream: string }[] }).topics[1]?.upstream === 'open', 5000, 'quiet open again');

  // The backend says the stream is over: finished.
  backend.end('/downloads/busy/events');
  await until(async () => ((await call('/admin/topics')).body as { topics: { topic: string; upstream: string }[] }).topics.some((t) => t.topic === 'download:busy' && t.upstream === 'finished'), 5000, 'busy finished');
});

test("one user's streams: kind, topics, when opened and from where; another user's are not listed", async () => {
  await start();
  const before = Date.now();
  open('/downloads/a/events', 'alice');
  open('/events?topic=download:b&topic=session:s1', 'alice');
  open('/downloads/a/events', 'bob');
  const post = await request(`${relay!.url}/api/chat/stream`, { method: 'POST', headers: { authorization: `Bearer ${tokenFor('alice')}`, 'content-type': 'application/json' }, body: '{}' });
  await until(() => relay!.relay.hub.streamCount === 3 && backend.listeners('/chat/stream') === 1, 5000, 'the streams');
  // The same answer resumed on a second connection: a POST's answer too, though a GET.
  const resumed = await request(`${relay!.url}/api/streams/${String(post.headers['x-stream-id'])}`, { headers: { authorization: `Bearer ${tokenFor('alice')}` } });
  expect(resumed.statusCode).toBe(200);

  const { status, body } = await call('/admin/users/alice');
  expect(status).toBe(200);
  const { user, streams } = body as { user: string; streams: { kind: string; topics: string[]; openedAt: string; remoteAddress: string }[] };
  expect(user).toBe('alice');
  expect(streams.map((stream) => [stream.kind, stream.topics]).sort()).toEqual([
    ['multiplexed', ['download:b', 'session:s1']],
    ['post', []],
    ['post', []],
    ['shared', ['download:a']],
  ]);
  for (const stream of streams) {
    expect(stream.remoteAddress).toBe('127.0.0.1');
    expect(Date.parse(stream.openedAt)).toBeGreaterThanOrEqual(before - 1);
    expect(Date.parse(stream.openedAt)).toBeLessThanOrEqual(Date.now());
  }
  // A user with no stream open, and a user id as odd as a token's sub may be.
  expect((await call('/admin/users/nobody')).body).toEqual({ user: 'nobody', streams: [] });
  expect((await call(`/admin/users/${encodeURIComponent('a/b c')}`)).body).toEqual({ user: 'a/b c', streams: [] });
  expect((await call(`/admin/users/${encodeURIComponent(' padded')}`)).status).toBe(400);
  expect((await call(`/admin/users/${'u'.repeat(257)}`)).status).toBe(400);
  post.body.destroy();
  resumed.body.destroy();
});

test("DELETE ends the user's streams as a token expiry does (the retry hint, then a resume), answers how many, and the page's cuts list it; others go on", async () => {
  await start({ retryHintMs: 60_000 });
  const alice = open('/downloads/a/events', 'alice');
  const aliceMulti = open('/events?topic=download:a', 'alice');
  const bob = open('/downloads/a/events', 'bob');
  const got = { alice: 0, bob: 0 };
  alice.onmessage = () => (got.alice += 1);
  bob.onmessage = () => (got.bob += 1);
  await until(() => relay!.relay.hub.streamCount === 3, 5000, 'three streams');
  backend.emit('/downloads/a/events', 'data: one\n');
  await until(() => got.alice === 1 && got.bob === 1, 5000, 'the first event');

  const answer = await call('/admin/users/alice/streams', bearer, 'DELETE');
  expect(answer).toMatchObject({ status: 200, body: { ended: 2 } });
  await until(() => relay!.relay.stats.closeReasons.get('ended_by_app') === 2, 5000, "alice's two streams ended");
  // Ended as an expiry ends them: a clean end with the retry hint, so EventSource waits it out.
  expect(alice.readyState).toBe(alice.CONNECTING);
  expect(aliceMulti.readyState).toBe(aliceMulti.CONNECTING);
  backend.emit('/downloads/a/events', 'data: two\n');
  await until(() => got.bob === 2, 5000, 'bob goes on');
  expect(got.alice).toBe(1);
  expect(relay!.relay.ops.cuts.latest()).toEqual([{ at: expect.any(Number) as number, reason: 'ended_by_app', detail: undefined, user: 'alice', count: 2 }]);

  expect((await call('/admin/users/alice/streams', bearer, 'DELETE')).body).toEqual({ ended: 0 });
  // From another site's page: refused even with the key.
  const foreign = await call('/admin/users/bob/streams', { ...bearer, origin: 'https://evil.example' }, 'DELETE');
  expect(foreign.status).toBe(403);
  expect(got.bob).toBe(2);
  expect(relay!.relay.hub.streamCount).toBe(1);
});

test('a slow client cut from a shared or a multiplexed stream is listed with its user', async () => {
  // The ceiling is the cap itself: one event bigger than it cuts its subscribers at once.
  await start({ clientMaxBufferedBytes: 1024, clientBufferCeilingFactor: 1 });
  open('/downloads/big/events', 'dora');
  open('/events?topic=download:big', 'erin');
  await until(() => backend.listeners('/downloads/big/events') === 1 && relay!.relay.hub.topic('download:big')?.subscribers.size === 2, 5000, 'both subscribers');
  backend.emit('/downloads/big/events', `data: ${'x'.repeat(4096)}\n`);
  await until(() => relay!.relay.stats.slowClientsCut >= 2, 5000, 'both cut');
  const cuts = relay!.relay.ops.cuts.latest().map((cut) => `${cut.reason} ${cut.user ?? ''}`);
  expect(cuts.sort()).toEqual(['slow_client dora', 'slow_client erin']);
});

test('admin requests and an open ops page hold no connection slot: the public limit is all the streams', async () => {
  await start({ maxConnections: 2 });
  const page = await request(`${adminUrl}/admin/events`, { headers: bearer });
  expect(page.statusCode).toBe(200);
  for (let i = 0; i < 5; i += 1) expect((await call('/admin/overview')).status).toBe(200);
  expect(relay!.relay.connections.snapshot().total).toBe(0);

  open('/downloads/a/events', 'alice');
  open('/downloads/b/events', 'bob');
  await until(() => relay!.relay.hub.streamCount === 2, 5000, 'two public streams with the page open');
  const third = await fetch(`${relay!.url}/api/downloads/c/events`, { headers: { authorization: `Bearer ${tokenFor('carol')}` } });
  expect(third.status).toBe(503);
  await third.body?.cancel();
  expect(relay!.relay.ops.cuts.latest()).toEqual([{ at: expect.any(Number) as number, reason: 'limit', detail: 'total', user: 'carol', count: 1 }]);
  page.body.destroy();
});

test('the ops page feed sends a snapshot at once, then one a second, with the rates and the last cuts', async () => {
  await start();
  const page = await request(`${adminUrl}/admin/events`, { headers: bearer });
  expect(page.headers['content-type']).toBe('text/event-stream; charset=utf-8');
  let text = '';
  page.body.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const snapshots = (): { rates: { events: number[] }; cuts: unknown[] }[] =>
    text
      .split('\n\n')
      .filter((frame) => frame.startsWith('event: snapshot\n'))
      .map((frame) => JSON.parse(frame.slice(frame.indexOf('data: ') + 6)) as { rates: { events: number[] }; cuts: unknown[] });
  await until(() => snapshots().length >= 1, 2000, 'the first snapshot');
  open('/downloads/a/events', 'alice');
  await until(() => backend.listeners('/downloads/a/events') === 1, 5000, 'the upstream');
  for (let i = 0; i < 5; i += 1) backend.emit('/downloads/a/events', `data: ${i}\n`);
  await relay!.relay.endUserStreams('alice');
  await until(() => snapshots().some((s) => s.rates.events.some((rate) => rate > 0) && s.cuts.length === 1), 5000, 'a snapshot with events and the cut');
  expect(snapshots().at(-1)!.cuts).toEqual([{ at: expect.any(String) as string, reason: 'ended_by_app', detail: null, user: 'alice', count: 1 }]);
  page.body.destroy();
});
