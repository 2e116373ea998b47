import { type ClientRequest, type IncomingMessage, get } from 'node:http';
import type { Socket } from 'node:net';
import type { CreateRelayOptions } from '../../src/create-relay';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, startRelay, tokenFor } from '../support/relay-server';
import { delay, until } from '../support/until';

/**
 * One stream policy for every kind of client stream: a relayed (shared) topic, a multiplexed
 * stream, and a backend's event stream passed through the proxy. Each gets the same idle,
 * heartbeat, lifetime and slow-client rules, checked here with short configured timings.
 */

interface Kind {
  readonly name: string;
  /** The relay's URL path of the stream whose backend stream is `backendPath(id)`. */
  relayPath(id: string): string;
  backendPath(id: string): string;
}

const KINDS: readonly Kind[] = [
  { name: 'relayed', relayPath: (id) => `/api/downloads/${id}/events`, backendPath: (id) => `/downloads/${id}/events` },
  { name: 'multiplexed', relayPath: (id) => `/api/events?topic=download:${id}`, backendPath: (id) => `/downloads/${id}/events` },
  { name: 'proxied', relayPath: (id) => `/api/feeds/${id}`, backendPath: (id) => `/feeds/${id}` },
];

/** Keeps only the end of what a client got: enough to find the last events and how it ended. */
const TAIL = 256 * 1024;

/** A client of one stream on its own connection (node:http: chunked decoding, and backpressure when paused). */
class StreamClient {
  tail = '';
  bytes = 0;
  /** `end`: the relay ended the response; `aborted`: the connection was cut mid-response. */
  outcome: 'end' | 'aborted' | undefined;
  socket: Socket | undefined;
  private answer: IncomingMessage | undefined;
  private readonly request: ClientRequest;

  constructor(url: string) {
    this.request = get(url, { agent: false, headers: { authorization: `Bearer ${tokenFor('alice')}`, accept: 'text/event-stream' } });
    this.request.on('socket', (socket) => (this.socket = socket));
    this.request.on('error', () => (this.outcome ??= 'aborted'));
    this.request.on('response', (answer: IncomingMessage) => {
      this.answer = answer;
      answer.setEncoding('utf8');
      answer.on('data', (text: string) => {
        this.bytes += text.length;
        this.tail = (this.tail + text).slice(-TAIL);
      });
      answer.on('end', () => (this.outcome ??= 'end'));
      answer.on('aborted', () => (this.outcome ??= 'aborted'));
      answer.on('error', () => (this.outcome ??= 'aborted'));
    });
  }

  async opened(): Promise<IncomingMessage> {
    await until(() => this.answer !== undefined, 5000, 'the response');
    expect(this.answer?.statusCode).toBe(200);
    return this.answer as IncomingMessage;
  }

  /** Stops reading: the kernel's buffers fill, then the relay's. */
  pause(): void {
    this.answer?.pause();
  }

  resume(): void {
    this.answer?.resume();
  }

  has(text: string): boolean {
    return this.tail.includes(text);
  }

  close(): void {
    this.request.destroy();
  }
}

describe.each(KINDS)('a $name stream', (kind) => {
  let backend: FixtureBackend;
  let relay: RunningRelay | undefined;
  let client: StreamClient | undefined;
  let sockets: Set<Socket>;
  let serial = 0;
  let id: string;

  beforeEach(async () => {
    backend = await new FixtureBackend().start();
    serial += 1;
    id = `policy${serial}`;
  });

  afterEach(async () => {
    client?.close();
    client = undefined;
    await relay?.close();
    relay = undefined;
    await backend.close();
  });

  /** When the last stream was asked for: the relay opened it later. */
  let requestedAt = 0;

  async function open(settings: Partial<CreateRelayOptions>): Promise<StreamClient> {
    relay = await startRelay(backend.url, { topicLingerMs: 10, ...settings });
    sockets = new Set();
    relay.server.on('connection', (socket: Socket) => sockets.add(socket));
    requestedAt = Date.now();
    client = new StreamClient(`${relay.url}${kind.relayPath(id)}`);
    await client.opened();
    await until(() => backend.listeners(kind.backendPath(id)) === 1, 5000, 'the upstream request');
    return client;
  }

  /** The most bytes any of the relay's client sockets holds unsent. */
  const mostUnsent = (): number => Math.max(0, ...[...sockets].map((socket) => socket.writableLength));

  /** Emits events of 16 KiB until the relay holds more than `bytes` unsent for the paused client. */
  async function pushPast(bytes: number): Promise<void> {
    const payload = 'x'.repeat(16 * 1024);
    for (let i = 0; mostUnsent() <= bytes; i++) {
      if (i > 4000) throw new Error('the relay never held anything unsent');
      backend.emit(kind.backendPath(id), `data: ${i} ${payload}\n`);
      if (i % 8 === 7) await delay(1);
    }
  }

  test('ends once no event came for the idle timeout, however many heartbeats and backend comments came', async () => {
    const idleMs = 600;
    const stream = await open({ idleTimeoutMs: idleMs, heartbeatMs: 40, maxStreamLifetimeMs: 0 });
    const path = kind.backendPath(id);
    // Events keep it open for several idle timeouts.
    let lastEmittedAt = 0;
    for (let i = 0; i < 25; i++) {
      lastEmittedAt = Date.now();
      backend.emit(path, `data: event ${i}\n`);
      await delay(50);
    }
    expect(stream.outcome).toBeUndefined();
    await until(() => stream.has('event 24'), 5000, 'the last event');
    // Then only the backend's comments: no event.
    const comments = setInterval(() => backend.writeRaw(path, ': keep-alive\n\n'), 30);
    try {
      await until(() => stream.outcome !== undefined, 5000, 'the idle end');
    } finally {
      clearInterval(comments);
    }
    // The relay wrote the last event after it was emitted, and ended the stream an idle timeout after that.
    expect(Date.now() - lastEmittedAt).toBeGreaterThanOrEqual(idleMs);
    expect(Date.now() - lastEmittedAt).toBeLessThan(idleMs + 2000);
    expect(stream.outcome).toBe('end');
    // The relay's own heartbeats came meanwhile, and did not keep it open either.
    expect(stream.has(': hb\n\n')).toBe(true);
  });

  test('a client past the buffer cap that drains again within the grace period is kept; one that stays stalled is cut after it', async () => {
    const cap = 1024;
    const graceMs = 1500;
    const stream = await open({ clientMaxBufferedBytes: cap, clientBufferCeilingFactor: 1000, clientDrainGraceMs: graceMs, heartbeatMs: 10_000, idleTimeoutMs: 0, maxStreamLifetimeMs: 0 });
    const path = kind.backendPath(id);

    stream.pause();
    await pushPast(cap);
    stream.resume();
    backend.emit(path, 'data: caught-up\n');
    await until(() => stream.has('caught-up'), 10_000, 'the client to catch up');
    expect(stream.outcome).toBeUndefined();

    stream.pause();
    await pushPast(cap);
    const stalledFrom = Date.now();
    // Events keep coming while it stalls, faster than a kernel that grows its loopback buffers (to
    // megabytes, on a quiet machine) can take them, so it cannot drain the relay below the cap.
    const more = setInterval(() => backend.emit(path, `data: more ${'y'.repeat(64 * 1024)}\n`), 10);
    try {
      await until(() => [...sockets].some((socket) => socket.destroyed), graceMs + 5000, 'the stalled client to be cut');
    } finally {
      clearInterval(more);
    }
    expect(Date.now() - stalledFrom).toBeLessThan(graceMs + 5000);
    stream.resume();
    await until(() => stream.outcome !== undefined, 5000, 'the client to see the cut');
    expect(stream.outcome).toBe('aborted');
    await until(() => backend.listeners(path) === 0 || kind.name !== 'proxied', 5000, 'the proxied upstream request to end');
  });

  test('a client whose unsent bytes would pass the ceiling is cut at once, long before the grace period', async () => {
    const cap = 1024;
    // A ceiling of one cap: a single event larger than it cannot be held.
    const stream = await open({ clientMaxBufferedBytes: cap, clientBufferCeilingFactor: 1, clientDrainGraceMs: 60_000, heartbeatMs: 10_000, idleTimeoutMs: 0, maxStreamLifetimeMs: 0 });
    const path = kind.backendPath(id);
    backend.emit(path, 'data: small\n');
    await until(() => stream.has('small'), 5000, 'a small event');
    const sentAt = Date.now();
    backend.emit(path, `data: big ${'y'.repeat(16 * 1024)}\n`);
    await until(() => stream.outcome !== undefined, 5000, 'the cut');
    expect(Date.now() - sentAt).toBeLessThan(5000);
    expect(stream.outcome).toBe('aborted');
    expect(stream.has('yyyy')).toBe(false);
    // Counted and listed as every kind of stream is: the metric, and the ops page's cuts.
    await until(() => relay!.relay.stats.slowClientsCut === 1, 5000, 'the cut counted');
    expect(relay!.relay.ops.cuts.latest().map((cut) => [cut.reason, cut.user])).toEqual([['slow_client', 'alice']]);
  });

  test('ends cleanly at its lifetime (plus at most 10% jitter), however busy', async () => {
    const lifetimeMs = 400;
    const stream = await open({ maxStreamLifetimeMs: lifetimeMs, heartbeatMs: 40, idleTimeoutMs: 0 });
    const path = kind.backendPath(id);
    const events = setInterval(() => backend.emit(path, 'data: busy\n'), 30);
    try {
      await until(() => stream.outcome !== undefined, 5000, 'the lifetime end');
    } finally {
      clearInterval(events);
    }
    // The relay counts from its own open, after the request was sent.
    expect(Date.now() - requestedAt).toBeGreaterThanOrEqual(lifetimeMs);
    expect(Date.now() - requestedAt).toBeLessThan(lifetimeMs * 1.1 + 3000);
    expect(stream.outcome).toBe('end');
    expect(stream.has('busy')).toBe(true);
  });
});

describe('a proxied event stream', () => {
  let backend: FixtureBackend;
  let relay: RunningRelay;
  let client: StreamClient;

  beforeEach(async () => {
    backend = await new FixtureBackend().start();
  });

  afterEach(async () => {
    client.close();
    await relay.close();
    await backend.close();
  });

  test("gets the relay's heartbeats only between events: never inside one the backend has half sent", async () => {
    relay = await startRelay(backend.url, { heartbeatMs: 20, idleTimeoutMs: 0, maxStreamLifetimeMs: 0 });
    client = new StreamClient(`${relay.url}/api/feeds/halves`);
    await client.opened();
    await until(() => backend.listeners('/feeds/halves') === 1, 5000, 'the upstream request');
    await until(() => client.has(': hb\n\n'), 5000, 'a heartbeat on the quiet stream');
    // Cut mid-line, then mid-event (the line is whole, the blank line is not), each for several heartbeat intervals.
    backend.writeRaw('/feeds/halves', 'data: first ha');
    await delay(100);
    backend.writeRaw('/feeds/halves', 'lf\n');
    await delay(100);
    backend.writeRaw('/feeds/halves', 'data: second half\n\n');
    await until(() => client.has('second half\n\n'), 5000, 'the whole event');
    expect(client.tail).toContain('data: first half\ndata: second half\n\n');
    // Once the event is whole, heartbeats come again.
    const after = client.tail.length;
    await until(() => client.tail.indexOf(': hb\n\n', after) !== -1, 5000, 'a heartbeat after the event');
  });
});
