import type { ServerResponse } from 'node:http';
import { SSE_HEADERS, encodeComment, encodeEvent, encodeRetry } from '../sse/encode';

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
const SSE_HEADERS_CLOSE = { ...SSE_HEADERS, Connection: 'close' };

export interface SubscriberHooks {
  /** Called exactly once when the stream is over, whoever ended it. */
  onClose(subscriber: Subscriber, reason: CloseReason): void;
}

/**
 * One client's event stream. Writes shared frames, never queues without bound:
 * a client whose unsent bytes pass the cap is cut off alone.
 */
export class Subscriber {
  private closed = false;
  private reason: CloseReason = 'client_closed';
  /** Whether the 200 and SSE headers were sent. */
  opened = false;
  readonly openedAt = Date.now();
  lastEventAt = this.openedAt;
  /** Unsent bytes tolerated before the client is cut: the cap, or more while a replay drains. */
  private allowance: number;
  /** When this stream must end (0: never); jittered so clients do not all reconnect at once. */
  readonly deadline: number;

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
    return this.closed || this.res.destroyed;
  }

  /** Sends the status line and headers at once, with the reconnect hint. */
  open(retryHintMs: number): void {
    if (this.opened || this.isClosed) return;
    this.opened = true;
    this.res.socket?.setNoDelay(true);
    // A client that asked for `Connection: close` gets it: the socket goes when the stream ends.
    this.res.writeHead(200, this.res.req.headers.connection?.toLowerCase() === 'close' ? SSE_HEADERS_CLOSE : SSE_HEADERS);
    this.res.write(encodeRetry(retryHintMs));
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

  /** Writes one frame (shared between subscribers; never copied). */
  send(frame: Buffer): void {
    if (this.isClosed) return;
    if (this.res.writableLength + frame.length > this.allowance) return this.cut('slow_client');
    this.lastEventAt = Date.now();
    this.res.write(frame);
  }

  heartbeat(): void {
    if (this.isClosed || !this.opened) return;
    if (this.res.writableLength + HEARTBEAT.length > this.allowance) return this.cut('slow_client');
    this.res.write(HEARTBEAT);
  }

  /** Ends the stream after what was written; `event` (e.g. relay_error) is sent last. */
  end(reason: CloseReason, event?: { event: string; data: unknown }): void {
    if (this.isClosed) return;
    this.reason = reason;
    if (event) this.res.write(encodeEvent({ event: event.event, data: JSON.stringify(event.data) }));
    this.res.end();
  }

  /** Ends the stream telling the client to reconnect after `retryMs` (to another relay, when this one stops). */
  endWithRetry(reason: CloseReason, retryMs: number): void {
    if (this.isClosed) return;
    if (!this.opened) return this.reject(503, 'shutting_down', 'The relay is shutting down; retry.', { 'Retry-After': '1' });
    this.reason = reason;
    this.res.end(encodeRetry(retryMs));
  }

  /** Answers before any header was sent: an error status with the JSON error body. */
  reject(status: number, code: string, message: string, headers: Record<string, string> = {}): void {
    if (this.isClosed || this.opened) return this.end('rejected');
    this.reason = 'rejected';
    this.res.writeHead(status, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
    this.res.end(JSON.stringify({ error: { code, message } }));
  }

  /** 204: tells `EventSource` there is nothing more and it should stop reconnecting. */
  noContent(): void {
    if (this.isClosed || this.opened) return;
    this.reason = 'upstream_ended';
    this.res.writeHead(204, { 'Cache-Control': 'no-store' });
    this.res.end();
  }

  /** Disconnects at once, dropping whatever is unsent. */
  cut(reason: CloseReason): void {
    if (this.isClosed) return;
    this.reason = reason;
    this.res.destroy();
  }

  private finish(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.hooks.onClose(this, reason);
  }
}
