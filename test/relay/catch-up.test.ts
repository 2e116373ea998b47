import { type IncomingMessage, type ServerResponse, request as httpRequest } from 'node:http';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, STREAMS_WITHOUT_REPLAY, authHeader, startRelay } from '../support/relay-server';
import { encodeEntry, joinCursor, topicHash } from '../../src/relay/cursor';
import { delay, until } from '../support/until';
import type { CreateRelayOptions } from '../../src/create-relay';

const PATH = '/downloads/abc/events';

let backend: FixtureBackend;
let relay: RunningRelay | undefined;
const cleanups: (() => void)[] = [];

beforeEach(async () => {
  backend = await new FixtureBackend().start();
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  await relay?.close();
  relay = undefined;
  await backend.close();
});

/** A stream read with node:http: its parsed events (`resync` among them), in order. */
interface Reader {
  readonly res: IncomingMessage;
  readonly events: EventSourceMessage[];
  /** Waits until `count` events arrived. */
  wait(count: number, what?: string): Promise<EventSourceMessage[]>;
  close(): void;
}

function read(url: string, headers: Record<string, string> = {}): Promise<Reader> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { ...authHeader('alice'), ...headers } }, (res) => {
      const events: EventSourceMessage[] = [];
      const parser = createParser({ onEvent: (event) => events.push(event) });
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => parser.feed(chunk));
      res.on('error', () => undefined);
      cleanups.push(() => res.destroy());
      resolve({
        res,
        events,
        wait: (count, what = `${count} events`) => until(() => events.length >= count, 10_000, what).then(() => events.slice(0, count)),
        close: () => res.destroy(),
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** What a reader got, as the test names it: `resync`, or the event's data. */
const labels = (events: readonly EventSourceMessage[]): string[] => events.map((e) => (e.event === 'resync' ? 'resync' : e.data));
const range = (from: number, to: number): string[] => Array.from({ length: to - from + 1 }, (_, i) => `e${from + i}`);
const catchUpRequests = (): { lastEventId: string | undefined }[] => backend.requests.filter((r) => r.path === PATH && r.lastEventId !== undefined);

/**
 * A relay whose topic `abc` holds only its last five events of ten: its history starts at id 6.
 * A keeper stream holds the topic open.
 */
async function topicFromSix(options: Partial<CreateRelayOptions> = {}): Promise<Reader> {
  relay = await startRelay(backend.url, { replayBufferSize: 5, topicLingerMs: 50, ...options });
  const keeper = await read(`${relay.url}/api${PATH}`);
  await until(() => backend.listeners(PATH) === 1, 5000, 'the upstream');
  for (let i = 1; i <= 10; i++) backend.emit(PATH, `data: e${i}\n`);
  await keeper.wait(10);
  return keeper;
}

test('a client resuming from before the relay\'s history is caught up from the backend: every event it missed once, in order, no resync', async () => {
  await topicFromSix();
  const late = await read(`${relay!.url}/api${PATH}`, { 'last-event-id': '2' });
  expect(late.res.statusCode).toBe(200);
  await late.wait(8);
  backend.emit(PATH, 'data: e11\n');
  expect(labels(await late.wait(9))).toEqual(range(3, 11));
  expect(late.events.map((e) => e.id)).toEqual(Array.from({ length: 9 }, (_, i) => String(i + 3)));
  // One request for that client, with its identity and its id; the topic's own upstream is untouched.
  expect(catchUpRequests()).toEqual([{ path: PATH, user: 'alice', lastEventId: '2' }]);
  expect(backend.listeners(PATH)).toBe(1);
  expect(relay!.relay.stats).toMatchObject({ catchUps: 1, catchUpFallbacks: 0, resyncs: 0 });
  await delay(50);
  expect(late.events).toHaveLength(9);
});

test('events that reach the topic while a client is caught up reach that client once, in order, at the seam', async () => {
  await topicFromSix();
  // The backend holds its answer to the catch-up while the topic relays three more events.
  let release: (() => void) | undefined;
  backend.respond = (req, res) => {
    if (req.headers['last-event-id'] !== '2') return false;
    release = () => answerFrom(res, 2);
    return true;
  };
  const late = await read(`${relay!.url}/api${PATH}`, { 'last-event-id': '2' });
  await until(() => release !== undefined, 5000, 'the catch-up request');
  for (let i = 11; i <= 13; i++) backend.emit(PATH, `data: e${i}\n`);
  await until(() => relay!.relay.stats.eventsRelayed === 13, 5000, 'the live events');
  release!();
  await late.wait(11);
  backend.emit(PATH, 'data: e14\n');
  expect(labels(await late.wait(12))).toEqual(range(3, 14));
  await delay(50);
  expect(late.events).toHaveLength(12);
});

test('a client whose id the topic has not relayed yet (its upstream is still sending its backlog) joins the topic as soon as it holds that id', async () => {
  await topicFromSix();
  // The backend has sent e11 to whoever asks afresh, not yet on the topic's upstream; it answers the
  // catch-up from e11 with a stream that has nothing more yet.
  backend.channel(PATH).frames.push({ id: '11', raw: 'data: e11\nid: 11\n\n' });
  let catchUpAnswer: ServerResponse | undefined;
  backend.respond = (req, res) => {
    if (req.headers['last-event-id'] !== '11') return false;
    res.writeHead(200, { 'content-type': 'text/event-stream' }).flushHeaders();
    catchUpAnswer = res;
    return true;
  };
  const ahead = await read(`${relay!.url}/api${PATH}`, { 'last-event-id': '11' });
  expect(ahead.res.statusCode).toBe(200);
  await until(() => catchUpAnswer !== undefined, 5000, 'the catch-up request');
  // The topic gets e11: the client has it, joins, and its catch-up request is dropped.
  backend.writeRaw(PATH, 'data: e11\nid: 11\n\n');
  await until(() => catchUpAnswer!.destroyed && relay!.relay.hub.topic('download:abc')?.catchUps === 0, 5000, 'the catch-up to end');
  backend.emit(PATH, 'data: e12\n');
  expect(labels(await ahead.wait(1))).toEqual(['e12']);
  await delay(50);
  expect(ahead.events).toHaveLength(1);
  expect(relay!.relay.stats).toMatchObject({ catchUps: 1, catchUpFallbacks: 0, resyncs: 0 });
});

test('a stream declared without replays (a backend that cannot replay) gets resync, then the history, with no catch-up', async () => {
  await topicFromSix({ streams: STREAMS_WITHOUT_REPLAY });
  const late = await read(`${relay!.url}/api${PATH}`, { 'last-event-id': '2' });
  expect(labels(await late.wait(6))).toEqual(['resync', ...range(6, 10)]);
  expect(catchUpRequests()).toEqual([]);
  expect(relay!.relay.stats).toMatchObject({ catchUps: 0, resyncs: 1 });
});

test('a backend that refuses the catch-up (it no longer holds that id) leaves the client with resync and the history', async () => {
  await topicFromSix();
  backend.respond = (req, res) => {
    if (req.headers['last-event-id'] === undefined) return false;
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"not_found","message":"gone"}}');
    return true;
  };
  const late = await read(`${relay!.url}/api${PATH}`, { 'last-event-id': '2' });
  expect(late.res.statusCode).toBe(200);
  expect(labels(await late.wait(6))).toEqual(['resync', ...range(6, 10)]);
  backend.emit(PATH, 'data: e11\n');
  expect(labels(await late.wait(7))).toEqual(['resync', ...range(6, 11)]);
  expect(relay!.relay.stats).toMatchObject({ catchUps: 1, catchUpFallbacks: 1, resyncs: 1 });
});

test('a backend that answers a catch-up from later than the id (it does not replay) leaves the client with resync and the history, nothing twice', async () => {
  await topicFromSix();
  // It answers from its latest events, as a backend that only streams what happens now would.
  backend.respond = (req, res) => {
    if (req.headers['last-event-id'] !== '2') return false;
    answerFrom(res, 8);
    return true;
  };
  const late = await read(`${relay!.url}/api${PATH}`, { 'last-event-id': '2' });
  expect(labels(await late.wait(6))).toEqual(['resync', ...range(6, 10)]);
  await delay(50);
  expect(late.events).toHaveLength(6);
  expect(relay!.relay.stats).toMatchObject({ catchUps: 1, catchUpFallbacks: 1, resyncs: 1 });
});

test('a catch-up breaking off midway leaves the client with what it got, resync, then the history: nothing twice', async () => {
  await topicFromSix();
  backend.respond = (req, res) => {
    if (req.headers['last-event-id'] !== '2') return false;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: e3\nid: 3\n\ndata: e4\nid: 4\n\n');
    setTimeout(() => res.socket?.destroy(), 50);
    return true;
  };
  const late = await read(`${relay!.url}/api${PATH}`, { 'last-event-id': '2' });
  expect(labels(await late.wait(8))).toEqual(['e3', 'e4', 'resync', ...range(6, 10)]);
  expect(relay!.relay.stats).toMatchObject({ catchUps: 1, catchUpFallbacks: 1, resyncs: 1 });
});

test('a multiplexed topic resuming from before its history is caught up too, its cursor moving with each event', async () => {
  await topicFromSix();
  const cursorAt2 = multiplexCursorAt('2');
  const resumed = await read(`${relay!.url}/api/events?topic=download:abc`, { 'last-event-id': cursorAt2 });
  const events = await resumed.wait(9);
  expect(events[0]!.event).toBe('ready');
  expect(events.slice(1).map((e) => (JSON.parse(e.data) as { id: string }).id)).toEqual(['3', '4', '5', '6', '7', '8', '9', '10']);
  expect(catchUpRequests()).toEqual([{ path: PATH, user: 'alice', lastEventId: '2' }]);
  // The last cursor resumes exactly where the stream is.
  resumed.close();
  backend.emit(PATH, 'data: e11\n');
  const again = await read(`${relay!.url}/api/events?topic=download:abc`, { 'last-event-id': events[8]!.id! });
  expect((await again.wait(2)).slice(1).map((e) => (JSON.parse(e.data) as { data: string }).data)).toEqual(['e11']);
});

test('a catch-up counts against MAX_UPSTREAMS: at the budget, the client gets resync and the history instead', async () => {
  await topicFromSix({ maxUpstreams: 1 });
  const late = await read(`${relay!.url}/api${PATH}`, { 'last-event-id': '2' });
  expect(labels(await late.wait(6))).toEqual(['resync', ...range(6, 10)]);
  expect(catchUpRequests()).toEqual([]);
});

test('a catch-up reads the backend at the pace its client reads: a client that stops reading stops the catch-up, and then gets everything once', async () => {
  const big = 'x'.repeat(64 * 1024);
  relay = await startRelay(backend.url, { replayBufferSize: 3, topicLingerMs: 50 });
  const keeper = await read(`${relay.url}/api${PATH}`);
  await until(() => backend.listeners(PATH) === 1, 5000, 'the upstream');
  const total = 400;
  for (let i = 1; i <= total; i++) backend.emit(PATH, `data: e${i} ${big}\n`);
  await keeper.wait(total);
  let catchUpAnswer: ServerResponse | undefined;
  backend.onStream = (res) => {
    if (res.req.headers['last-event-id'] === '1') catchUpAnswer = res;
  };
  // 25 MiB to catch up, to a client that reads nothing for a while: past what loopback's buffers hold.
  const late = await read(`${relay.url}/api${PATH}`, { 'last-event-id': '1' });
  late.res.pause();
  await until(() => catchUpAnswer !== undefined, 5000, 'the catch-up answer');
  await delay(500);
  // The relay stopped reading: most of the answer still waits at the backend.
  expect(catchUpAnswer!.writableLength).toBeGreaterThan(8 * 1024 ** 2);
  late.res.resume();
  const events = await late.wait(total - 1, 'every missed event');
  expect(events.map((e) => e.data.slice(0, e.data.indexOf(' ')))).toEqual(range(2, total));
  await delay(50);
  expect(late.events).toHaveLength(total - 1);
}, 30_000);

/** Writes the fixture's frames after the first `after` of them, as a 200 event stream, and keeps the response live. */
function answerFrom(res: ServerResponse, after: number): void {
  const channel = backend.channel(PATH);
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  for (const frame of channel.frames.slice(after)) res.write(frame.raw);
  channel.open.add(res);
  res.on('close', () => channel.open.delete(res));
}

/** A multiplexed stream's cursor for `download:abc` at `id`, as a client that last saw that event would hold. */
function multiplexCursorAt(id: string): string {
  return joinCursor([encodeEntry({ ref: 'hash', hash: topicHash('download:abc'), live: true, lastId: id })]);
}
