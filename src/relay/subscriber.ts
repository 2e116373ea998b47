import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { HttpError} from '../errors';
import { ERROR_HEADERS, errorBody } from '../errors';
import { SSE_HEADERS, SSE_HEADERS_CLOSE, encodeComment, encodeEvent, encodeRetry } from '../sse/encode';
import { comeBackLater } from './come-back';
import type { TopicMember } from './member';
import type { StoredEvent } from './replay';

/** Why a subscriber's stream ended; used for logs and metrics. */
export type CloseReason =
  | 'client_closed'
  | 'upstream_ended'
  | 'relay_error'
  | 'slow_client'
  | 'idle_timeout'
  | 'lifetime'
  | 'rejected'
  | 'shutdown'
  | 'token_expired'
  | 'ended_by_app';

const HEARTBEAT = encodeComment('hb');
const RESYNC = encodeEvent({ event: 'resync', data: JSON.stringify({ reason: 'history_gap' }) });
const CRLF = Buffer.from('\r\n', 'latin1');

// A topic writes one frame to all its subscribers in a row: framing the chunk for the last
// frame seen makes that once per event, not once per subscriber.
let lastFrame: Buffer | undefined;
let lastChunk = Buffer.alloc(0);

/** A frame as one HTTP/1.1 chunk: size line, bytes, CRLF. */
function chunkOf(frame: Buffer): Buffer {
  if (frame !== lastFrame) {
    lastChunk = Buffer.concat([Buffer.from(`${frame.length.toString(16)}\r\n`, 'latin1'), frame, CRLF]);
    lastFrame = frame;
  }
  return lastChunk;
}

/**
 * Node keeps a response's header block (`_header`) for as long as the response is open, as
 * the string it was joined into: a rope of dozens of pieces, about 0.8 KiB more than the text
 * itself (heap snapshots). Measuring its UTF-8 length makes V8 flatten it in place (a native
 * call, which the optimizer cannot drop), and the pieces go. Read only: nothing of Node's changes.
 */
function flattenHeaderBlock(res: ServerResponse): void {
  const block: unknown = (res as { _header?: unknown })._header;
  if (typeof block === 'string') Buffer.byteLength(block, 'utf8');
}

export interface SubscriberHooks {
  /** Called exactly once when the stream is over, whoever ended it. */
  onClose(subscriber: Subscriber, reason: CloseReason): void;
}

/** Node's key for a response's stored headers (`kOutHeaders`); null once looked for and absent. */
let storedHeadersKey: symbol | null | undefined;

/**
 * Node keeps the headers set before `writeHead` (`setHeader`: the request id, the rate limit's,
 * Express's `X-Powered-By` even once removed) in an object of the response's, in dictionary
 * mode, for as long as the response is open: 0.45 KiB per held stream, of no use once the
 * block is sent (setting a header then throws, and reading one is nobody's business). Node
 * starts every response with none (null); this puts it back to that state.
 */
function dropStoredHeaders(res: ServerResponse): void {
  if (storedHeadersKey === undefined) storedHeadersKey = Object.getOwnPropertySymbols(res).find((key) => key.description === 'kOutHeaders') ?? null;
  if (storedHeadersKey !== null && res.headersSent) (res as unknown as Record<symbol, unknown>)[storedHeadersKey] = null;
}

/** How much a client may leave unsent, and for how long. */
export interface DrainPolicy {
  /** Unsent bytes a client may hold without having to show it reads. */
  readonly maxBufferedBytes: number;
  /** How long a client past `maxBufferedBytes` may go without a byte drained before it is cut. */
  readonly drainGraceMs: number;
  /** Past this multiple of `maxBufferedBytes` unsent, a client is cut at once. */
  readonly ceilingFactor: number;
}

/**
 * One client's event stream. Writes shared frames, never queues without bound: a
 * client is slow when it does not drain, not when a burst is large. Past the cap it
 * must keep draining (checked on every write and by the hub's tick); past the
 * ceiling, or stalled for the grace period, it is cut off alone.
 */
export class Subscriber implements TopicMember {
  /** `onClose` was called: the response is gone. */
  private closed = false;
  /** The relay ended or cut the stream: nothing more may be written, though `close` may not have come yet. */
  private ended = false;
  private reason: CloseReason = 'client_closed';
  /** Whether the 200 and SSE headers were sent. */
  opened = false;
  readonly openedAt = Date.now();
  lastEventAt = this.openedAt;
  /** Unsent bytes tolerated without draining: the cap, or more while a replay drains. */
  private allowance: number;
  /** A drain listener is set to restore the cap once a replay backlog is written. */
  private drainPending = false;
  /** Bytes handed to the socket so far: minus those still unsent, what the client has drained. */
  private queued = 0;
  /** Since when the client has been past its allowance without draining a byte (0: it is not). */
  private stalledSince = 0;
  private drainedWhenStalled = 0;
  /** When this stream must end (0: never); jittered so clients do not all reconnect at once. */
  readonly deadline: number;
  /**
   * Where frames go once the headers are out: straight to the socket, framed here.
   * Express re-prototypes every `res` (Object.setPrototypeOf), and in V8 11 (Node 20) an
   * object given a new prototype gets a map of its own as soon as a property is added to
   * it: with thousands of responses, every property access inside `res.write()` is
   * megamorphic and misses V8's stub cache. Measured (bench/write-path.ts): one event to
   * 10,000 Express responses took several times as long as to plain node:http ones.
   * Sockets are not re-prototyped. Undefined: through `res.write()` (a HEAD request, or a
   * pipelined response still queued in `res`).
   */
  private socket: Socket | undefined;
  private chunked = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly policy: DrainPolicy,
    lifetimeMs: number,
    private readonly hooks: SubscriberHooks,
  ) {
    this.allowance = policy.maxBufferedBytes;
    this.deadline = lifetimeMs > 0 ? this.openedAt + lifetimeMs + Math.floor(Math.random() * lifetimeMs * 0.1) : 0;
    // `close` without `writableFinished` is a client that left; with it, our own end(). `on`, not
    // `once`: `close` comes once, and a `once` wrapper is three more objects per held stream.
    res.on('close', () => this.finish(this.reason));
  }

  /** Why the stream ended, or will end if it is ending now; `client_closed` unless the relay ended it. */
  get closeReason(): CloseReason {
    return this.reason;
  }

  get isClosed(): boolean {
    return this.closed || this.ended || this.res.destroyed;
  }

  /** Sends the status line and headers at once, with the reconnect hint. */
  open(retryHintMs: number): void {
    if (this.opened || this.isClosed) return;
    this.opened = true;
    this.res.socket?.setNoDelay(true);
    // A client that asked for `Connection: close` gets it: the socket goes when the stream ends.
    this.res.writeHead(200, this.res.req.headers.connection?.toLowerCase() === 'close' ? SSE_HEADERS_CLOSE : SSE_HEADERS);
    this.res.write(encodeRetry(retryHintMs));
    flattenHeaderBlock(this.res);
    dropStoredHeaders(this.res);
    const socket = this.res.socket;
    // Nothing may be queued in `res` itself, or direct writes would overtake it.
    if (socket && this.res.req.method !== 'HEAD' && this.res.writableLength === socket.writableLength) {
      this.socket = socket;
      this.chunked = this.res.chunkedEncoding;
    }
  }

  /**
   * Writes a resuming client's missed frames in one go. They may pass the cap: they are
   * shared buffers held by the replay history anyway, and a client must be able to catch
   * up on more than the cap. The cap holds again once the backlog has drained.
   */
  replay(frames: readonly Buffer[]): void {
    if (this.isClosed || frames.length === 0) return;
    for (const frame of frames) {
      this.res.write(frame);
      this.queued += frame.length;
    }
    this.lastEventAt = Date.now();
    const cap = this.policy.maxBufferedBytes;
    if (this.res.writableLength <= cap) return;
    this.allowance = this.res.writableLength + cap;
    // One listener however many replays come before the drain (a multiplexed stream replays per topic).
    if (this.drainPending) return;
    this.drainPending = true;
    this.res.once('drain', () => {
      this.drainPending = false;
      this.allowance = cap;
    });
  }

  /** Writes one frame (shared between subscribers); `now` is taken once per event by the caller. */
  send(frame: Buffer, now = Date.now()): void {
    if (this.write(frame, now)) this.lastEventAt = now;
  }

  heartbeat(now = Date.now()): void {
    if (this.opened) this.write(HEARTBEAT, now);
  }

  /** Ends the stream after what was written; `event` (e.g. relay_error) is sent last. */
  end(reason: CloseReason, event?: { event: string; data: unknown }): void {
    if (!this.stop(reason)) return;
    this.res.end(event ? encodeEvent({ event: event.event, data: JSON.stringify(event.data) }) : undefined);
  }

  /**
   * Ends the stream telling the client to reconnect after `retryMs` (to another relay, when this
   * one stops). One still waiting for its upstream gets a 200 that only says so: a native
   * `EventSource` never retries after an error status.
   */
  endWithRetry(reason: CloseReason, retryMs: number): void {
    if (!this.stop(reason)) return;
    if (this.opened) this.res.end(encodeRetry(retryMs));
    else comeBackLater(this.res, retryMs);
  }

  /** Answers before any header was sent: the error's status and headers, and the JSON error body. */
  reject(error: HttpError): void {
    if (this.opened) return this.end('rejected');
    if (!this.stop('rejected')) return;
    this.res.writeHead(error.status, { ...error.headers, 'Content-Type': 'application/json; charset=utf-8', ...ERROR_HEADERS });
    this.res.end(JSON.stringify(errorBody(error.code, error.message)));
  }

  /**
   * 204: tells `EventSource` there is nothing more and it should stop reconnecting. A stream
   * already open (it was caught up from the backend first) just ends.
   */
  noContent(): void {
    if (this.opened) return this.end('upstream_ended');
    if (!this.stop('upstream_ended')) return;
    this.res.writeHead(204, { 'Cache-Control': 'no-store' });
    this.res.end();
  }

  /** Disconnects at once, dropping whatever is unsent. */
  cut(reason: CloseReason): void {
    if (this.stop(reason)) this.res.destroy();
  }

  resync(): void {
    this.send(RESYNC);
  }

  catchUp(events: readonly StoredEvent[]): void {
    this.replay(events.map((event) => event.frame));
  }

  drained(): Promise<void> | undefined {
    if (this.isClosed || this.unsent() <= this.policy.maxBufferedBytes) return undefined;
    const target = this.socket ?? this.res;
    return new Promise((resolve) => {
      const done = (): void => {
        target.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      target.once('drain', done);
      this.res.once('close', done);
    });
  }

  relay(event: StoredEvent, now: number): void {
    this.send(event.frame, now);
  }

  retryHint(frame: Buffer): void {
    this.send(frame);
  }

  /**
   * Writes events made of parts of this client's own (a multiplexed stream's `id:` lines: its
   * cursor, ASCII strings) and parts shared between clients (envelopes, each ending its event),
   * as one chunk in one write: several events that came in the same turn of the event loop cost
   * one socket write. The shared parts are copied in: for events of a few hundred bytes one
   * buffer was cheaper than a corked writev of the pieces (measured on Node 20: about 1 µs less
   * CPU per write), and the costly part, the envelope's JSON, is still built once.
   */
  sendParts(parts: readonly (string | Buffer)[], now = Date.now()): void {
    if (this.ended) return;
    let length = 0;
    for (const part of parts) length += part.length;
    const framed = this.socket !== undefined && this.chunked;
    const head = framed ? `${length.toString(16)}\r\n` : '';
    const bytes = Buffer.allocUnsafe(head.length + length + (framed ? 2 : 0));
    let at = bytes.write(head, 0, 'latin1');
    for (const part of parts) at += typeof part === 'string' ? bytes.write(part, at, 'latin1') : part.copy(bytes, at);
    if (framed) CRLF.copy(bytes, at);
    if (this.put(bytes, now)) this.lastEventAt = now;
  }

  /** Marks the stream as ended by the relay, for `reason`; false if it already was (or the client left). */
  private stop(reason: CloseReason): boolean {
    if (this.isClosed) return false;
    this.ended = true;
    this.reason = reason;
    return true;
  }

  /**
   * Cuts the client if it has held more than its allowance unsent for the grace period
   * without draining a byte. A client that drains, however slowly, resets the clock.
   */
  checkDrain(now = Date.now()): void {
    if (this.ended) return;
    const unsent = this.unsent();
    if (unsent <= this.allowance) {
      this.stalledSince = 0;
      return;
    }
    const drained = this.queued - unsent;
    if (this.stalledSince === 0 || drained > this.drainedWhenStalled) {
      this.stalledSince = now;
      this.drainedWhenStalled = drained;
    } else if (now - this.stalledSince >= this.policy.drainGraceMs) {
      this.cutSlow();
    }
  }

  private unsent(): number {
    return this.socket === undefined ? this.res.writableLength : this.socket.writableLength;
  }

  /**
   * Writes bytes unless the stream is over, straight to the socket once the headers are
   * out. A burst may take a client past its allowance (it is judged on draining, in
   * `checkDrain`); only unsent bytes past the ceiling cut it here.
   */
  private write(frame: Buffer, now: number): boolean {
    if (this.ended) return false;
    return this.put(this.socket !== undefined && this.chunked ? chunkOf(frame) : frame, now);
  }

  /** Writes bytes already framed for where they go (the socket's chunks, or `res`), under the ceiling. */
  private put(bytes: Buffer, now = Date.now()): boolean {
    const socket = this.socket;
    const ceiling = this.allowance + this.policy.maxBufferedBytes * (this.policy.ceilingFactor - 1);
    let unsent: number;
    if (socket === undefined) {
      if (this.res.destroyed) return false;
      if (this.res.writableLength + bytes.length > ceiling) return this.cutSlow();
      this.res.write(bytes);
      unsent = this.res.writableLength;
    } else {
      if (socket.destroyed) return false;
      if (socket.writableLength + bytes.length > ceiling) return this.cutSlow();
      socket.write(bytes);
      unsent = socket.writableLength;
    }
    this.queued += bytes.length;
    if (unsent > this.allowance) this.checkDrain(now);
    else this.stalledSince = 0;
    return !this.ended;
  }

  private cutSlow(): false {
    this.cut('slow_client');
    return false;
  }

  private finish(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.hooks.onClose(this, reason);
  }
}
