import type { ServerResponse } from 'node:http';
import { EventStreamReader } from '../sse/reader';
import { SseTail } from '../sse/tail';
import { HEARTBEAT, PolicedStream, type StreamPolicy } from '../stream-policy';

/** Why the relay ended a proxied event stream; undefined while it has not. */
export type ProxiedEnd = 'idle_timeout' | 'lifetime' | 'slow_client' | 'token_expired' | 'ended_by_app' | undefined;

/**
 * A backend's event stream passed on to one client as it comes, byte for byte, under the
 * stream policy. The bytes are read as well as passed, only to tell events (which keep the
 * stream from being idle) from comments and heartbeats (which do not), and to know where the
 * relay may add a heartbeat or a last `retry:` of its own without changing what the backend
 * sent. An event past `maxEventBytes` cannot be told apart: from then on any byte counts.
 *
 * The caller passes the backend's chunks in (`pass`), and waits for `res` to drain when it
 * asks; the policy may end the stream meanwhile, which calls `stop` (the caller's end of the
 * upstream request).
 */
export class ProxiedStream extends PolicedStream {
  readonly opened = true;
  /** Why the relay ended it; undefined: it has not (the client left, or the backend ended it). */
  private endedFor: ProxiedEnd;
  /** The retry hint its last bytes tell the client, when its user's end (token expiry, the app) ended it. */
  retryMs: number | undefined;
  private readonly tail = new SseTail();
  private readonly reader: EventStreamReader;
  private readonly decoder = new TextDecoder();
  /** The events can no longer be told apart from the rest (one was too large): every byte counts. */
  private bytesCount = false;
  private now = 0;

  constructor(
    policy: StreamPolicy,
    private readonly res: ServerResponse,
    /** Ends the upstream request; the caller's loop then finishes the response (see `farewell`). */
    private readonly stop: () => void,
    /**
     * Whether the request body (an upload) is still arriving: such a stream runs on past its
     * token's expiry, since the bytes sent would be lost (an upload cannot resume).
     */
    private readonly bodyArriving: () => boolean = () => false,
  ) {
    super(policy);
    this.reader = new EventStreamReader(
      {
        onFrame: () => {
          this.lastEventAt = this.now;
        },
        onRetry: () => undefined,
        onOverflow: () => {
          this.bytesCount = true;
        },
      },
      policy.maxEventBytes,
      undefined,
    );
  }

  /** Whether what was passed on ends with a whole event, so more could follow without breaking one. */
  atEventEnd(): boolean {
    return this.tail.atEventEnd();
  }

  /**
   * Writes a chunk of the backend's; returns what `res.write` did (false: wait for `drain`),
   * or false when the stream is over (ended, or cut for the chunk: past the ceiling).
   */
  pass(chunk: Buffer, now = Date.now()): boolean {
    if (this.ended || this.res.destroyed || !this.admits(this.res.writableLength, chunk.length)) return false;
    this.now = now;
    if (this.bytesCount) this.lastEventAt = now;
    else this.reader.feed(this.decoder.decode(chunk, { stream: true }));
    this.tail.see(chunk);
    const flowing = this.res.write(chunk);
    this.wrote(chunk.length, this.res.writableLength, now);
    return flowing && !this.ended;
  }

  /** A sign of life that is not the backend's: bytes of the request body (an upload) arriving. */
  active(now = Date.now()): void {
    this.activeAt = now;
  }

  /** Between two events only: inside one, a blank line after the comment would dispatch it half-sent. */
  heartbeat(now: number): void {
    if (this.ended || this.res.destroyed || !this.tail.atEventEnd() || !this.admits(this.res.writableLength, HEARTBEAT.length)) return;
    this.tail.see(HEARTBEAT);
    this.res.write(HEARTBEAT);
    this.wrote(HEARTBEAT.length, this.res.writableLength, now);
  }

  end(reason: 'idle_timeout' | 'lifetime'): void {
    this.finish(reason);
  }

  /** Why the relay ended it, for whoever holds it (the cuts of the ops page); undefined: it has not. */
  get closeReason(): ProxiedEnd {
    return this.endedFor;
  }

  /** Ends the stream for its user, telling the client to come back after `retryMs`; the app's end cuts an upload too. */
  endWithRetry(reason: 'token_expired' | 'ended_by_app', retryMs: number): void {
    if (this.ended || (reason === 'token_expired' && this.bodyArriving())) return;
    this.retryMs = retryMs;
    this.finish(reason);
  }

  cut(reason: 'slow_client'): void {
    if (this.ended) return;
    this.ended = true;
    this.endedFor = reason;
    this.res.destroy();
  }

  /**
   * The last bytes of a stream the relay ended, once the upstream request is stopped: nothing
   * more for one ended by idle or lifetime (the client resumes), a `retry:` for one ended for its
   * user when one can be added after what was sent. Undefined: the stream is not to end cleanly
   * (the relay did not end it, it was cut, or its client has not taken everything).
   */
  farewell(): Buffer | undefined {
    if (this.endedFor === undefined || this.endedFor === 'slow_client' || this.res.destroyed || this.res.writableLength > 0) return undefined;
    return this.retryMs === undefined ? NOTHING : this.tail.retry(this.retryMs);
  }

  protected unsent(): number {
    return this.res.writableLength;
  }

  private finish(reason: Exclude<ProxiedEnd, undefined>): void {
    if (this.ended) return;
    this.ended = true;
    this.endedFor = reason;
    this.stop();
  }
}

const NOTHING = Buffer.alloc(0);
