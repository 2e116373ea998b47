import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { HttpError } from '../errors';
import { ERROR_HEADERS, errorBody } from '../errors';
import { type NodeInternals, chunkOf, joinedChunk } from '../internals';
import { SSE_HEADERS, SSE_HEADERS_CLOSE, encodeEvent, encodeRetry, retryValue } from '../sse/encode';
import { HEARTBEAT, PolicedStream, type StreamPolicy } from '../stream-policy';
import { comeBackLater } from './come-back';
import type { TopicMember } from './member';
import type { StoredEvent } from './replay';
import type { CloseReason } from './close-reason';

export type { CloseReason };

const RESYNC = encodeEvent({ event: 'resync', data: JSON.stringify({ reason: 'history_gap' }) });

export interface SubscriberHooks {
  /** Called exactly once when the stream is over, whoever ended it. */
  onClose(subscriber: Subscriber, reason: CloseReason): void;
}

/**
 * One client's event stream. Writes shared frames, never queues without bound: a
 * client is slow when it does not drain, not when a burst is large. Past the cap it
 * must keep draining (checked on every write and by the policy's tick); past the
 * ceiling, or stalled for the grace period, it is cut off alone (see `StreamPolicy`).
 */
export class Subscriber extends PolicedStream implements TopicMember {
  /** `onClose` was called: the response is gone. */
  private closed = false;
  private reason: CloseReason = 'client_closed';
  /** Whether the 200 and SSE headers were sent. */
  opened = false;
  /**
   * The reconnection time the client was last told (`retry:`): the same again is not sent, as some
   * clients (fetch-event-source, httpx-sse) hand every `retry:`-only block to the app as a message.
   */
  private retryMs = -1;
  /**
   * Where frames go once the headers are out: straight to the socket, framed here, when
   * `NodeInternals.directSocket` allows it. Undefined: through `res.write()`.
   */
  private socket: Socket | undefined;
  private chunked = false;
  /** Whether the stream opens with the relay's `retry:` hint (not a POST's answer: its client gets the backend's only). */
  hintsRetry = true;

  constructor(
    private readonly res: ServerResponse,
    policy: StreamPolicy,
    private readonly hooks: SubscriberHooks,
    private readonly internals: NodeInternals,
  ) {
    super(policy);
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
    if (this.hintsRetry) {
      this.retryMs = retryValue(retryHintMs);
      this.res.write(encodeRetry(retryHintMs));
    } else this.res.flushHeaders();
    this.internals.settleHeaders(this.res);
    this.socket = this.internals.directSocket(this.res);
    this.chunked = this.socket !== undefined && this.internals.chunkedBody(this.res);
  }

  /** The handler is done with the request: what Express kept on it for routing can go. */
  shedRoutingState(): void {
    this.internals.shedRoutingState(this.res.req, this.res);
  }

  /**
   * Writes a resuming client's missed frames in one go. They may pass the cap: they are
   * shared buffers held by the replay history anyway, and a client must be able to catch
   * up on more than the cap. The cap holds again once the backlog has drained.
   */
  replay(frames: readonly Buffer[]): void {
    if (this.isClosed || frames.length === 0) return;
    let bytes = 0;
    for (const frame of frames) {
      this.res.write(frame);
      bytes += frame.length;
    }
    this.lastEventAt = Date.now();
    this.wroteBacklog(bytes, this.res.writableLength, this.res);
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
    if (this.opened) this.res.end(retryValue(retryMs) === this.retryMs ? undefined : encodeRetry(retryMs));
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

  retryHint(ms: number, frame: Buffer): void {
    if (retryValue(ms) === this.retryMs) return;
    this.retryMs = retryValue(ms);
    this.send(frame);
  }

  /**
   * Writes events made of parts of this client's own (a multiplexed stream's `id:` lines: its
   * cursor, ASCII strings) and parts shared between clients (envelopes, each ending its event),
   * as one chunk in one write: several events that came in the same turn of the event loop cost
   * one socket write. The shared parts are copied in: for events of a few hundred bytes one
   * buffer costs less CPU than a corked writev of the pieces, and the costly part, the
   * envelope's JSON, is still built once.
   */
  sendParts(parts: readonly (string | Buffer)[], now = Date.now()): void {
    if (this.ended) return;
    if (this.put(joinedChunk(parts, this.socket !== undefined && this.chunked), now)) this.lastEventAt = now;
  }

  /** Marks the stream as ended by the relay, for `reason`; false if it already was (or the client left). */
  private stop(reason: CloseReason): boolean {
    if (this.isClosed) return false;
    this.ended = true;
    this.reason = reason;
    return true;
  }

  protected unsent(): number {
    return this.socket === undefined ? this.res.writableLength : this.socket.writableLength;
  }

  /** Writes bytes unless the stream is over, straight to the socket once the headers are out (see `put`). */
  private write(frame: Buffer, now: number): boolean {
    if (this.ended) return false;
    return this.put(this.socket !== undefined && this.chunked ? chunkOf(frame) : frame, now);
  }

  /**
   * Writes bytes already framed for where they go (the socket's chunks, or `res`), under the
   * ceiling; false when they were not written or the stream was cut for them.
   */
  private put(bytes: Buffer, now = Date.now()): boolean {
    const socket = this.socket;
    if (socket === undefined) {
      if (this.res.destroyed || !this.admits(this.res.writableLength, bytes.length)) return false;
      this.res.write(bytes);
      this.wrote(bytes.length, this.res.writableLength, now);
    } else {
      if (socket.destroyed || !this.admits(socket.writableLength, bytes.length)) return false;
      socket.write(bytes);
      this.wrote(bytes.length, socket.writableLength, now);
    }
    return !this.ended;
  }

  private finish(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.hooks.onClose(this, reason);
  }
}
