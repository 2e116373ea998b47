import { type IncomingMessage, request as httpRequest } from 'node:http';
import { type Socket, connect } from 'node:net';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { request } from 'undici';
import { topicHash } from '../../src/relay/cursor';
import { TestBackend } from '../backend/harness';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, STREAMS_WITHOUT_REPLAY, authHeader, eventSourceAs, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';
import type { CreateRelayOptions } from '../../src/create-relay';

const A = '/downloads/aaa/events';
const B = '/downloads/bbb/events';
const S = '/documents/upload-sse/reconnect/sss';

let backend: FixtureBackend;
let relay: RunningRelay;
const cleanups: (() => void)[] = [];

async function restart(options: Partial<CreateRelayOptions>): Promise<void> {
  await relay.close();
  relay = await startRelay(backend.url, { topicLingerMs: 50, ...options });
}

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  relay = await startRelay(backend.url, { topicLingerMs: 50 });
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  await relay.close();
  await backend.close();
});

/** A multiplexed stream read with a raw node:http request: its exact text and its parsed events. */
interface RawStream {
  readonly res: IncomingMessage;
  text: string;
  readonly events: EventSourceMessage[];
  /** Waits until `count` events arrived. */
  wait(count: number, what?: string): Promise<EventSourceMessage[]>;
  readonly ended: Promise<void>;
  close(): void;
}

function eventsUrl(topics: string[], query = ''): string {
  return `${relay.url}/api/events?${topics.map((topic) => `topic=${encodeURIComponent(topic)}`).join('&')}${query}`;
}

/** Opens `GET /api/events` as `user`; resolves with the answer (a stream when 200). */
function openRaw(topics: string[], user = 'alice', headers: Record<string, string> = {}, query = ''): Promise<RawStream> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(eventsUrl(topics, query), { headers: { ...authHeader(user), ...headers } }, (res) => {
      const events: EventSourceMessage[] = [];
      const parser = createParser({ onEvent: (event) => events.push(event) });
      const stream: RawStream = {
        res,
        text: '',
        events,
        wait: (count, what = `${count} events`) => until(() => events.length >= count, 5000, what).then(() => events.slice(0, count)),
        ended: new Promise((done) => res.once('close', done)),
        close: () => res.destroy(),
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        stream.text += chunk;
        parser.feed(chunk);
      });
      res.on('error', () => undefined);
      cleanups.push(() => res.destroy());
      resolve(stream);
    });
    req.on('error', reject);
    req.end();
  });
}

async function status(topics: string[], user = 'alice', headers: Record<string, string> = {}, query = ''): Promise<{ status: number; code?: string }> {
  const res = await request(eventsUrl(topics, query), { headers: { ...authHeader(user), ...headers } });
  if (res.statusCode === 200) {
    res.body.destroy();
    return { status: 200 };
  }
  const text = await res.body.text();
  return { status: res.statusCode, code: text === '' ? undefined : (JSON.parse(text) as { error: { code: string } }).error.code };
}

async function change(streamId: string, body: unknown, user = 'alice'): Promise<{ status: number; body: unknown }> {
  const res = await request(`${relay.url}/api/events/${streamId}/topics`, {
    method: 'POST',
    headers: { ...authHeader(user), 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, body: await res.body.json() };
}

function payload(event: EventSourceMessage): { topic: string; id: string; data: string } {
  return JSON.parse(event.data) as { topic: string; id: string; data: string };
}

test('interleaved events of three topics arrive tagged with their topic, byte-exact, each with the cursor as its id', async () => {
  const stream = await openRaw(['download:aaa', 'download:bbb', 'session:sss']);
  expect(stream.res.statusCode).toBe(200);
  expect(stream.res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
  await until(() => backend.listeners(A) === 1 && backend.listeners(B) === 1 && backend.listeners(S) === 1, 5000, 'three upstreams');
  // Three upstream connections: each event is awaited so that the interleaving is this one.
  backend.emit(A, 'data: {"progress":10}\n');
  await stream.wait(2);
  backend.emit(S, 'data: {"event":"start","session_id":"sss"}\n');
  await stream.wait(3);
  backend.emit(B, 'event: custom\ndata: line one\ndata: line "two" é 😀\n');
  await stream.wait(4);
  backend.emit(A, 'data: {"progress":20}\n');
  const events = await stream.wait(5);

  const [ready] = events;
  const streamId = (JSON.parse(ready!.data) as { streamId: string }).streamId;
  expect(streamId).toMatch(/^[A-Za-z0-9_-]{16}$/);
  const [a, b, s] = ['download:aaa', 'download:bbb', 'session:sss'].map(topicHash);
  const cursors = [`1~*${a}~*${b}~*${s}`, `1~*${a}.1~*${b}~*${s}`, `1~*${a}.1~*${b}~*${s}.1`, `1~*${a}.1~*${b}.1~*${s}.1`, `1~*${a}.2~*${b}.1~*${s}.1`];
  expect(stream.text).toBe(
    'retry: 2000\n\n' +
      `id: ${cursors[0]}\nevent: ready\ndata: {"streamId":"${streamId}","topics":["download:aaa","download:bbb","session:sss"],"heartbeatMs":15000}\n\n` +
      `id: ${cursors[1]}\ndata: {"topic":"download:aaa","id":"1","data":"{\\"progress\\":10}"}\n\n` +
      `id: ${cursors[2]}\ndata: {"topic":"session:sss","id":"1","data":"{\\"event\\":\\"start\\",\\"session_id\\":\\"sss\\"}"}\n\n` +
      `id: ${cursors[3]}\nevent: custom\ndata: {"topic":"download:bbb","id":"1","data":"line one\\nline \\"two\\" é 😀"}\n\n` +
      `id: ${cursors[4]}\ndata: {"topic":"download:aaa","id":"2","data":"{\\"progress\\":20}"}\n\n`,
  );
  expect(payload(events[3]!)).toEqual({ topic: 'download:bbb', id: '1', data: 'line one\nline "two" é 😀' });
  // One upstream per topic, as for single-topic subscribers.
  expect(backend.requests.map((r) => r.path).sort()).toEqual([S, A, B].sort());
});

test('events of several topics that come in the same turn of the event loop reach the client in one write, each with the cursor after it', async () => {
  // What the relay hands the kernel, seen on its side of the socket (counted, then written as ever):
  // a raw client's reads merge or split writes as the kernel pleases.
  const writes: string[] = [];
  relay.server.on('connection', (socket: Socket) => {
    const write = socket.write.bind(socket) as (chunk: unknown, ...rest: unknown[]) => boolean;
    socket.write = ((chunk: unknown, ...rest: unknown[]) => {
      writes.push(Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk));
      return write(chunk, ...rest);
    }) as Socket['write'];
  });
  const stream = await openRaw(['download:aaa', 'download:bbb', 'session:sss']);
  await until(() => backend.listeners(A) === 1 && backend.listeners(B) === 1 && backend.listeners(S) === 1, 5000, 'three upstreams');
  await stream.wait(1, 'ready');
  // Three upstream sockets written in one go: the relay reads all three in the same poll.
  backend.emit(A, 'data: a1\n');
  backend.emit(B, 'data: b1\n');
  backend.emit(S, 'data: s1\n');
  backend.emit(A, 'data: a2\n');
  const events = (await stream.wait(5)).slice(1);

  const withEvents = writes.filter((chunk) => chunk.includes('"topic":'));
  expect(withEvents).toHaveLength(1);
  // The relay reads the three sockets in the order the kernel reports them; within a topic, in order.
  const data = events.map((e) => payload(e).data);
  expect([...data].sort()).toEqual(['a1', 'a2', 'b1', 's1']);
  expect(data.indexOf('a1')).toBeLessThan(data.indexOf('a2'));
  // Every event carries the cursor as it stands after that event, not only the chunk's last one.
  const topics = ['download:aaa', 'download:bbb', 'session:sss'];
  const lastIds = new Map<string, string>();
  const expected = events.map((e) => {
    const { topic, id } = payload(e);
    lastIds.set(topic, id);
    return `1${topics.map((t) => `~*${topicHash(t)}${lastIds.has(t) ? `.${lastIds.get(t)}` : ''}`).join('')}`;
  });
  expect(events.map((e) => e.id)).toEqual(expected);
});

test('a dropped connection resumed with the cursor gets exactly what each topic missed', async () => {
  // A single-topic subscriber keeps the topics live while the multiplexed client is away.
  const keepers = [A, B].map((path) => eventSourceAs(`${relay.url}/api${path}`, 'alice'));
  cleanups.push(() => keepers.forEach((es) => es.close()));
  await until(() => backend.listeners(A) === 1 && backend.listeners(B) === 1);
  const first = await openRaw(['download:aaa', 'download:bbb']);
  await first.wait(1, 'ready');
  backend.emit(A, 'data: a1\n');
  backend.emit(B, 'data: b1\n');
  backend.emit(A, 'data: a2\n');
  const seen = await first.wait(4);
  const cursor = seen[3]!.id!;
  first.close();
  await until(() => relay.relay.multiplexer.streamCount === 0, 5000, 'stream gone');
  backend.emit(B, 'data: b2\n');
  backend.emit(A, 'data: a3\n');
  backend.emit(B, 'data: b3\n');
  await until(() => relay.relay.stats.eventsRelayed === 6, 5000, 'missed events relayed');

  const byHeader = await openRaw(['download:aaa', 'download:bbb'], 'alice', { 'last-event-id': cursor });
  const resumed = (await byHeader.wait(4)).slice(1).map(payload);
  // Per topic, in that topic's order: A missed a3, B missed b2 and b3.
  expect(resumed.filter((e) => e.topic === 'download:aaa').map((e) => e.data)).toEqual(['a3']);
  expect(resumed.filter((e) => e.topic === 'download:bbb').map((e) => e.data)).toEqual(['b2', 'b3']);
  backend.emit(A, 'data: a4\n');
  expect(payload((await byHeader.wait(5))[4]!).data).toBe('a4');
  expect(byHeader.events.some((e) => e.event === 'resync')).toBe(false);

  const byQuery = await openRaw(['download:aaa', 'download:bbb'], 'alice', {}, `&lastEventId=${encodeURIComponent(byHeader.events[4]!.id!)}`);
  backend.emit(B, 'data: b4\n');
  expect((await byQuery.wait(2))[1]!.data).toContain('"data":"b4"');
  expect(backend.requests.filter((r) => r.path === A)).toHaveLength(1);
});

test('with a backend that cannot replay, a topic whose missed events are no longer held gets its own resync, the others resume exactly', async () => {
  await restart({ replayBufferSize: 2, streams: STREAMS_WITHOUT_REPLAY });
  const keepers = [A, B].map((path) => eventSourceAs(`${relay.url}/api${path}`, 'alice'));
  cleanups.push(() => keepers.forEach((es) => es.close()));
  await until(() => backend.listeners(A) === 1 && backend.listeners(B) === 1);
  const first = await openRaw(['download:aaa', 'download:bbb']);
  await first.wait(1);
  backend.emit(A, 'data: a1\n');
  backend.emit(B, 'data: b1\n');
  const cursor = (await first.wait(3))[2]!.id!;
  first.close();
  for (let i = 2; i <= 4; i++) backend.emit(A, `data: a${i}\n`);
  backend.emit(B, 'data: b2\n');
  await until(() => relay.relay.stats.eventsRelayed === 6);

  const resumed = await openRaw(['download:aaa', 'download:bbb'], 'alice', { 'last-event-id': cursor });
  const events = (await resumed.wait(5)).slice(1);
  expect(events.map((e) => (e.event === 'resync' ? `resync ${e.data}` : payload(e).data))).toEqual([
    'resync {"topic":"download:aaa","reason":"history_gap"}',
    'a3',
    'a4',
    'b2',
  ]);
});

test("another user's topic in the list answers 404 for the whole request, without saying which, and holds nothing", async () => {
  backend.own(A, 'alice');
  backend.own(B, 'bob');
  const answer = await request(eventsUrl(['download:aaa', 'download:bbb']), { headers: authHeader('alice') });
  expect(answer.statusCode).toBe(404);
  const body = await answer.body.text();
  expect(JSON.parse(body)).toEqual({ error: { code: 'not_found', message: 'No such resource for this user.' } });
  expect(body).not.toContain('bbb');
  expect(relay.relay.connections.snapshot().total).toBe(0);
  expect(relay.relay.hub.streamCount).toBe(0);
  expect(backend.listeners(B)).toBe(0);
});

test('add and remove on a live stream: a removed topic stops at once, an added one starts with its history', async () => {
  backend.emit(B, 'data: b1\n');
  backend.emit(B, 'data: b2\n');
  const stream = await openRaw(['download:aaa', 'session:sss']);
  const streamId = (JSON.parse((await stream.wait(1))[0]!.data) as { streamId: string }).streamId;
  await until(() => backend.listeners(A) === 1 && backend.listeners(S) === 1);

  expect(await change(streamId, { add: ['download:bbb'], remove: ['download:aaa'] })).toEqual({
    status: 200,
    body: { topics: ['session:sss', 'download:bbb'] },
  });
  // Synchronously detached: an event published right after the answer is not delivered.
  backend.emit(A, 'data: a-after-remove\n');
  backend.emit(S, 'data: s1\n');
  const events = (await stream.wait(5)).slice(1);
  expect(events[0]).toMatchObject({ event: 'topics', data: '{"topics":["session:sss","download:bbb"]}' });
  expect(events.slice(1).map((e) => `${payload(e).topic} ${payload(e).data}`).sort()).toEqual(['download:bbb b1', 'download:bbb b2', 'session:sss s1']);
  await until(() => relay.relay.stats.eventsRelayed >= 4);
  backend.emit(B, 'data: b3\n');
  await stream.wait(6);
  expect(stream.events.map((e) => e.data).join()).not.toContain('a-after-remove');

  // Only the stream's own user may change it; an unknown stream is not found either.
  backend.own('/downloads/ccc/events', 'alice');
  expect((await change(streamId, { add: ['download:ccc'] }, 'bob')).status).toBe(404);
  expect((await change('nosuchstream', { add: ['download:ccc'] })).status).toBe(404);
  // An added topic the user may not see refuses the change, which then has not happened.
  backend.own('/downloads/ddd/events', 'bob');
  expect((await change(streamId, { add: ['download:ddd'], remove: ['session:sss'] })).status).toBe(404);
  expect((await change(streamId, { add: ['nope'] })).status).toBe(400);
  expect((await change(streamId, { add: 'download:ccc' })).status).toBe(400);
  expect((await change(streamId, {})).body).toEqual({ topics: ['session:sss', 'download:bbb'] });
});

test('a topic that finishes gives topic_end while the others go on; the stream ends with the last, and its cursor then answers 204', async () => {
  const stream = await openRaw(['download:aaa', 'download:bbb']);
  await stream.wait(1);
  await until(() => backend.listeners(A) === 1 && backend.listeners(B) === 1);
  backend.emit(A, 'data: a1\n');
  await stream.wait(2);
  backend.end(A);
  await stream.wait(3, 'topic_end');
  expect(stream.events[2]).toMatchObject({ event: 'topic_end', data: '{"topic":"download:aaa"}' });
  backend.emit(B, 'data: b1\n');
  expect(payload((await stream.wait(4))[3]!)).toMatchObject({ topic: 'download:bbb', data: 'b1' });
  expect(stream.res.complete).toBe(false);

  backend.end(B);
  await stream.ended;
  expect(stream.events.at(-1)).toMatchObject({ event: 'topic_end', data: '{"topic":"download:bbb"}' });
  const cursor = stream.events.at(-1)!.id!;
  // What EventSource does next: reconnect with the cursor. No topic is live in it: 204, stop.
  expect((await status(['download:aaa', 'download:bbb'], 'alice', { 'last-event-id': cursor })).status).toBe(204);
});

test('a native EventSource gets named events and resumes every topic with the cursor after its stream ends', async () => {
  await restart({ maxStreamLifetimeMs: 150, heartbeatMs: 50, retryHintMs: 20, topicLingerMs: 0 });
  const es = eventSourceAs(eventsUrl(['download:aaa', 'session:sss']), 'alice');
  cleanups.push(() => es.close());
  const got: string[] = [];
  const readies: string[] = [];
  const dataOf = (event: MessageEvent): string => payload({ data: String(event.data) } as EventSourceMessage).data;
  es.onmessage = (event) => got.push(dataOf(event));
  es.addEventListener('ready', (event) => readies.push(String(event.data)));
  es.addEventListener('custom', (event) => got.push(`custom ${dataOf(event)}`));
  await until(() => readies.length === 1 && backend.listeners(A) === 1 && backend.listeners(S) === 1);
  backend.emit(A, 'data: a1\n');
  backend.emit(S, 'event: custom\ndata: s1\n');
  await until(() => got.length === 2);
  // The lifetime ends the stream; these are published while the client is reconnecting.
  await until(() => relay.relay.stats.closeReasons.get('lifetime') === 1, 5000, 'lifetime end');
  expect(readies).toHaveLength(1);
  backend.emit(A, 'data: a2\n');
  backend.emit(S, 'data: s2\n');
  await until(() => readies.length >= 2 && got.length >= 4, 5000, 'resumed');
  // Two upstreams: the order between topics is the order of arrival, so compare as sets.
  expect(got.slice(0, 2).sort()).toEqual(['a1', 'custom s1']);
  expect(got.slice(2, 4).sort()).toEqual(['a2', 's2']);
  // No linger: the topics closed when the stream ended, and were opened again from the cursor's ids.
  expect(backend.requests.filter((r) => r.lastEventId === '1').map((r) => r.path).sort()).toEqual([S, A].sort());
});

test('a multiplexed stream holds one connection slot, whatever its number of topics', async () => {
  await restart({ maxConnectionsPerUser: 2 });
  const topics = ['download:aaa', 'download:bbb', 'session:sss', 'download:c1', 'download:c2'];
  const stream = await openRaw(topics);
  await stream.wait(1);
  expect(relay.relay.connections.snapshot().total).toBe(1);
  const metrics = await (await request(`${relay.url}/metrics`)).body.text();
  expect(metrics).toContain('\nsse_relay_multiplexed_streams 1\n');
  expect(metrics).toContain('\nsse_relay_multiplexed_topics 5\n');
  expect(metrics).toContain('\nsse_relay_open_streams 1\n');
  const single = eventSourceAs(`${relay.url}/api${A}`, 'alice');
  cleanups.push(() => single.close());
  await until(() => relay.relay.connections.snapshot().total === 2);
  const third = await request(eventsUrl(['download:aaa']), { headers: authHeader('alice') });
  expect(third.statusCode).toBe(429);
  await third.body.dump();
  stream.close();
  await until(() => relay.relay.connections.snapshot().total === 1, 5000, 'slot released');
  await until(() => relay.relay.multiplexer.membershipCount === 0);
});

test('topics: none, too many, malformed or unknown kinds answer 400', async () => {
  await restart({ maxTopicsPerStream: 3 });
  const none = await request(`${relay.url}/api/events`, { headers: authHeader() });
  expect(none.statusCode).toBe(400);
  await none.body.dump();
  expect(await status(['download:a', 'download:b', 'download:c', 'download:d'])).toEqual({ status: 400, code: 'too_many_topics' });
  for (const bad of ['download', 'download:', 'upload:abc', 'download:a/b', 'download:a%00', `download:${'x'.repeat(129)}`, 'download:abc:def', ':abc']) {
    expect(await status([bad])).toEqual({ status: 400, code: 'invalid_topic' });
  }
  expect(relay.relay.connections.snapshot().total).toBe(0);
});

test('a cursor fuzzed with garbage, huge and non-Latin-1 values answers 400 every time, and the relay keeps serving', async () => {
  const valid = await openRaw(['download:aaa']);
  const cursor = (await valid.wait(1))[0]!.id!;
  valid.close();
  let seed = 7;
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const garbage: string[] = ['', '0', '2~*AAAAAA', '1~', '1~*AAAA', '1~*AAAAAA.%zz', '1~*AAAAAA.%C3', '1~*AAAAAA.%41', '1~=download%3Aaaa~=download%3Aaaa', '1~=upload%3Ax', 'x'.repeat(100_000).slice(0, 7000), `1${'~*AAAAAA'.repeat(100)}`, '12', 'null', '1~*AAAAAA.1~*AAAAAA.2'];
  for (let i = 0; i < 150; i++) {
    // Mutations of a real cursor: a character replaced, inserted or the cursor cut.
    const at = random(cursor.length);
    const char = String.fromCharCode(32 + random(95));
    const mutated = [cursor.slice(0, at) + char + cursor.slice(at + 1), cursor.slice(0, at) + char + cursor.slice(at), cursor.slice(0, at)][random(3)]!;
    if (mutated !== cursor) garbage.push(mutated);
  }
  let refused = 0;
  for (const value of garbage) {
    const { status: code } = await status(['download:aaa'], 'alice', {}, `&lastEventId=${encodeURIComponent(value)}`);
    // A mutation may still be a cursor (a different id, say): then it is served, never a crash.
    if (code !== 200) {
      expect(code).toBe(400);
      refused += 1;
    } else {
      expect(value === '1' || value.startsWith('1~')).toBe(true);
    }
  }
  expect(refused).toBeGreaterThan(garbage.length / 2);
  for (const value of ['1~*AAAAAA.é', '1~*AAAAAA.😀', '1~=download%3Aaaa.\u0100', `1~*${'A'.repeat(6)}.${'1'.repeat(7000)}`]) {
    expect(await status(['download:aaa'], 'alice', {}, `&lastEventId=${encodeURIComponent(value)}`)).toEqual({ status: 400, code: 'invalid_cursor' });
  }
  // In a header: Latin-1 bytes, a huge value, control characters (sent raw: clients refuse them).
  for (const header of [Buffer.from('1~*AAAAAA.\xe9', 'latin1'), Buffer.from(`1~*AAAAAA.${'9'.repeat(12_000)}`), Buffer.from('1~*AAAAAA.\x01')]) {
    expect(await rawStatus(header)).toBe(400);
  }
  // Still serving.
  const after = await openRaw(['download:aaa'], 'alice', { 'last-event-id': cursor });
  expect(after.res.statusCode).toBe(200);
  await after.wait(1);
});

/** The status of a request whose Last-Event-ID header is these exact bytes. */
function rawStatus(lastEventId: Buffer): Promise<number> {
  const { port } = new URL(relay.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
      const match = /^HTTP\/1\.1 (\d{3})/.exec(answer);
      if (match) {
        socket.destroy();
        resolve(Number(match[1]));
      }
    });
    socket.on('error', reject);
    socket.write(
      Buffer.concat([
        Buffer.from(`GET /api/events?topic=download:aaa HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokenFor('alice')}\r\nLast-Event-ID: `),
        lastEventId,
        Buffer.from('\r\n\r\n'),
      ]),
    );
  });
}

test('a multiplexed client that does not read is cut alone, and its topics go on for the others', async () => {
  await restart({ clientMaxBufferedBytes: 64 * 1024 });
  const other = await openRaw(['download:aaa']);
  await other.wait(1);
  const slow = await openRaw(['download:aaa', 'download:bbb']);
  slow.res.pause();
  await until(() => backend.listeners(A) === 1 && backend.listeners(B) === 1);
  const big = 'x'.repeat(60_000);
  for (let i = 0; i < 200 && relay.relay.stats.slowClientsCut === 0; i++) {
    backend.emit(A, `data: ${big}\n`);
    await until(() => relay.relay.stats.eventsRelayed === i + 1);
  }
  expect(relay.relay.stats.slowClientsCut).toBe(1);
  await until(() => relay.relay.multiplexer.streamCount === 1);
  backend.emit(A, 'data: still here\n');
  await until(() => other.events.some((e) => e.data.includes('still here')));
  expect(other.res.complete).toBe(false);
});

test('heartbeats and the idle timeout apply to a multiplexed stream as one stream', async () => {
  await restart({ heartbeatMs: 30, idleTimeoutMs: 200 });
  const stream = await openRaw(['download:aaa', 'download:bbb']);
  await stream.wait(1);
  await until(() => stream.text.includes(': hb\n\n'), 2000, 'a heartbeat');
  await stream.ended;
  expect(relay.relay.stats.closeReasons.get('idle_timeout')).toBe(1);
  await until(() => relay.relay.connections.snapshot().total === 0 && relay.relay.multiplexer.streamCount === 0);
});

describe('through the real relay to the reference backend', () => {
  test('three downloads on one EventSource: each topic its 12 events in order, topic_end each, then the cursor answers 204 and EventSource stops', async () => {
    const reference = await TestBackend.start({ tickMs: 10 });
    await relay.close();
    relay = await startRelay(reference.url, { topicLingerMs: 50, retryHintMs: 20 });
    cleanups.push(() => void reference.close());
    const codes: string[] = [];
    for (let i = 0; i < 3; i++) codes.push(((await reference.call('/downloads', { method: 'POST', user: 'alice' })).json as { code: string }).code);
    const es = eventSourceAs(eventsUrl(codes.map((code) => `download:${code}`)), 'alice');
    cleanups.push(() => es.close());
    const byTopic = new Map<string, string[]>();
    const ended: string[] = [];
    let readies = 0;
    es.addEventListener('ready', () => (readies += 1));
    es.onmessage = (event) => {
      const { topic, data } = payload({ data: String(event.data) } as EventSourceMessage);
      byTopic.set(topic, [...(byTopic.get(topic) ?? []), data]);
    };
    es.addEventListener('topic_end', (event) => ended.push((JSON.parse(String(event.data)) as { topic: string }).topic));
    const errors: (number | undefined)[] = [];
    es.addEventListener('error', (event) => errors.push(event.code));
    await until(() => es.readyState === es.CLOSED, 10_000, 'EventSource stopped by the 204');
    expect(errors.at(-1)).toBe(204);
    expect(readies).toBe(1);
    expect(ended.sort()).toEqual(codes.map((code) => `download:${code}`).sort());
    for (const code of codes) {
      const events = (byTopic.get(`download:${code}`) ?? []).map((data) => JSON.parse(data) as { status: string; progress?: number });
      expect(events.map((e) => e.progress ?? e.status)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 'COMPLETED']);
    }
  });
});

test('a topic whose upstream the backend refuses gets relay_error on the stream, and the other topics go on', async () => {
  const stream = await openRaw(['download:aaa']);
  await stream.wait(1);
  await until(() => backend.listeners(A) === 1);
  const streamId = (JSON.parse(stream.events[0]!.data) as { streamId: string }).streamId;
  // The status route says yes, the stream request itself is refused (a race the relay must survive).
  backend.refuseWith = 403;
  expect((await change(streamId, { add: ['download:bbb'] })).status).toBe(200);
  await stream.wait(3, 'topics and relay_error');
  expect(stream.events[2]).toMatchObject({ event: 'relay_error', data: '{"topic":"download:bbb","reason":"refused"}' });
  backend.refuseWith = undefined;
  backend.emit(A, 'data: a1\n');
  expect(payload((await stream.wait(4))[3]!)).toMatchObject({ topic: 'download:aaa', data: 'a1' });
  expect(stream.res.complete).toBe(false);
});

test('a draining relay ends a multiplexed stream like any other, telling it when to come back', async () => {
  const stream = await openRaw(['download:aaa', 'download:bbb']);
  await stream.wait(1);
  await relay.relay.drain(50, 700);
  await stream.ended;
  // Told to come back after the drain's retry plus its jitter (up to half as much again).
  const retry = Number(/retry: (\d+)\n\n$/.exec(stream.text)?.[1]);
  expect(retry).toBeGreaterThanOrEqual(700);
  expect(retry).toBeLessThanOrEqual(1050);
  expect(relay.relay.stats.closeReasons.get('shutdown')).toBe(1);
  expect(relay.relay.connections.snapshot().total).toBe(0);
});

test('an upstream that ends cleanly without finishing does not show: the topic is reopened from its last id and goes on', async () => {
  const stream = await openRaw(['download:aaa', 'download:bbb']);
  await stream.wait(1);
  await until(() => backend.listeners(A) === 1 && backend.listeners(B) === 1);
  backend.emit(A, 'data: a1\n');
  await stream.wait(2);
  // A clean end of the response, the job not over (a backend restarting its streams, say).
  backend.closeStreams(A);
  await until(() => backend.listeners(A) === 0 || backend.requests.filter((r) => r.path === A).length === 2, 5000, 'closed');
  backend.emit(A, 'data: a2\n');
  await until(() => backend.requests.filter((r) => r.path === A).length === 2, 5000, 'upstream reopened');
  expect(backend.requests.filter((r) => r.path === A).at(-1)!.lastEventId).toBe('1');
  backend.emit(A, 'data: a3\n');
  const events = (await stream.wait(4)).slice(1);
  expect(events.map((e) => `${e.event ?? 'message'} ${payload(e).data}`)).toEqual(['message a1', 'message a2', 'message a3']);
  expect(stream.res.complete).toBe(false);
});

test('a stream is never silent longer than the heartbeatMs its ready event announces, even just after an event', async () => {
  await restart({ heartbeatMs: 200, idleTimeoutMs: 0 });
  const stream = await openRaw(['download:aaa']);
  const [ready] = await stream.wait(1);
  expect((JSON.parse(ready!.data) as { heartbeatMs: number }).heartbeatMs).toBe(200);
  await until(() => backend.listeners(A) === 1, 5000, 'the upstream');
  const chunks: number[] = [];
  stream.res.on('data', () => chunks.push(performance.now()));
  // Events at phases spread over the tick, each followed by a silence: the gap after each is
  // what a dead-stream check sees. Ticking once per interval, some gaps would near 2 × 200 ms.
  for (let i = 0; i < 6; i += 1) {
    backend.emit(A, `id: ${i + 1}\ndata: {"progress":${i}}\n`);
    await new Promise((resolve) => setTimeout(resolve, 350 + i * 37));
  }
  const gaps = chunks.slice(1).map((at, i) => at - chunks[i]!);
  expect(Math.max(...gaps)).toBeLessThan(200 + 60);
});
