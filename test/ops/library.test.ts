import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import jwt from 'jsonwebtoken';
import { EventSource } from 'eventsource';
import {
  type AuthorizeTopic,
  type EventFeed,
  type LocalOwnership,
  type Relay,
  type SharedStream,
  type TopicOwnership,
  type UpstreamInit,
  type UpstreamListener,
  createRelay,
} from '../../index';
import { FixtureBackend } from '../support/fixture-backend';
import { until } from '../support/until';

const SECRET = 'a-team-secret-that-is-long-enough-for-hs256';

function tokenFor(user: string): string {
  return jwt.sign({}, SECRET, { subject: user, expiresIn: '1h' });
}

/** The team's feeds: ids are case-insensitive, so `Red-Launch` and `red-launch` are one topic. */
const FEEDS: SharedStream = {
  path: '/feeds/:id/events',
  key: (id) => `feed:${id.toLowerCase()}`,
  streamPath: (id) => `/v2/feeds/${id.toLowerCase()}/stream`,
  statusPath: (id) => `/v2/feeds/${id.toLowerCase()}/status`,
};
const UPSTREAM = '/v2/feeds/red-launch/stream';

/** The team's policy: a user named `<team>.<name>` may join the feeds named `<team>-...`. */
function teamPolicy(calls: { user: string; url: string }[]): AuthorizeTopic {
  return (user, statusUrl) => {
    calls.push({ user, url: statusUrl.href });
    const feed = /^\/v2\/feeds\/([^/]+)\/status$/.exec(statusUrl.pathname)?.[1] ?? '';
    const team = feed.split('-')[0];
    return Promise.resolve(team !== undefined && user.startsWith(`${team}.`) ? 200 : 404);
  };
}

/** Counts the feeds the relay opens per topic key, and leaves the work to the in-process owner. */
class CountingOwnership implements TopicOwnership {
  readonly opened = new Map<string, number>();

  constructor(private readonly local: LocalOwnership) {}

  feed(key: string, init: UpstreamInit, listener: UpstreamListener): EventFeed {
    this.opened.set(key, (this.opened.get(key) ?? 0) + 1);
    return this.local.feed(key, init, listener);
  }

  history(key: string): ReturnType<TopicOwnership['history']> {
    return this.local.history(key);
  }
}

let backend: FixtureBackend;
let server: Server;
let relay: Relay;
let base: string;
let ownership: CountingOwnership | undefined;
let calls: { user: string; url: string }[];
const sources: EventSource[] = [];

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  calls = [];
  ownership = undefined;
  relay = createRelay({
    backendUrl: backend.url,
    jwt: { secret: SECRET },
    authorize: teamPolicy(calls),
    streams: [FEEDS],
    ownership: (local) => (ownership = new CountingOwnership(local)),
    rateLimitPerMinute: 0,
  });
  const app = express();
  app.get('/mine', (_req, res) => {
    res.json({ mine: 'before' });
  });
  app.use('/relay', relay.router);
  app.get('/relay/mine', (_req, res) => {
    res.json({ mine: 'inside the prefix' });
  });
  app.get('/after', (_req, res) => {
    res.type('html').send('<script>inline()</script>');
  });
  server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  for (const es of sources.splice(0)) es.close();
  await relay.close();
  server.closeAllConnections();
  server.close();
  await backend.close();
});

function subscribe(id: string, user: string): EventSource {
  const token = tokenFor(user);
  const es = new EventSource(`${base}/relay/api/feeds/${id}/events`, {
    fetch: (input, init) => fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), authorization: `Bearer ${token}` } }),
  });
  sources.push(es);
  return es;
}

function messages(es: EventSource, count: number): Promise<string[]> {
  const got: string[] = [];
  return new Promise((resolve, reject) => {
    es.onmessage = (event: MessageEvent) => {
      got.push(event.data as string);
      if (got.length === count) resolve(got);
    };
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) reject(new Error(`stream closed after ${got.length} events`));
    };
  });
}

test("the app's own routes before, inside and after the relay's prefix still answer, untouched by the relay", async () => {
  const before = await fetch(`${base}/mine`);
  expect(await before.json()).toEqual({ mine: 'before' });
  const inside = await fetch(`${base}/relay/mine`);
  expect(inside.status).toBe(200);
  expect(await inside.json()).toEqual({ mine: 'inside the prefix' });
  const after = await fetch(`${base}/after`);
  expect(after.status).toBe(200);
  expect(await after.text()).toBe('<script>inline()</script>');

  expect(await (await fetch(`${base}/relay/healthz`)).json()).toEqual({ status: 'ok' });
  expect((await fetch(`${base}/healthz`)).status).toBe(404);
});

test("mounted at the root, the relay's headers and request log stay on the relay's routes: the app's pages keep their inline scripts", async () => {
  const root = createRelay({ backendUrl: backend.url, jwt: { secret: SECRET } });
  const app = express();
  app.use(root.router);
  app.get('/page', (_req, res) => {
    res.type('html').send('<script>inline()</script>');
  });
  const rootServer = app.listen(0, '127.0.0.1');
  await once(rootServer, 'listening');
  const rootBase = `http://127.0.0.1:${(rootServer.address() as AddressInfo).port}`;
  try {
    const page = await fetch(`${rootBase}/page`);
    expect(await page.text()).toBe('<script>inline()</script>');
    expect(page.headers.get('content-security-policy')).toBeNull();
    expect(page.headers.get('x-request-id')).toBeNull();
    const health = await fetch(`${rootBase}/healthz`);
    expect(health.headers.get('content-security-policy')).not.toBeNull();
    expect(health.headers.get('x-request-id')).not.toBeNull();
  } finally {
    await root.close();
    rootServer.closeAllConnections();
    rootServer.close();
  }
});

test('under a prefix, custom streams relay the backend URL of their own shape, and ids with one key share one upstream', async () => {
  const prefixes: unknown[] = [];
  backend.server.prependListener('request', (req: { url?: string; headers: Record<string, unknown> }) => {
    if (req.url === UPSTREAM) prefixes.push(req.headers['x-forwarded-prefix']);
  });
  const first = subscribe('Red-Launch', 'red.alice');
  const second = subscribe('red-launch', 'red.bob');
  const firstGot = messages(first, 2);
  const secondGot = messages(second, 2);
  await until(() => relay.hub.streamCount === 2 && backend.listeners(UPSTREAM) === 1, 5000, 'both subscribers on one upstream');
  backend.emit(UPSTREAM, 'data: one\n');
  backend.emit(UPSTREAM, 'data: two\n');
  expect(await firstGot).toEqual(['one', 'two']);
  expect(await secondGot).toEqual(['one', 'two']);

  expect(backend.requests.map((r) => r.path)).toEqual([UPSTREAM]);
  expect(backend.requests[0]?.user).toBe('red.alice');
  expect(relay.hub.topicCount).toBe(1);
  expect(relay.hub.topic('feed:red-launch')).toBeDefined();
  expect(ownership?.opened).toEqual(new Map([['feed:red-launch', 1]]));
  // Where the client reaches the backend's routes: the app's mount and the relay's /api.
  expect(prefixes).toEqual(['/relay/api']);
});

test("the team's authorize hook decides: a user of another team gets a JSON 404 and no events, even on a live feed", async () => {
  const member = subscribe('red-launch', 'red.alice');
  const memberGot = messages(member, 1);
  await until(() => backend.listeners(UPSTREAM) === 1, 5000, 'the feed to open');

  const stranger = await fetch(`${base}/relay/api/feeds/red-launch/events`, { headers: { authorization: `Bearer ${tokenFor('blue.eve')}` } });
  expect(stranger.status).toBe(404);
  expect(stranger.headers.get('content-type')).toMatch(/^application\/json/);
  expect(await stranger.json()).toEqual({ error: { code: 'not_found', message: expect.any(String) as string } });
  expect(calls).toContainEqual({ user: 'blue.eve', url: `${backend.url}/v2/feeds/red-launch/status` });

  backend.emit(UPSTREAM, 'data: for red only\n');
  expect(await memberGot).toEqual(['for red only']);
  expect(relay.hub.streamCount).toBe(1);
});

test('the authorize hook is asked for the first subscriber too: a refused user cannot open a feed the backend would serve', async () => {
  const stranger = await fetch(`${base}/relay/api/feeds/red-launch/events`, { headers: { authorization: `Bearer ${tokenFor('blue.eve')}` } });
  expect(stranger.status).toBe(404);
  expect(await stranger.json()).toEqual({ error: { code: 'not_found', message: expect.any(String) as string } });
  expect(calls).toEqual([{ user: 'blue.eve', url: `${backend.url}/v2/feeds/red-launch/status` }]);
  expect(backend.requests).toEqual([]);
  expect(relay.hub.topicCount).toBe(0);
});

test('relay.close() ends open streams and upstreams and leaves nothing holding the process open', async () => {
  const count = (type: string): number => process.getActiveResourcesInfo().filter((r) => r === type).length;
  const timersBefore = count('Timeout');
  // A plain fetch, not EventSource: a stream the relay ends must stay ended, not reconnect.
  const response = await fetch(`${base}/relay/api/feeds/red-launch/events`, { headers: { authorization: `Bearer ${tokenFor('red.alice')}` } });
  expect(response.status).toBe(200);
  await until(() => backend.listeners(UPSTREAM) === 1, 5000, 'the feed to open');
  const body = response.body as ReadableStream<Uint8Array>;
  let text = '';
  const ended = (async () => {
    for await (const chunk of body) text += Buffer.from(chunk).toString();
  })();

  await relay.close();
  await ended;
  expect(text).toMatch(/^retry: \d+\n/);
  expect(relay.hub.topicCount).toBe(0);
  expect(relay.hub.streamCount).toBe(0);
  await until(() => backend.sockets.size === 0, 5000, 'upstream sockets to close');
  server.closeAllConnections();
  await until(() => count('TCPSocketWrap') === 0, 5000, 'every socket to close');
  // What is left is this test's two listening servers and their timers. undici stops its
  // shared timer on the tick after its last request's timeouts are gone (up to a second):
  // wait for that, as a timer the relay left behind would never go.
  await until(() => count('Timeout') <= timersBefore, 3000, 'no more timers than before the stream');
  expect(process.getActiveResourcesInfo().filter((r) => r !== 'Timeout' && r !== 'PipeWrap')).toEqual(['TCPServerWrap', 'TCPServerWrap']);
});
