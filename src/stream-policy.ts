import type { RelayConfig } from './options';
import { encodeComment } from './sse/encode';

/** The settings the stream policy is made of: a part of the relay's. */
export type StreamPolicySettings = Pick<
  RelayConfig,
  'idleTimeoutMs' | 'maxStreamLifetimeMs' | 'heartbeatMs' | 'clientMaxBufferedBytes' | 'clientDrainGraceMs' | 'clientBufferCeilingFactor' | 'maxEventBytes'
>;

/** The comment a quiet stream gets; invisible to `EventSource`, it keeps proxies and clients from calling the stream dead. */
export const HEARTBEAT = encodeComment('hb');

/**
 * One client's event stream under the policy, whatever writes it: a shared topic's subscriber,
 * a multiplexed stream, a proxied answer. The policy's clock judges it at every tick (see
 * `StreamPolicy`); a subclass says how its bytes reach the client and tells the policy what it
 * wrote (`admits` before a write, `wrote` after, `lastEventAt` for events).
 *
 * The state lives here, in fields of the stream itself, so a held stream costs no object of
 * the policy's.
 */
export abstract class PolicedStream {
  readonly openedAt = Date.now();
  /** When the client was last sent an event; heartbeats and comments do not count. */
  lastEventAt = this.openedAt;
  /**
   * When the client itself last showed life (an upload's body arriving): it keeps the stream from
   * idling out, but heartbeats still go by events, so the client hears the stream is alive.
   */
  activeAt = 0;
  /** When this stream must end (0: never); jittered so clients do not all reconnect at once. */
  readonly deadline: number;
  /** The relay ended or cut the stream: nothing more may be written, though the response may not have closed yet. */
  protected ended = false;
  /** Unsent bytes tolerated without draining: the cap, or more while a backlog drains. */
  protected allowance: number;
  /** Bytes handed over so far: minus those still unsent, what the client has drained. */
  private queued = 0;
  /** Since when the client has been past its allowance without draining a byte (0: it is not). */
  private stalledSince = 0;
  private drainedWhenStalled = 0;
  /** A drain listener is set to restore the cap once a backlog is written. */
  private drainPending = false;

  constructor(protected readonly policy: StreamPolicy) {
    this.allowance = policy.maxBufferedBytes;
    this.deadline = policy.deadlineFrom(this.openedAt);
  }

  /** Whether the headers went out: the clock leaves a stream alone until then. */
  abstract readonly opened: boolean;

  /** Bytes written but not yet taken by the kernel. */
  protected abstract unsent(): number;

  /** Writes `HEARTBEAT` where one may go. */
  abstract heartbeat(now: number): void;

  /** Ends the stream cleanly, after what was written: the client reconnects and resumes. */
  abstract end(reason: 'idle_timeout' | 'lifetime'): void;

  /** Disconnects at once, dropping whatever is unsent. */
  abstract cut(reason: 'slow_client'): void;

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
      this.cut('slow_client');
    }
  }

  /**
   * Whether `bytes` more may be written on top of `unsent`. A burst may take a client past its
   * allowance (it is judged on draining, in `checkDrain`); past the ceiling it is cut, here.
   */
  protected admits(unsent: number, bytes: number): boolean {
    if (unsent + bytes <= this.allowance + this.policy.ceilingMargin) return true;
    this.cut('slow_client');
    return false;
  }

  /**
   * Notes a backlog of `bytes` just written in one go (a resuming client's missed events), with
   * what is `unsent` now. It may pass the cap: a client must be able to catch up on more than
   * the cap. The cap holds again once `res` has drained.
   */
  protected wroteBacklog(bytes: number, unsent: number, res: { once(event: 'drain', listener: () => void): unknown }): void {
    this.queued += bytes;
    const cap = this.policy.maxBufferedBytes;
    if (unsent <= cap) return;
    this.allowance = unsent + cap;
    // One listener however many backlogs come before the drain (a multiplexed stream replays per topic).
    if (this.drainPending) return;
    this.drainPending = true;
    res.once('drain', () => {
      this.drainPending = false;
      this.allowance = cap;
    });
  }

  /** Notes `bytes` just written, with what is `unsent` now. */
  protected wrote(bytes: number, unsent: number, now: number): void {
    this.queued += bytes;
    if (unsent > this.allowance) this.checkDrain(now);
    else this.stalledSince = 0;
  }
}

/**
 * What every client event stream of a relay goes by, and the one clock that applies it:
 *
 * - idle: a stream that carried no event for `idleTimeoutMs`, nor saw its client's own activity
 *   (an upload's body arriving), is ended (heartbeats and the backend's comments are not events);
 * - lifetime: every stream ends after `maxStreamLifetimeMs`, plus up to 10% jitter;
 * - heartbeat: a stream quiet for half of `heartbeatMs` gets `HEARTBEAT` at every half interval;
 * - slow client: past `clientMaxBufferedBytes` unsent, a client must drain within
 *   `clientDrainGraceMs`; past `clientBufferCeilingFactor` times it, it is cut at once.
 *
 * Token expiry is the other end every stream has; `UserStreams` runs it, on one timer for all.
 *
 * To put a new kind of stream under it: subclass `PolicedStream`, keep the open ones in a `Set`
 * and hand that set to `watch` once.
 */
export class StreamPolicy {
  readonly idleTimeoutMs: number;
  readonly lifetimeMs: number;
  readonly heartbeatMs: number;
  readonly maxBufferedBytes: number;
  readonly drainGraceMs: number;
  /** Unsent bytes past the allowance that cut a client at once. */
  readonly ceilingMargin: number;
  /** Largest event read when a raw byte stream is told apart into events and comments. */
  readonly maxEventBytes: number;
  /** Tick interval. */
  private readonly tickMs: number;
  private readonly groups = new Set<ReadonlySet<PolicedStream>>();
  private ticker: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(settings: StreamPolicySettings) {
    this.idleTimeoutMs = settings.idleTimeoutMs;
    this.lifetimeMs = settings.maxStreamLifetimeMs;
    this.heartbeatMs = settings.heartbeatMs;
    this.maxBufferedBytes = settings.clientMaxBufferedBytes;
    this.drainGraceMs = settings.clientDrainGraceMs;
    this.ceilingMargin = settings.clientMaxBufferedBytes * (settings.clientBufferCeilingFactor - 1);
    this.maxEventBytes = settings.maxEventBytes;
    // Half the heartbeat interval: a stream that went quiet just after one tick is heartbeated
    // within heartbeatMs, not 2 × heartbeatMs, so a proxy's read timeout or a client's dead-stream
    // check (2 × heartbeatMs of silence) can rely on it. The tick also judges clients past their
    // buffer cap, whose stream may carry no more writes.
    this.tickMs = Math.max(1, Math.min(Math.floor(settings.heartbeatMs / 2), settings.clientDrainGraceMs));
  }

  /** When a stream opened at `openedAt` must end (0: never). */
  deadlineFrom(openedAt: number): number {
    const lifetime = this.lifetimeMs;
    return lifetime > 0 ? openedAt + lifetime + Math.floor(Math.random() * lifetime * 0.1) : 0;
  }

  /**
   * Judges every stream of `streams` at each tick, from now until `close`. The set is the
   * caller's, live: it adds its streams as they open and deletes them as they close.
   */
  watch(streams: ReadonlySet<PolicedStream>): void {
    this.groups.add(streams);
    if (this.ticker !== undefined || this.closed) return;
    this.ticker = setInterval(() => this.tick(), this.tickMs);
    this.ticker.unref();
  }

  /** Stops the clock. */
  close(): void {
    this.closed = true;
    clearInterval(this.ticker);
    this.ticker = undefined;
  }

  private tick(): void {
    const now = Date.now();
    const { idleTimeoutMs, heartbeatMs } = this;
    for (const streams of this.groups) {
      for (const stream of streams) {
        if (!stream.opened) continue;
        stream.checkDrain(now);
        const quietFor = now - stream.lastEventAt;
        if (idleTimeoutMs > 0 && now - Math.max(stream.lastEventAt, stream.activeAt) >= idleTimeoutMs) stream.end('idle_timeout');
        else if (stream.deadline > 0 && now >= stream.deadline) stream.end('lifetime');
        // A stream that carried an event within the last half interval needs no heartbeat: on busy
        // relays this keeps the tick from writing to every one of thousands of clients at once.
        else if (quietFor >= heartbeatMs / 2) stream.heartbeat(now);
      }
    }
  }
}
