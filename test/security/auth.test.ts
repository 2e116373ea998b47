import { createHmac, generateKeyPairSync } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { EventSource } from 'eventsource';
import jwt from 'jsonwebtoken';
import { request } from 'undici';
import type { JwtOptions } from '../../middleware/authenticate';
import { SseResponse, TestBackend, multipart, sampleFile } from '../backend/harness';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, TEST_SECRET, collect, eventSourceAs, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const STREAM = '/downloads/abc/events';
/** A REST route the fixture answers 200 for any user. */
const REST = '/downloads/abc/status';
const OTHER_SECRET = 'another-secret-that-is-also-long-enough!!';
const RSA = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});
const EC = generateKeyPairSync('ec', {
  namedCurve: 'P-256',
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
}

interface Seen {
  readonly method: string | undefined;
  readonly path: string | undefined;
  readonly headers: IncomingHttpHeaders;
}

let backend: FixtureBackend;
let relay: RunningRelay;
/** Every request the fixture backend received, status checks included. */
let seen: Seen[];
const clients: EventSource[] = [];

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  seen = [];
  backend.server.prependListener('request', (req: { method?: string; url?: string; headers: IncomingHttpHeaders }) => {
    seen.push({ method: req.method, path: req.url, headers: req.headers });
  });
  relay = await startRelay(backend.url, { topicLingerMs: 50 });
});

afterEach(async () => {
  for (const es of clients.splice(0)) es.close();
  await relay.close();
  await backend.close();
});

async function restartRelay(jwtOptions: JwtOptions): Promise<void> {
  await relay.close();
  relay = await startRelay(backend.url, { topicLingerMs: 50, jwt: jwtOptions });
}

async function call(path: string, headers: Record<string, string> = {}, method: 'GET' | 'POST' = 'GET', body?: string): Promise<Answer> {
  const res = await request(`${relay.url}${path}`, { method, headers, body });
  return { status: res.statusCode, headers: res.headers as IncomingHttpHeaders, text: await res.body.text() };
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });
const now = (): number => Math.floor(Date.now() / 1000);
const base64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A token built by hand: `sign` gets the signing input and returns the signature segment. */
function handmade(header: object, payload: object, sign: (input: string) => string): string {
  const input = `${base64url(header)}.${base64url(payload)}`;
  return `${input}.${sign(input)}`;
}

const INVALID = 'Bearer error="invalid_token"';

/** A 401 as the contract says: JSON error, the right challenge, a message naming the fault, and no trace of the token. */
function expectRefused(answer: Answer, expected: { code: string; challenge: string; reason: RegExp; token?: string }): void {
  expect(answer.status).toBe(401);
  expect(answer.headers['content-type']).toMatch(/^application\/json/);
  expect(answer.headers['www-authenticate']).toBe(expected.challenge);
  expect(JSON.parse(answer.text)).toEqual({ error: { code: expected.code, message: expect.stringMatching(expected.reason) } });
  if (expected.token !== undefined) {
    const everything = JSON.stringify(answer.headers) + answer.text;
    // The whole token, and each of its parts long enough to be recognisable.
    for (const part of [expected.token, ...expected.token.split('.')].filter((p) => p.length >= 8)) expect(everything).not.toContain(part);
  }
  expect(seen).toEqual([]);
}

describe('the attack list against an HS256 relay: each is a 401 that says what was wrong', () => {
  const alice = { sub: 'alice' };
  const hour = (): number => now() + 3600;
  const attacks: [string, () => { headers: Record<string, string>; token?: string; query?: string }, { code: string; challenge: string; reason: RegExp }][] = [
    ['no token', () => ({ headers: {} }), { code: 'unauthorized', challenge: 'Bearer', reason: /Authorization: Bearer .*access_token cookie/ }],
    ['a Basic Authorization header', () => ({ headers: { authorization: 'Basic YWxpY2U6c2VjcmV0' } }), { code: 'unauthorized', challenge: 'Bearer', reason: /Bearer/ }],
    [
      'a token in the query string instead of a header or cookie',
      () => {
        const token = tokenFor('alice');
        return { headers: {}, token, query: `?access_token=${token}` };
      }, { code: 'unauthorized', challenge: 'Bearer', reason: /Bearer/ }],
    ['a garbage token', () => ({ headers: bearer('not-a-jwt-at-all'), token: 'not-a-jwt-at-all' }), { code: 'invalid_token', challenge: INVALID, reason: /malformed/ }],
    [
      'a token whose payload is not JSON (the parser error would quote it)',
      () => {
        const token = `${base64url({ alg: 'HS256', typ: 'JWT' })}.${Buffer.from('secret-payload-text').toString('base64url')}.c2lnbmF0dXJl`;
        return { headers: bearer(token), token };
      },
      { code: 'invalid_token', challenge: INVALID, reason: /not valid/ },
    ],
    [
      'a bad signature (signed with another secret)',
      () => {
        const token = jwt.sign({}, OTHER_SECRET, { subject: 'alice', expiresIn: '1h' });
        return { headers: bearer(token), token };
      },
      { code: 'invalid_token', challenge: INVALID, reason: /signature/ },
    ],
    [
      'alg none: an unsigned token',
      () => {
        const token = handmade({ alg: 'none', typ: 'JWT' }, { ...alice, exp: hour() }, () => '');
        return { headers: bearer(token), token };
      },
      { code: 'invalid_token', challenge: INVALID, reason: /signature is required/ },
    ],
    [
      'HS512 signed with the HS256 secret',
      () => {
        const token = jwt.sign({}, TEST_SECRET, { algorithm: 'HS512', subject: 'alice', expiresIn: '1h' });
        return { headers: bearer(token), token };
      },
      { code: 'invalid_token', challenge: INVALID, reason: /algorithm/ },
    ],
    [
      'expired beyond the 5 s tolerance',
      () => {
        const token = jwt.sign({ sub: 'alice', exp: now() - 10 }, TEST_SECRET);
        return { headers: bearer(token), token };
      },
      { code: 'token_expired', challenge: INVALID, reason: /expired/ },
    ],
    [
      'not yet valid (nbf a minute ahead)',
      () => {
        const token = jwt.sign({ sub: 'alice', nbf: now() + 60, exp: hour() }, TEST_SECRET);
        return { headers: bearer(token), token };
      },
      { code: 'invalid_token', challenge: INVALID, reason: /not valid yet \(nbf\)/ },
    ],
    [
      'no sub',
      () => {
        const token = jwt.sign({}, TEST_SECRET, { expiresIn: '1h' });
        return { headers: bearer(token), token };
      },
      { code: 'invalid_token', challenge: INVALID, reason: /sub claim/ },
    ],
    [
      'a sub longer than 256 characters',
      () => {
        const token = tokenFor('u'.repeat(300));
        return { headers: bearer(token), token };
      },
      { code: 'invalid_token', challenge: INVALID, reason: /sub claim/ },
    ],
    [
      'a sub that no X-User-Id header can carry (a line break)',
      () => {
        const token = tokenFor('alice\r\nx-user-id: bob');
        return { headers: bearer(token), token };
      },
      { code: 'invalid_token', challenge: INVALID, reason: /sub claim/ },
    ],
    [
      'a sub that no X-User-Id header can carry (past U+00FF)',
      () => {
        const token = tokenFor('用户');
        return { headers: bearer(token), token };
      },
      { code: 'invalid_token', challenge: INVALID, reason: /sub claim/ },
    ],
    [
      'a sub that would arrive as another user (" alice": HTTP drops the space)',
      () => {
        const token = tokenFor(' alice');
        return { headers: bearer(token), token };
      },
      { code: 'invalid_token', challenge: INVALID, reason: /sub claim/ },
    ],
    [
      'a crit header parameter the relay does not understand (RFC 7515 §4.1.11)',
      () => {
        const token = jwt.sign({}, TEST_SECRET, { subject: 'alice', expiresIn: '1h', header: { alg: 'HS256', crit: ['exp'] } as jwt.JwtHeader });
        return { headers: bearer(token), token };
      },
      { code: 'invalid_token', challenge: INVALID, reason: /crit/ },
    ],
    [
      'a crit header naming an extension that is present in the header',
      () => {
        const token = jwt.sign({}, TEST_SECRET, { subject: 'alice', expiresIn: '1h', header: { alg: 'HS256', crit: ['b64'], b64: false } as jwt.JwtHeader });
        return { headers: bearer(token), token };
      },
      { code: 'invalid_token', challenge: INVALID, reason: /crit/ },
    ],
    [
      'no exp',
      () => {
        const token = jwt.sign({ sub: 'alice' }, TEST_SECRET);
        return { headers: bearer(token), token };
      },
      { code: 'invalid_token', challenge: INVALID, reason: /exp claim/ },
    ],
  ];

  test.each(attacks)('%s', async (_name, make, expected) => {
    const { headers, token, query = '' } = make();
    expectRefused(await call(`/api${REST}${query}`, headers), { ...expected, token });
  });

  test('the same refusals hold on a shared stream route: no topic is opened', async () => {
    const token = jwt.sign({}, OTHER_SECRET, { subject: 'alice', expiresIn: '1h' });
    expectRefused(await call(`/api${STREAM}`, bearer(token)), { code: 'invalid_token', challenge: INVALID, reason: /signature/, token });
    expectRefused(await call(`/api${STREAM}`), { code: 'unauthorized', challenge: 'Bearer', reason: /Bearer/ });
    const unsendable = tokenFor('用户');
    expectRefused(await call(`/api${STREAM}`, bearer(unsendable)), { code: 'invalid_token', challenge: INVALID, reason: /sub claim/, token: unsendable });
    expect(relay.relay.hub.topicCount).toBe(0);
  });

  test('a token that expired 2 s ago is within the clock tolerance and accepted; so is an nbf 2 s ahead', async () => {
    const late = jwt.sign({ sub: 'alice', exp: now() - 2 }, TEST_SECRET);
    expect((await call(`/api${REST}`, bearer(late))).status).toBe(200);
    const early = jwt.sign({ sub: 'bob', nbf: now() + 2, exp: hour() }, TEST_SECRET);
    expect((await call(`/api${REST}`, bearer(early))).status).toBe(200);
    expect(seen.map((r) => r.headers['x-user-id'])).toEqual(['alice', 'bob']);
  });
});

describe('a token seen before', () => {
  afterEach(() => {
    jest.restoreAllMocks();
  });

  test('is accepted again until its exp, then refused: the relay remembers a token no longer than the token lasts', async () => {
    await restartRelay({ secret: TEST_SECRET, clockToleranceSec: 0 });
    const exp = now() + 60;
    const token = jwt.sign({ sub: 'alice', exp }, TEST_SECRET);
    expect((await call(`/api${REST}`, bearer(token))).status).toBe(200);
    expect((await call(`/api${REST}`, bearer(token))).status).toBe(200);
    const realNow = Date.now.bind(Date);
    const skew = exp * 1000 + 1 - realNow();
    expect(seen.map((r) => r.headers['x-user-id'])).toEqual(['alice', 'alice']);
    seen = [];
    jest.spyOn(Date, 'now').mockImplementation(() => realNow() + skew);
    expectRefused(await call(`/api${REST}`, bearer(token)), { code: 'token_expired', challenge: INVALID, reason: /./ });
  });

  test('that was refused is refused again, even when the same sub has a valid token remembered', async () => {
    const good = tokenFor('alice');
    const forged = jwt.sign({}, OTHER_SECRET, { subject: 'alice', expiresIn: '1h' });
    expect((await call(`/api${REST}`, bearer(good))).status).toBe(200);
    seen = [];
    for (let i = 0; i < 2; i++) expectRefused(await call(`/api${REST}`, bearer(forged)), { code: 'invalid_token', challenge: INVALID, reason: /signature/, token: forged });
  });
});

test('subs that a header carries unchanged reach the backend as they are', async () => {
  const subs = ['auth0|5f7c8ec7c33c6c004bbafe82', 'alice@example.com', 'José Smith', 'u'.repeat(256)];
  for (const sub of subs) expect((await call(`/api${REST}`, bearer(tokenFor(sub)))).status).toBe(200);
  expect(seen.map((r) => r.headers['x-user-id'])).toEqual(subs);
});

describe('asymmetric keys', () => {
  test('an RS256 relay accepts a valid RS256 token and refuses an HS256 token whose secret is the public key PEM', async () => {
    await restartRelay({ publicKey: RSA.publicKey });
    const valid = jwt.sign({}, RSA.privateKey, { algorithm: 'RS256', subject: 'alice', expiresIn: '1h' });
    expect((await call(`/api${REST}`, bearer(valid))).status).toBe(200);
    expect(seen.map((r) => r.headers['x-user-id'])).toEqual(['alice']);
    seen.length = 0;

    const confused = handmade({ alg: 'HS256', typ: 'JWT' }, { sub: 'alice', exp: now() + 3600 }, (input) =>
      createHmac('sha256', RSA.publicKey).update(input).digest('base64url'),
    );
    expectRefused(await call(`/api${REST}`, bearer(confused)), { code: 'invalid_token', challenge: INVALID, reason: /algorithm/, token: confused });
    const otherKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const forged = jwt.sign({}, otherKey, { algorithm: 'RS256', subject: 'alice', expiresIn: '1h' });
    expectRefused(await call(`/api${REST}`, bearer(forged)), { code: 'invalid_token', challenge: INVALID, reason: /signature/, token: forged });
    const unsigned = handmade({ alg: 'none' }, { sub: 'alice', exp: now() + 3600 }, () => '');
    expectRefused(await call(`/api${REST}`, bearer(unsigned)), { code: 'invalid_token', challenge: INVALID, reason: /signature/, token: unsigned });
  });

  test('an ES256 relay accepts a valid ES256 token and refuses an RS256 one', async () => {
    await restartRelay({ publicKey: EC.publicKey });
    const valid = jwt.sign({}, EC.privateKey, { algorithm: 'ES256', subject: 'carol', expiresIn: '1h' });
    expect((await call(`/api${REST}`, bearer(valid))).status).toBe(200);
    expect(seen.map((r) => r.headers['x-user-id'])).toEqual(['carol']);
    seen.length = 0;
    const rsa = jwt.sign({}, RSA.privateKey, { algorithm: 'RS256', subject: 'carol', expiresIn: '1h' });
    expectRefused(await call(`/api${REST}`, bearer(rsa)), { code: 'invalid_token', challenge: INVALID, reason: /algorithm/, token: rsa });
  });
});

describe('issuer and audience', () => {
  const ISSUER = 'https://issuer.example';
  const AUDIENCE = 'sse-relay';
  const signed = (claims: jwt.SignOptions): string => jwt.sign({}, TEST_SECRET, { subject: 'alice', expiresIn: '1h', ...claims });

  beforeEach(async () => {
    await restartRelay({ secret: TEST_SECRET, issuer: ISSUER, audience: AUDIENCE });
  });

  test('the right issuer and audience are accepted', async () => {
    expect((await call(`/api${REST}`, bearer(signed({ issuer: ISSUER, audience: AUDIENCE })))).status).toBe(200);
  });

  test.each([
    ['a wrong issuer', { issuer: 'https://evil.example', audience: AUDIENCE }, /issuer/],
    ['no issuer', { audience: AUDIENCE }, /issuer/],
    ['a wrong audience', { issuer: ISSUER, audience: 'another-service' }, /audience/],
    ['no audience', { issuer: ISSUER }, /audience/],
  ] as const)('%s is refused', async (_name, claims, reason) => {
    const token = signed(claims);
    expectRefused(await call(`/api${REST}`, bearer(token)), { code: 'invalid_token', challenge: INVALID, reason, token });
  });
});

describe('the access_token cookie', () => {
  test('an EventSource that sends only the cookie gets the stream', async () => {
    const token = tokenFor('alice');
    const es = new EventSource(`${relay.url}/api${STREAM}`, {
      fetch: (input, init) => fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), cookie: `theme=dark; access_token=${token}` } }),
    });
    clients.push(es);
    const events = collect(es, 2);
    await until(() => backend.listeners(STREAM) === 1);
    backend.emit(STREAM, 'data: one\n');
    backend.emit(STREAM, 'data: two\n');
    expect((await events).map((e) => e.data)).toEqual(['one', 'two']);
    expect(backend.requests.map((r) => r.user)).toEqual(['alice']);
  });

  test('a Bearer header wins over the cookie, and a bad header is not rescued by a good cookie', async () => {
    const cookie = `access_token=${tokenFor('alice')}`;
    expect((await call(`/api${REST}`, { ...bearer(tokenFor('bob')), cookie })).status).toBe(200);
    expect(seen.map((r) => r.headers['x-user-id'])).toEqual(['bob']);
    seen.length = 0;
    const forged = jwt.sign({}, OTHER_SECRET, { subject: 'bob', expiresIn: '1h' });
    expectRefused(await call(`/api${REST}`, { ...bearer(forged), cookie }), { code: 'invalid_token', challenge: INVALID, reason: /signature/, token: forged });
  });
});

describe('identity: the backend sees the token’s user and nothing the client claimed', () => {
  const spoof = { 'x-user-id': 'mallory', cookie: 'access_token=junk; session=s3cr3t-cookie' };

  function expectOnlyAlice(requests: Seen[]): void {
    expect(requests.length).toBeGreaterThan(0);
    for (const { path, headers } of requests) {
      expect([path, headers['x-user-id']]).toEqual([path, 'alice']);
      expect([path, headers.authorization, headers.cookie]).toEqual([path, undefined, undefined]);
    }
  }

  test('a shared stream: the upstream request and the status check carry the token’s user only', async () => {
    const first = eventSourceAs(`${relay.url}/api${STREAM}`, 'alice', spoof);
    clients.push(first);
    const got = collect(first, 1);
    await until(() => backend.listeners(STREAM) === 1);
    backend.emit(STREAM, 'data: hello\n');
    await got;
    // The topic is live: a second subscriber is admitted through the status route.
    const second = eventSourceAs(`${relay.url}/api${STREAM}`, 'alice', spoof);
    clients.push(second);
    await collect(second, 1);
    expect(seen.map((r) => r.path)).toEqual([STREAM, REST]);
    expectOnlyAlice(seen);
  });

  test('a POST pass-through and a REST call carry the token’s user only', async () => {
    const chat = await request(`${relay.url}/api/chat/stream`, {
      method: 'POST',
      headers: { ...bearer(tokenFor('alice')), ...spoof, 'content-type': 'application/json' },
      body: JSON.stringify({ chatbotId: 'bot', message: 'hi' }),
    });
    expect(chat.statusCode).toBe(200);
    await until(() => backend.listeners('/chat/stream') === 1);
    backend.emit('/chat/stream', 'event: message_stop\ndata: {}\n');
    backend.end('/chat/stream');
    const stream = new SseResponse(chat.statusCode, chat.headers, chat.body);
    await stream.ended;
    expect(stream.events.map((e) => e.event)).toEqual(['message_stop']);

    const rest = await call(`/api${REST}`, { ...bearer(tokenFor('alice')), ...spoof });
    expect(rest.status).toBe(200);
    expect(seen.map((r) => `${String(r.method)} ${String(r.path)}`)).toEqual(['POST /chat/stream', `GET ${REST}`]);
    expectOnlyAlice(seen);
  });
});

describe("with the reference backend: user B cannot read user A's live code by any route", () => {
  let reference: TestBackend;
  const as = (user: string): Record<string, string> => ({ ...bearer(tokenFor(user)), 'x-user-id': 'alice' });

  beforeEach(async () => {
    reference = await TestBackend.start({ tickMs: 100, chunkMs: 40 });
    await relay.close();
    relay = await startRelay(reference.url, { topicLingerMs: 200 });
  });

  afterEach(async () => {
    await reference.close();
  });

  async function expectNotFound(method: 'GET' | 'POST' | 'DELETE', path: string): Promise<void> {
    const res = await request(`${relay.url}/api${path}`, { method, headers: as('mallory') });
    const text = await res.body.text();
    expect([method, path, res.statusCode]).toEqual([method, path, 404]);
    expect(JSON.parse(text)).toEqual({ error: { code: 'not_found', message: expect.any(String) } });
  }

  test('a download: events, status and file are 404 for B while A watches it, and after it completed', async () => {
    const created = await request(`${relay.url}/api/downloads`, { method: 'POST', headers: as('alice') });
    const { code } = (await created.body.json()) as { code: string };
    // B first, before any topic exists: the backend refuses the upstream itself.
    await expectNotFound('GET', `/downloads/${code}/events`);

    const owner = eventSourceAs(`${relay.url}/api/downloads/${code}/events`, 'alice');
    clients.push(owner);
    const all = collect(owner, 12);
    await until(() => relay.relay.hub.topic(`download:${code}`)?.state === 'live', 5000, 'live topic');
    for (const path of [`/downloads/${code}/events`, `/downloads/${code}/events?lastEventId=1`, `/downloads/${code}/status`, `/downloads/${code}/file`]) {
      await expectNotFound('GET', path);
    }
    expect(relay.relay.hub.topic(`download:${code}`)?.state).toBe('live');

    const events = await all;
    expect(JSON.parse(events.at(-1)!.data as string)).toMatchObject({ status: 'COMPLETED' });
    const file = await request(`${relay.url}/api/downloads/${code}/file`, { headers: bearer(tokenFor('alice')) });
    expect(file.statusCode).toBe(200);
    await file.body.dump();
    for (const path of [`/downloads/${code}/events`, `/downloads/${code}/status`, `/downloads/${code}/file`]) await expectNotFound('GET', path);
  });

  test('an upload session: the reconnect stream and every sessions route are 404 for B, and B cannot cancel it', async () => {
    const form = multipart({ chunk_size: '1000', chunk_overlap: '0' }, sampleFile(5000));
    const upload = await request(`${relay.url}/api/documents/upload-sse`, {
      method: 'POST',
      headers: { ...as('alice'), 'content-type': form.contentType },
      body: Readable.from([form.whole]),
    });
    const stream = new SseResponse(upload.statusCode, upload.headers, upload.body);
    const sessionId = (JSON.parse((await stream.waitForEvent('start')).data) as { session_id: string }).session_id;
    await expectNotFound('GET', `/documents/upload-sse/reconnect/${sessionId}`);

    clients.push(eventSourceAs(`${relay.url}/api/documents/upload-sse/reconnect/${sessionId}`, 'alice'));
    await until(() => relay.relay.hub.topic(`session:${sessionId}`)?.state === 'live', 5000, 'live topic');
    await expectNotFound('GET', `/documents/upload-sse/reconnect/${sessionId}`);
    await expectNotFound('GET', `/sessions/${sessionId}`);
    await expectNotFound('POST', `/sessions/${sessionId}/cancel`);
    await expectNotFound('DELETE', `/sessions/${sessionId}`);
    expect(relay.relay.hub.topic(`session:${sessionId}`)?.state).toBe('live');

    await stream.waitForEvent('complete', 10_000);
    const state = await request(`${relay.url}/api/sessions/${sessionId}`, { headers: bearer(tokenFor('alice')) });
    expect(await state.body.json()).toMatchObject({ stage: 'complete', cancelled: false });
  });
});
