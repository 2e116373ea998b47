import { type IncomingMessage, get } from 'node:http';
import { Writable } from 'node:stream';
import jwt from 'jsonwebtoken';
import { pino } from 'pino';
import { request } from 'undici';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, TEST_SECRET, startRelay } from '../support/relay-server';
import { until } from '../support/until';

const A = '/downloads/abc/events';
const B = '/downloads/xyz/events';
const S = '/documents/upload-sse/reconnect/s1';

let backend: FixtureBackend;
let relay: RunningRelay;
let warnings: Record<string, unknown>[];
const held: IncomingMessage[] = [];

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  warnings = [];
  const lines = new Writable({
    write(chunk: Buffer, _encoding, done) {
      warnings.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  relay = await startRelay(backend.url, { jwt: { secret: TEST_SECRET, topicsClaim: 'topics' }, topicLingerMs: 50, logger: pino({ level: 'warn' }, lines) });
});

afterEach(async () => {
  for (const res of held.splice(0)) res.destroy();
  await relay.close();
  await backend.close();
});

/** A token for `user` whose `topics` claim is `topics` (no claim when undefined). */
function tokenWith(user: string, topics: unknown): string {
  return jwt.sign(topics === undefined ? {} : { topics }, TEST_SECRET, { subject: user, expiresIn: '1h' });
}

/** Opens `path` with `token`: a 200 is held open, anything else read whole. */
function open(path: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    get(`${relay.url}/api${path}`, { headers: { authorization: `Bearer ${token}` } }, (res) => {
      if (res.statusCode === 200) held.push(res);
      else res.resume();
      res.on('error', () => undefined);
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

/** The first user opens `path`, so the topic is live: each later subscriber would be checked with the backend. */
async function live(path: string): Promise<void> {
  expect(await open(path, tokenWith('opener', undefined))).toBe(200);
  await until(() => backend.listeners(path) === 1, 5000, `${path} upstream`);
}

test('a topic granted in the token opens with no status request to the backend; one not granted is checked as before', async () => {
  await live(A);
  await live(B);
  const before = backend.statusChecks;
  for (let i = 0; i < 20; i++) expect(await open(A, tokenWith(`granted${i}`, ['download:abc']))).toBe(200);
  expect(backend.statusChecks).toBe(before);
  // The same token, a topic it does not list: asked.
  expect(await open(B, tokenWith('granted0', ['download:abc']))).toBe(200);
  expect(backend.statusChecks).toBe(before + 1);
  // No claim at all: asked.
  expect(await open(A, tokenWith('plain', undefined))).toBe(200);
  expect(backend.statusChecks).toBe(before + 2);
  // Every one of them shares the one upstream.
  expect(backend.requests.filter((r) => r.path === A)).toHaveLength(1);
  expect(warnings.filter((line) => line.claim !== undefined)).toEqual([]);
});

test('a prefix grant admits every topic of its kind that starts with it, and nothing of another kind', async () => {
  await live(A);
  await live(B);
  await live(S);
  const before = backend.statusChecks;
  const token = tokenWith('carol', ['download:*']);
  expect(await open(A, token)).toBe(200);
  expect(await open(B, token)).toBe(200);
  expect(backend.statusChecks).toBe(before);
  expect(await open(S, token)).toBe(200);
  expect(backend.statusChecks).toBe(before + 1);
});

test('a grant is only as narrow as its pattern: it admits to a topic the backend would refuse this user', async () => {
  backend.own(A, 'alice');
  const alice = tokenWith('alice', undefined);
  expect(await open(A, alice)).toBe(200);
  await until(() => backend.listeners(A) === 1);
  expect(await open(A, tokenWith('mallory', undefined))).toBe(404);
  // The token's issuer said mallory may watch it: the relay does not ask.
  expect(await open(A, tokenWith('mallory', ['download:abc']))).toBe(200);
});

test.each([
  ['* alone', ['*'], /names no kind/],
  ['a prefix without its kind', ['down*'], /names no kind/],
  ['a string instead of a list', 'download:abc', /not an array/],
  ['a bad entry beside a good one', ['download:abc', 'download:a b'], /a character topics do not/],
  ['more than 100 patterns', Array.from({ length: 101 }, (_, i) => `download:${i}`), /more than 100/],
])('a malformed claim (%s) grants nothing: the topic is checked with the backend, and a warning says why', async (_what, claim, reason) => {
  backend.own(A, 'opener', 'dave');
  await live(A);
  const before = backend.statusChecks;
  expect(await open(A, tokenWith('dave', claim))).toBe(200);
  expect(backend.statusChecks).toBe(before + 1);
  expect(await open(A, tokenWith('erin', claim))).toBe(404);
  // One warning for both tokens (at most one per 10 s), naming the claim and the reason.
  const ignored = warnings.filter((line) => line.claim !== undefined);
  expect(ignored).toHaveLength(1);
  expect(ignored[0]).toMatchObject({ level: 40, claim: 'topics', user: 'dave', tokens: 1 });
  expect(ignored[0]?.reason).toMatch(reason);
  expect(JSON.stringify(ignored[0])).not.toContain('eyJ');
});

test('multiplexed opens and topic adds admit granted topics without asking, and ask for the rest', async () => {
  const before = backend.statusChecks;
  const token = tokenWith('frank', ['download:*']);
  const stream = await new Promise<{ res: IncomingMessage; streamId: string }>((resolve, reject) => {
    get(`${relay.url}/api/events?topic=download:abc&topic=download:xyz`, { headers: { authorization: `Bearer ${token}` } }, (res) => {
      held.push(res);
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        const ready = /event: ready\ndata: (.*)\n/.exec(text);
        if (ready) resolve({ res, streamId: (JSON.parse(ready[1]!) as { streamId: string }).streamId });
      });
    }).on('error', reject);
  });
  expect(stream.res.statusCode).toBe(200);
  expect(backend.statusChecks).toBe(before);
  const add = async (topic: string): Promise<number> => {
    const answer = await request(`${relay.url}/api/events/${stream.streamId}/topics`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ add: [topic] }),
    });
    await answer.body.dump();
    return answer.statusCode;
  };
  expect(await add('download:more')).toBe(200);
  expect(backend.statusChecks).toBe(before);
  expect(await add('session:s1')).toBe(200);
  expect(backend.statusChecks).toBe(before + 1);
});

test('without topicsClaim set, a token carrying the claim grants nothing', async () => {
  await relay.close();
  relay = await startRelay(backend.url, { topicLingerMs: 50 });
  await live(A);
  const before = backend.statusChecks;
  expect(await open(A, tokenWith('gina', ['download:abc']))).toBe(200);
  expect(backend.statusChecks).toBe(before + 1);
});

test('a claim name no JWT can carry is refused when the relay is made', async () => {
  await expect(startRelay(backend.url, { jwt: { secret: TEST_SECRET, topicsClaim: 'my topics' } })).rejects.toThrow(/jwt.topicsClaim/);
});
