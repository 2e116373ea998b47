import type { IncomingHttpHeaders, IncomingMessage, Server } from 'node:http';
import { Writable } from 'node:stream';
import { EventSource } from 'eventsource';
import { pino } from 'pino';
import { request } from 'undici';
import { freePort } from '../support/free-port';
import type { CreateRelayOptions } from '../../src/create-relay';
import { SHARED_STREAMS } from '../../routes/streams';
import type { TopicOwnership } from '../../src/relay/ownership';
import { TestBackend, failure } from '../backend/harness';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, authHeader, collect, eventSourceAs, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const PATH = '/downloads/abc/events';
const API = `/api${PATH}`;

let backend: FixtureBackend;
let relay: RunningRelay;
const closers: (() => unknown)[] = [];

/** Quick reconnects, and a finished topic kept long enough for the test to look at it. */
const FAST: Partial<CreateRelayOptions> = { topicLingerMs: 5000, reconnectBaseDelayMs: 2, reconnectMaxDelayMs: 20, retryHintMinMs: 5 };

async function relayWith(options: Partial<CreateRelayOptions> = {}, backendUrl = backend.url): Promise<RunningRelay> {
  await relay.close();
  relay = await startRelay(backendUrl, { ...FAST, ...options });
  return relay;
}

function open(url = `${relay.url}${API}`, user = 'alice'): EventSource {
  const es = eventSourceAs(url, user);
  closers.push(() => es.close());
  return es;
}

interface RawStream {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** Everything received so far. */
  text(): string;
  /** Resolves when the body ended (the relay ended the stream). */
  readonly ended: Promise<void>;
}

/** A GET of the relay read as it arrives, as a client that is not an EventSource sees it. */
async function openRaw(path = API, headers: Record<string, string> = {}): Promise<RawStream> {
  const res = await request(`${relay.url}${path}`, { headers: { ...authHeader('alice'), ...headers } });
  let text = '';
  res.body.setEncoding('utf8');
  res.body.on('data', (chunk: string) => (text += chunk));
  const ended = new Promise<void>((resolve) => res.body.once('end', resolve).once('close', resolve));
  closers.push(() => res.body.destroy());
  return { status: res.statusCode, headers: res.headers, text: () => text, ended };
}

/** A logger whose JSON lines land in `lines`. */
function capturedLogger(lines: Record<string, unknown>[]): CreateRelayOptions['logger'] {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return pino({ level: 'info' }, sink);
}

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  relay = await startRelay(backend.url, FAST);
});

afterEach(async () => {
  for (const close of closers.splice(0)) close();
  await relay.close();
  await backend.close();
});

describe('redirects', () => {
  test.each([301, 302, 307, 308])('a %i from the backend is followed on the same origin, with the identity', async (status) => {
    backend.respond = (req, res) => {
      if (!req.url?.startsWith('/downloads/abc/')) return false;
      res.writeHead(status, { location: '/downloads/moved/events' }).end();
      return true;
    };
    const es = open();
    const events = collect(es, 1);
    await until(() => backend.listeners('/downloads/moved/events') === 1);
    backend.emit('/downloads/moved/events', 'data: here\n');
    expect((await events).map((e) => e.data)).toEqual(['here']);
    expect(backend.requests.map((r) => [r.path, r.user])).toEqual([
      [PATH, 'alice'],
      ['/downloads/moved/events', 'alice'],
    ]);
  });

  test('a redirect to another origin is refused at once unless that origin is allowed, and never gets the identity', async () => {
    const other = await new FixtureBackend().start();
    closers.push(() => other.close());
    backend.respond = (_req, res) => {
      res.writeHead(307, { location: `${other.url}${PATH}` }).end();
      return true;
    };
    const started = Date.now();
    const refused = await request(`${relay.url}${API}`, { headers: authHeader('alice') });
    expect(refused.statusCode).toBe(502);
    expect(((await refused.body.json()) as { error: { code: string } }).error.code).toBe('upstream_redirect_refused');
    expect(Date.now() - started).toBeLessThan(2000);
    expect(other.requests).toHaveLength(0);

    await relayWith({ upstreamRedirectOrigins: [other.url] });
    const es = open();
    const events = collect(es, 1);
    await until(() => other.listeners(PATH) === 1);
    other.emit(PATH, 'data: elsewhere\n');
    expect((await events)[0]?.data).toBe('elsewhere');
    expect(other.requests.map((r) => r.user)).toEqual([undefined]);
  });
});

describe('clean ends and 204', () => {
  test('a backend that ends cleanly and then has more: clients see the end, reconnect, and get the rest', async () => {
    const es = open();
    const events = collect(es, 3);
    let ends = 0;
    es.addEventListener('error', () => (ends += 1));
    await until(() => backend.listeners(PATH) === 1);
    backend.writeRaw(PATH, 'retry: 10\n\n');
    backend.emit(PATH, 'data: e1\n');
    backend.emit(PATH, 'data: e2\n');
    await until(() => relay.relay.stats.eventsRelayed === 2);
    backend.closeStreams(PATH);
    await until(() => relay.relay.hub.topic('download:abc')?.state === 'ended');
    backend.emit(PATH, 'data: e3\n');

    expect((await events).map((e) => [e.data, e.lastEventId])).toEqual([
      ['e1', '1'],
      ['e2', '2'],
      ['e3', '3'],
    ]);
    expect(ends).toBe(1);
    // The relay asked again with the last id, as the client would have.
    expect(backend.requests.map((r) => r.lastEventId)).toEqual([undefined, '2']);
  });

  test('a finished download (reference backend): the reconnect gets 204, a late joiner the replay and the end, one with the last id 204', async () => {
    const api = await TestBackend.start();
    closers.push(() => api.close());
    await relayWith({}, api.url);
    const asked: (string | undefined)[] = [];
    (api as unknown as { server: Server }).server.on('request', (req: IncomingMessage) => {
      if (req.url?.endsWith('/events') === true) asked.push(req.headers['last-event-id'] as string | undefined);
    });
    const code = ((await api.call('/downloads', { method: 'POST' })).json as { code: string }).code;
    const path = `/api/downloads/${code}/events`;

    const es = open(`${relay.url}${path}`);
    const stopped = failure(es);
    const events: MessageEvent[] = [];
    es.onmessage = (event) => events.push(event);
    // The backend ends the stream after COMPLETED; the client reconnects with its id and the relay's reconnect gets 204.
    expect(await stopped).toMatchObject({ code: 204 });
    expect(events).toHaveLength(12);
    expect(JSON.parse(events[11]!.data as string)).toMatchObject({ status: 'COMPLETED' });
    expect(relay.relay.hub.topic(`download:${code}`)?.state).toBe('finished');
    // The relay asked the backend again, as the client would have, and the backend said 204.
    expect(asked).toEqual([undefined, '12']);

    const late = await openRaw(path);
    await late.ended;
    expect(late.status).toBe(200);
    expect(late.text().match(/^id: \d+$/gm)).toEqual(Array.from({ length: 12 }, (_, i) => `id: ${i + 1}`));
    const done = await request(`${relay.url}${path}`, { headers: { ...authHeader('alice'), 'last-event-id': '12' } });
    expect(done.statusCode).toBe(204);
    await done.body.dump();
  });

  test('a stream declared final is over on a clean end: the reconnect gets 204 without asking the backend', async () => {
    await relayWith({ streams: [{ ...SHARED_STREAMS[0]!, final: true }] });
    const es = open();
    const stopped = failure(es);
    const events = collect(es, 1);
    await until(() => backend.listeners(PATH) === 1);
    backend.writeRaw(PATH, 'retry: 10\n\n');
    backend.emit(PATH, 'data: only\n');
    await events;
    backend.closeStreams(PATH);
    expect(await stopped).toMatchObject({ code: 204 });
    expect(backend.requests).toHaveLength(1);
  });

  test('a stream that finishes after an id-only frame: the eventsource client reconnects once, from the id it saw, gets 204 and stops', async () => {
    const asked: { lastEventId: string | null; status: number }[] = [];
    const token = tokenFor('alice');
    const es = new EventSource(`${relay.url}${API}`, {
      fetch: async (input, init) => {
        const headers = new Headers(init?.headers as Record<string, string>);
        headers.set('authorization', `Bearer ${token}`);
        const answer = await fetch(input, { ...init, headers });
        asked.push({ lastEventId: headers.get('last-event-id'), status: answer.status });
        return answer;
      },
    });
    closers.push(() => es.close());
    const stopped = failure(es);
    const got: string[] = [];
    es.onmessage = (event) => got.push(event.data as string);
    await until(() => backend.listeners(PATH) === 1);
    backend.writeRaw(PATH, 'retry: 200\n\n');
    backend.emit(PATH, 'data: a\n');
    // An id-only frame last: the eventsource client ignores it and keeps `1` as its last id.
    backend.emit(PATH, '');
    backend.end(PATH);

    expect(await stopped).toMatchObject({ code: 204 });
    expect(got).toEqual(['a']);
    expect(asked).toEqual([
      { lastEventId: null, status: 200 },
      { lastEventId: '1', status: 204 },
    ]);
    // The relay resumed the backend from the id-only frame's id, as a browser would, and was told 204.
    expect(backend.requests.map((r) => r.lastEventId)).toEqual([undefined, '2']);
    // A client that did take the id-only frame gets 204 as well; one from before `a` gets `a`, then the end.
    const after = await request(`${relay.url}${API}`, { headers: { ...authHeader('alice'), 'last-event-id': '2' } });
    expect(after.statusCode).toBe(204);
    await after.body.dump();
    const before = await openRaw();
    await before.ended;
    expect(before.text()).toBe('retry: 200\n\ndata: a\nid: 1\n\nid: 2\n\n');
  });

  test('a clean end with no id to resume from ends the topic: a client that comes back starts afresh', async () => {
    const first = await openRaw();
    await until(() => backend.listeners(PATH) === 1);
    backend.writeRaw(PATH, 'data: no id\n\n');
    backend.closeStreams(PATH);
    await first.ended;
    // At once, not after the linger period: there is nothing to resume.
    await until(() => relay.relay.hub.topicCount === 0, 1000, 'the topic closed');
    const again = await openRaw();
    await until(() => backend.listeners(PATH) === 1);
    expect(again.status).toBe(200);
    expect(backend.requests.map((r) => r.lastEventId)).toEqual([undefined, undefined]);
  });
});

describe('answers that are not an event stream', () => {
  test.each([
    ['a JSON page', { 'content-type': 'application/json' }, '{"oops":true}', 'upstream_not_event_stream'],
    ['no content type', {}, 'hello', 'upstream_not_event_stream'],
    ['the backend’s own JSON error', { 'content-type': 'application/json' }, '{"error":{"code":"maintenance","message":"Back soon."}}', 'maintenance'],
  ])('a 200 with %s reaches the waiting subscriber at once as a 502 JSON error, never an error under 200', async (_name, headers, body, code) => {
    await relayWith({ reconnectBaseDelayMs: 5000, reconnectMaxDelayMs: 5000 });
    backend.respond = (_req, res) => {
      res.writeHead(200, headers).end(body);
      return true;
    };
    const started = Date.now();
    const res = await request(`${relay.url}${API}`, { headers: authHeader('alice') });
    expect(res.statusCode).toBe(502);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe(code);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(backend.requests).toHaveLength(1);
  });

  test.each([429, 503])('a %i with a short Retry-After is waited out once; a second one, or one without, is passed on', async (status) => {
    await relayWith({ reconnectMaxDelayMs: 2000 });
    let busy = 1;
    backend.respond = (_req, res) => {
      if (busy-- <= 0) return false;
      res.writeHead(status, { 'retry-after': '1', 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'busy', message: 'Come back in a second.' } }));
      return true;
    };
    const started = Date.now();
    const es = open();
    const events = collect(es, 1);
    await until(() => backend.listeners(PATH) === 1, 5000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    backend.emit(PATH, 'data: served\n');
    expect((await events)[0]?.data).toBe('served');

    busy = 2;
    const twice = await request(`${relay.url}/api/downloads/other/events`, { headers: authHeader('alice') });
    expect(twice.statusCode).toBe(status);
    expect(await twice.body.json()).toEqual({ error: { code: 'busy', message: 'Come back in a second.' } });
    // Waited out once, then the second answer passed on: exactly two requests upstream.
    expect(backend.requests.filter((r) => r.path === '/downloads/other/events')).toHaveLength(2);

    backend.respond = (_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
      return true;
    };
    const noRetryAfter = Date.now();
    const once = await request(`${relay.url}/api/downloads/third/events`, { headers: authHeader('alice') });
    expect(once.statusCode).toBe(status);
    await once.body.dump();
    expect(Date.now() - noRetryAfter).toBeLessThan(900);
    expect(backend.requests.filter((r) => r.path === '/downloads/third/events')).toHaveLength(1);
  });
});

describe('what the backend sends is what clients get', () => {
  test('repeated ids on a live connection are all delivered', async () => {
    const es = open();
    const events = collect(es, 2);
    await until(() => backend.listeners(PATH) === 1);
    backend.writeRaw(PATH, 'data: a\nid: 1\n\ndata: b\nid: 1\n\n');
    expect((await events).map((e) => [e.data, e.lastEventId])).toEqual([
      ['a', '1'],
      ['b', '1'],
    ]);
    expect(relay.relay.stats.duplicatesDropped).toBe(0);
  });

  test("the backend's retry: reaches clients, bounded by the relay's minimum and maximum", async () => {
    await relayWith({ retryHintMinMs: 100, retryHintMaxMs: 5000 });
    const first = await openRaw();
    await until(() => first.text() !== '');
    expect(first.text()).toBe('retry: 2000\n\n');
    await until(() => backend.listeners(PATH) === 1);
    backend.writeRaw(PATH, 'retry: 3000\n\n');
    await until(() => first.text().includes('retry: 3000\n\n'));
    backend.writeRaw(PATH, 'retry: 10\n\n');
    await until(() => first.text().includes('retry: 100\n\n'));
    backend.writeRaw(PATH, 'retry: 999999\n\n');
    await until(() => first.text().includes('retry: 5000\n\n'));
    // A subscriber who joins later gets the backend's hint, not the relay's default.
    const second = await openRaw();
    await until(() => second.text() !== '');
    expect(second.text()).toBe('retry: 5000\n\n');
  });

  test('an id line without data moves the resume id: clients get it, and the relay resumes from it', async () => {
    const live = await openRaw();
    await until(() => backend.listeners(PATH) === 1);
    backend.emit(PATH, 'data: e1\n');
    backend.writeRaw(PATH, 'id: 7\n\ndata: after\n\n');
    // The id-only frame is passed on, so a browser's last event id moves too.
    await until(() => live.text().endsWith('data: after\n\n'));
    expect(live.text()).toBe('retry: 2000\n\ndata: e1\nid: 1\n\nid: 7\n\ndata: after\n\n');
    // A client resuming from it gets what came after it.
    const resumed = await openRaw(API, { 'last-event-id': '7' });
    await until(() => resumed.text().endsWith('data: after\n\n'));
    expect(resumed.text()).toBe('retry: 2000\n\ndata: after\n\n');
    backend.drop(PATH);
    await until(() => backend.requests.length === 2);
    expect(backend.requests[1]?.lastEventId).toBe('7');
  });

  test('an event name with NUL reaches the client unchanged, on the same upstream connection', async () => {
    const es = open();
    const events = collect(es, 1, 'a\0b');
    await until(() => backend.listeners(PATH) === 1);
    backend.writeRaw(PATH, 'event: a\0b\ndata: x\nid: 1\n\n');
    expect((await events)[0]?.data).toBe('x');
    expect(backend.requests).toHaveLength(1);
  });
});

describe('failures', () => {
  test('an event the relay cannot re-encode is dropped, counted and logged; the stream goes on', async () => {
    const lines: Record<string, unknown>[] = [];
    // A feed that breaks the SSE rules (an id with a line break), as a shared owner might relay it.
    const corrupting = (local: TopicOwnership): TopicOwnership => ({
      feed: (key, init, listener) =>
        local.feed(key, init, {
          ...listener,
          onEvent: (event, id) => listener.onEvent(event.data === 'poison' ? { ...event, id: 'x\ny' } : event, id),
        }),
      history: (key) => local.history(key),
    });
    await relayWith({ ownership: corrupting, logger: capturedLogger(lines) });
    const es = open();
    const events = collect(es, 2);
    await until(() => backend.listeners(PATH) === 1);
    backend.emit(PATH, 'data: before\n');
    backend.emit(PATH, 'data: poison\n');
    backend.emit(PATH, 'data: after\n');
    expect((await events).map((e) => e.data)).toEqual(['before', 'after']);
    expect(relay.relay.stats.eventsDropped).toBe(1);
    expect(backend.requests).toHaveLength(1);
    expect(lines.filter((line) => line.msg === 'upstream event dropped: it cannot be re-encoded')).toEqual([
      expect.objectContaining({ level: 40, topic: 'download:abc', id: 'x\ny' }),
    ]);
    const metrics = await request(`${relay.url}/metrics`);
    expect(await metrics.body.text()).toMatch(/^sse_relay_events_dropped_total 1$/m);
  });

  test('reconnects that die right after connecting count towards giving up, even when each delivered an event', async () => {
    await relayWith({ reconnectMaxAttempts: 3, reconnectBaseDelayMs: 1, reconnectMaxDelayMs: 5000 });
    let n = 0;
    backend.onStream = (res) => {
      n += 1;
      res.write(`data: n${n}\nid: ${n}\n\n`, () => res.socket?.destroy());
    };
    const es = open();
    const failed = collect(es, 1, 'relay_error');
    expect(JSON.parse((await failed)[0]!.data as string)).toEqual({ reason: 'upstream_unavailable' });
    expect(backend.requests).toHaveLength(4);
  });

  test('each failed upstream attempt is one warn line with its cause and number; the 502 line names the cause', async () => {
    const lines: Record<string, unknown>[] = [];
    const port = await freePort();
    await relayWith({ reconnectMaxAttempts: 2, reconnectBaseDelayMs: 1, reconnectMaxDelayMs: 2, logger: capturedLogger(lines) }, `http://127.0.0.1:${port}`);
    const res = await request(`${relay.url}${API}`, { headers: authHeader('alice') });
    expect(res.statusCode).toBe(502);
    await res.body.dump();
    await until(() => lines.some((line) => line.msg === 'request completed'));
    const cause = `ECONNREFUSED 127.0.0.1:${port}`;
    expect(lines.filter((line) => line.msg === 'upstream attempt failed; retrying')).toEqual([
      expect.objectContaining({ level: 40, topic: 'download:abc', attempt: 1, cause }),
      expect.objectContaining({ level: 40, topic: 'download:abc', attempt: 2, cause }),
    ]);
    expect(lines.find((line) => line.msg === 'upstream given up')).toMatchObject({ level: 50, cause });
    expect(lines.find((line) => line.msg === 'request completed')).toMatchObject({ res: { statusCode: 502 }, reason: expect.stringContaining(cause) });
  });

  test('a 502 because the status check failed logs the error that caused it', async () => {
    const lines: Record<string, unknown>[] = [];
    await relayWith({ authorize: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:9')), logger: capturedLogger(lines) });
    const res = await request(`${relay.url}${API}`, { headers: authHeader('alice') });
    expect(res.statusCode).toBe(502);
    expect(((await res.body.json()) as { error: { message: string } }).error.message).not.toContain('ECONNREFUSED');
    await until(() => lines.some((line) => line.msg === 'request completed'));
    expect(lines.find((line) => line.msg === 'request completed')).toMatchObject({
      res: { statusCode: 502 },
      err: { message: expect.stringContaining('connect ECONNREFUSED 127.0.0.1:9') },
    });
  });

  test('a backend answering 503 to a reconnect is logged as status 503', async () => {
    const lines: Record<string, unknown>[] = [];
    await relayWith({ reconnectMaxAttempts: 1, logger: capturedLogger(lines) });
    const es = open();
    const failed = collect(es, 1, 'relay_error');
    await until(() => backend.listeners(PATH) === 1);
    backend.emit(PATH, 'data: e1\n');
    await until(() => relay.relay.stats.eventsRelayed === 1);
    backend.refuseWith = 503;
    backend.drop(PATH);
    await failed;
    expect(lines.filter((line) => line.msg === 'upstream attempt failed; retrying').map((line) => line.cause)).toEqual([
      expect.stringMatching(/^(UND_ERR_SOCKET|ECONNRESET)/),
    ]);
    expect(lines.find((line) => line.msg === 'upstream given up')).toMatchObject({ cause: 'status 503' });
  });
});
