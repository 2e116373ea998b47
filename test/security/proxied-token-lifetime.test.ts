import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { EventSource } from 'eventsource';
import { request } from 'undici';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, TEST_SECRET, startRelay, tokenFor } from '../support/relay-server';
import { tokenEventSource } from '../support/token-event-source';
import { until } from '../support/until';

const RETRY_MS = 100;

let backend: FixtureBackend;
let relay: RunningRelay;
const clients: EventSource[] = [];
const aborts: AbortController[] = [];

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  // No clock tolerance: a stream ends at the second its token names.
  relay = await startRelay(backend.url, { jwt: { secret: TEST_SECRET, clockToleranceSec: 0 }, retryHintMs: RETRY_MS, idleTimeoutMs: 0 });
});
afterEach(async () => {
  for (const es of clients.splice(0)) es.close();
  for (const controller of aborts.splice(0)) controller.abort();
  await relay.close();
  await backend.close();
});

/** A token whose `exp` is 1 to 2 s ahead (`exp` has seconds' resolution), and when it is. */
function shortToken(user: string): { token: string; expiresAt: number } {
  const exp = Math.floor(Date.now() / 1000) + 2;
  return { token: tokenFor(user, { expiresIn: exp - Math.floor(Date.now() / 1000) }), expiresAt: exp * 1000 };
}

/** An `eventsource` client on a proxied route, sending `token` at every (re)connect; logs what it sees and when. */
function eventSource(path: string, token: string) {
  const made = tokenEventSource(`${relay.url}/api${path}`, () => token);
  clients.push(made.es);
  return made;
}

/** A streaming request to the relay; resolves with its status once headers came, and its whole text once it ends. */
async function stream(path: string, token: string, init: { method?: 'GET' | 'POST'; body?: Readable | string; contentType?: string; lastEventId?: string } = {}) {
  const controller = new AbortController();
  aborts.push(controller);
  const res = await request(`${relay.url}/api${path}`, {
    method: init.method ?? 'GET',
    headers: {
      authorization: `Bearer ${token}`,
      ...(init.contentType === undefined ? {} : { 'content-type': init.contentType }),
      ...(init.lastEventId === undefined ? {} : { 'last-event-id': init.lastEventId }),
    },
    body: init.body ?? null,
    signal: controller.signal,
  });
  let text = '';
  const ended = (async () => {
    for await (const chunk of res.body) text += String(chunk);
    return text;
  })().catch(() => `${text}[cut]`);
  return { status: res.statusCode, streamId: res.headers['x-stream-id'] as string | undefined, text: () => text, ended };
}

/** A backend upload route that answers an event per body chunk as it arrives and `complete` once the body is whole. */
function uploadRoute(path: string) {
  const upload = { bytes: 0, complete: false, aborted: false };
  backend.respond = (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'POST' || req.url !== path) return false;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.flushHeaders();
    req.on('data', (chunk: Buffer) => {
      upload.bytes += chunk.length;
      res.write(`data: ${upload.bytes}\n\n`);
    });
    req.on('end', () => {
      upload.complete = true;
      res.end('event: complete\ndata: stored\n\n');
    });
    res.on('close', () => {
      if (!res.writableFinished) upload.aborted = true;
    });
    return true;
  };
  return upload;
}

/** A request body of 1 KiB pieces, one every 50 ms, until `more()` says stop. */
function trickle(more: () => boolean): { body: Readable; sent: () => number } {
  let sent = 0;
  async function* pieces(): AsyncGenerator<Buffer> {
    while (more()) {
      sent += 1024;
      yield Buffer.alloc(1024, 120);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return { body: Readable.from(pieces()), sent: () => sent };
}

test("a proxied event stream ends at its token's exp with the retry hint; EventSource comes back at once and its expired token gets 401; the backend sees its request end", async () => {
  const { token, expiresAt } = shortToken('alice');
  backend.emit('/feeds/news', 'data: n1\n');
  const { es, log } = eventSource('/feeds/news', token);
  await until(() => log.got.length === 1, 5000, 'n1');
  expect(backend.listeners('/feeds/news')).toBe(1);

  await until(() => log.errors.length === 1, 5000, 'the end at expiry');
  expect(log.errors[0]).toBeGreaterThanOrEqual(expiresAt - 5);
  expect(log.errors[0]! - expiresAt).toBeLessThan(1000);
  await until(() => backend.listeners('/feeds/news') === 0, 2000, 'the upstream request aborted');
  await until(() => es.readyState === EventSource.CLOSED, 5000, 'the reconnect refused');
  expect(log.statuses).toEqual([200, 401]);
  // The relay's hint (100 ms), not eventsource's default of 3 s.
  expect(log.connects[1]! - log.errors[0]!).toBeLessThan(1500);
  expect(log.got).toEqual(['n1']);
}, 15_000);

test("a streaming POST's answer (a chat) ends at its token's exp with a retry field after the last whole event; the answer is kept for a resume with a fresh token", async () => {
  const { token, expiresAt } = shortToken('alice');
  const chat = await stream('/chat/stream', token, { method: 'POST', body: '{"chatbotId":"b","message":"hi"}', contentType: 'application/json' });
  expect(chat.status).toBe(200);
  await until(() => backend.listeners('/chat/stream') === 1, 5000, 'the chat upstream');
  backend.emit('/chat/stream', 'data: token1\n');
  // Half an event when the token expires: it is sent once whole, never completed on the client.
  backend.writeRaw('/chat/stream', 'data: tok');
  const text = await chat.ended;
  expect(Date.now()).toBeGreaterThanOrEqual(expiresAt - 5);
  expect(text).toBe(`data: token1\nid: 1\n\nretry: ${RETRY_MS}\n\n`);
  // A drop, not a cancel: the backend goes on for the resume.
  expect(backend.listeners('/chat/stream')).toBe(1);
  backend.writeRaw('/chat/stream', 'en2\n\n');
  const rest = await stream(`/streams/${chat.streamId}`, tokenFor('alice'), { lastEventId: '1' });
  expect(rest.status).toBe(200);
  backend.end('/chat/stream');
  expect(await rest.ended).toBe(`retry: ${RETRY_MS}\n\ndata: token2\nid: 2\n\n`);
}, 15_000);

test('relay.endUserStreams(user) ends that user’s proxied event streams with the retry hint and aborts their upstream requests; other users’ go on', async () => {
  const alice = await stream('/feeds/alice', tokenFor('alice'));
  const chat = await stream('/chat/stream', tokenFor('alice'), { method: 'POST', body: '{}', contentType: 'application/json' });
  const bob = await stream('/feeds/bob', tokenFor('bob'));
  await until(() => ['/feeds/alice', '/chat/stream', '/feeds/bob'].every((path) => backend.listeners(path) === 1), 5000, 'three upstreams');
  backend.emit('/feeds/alice', 'data: a1\n');
  await until(() => alice.text().includes('a1'), 5000, 'a1');

  expect(await relay.relay.endUserStreams('alice')).toBe(2);
  // The app's end jitters the hint upwards, so a crowd of clients does not come back at once.
  expect(await alice.ended).toMatch(/^data: a1\nid: 1\n\nretry: \d{3}\n\n$/);
  expect(await chat.ended).toMatch(/^retry: \d{3}\n\n$/);
  await until(() => backend.listeners('/feeds/alice') === 0 && backend.listeners('/chat/stream') === 0, 2000, 'alice’s upstreams aborted');

  backend.emit('/feeds/bob', 'data: b1\n');
  await until(() => bob.text().includes('b1'), 5000, 'b1 to bob');
  expect(backend.listeners('/feeds/bob')).toBe(1);
  expect(await relay.relay.endUserStreams('alice')).toBe(0);
}, 15_000);

test("an upload whose body is still arriving at its token's exp is not cut: every byte reaches the backend and its answer runs to the end", async () => {
  const upload = uploadRoute('/documents/upload-sse');
  const { token, expiresAt } = shortToken('alice');
  // The body goes on 600 ms past the expiry.
  const body = trickle(() => Date.now() < expiresAt + 600);
  const answer = await stream('/documents/upload-sse', token, { method: 'POST', body: body.body, contentType: 'application/octet-stream' });
  expect(answer.status).toBe(200);
  const text = await answer.ended;
  expect(Date.now()).toBeGreaterThan(expiresAt + 500);
  expect(upload).toEqual({ bytes: body.sent(), complete: true, aborted: false });
  // The relay numbers the events of an id-less answer, so that each can be resumed after.
  expect(text).toMatch(/event: complete\ndata: stored\nid: \d+\n\n$/);
}, 15_000);

test('an upload mid-body is cut by relay.endUserStreams: the backend sees the request aborted before the body is whole', async () => {
  const upload = uploadRoute('/documents/upload-sse');
  let sending = true;
  const body = trickle(() => sending);
  const answer = await stream('/documents/upload-sse', tokenFor('alice'), { method: 'POST', body: body.body, contentType: 'application/octet-stream' });
  await until(() => upload.bytes >= 4096, 5000, 'part of the body');

  expect(await relay.relay.endUserStreams('alice')).toBe(1);
  await until(() => upload.aborted, 2000, 'the upstream upload aborted');
  sending = false;
  expect(upload.complete).toBe(false);
  expect(await answer.ended).toMatch(/\n\nretry: \d{3}\n\n$/);
}, 15_000);
