import type { Express } from 'express';
import request from 'supertest';
import { type CreateRelayOptions, type Relay } from '../../index';
import { ERROR_CODES, type ErrorCode } from '../../src/errors';
import { FixtureBackend } from '../support/fixture-backend';
import { freePort } from '../support/free-port';
import { type RelayApp, relayApp } from '../support/relay-app';
import { tokenFor } from '../support/relay-server';

let backend: FixtureBackend;
let running: RelayApp | undefined;

beforeEach(async () => {
  backend = await new FixtureBackend().start();
});

afterEach(async () => {
  await running?.relay.close();
  running = undefined;
  await backend.close();
});

const ALICE = `Bearer ${tokenFor('alice')}`;
const STREAM = '/api/downloads/abc/events';

/** One way to get an error answer of the relay. */
interface Case {
  readonly code: ErrorCode;
  /** What the client did, for the test's name. */
  readonly did: string;
  readonly options?: Partial<CreateRelayOptions>;
  /** Where the relay's backend is, when not the fixture. */
  readonly backendUrl?: () => Promise<string>;
  /** Scripts the backend, or brings the relay to the state the case needs. */
  readonly before?: (context: { backend: FixtureBackend; relay: Relay; app: Express }) => Promise<void> | void;
  readonly send: (app: Express) => request.Test;
  /** Headers the answer carries besides the JSON error's own. */
  readonly headers?: Readonly<Record<string, string | RegExp>>;
  /** The relay answers by itself: the backend sees no request at all. */
  readonly alone?: boolean;
}

const CASES: readonly Case[] = [
  {
    code: 'bad_request',
    did: 'changes the topics of a multiplexed stream with JSON that does not parse',
    send: (app) => request(app).post('/api/events/abc/topics').set('Authorization', ALICE).set('Content-Type', 'application/json').send('{"add":'),
    alone: true,
  },
  {
    code: 'invalid_id',
    did: 'asks for a stream whose id is over 128 characters',
    send: (app) => request(app).get(`/api/downloads/${'x'.repeat(129)}/events`).set('Authorization', ALICE),
    alone: true,
  },
  {
    code: 'invalid_path',
    did: 'spells a path with an encoded slash',
    send: (app) => request(app).get('/api/downloads/abc%2F..%2Fdef/status').set('Authorization', ALICE),
    alone: true,
  },
  {
    code: 'invalid_last_event_id',
    did: 'resumes with a Last-Event-ID of 300 characters',
    send: (app) => request(app).get(STREAM).set('Authorization', ALICE).set('Last-Event-ID', 'x'.repeat(300)),
    alone: true,
  },
  {
    code: 'invalid_topic',
    did: 'asks the multiplexed stream for a topic of no known kind',
    send: (app) => request(app).get('/api/events?topic=nope:1').set('Authorization', ALICE),
    alone: true,
  },
  {
    code: 'too_many_topics',
    did: 'opens a multiplexed stream without a topic',
    send: (app) => request(app).get('/api/events').set('Authorization', ALICE),
    alone: true,
  },
  {
    code: 'invalid_cursor',
    did: 'resumes a multiplexed stream with an id that is no cursor of the relay',
    send: (app) => request(app).get('/api/events?topic=download:abc').set('Authorization', ALICE).set('Last-Event-ID', 'not-a-cursor'),
    alone: true,
  },
  {
    code: 'unauthorized',
    did: 'sends no token',
    send: (app) => request(app).get('/api/downloads/abc/status'),
    headers: { 'WWW-Authenticate': 'Bearer' },
    alone: true,
  },
  {
    code: 'invalid_token',
    did: 'sends a token that is not a JWT',
    send: (app) => request(app).get('/api/downloads/abc/status').set('Authorization', 'Bearer not-a-jwt'),
    headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' },
    alone: true,
  },
  {
    code: 'token_expired',
    did: 'sends a token that expired a minute ago',
    send: (app) => request(app).get('/api/downloads/abc/status').set('Authorization', `Bearer ${tokenFor('alice', { expiresIn: -60 })}`),
    headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' },
    alone: true,
  },
  {
    code: 'not_found',
    did: "opens another user's download stream",
    before: ({ backend }) => backend.own('/downloads/abc/events', 'bob'),
    send: (app) => request(app).get(STREAM).set('Authorization', ALICE),
  },
  {
    code: 'stream_not_found',
    did: 'resumes a streaming POST answer by an id the relay never made',
    send: (app) => request(app).get('/api/streams/AAAAAAAAAAAAAAAAAAAAAAAA').set('Authorization', ALICE).set('Last-Event-ID', '3'),
  },
  {
    code: 'payload_too_large',
    did: 'posts a JSON body declared over maxJsonBodyBytes',
    options: { maxJsonBodyBytes: 1000 },
    send: (app) => request(app).post('/api/chat/stream').set('Authorization', ALICE).set('Content-Type', 'application/json').send({ message: 'x'.repeat(2000) }),
    alone: true,
  },
  {
    code: 'headers_too_large',
    did: 'sends 101 headers to be forwarded',
    send: (app) => {
      const test = request(app).get('/api/downloads/abc/status').set('Authorization', ALICE);
      for (let i = 0; i < 101; i++) test.set(`x-extra-${i}`, 'v');
      return test;
    },
    alone: true,
  },
  {
    code: 'too_many_connections',
    did: 'opens a stream while at MAX_CONNECTIONS_PER_USER',
    options: { maxConnectionsPerUser: 1 },
    // A slot taken through the relay's own counter: alice's stream open on another tab.
    before: async ({ relay }) => void (await relay.connections.acquire('alice', '198.51.100.7')),
    send: (app) => request(app).get(STREAM).set('Authorization', ALICE),
    headers: { 'Retry-After': '10' },
    alone: true,
  },
  {
    code: 'rate_limited',
    did: 'guesses a token again past RATE_LIMIT_PER_MINUTE',
    options: { rateLimitPerMinute: 1 },
    // Requests without a valid token are counted by IP before they are refused.
    before: async ({ app }) => void (await request(app).get('/api/downloads/abc/status').set('Authorization', 'Bearer guess').expect(401)),
    send: (app) => request(app).get('/api/downloads/abc/status').set('Authorization', 'Bearer guess'),
    headers: { 'Retry-After': /^\d+$/, RateLimit: /^"requests"; r=0; t=\d+$/, 'RateLimit-Policy': /^"requests"; q=1; w=60/ },
    alone: true,
  },
  {
    code: 'bad_gateway',
    did: 'calls a REST route while nothing listens at the backend URL',
    backendUrl: async () => `http://127.0.0.1:${await freePort()}`,
    send: (app) => request(app).get('/api/downloads/abc/status').set('Authorization', ALICE),
  },
  {
    code: 'upstream_not_event_stream',
    did: 'opens a stream the backend answers with an HTML page',
    before: ({ backend }) => {
      backend.respond = (_req, res) => (res.writeHead(200, { 'content-type': 'text/html' }).end('<h1>Welcome</h1>'), true);
    },
    send: (app) => request(app).get(STREAM).set('Authorization', ALICE),
  },
  {
    code: 'upstream_redirect_refused',
    did: 'opens a stream the backend redirects to another origin',
    before: ({ backend }) => {
      backend.respond = (_req, res) => (res.writeHead(302, { location: 'http://cdn.example.com/abc' }).end(), true);
    },
    send: (app) => request(app).get(STREAM).set('Authorization', ALICE),
  },
  {
    code: 'upstream_unavailable',
    did: 'opens a new stream whose upstream fails every attempt of its retry budget',
    options: { reconnectMaxAttempts: 1, reconnectBaseDelayMs: 1, reconnectMaxDelayMs: 2 },
    before: ({ backend }) => {
      backend.respond = (req) => (req.socket.destroy(), true);
    },
    send: (app) => request(app).get(STREAM).set('Authorization', ALICE),
  },
  {
    code: 'over_capacity',
    did: 'opens a stream while the relay holds MAX_CONNECTIONS',
    options: { maxConnections: 1 },
    before: async ({ relay }) => void (await relay.connections.acquire('bob', '198.51.100.8')),
    send: (app) => request(app).get(STREAM).set('Authorization', ALICE),
    headers: { 'Retry-After': /^([5-9]|1[0-4])$/ },
    alone: true,
  },
  {
    code: 'shutting_down',
    did: 'starts a chat while the relay drains',
    before: async ({ relay }) => relay.drain(0),
    send: (app) => request(app).post('/api/chat/stream').set('Authorization', ALICE).send({ chatbotId: 'bot', message: 'hi' }),
    headers: { 'Retry-After': '1' },
    alone: true,
  },
  {
    code: 'gateway_timeout',
    did: 'calls a REST route the backend sends no headers for within upstreamHeadersTimeoutMs',
    options: { upstreamHeadersTimeoutMs: 100 },
    before: ({ backend }) => {
      backend.respond = () => true;
    },
    send: (app) => request(app).get('/api/reports/slow').set('Authorization', ALICE),
  },
];

/**
 * Codes the relay's router never answers by itself: `forbidden` is the backend's, passed on;
 * `internal` is a bug; the admin listener's own are checked in test/ops/admin-api.test.ts and
 * test/cluster/admin-cluster.test.ts.
 */
const NOT_THE_RELAYS: readonly ErrorCode[] = ['forbidden', 'internal', 'admin_unauthorized', 'redis_unavailable'];

test.each(CASES.map((c) => [c.code, c.did, c] as const))('%s: a client that %s gets the registered status and a JSON error', async (code, _did, c) => {
  running = relayApp(c.backendUrl ? await c.backendUrl() : backend.url, c.options);
  const { app, relay } = running;
  await c.before?.({ backend, relay, app });
  const requestsBefore = backend.requests.length;
  const answer = await c.send(app);

  expect(answer.status).toBe(ERROR_CODES[code].status);
  expect(answer.headers['content-type']).toMatch(/^application\/json/);
  expect(answer.body).toEqual({ error: { code, message: expect.stringMatching(/\S/) as string } });
  expect(answer.headers['cache-control']).toBe('no-store');
  expect(answer.headers['x-content-type-options']).toBe('nosniff');
  expect(answer.headers['x-powered-by']).toBeUndefined();
  for (const [name, value] of Object.entries(c.headers ?? {})) expect([name, answer.headers[name.toLowerCase()]]).toEqual([name, expect.stringMatching(value)]);
  if (c.alone === true) expect({ requests: backend.requests.length - requestsBefore, statusChecks: backend.statusChecks }).toEqual({ requests: 0, statusChecks: 0 });
});

test('every code of the registry the relay answers by itself has a case above', () => {
  const covered = new Set(CASES.map((c) => c.code));
  const missing = (Object.keys(ERROR_CODES) as ErrorCode[]).filter((code) => !covered.has(code) && !NOT_THE_RELAYS.includes(code));
  expect(missing).toEqual([]);
});
