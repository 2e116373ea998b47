import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { SSE_HEADERS, encodeComment, encodeEvent, encodeRetry } from '../sse/encode';
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
  | 'shutdown';

const HEARTBEAT = encodeComment('hb');
const RESYNC = encodeEvent({ event: 'resync', data: JSON.stringify({ reason: 'history_gap' }) });
const SSE_HEADERS_CLOSE = { ...SSE_HEADERS, Connection: 'close' };
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

export interface SubscriberHooks {
  /** Called exactly once when the stream is over, whoever ended it. */
  onClose(subscriber: Subscriber, reason: CloseReason): void;
}

/**
 * One client's event stream. Writes shared frames, never queues without bound:
 * a client whose unsent bytes pass the cap is cut off alone.
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
  /** Unsent bytes tolerated before the client is cut: the cap, or more while a replay drains. */
  private allowance: number;
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
    private readonly maxBufferedBytes: number,
    lifetimeMs: number,
    private readonly hooks: SubscriberHooks,
  ) {
    this.allowance = maxBufferedBytes;
    this.deadline = lifetimeMs > 0 ? this.openedAt + lifetimeMs + Math.floor(Math.random() * lifetimeMs * 0.1) : 0;
    // `close` without `writableFinished` is a client that left; with it, our own end().
    res.once('close', () => this.finish(this.reason));
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
    for (const frame of frames) this.res.write(frame);
    this.lastEventAt = Date.now();
    if (this.res.writableLength <= this.maxBufferedBytes) return;
    this.allowance = this.res.writableLength + this.maxBufferedBytes;
    this.res.once('drain', () => {
      this.allowance = this.maxBufferedBytes;
    });
  }

  /** Writes one frame (shared between subscribers); `now` is taken once per event by the caller. */
  send(frame: Buffer, now = Date.now()): void {
    if (this.write(frame)) this.lastEventAt = now;
  }

  heartbeat(): void {
    if (this.opened) this.write(HEARTBEAT);
  }

  /** Ends the stream after what was written; `event` (e.g. relay_error) is sent last. */
  end(reason: CloseReason, event?: { event: string; data: unknown }): void {
    if (!this.stop(reason)) return;
    this.res.end(event ? encodeEvent({ event: event.event, data: JSON.stringify(event.data) }) : undefined);
  }

  /** Ends the stream telling the client to reconnect after `retryMs` (to another relay, when this one stops). */
  endWithRetry(reason: CloseReason, retryMs: number): void {
    if (!this.opened) return this.reject(503, 'shutting_down', 'The relay is shutting down; retry.', { 'Retry-After': '1' });
    if (this.stop(reason)) this.res.end(encodeRetry(retryMs));
  }

  /** Answers before any header was sent: an error status with the JSON error body. */
  reject(status: number, code: string, message: string, headers: Record<string, string> = {}): void {
    if (this.opened) return this.end('rejected');
    if (!this.stop('rejected')) return;
    this.res.writeHead(status, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
    this.res.end(JSON.stringify({ error: { code, message } }));
  }

  /** 204: tells `EventSource` there is nothing more and it should stop reconnecting. */
  noContent(): void {
    if (this.opened || !this.stop('upstream_ended')) return;
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

  relay(event: StoredEvent, now: number): void {
    this.send(event.frame, now);
  }

  /**
   * Writes one event made of a part shared between clients and a part of this client's own (a
   * multiplexed event and its cursor), as one chunk and one syscall, without copying the shared part.
   */
  sendParts(shared: Buffer, own: Buffer, now = Date.now()): void {
    if (this.ended) return;
    const socket = this.socket;
    const length = shared.length + own.length;
    if (socket === undefined) {
      if (this.res.destroyed) return;
      if (this.res.writableLength + length > this.allowance) return void this.cutSlow();
      this.res.write(shared);
      this.res.write(own);
    } else {
      if (socket.destroyed) return;
      if (socket.writableLength + length > this.allowance) return void this.cutSlow();
      socket.cork();
      if (this.chunked) socket.write(`${length.toString(16)}\r\n`, 'latin1');
      socket.write(shared);
      socket.write(own);
      if (this.chunked) socket.write(CRLF);
      socket.uncork();
    }
    this.lastEventAt = now;
  }

  /** Marks the stream as ended by the relay, for `reason`; false if it already was (or the client left). */
  private stop(reason: CloseReason): boolean {
    if (this.isClosed) return false;
    this.ended = true;
    this.reason = reason;
    return true;
  }

  /**
   * Writes bytes unless the stream is over, straight to the socket once the headers are
   * out. A client whose unsent bytes would pass its allowance is cut instead.
   */
  private write(frame: Buffer): boolean {
    if (this.ended) return false;
    const socket = this.socket;
    if (socket === undefined) {
      if (this.res.destroyed) return false;
      if (this.res.writableLength + frame.length > this.allowance) return this.cutSlow();
      this.res.write(frame);
      return true;
    }
    if (socket.destroyed) return false;
    const bytes = this.chunked ? chunkOf(frame) : frame;
    if (socket.writableLength + bytes.length > this.allowance) return this.cutSlow();
    socket.write(bytes);
    return true;
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
