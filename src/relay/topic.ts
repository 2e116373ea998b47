import type { Logger } from 'pino';
import { HttpError } from '../errors';
import { type SseEvent, dispatches, encodeEvent, encodeRetry } from '../sse/encode';
import type { RelayConfig } from '../options';
import type { EventFeed, FeedSource, TopicOwnership } from './ownership';
import type { UpstreamInit, UpstreamListener, UpstreamRefusal } from './upstream';
import { CatchUp, type CatchUpOutcome } from './catch-up';
import type { ReplayBuffer, StoredEvent } from './replay';
import type { RelayStats } from './stats';
import type { TopicMember } from './member';
import type { CloseReason } from './subscriber';

/**
 * `opening`: waiting for the backend's answer; `live`: relaying; `ended`: the backend ended the
 * stream cleanly, and the next subscriber to come reopens it with `Last-Event-ID`; `finished`:
 * the backend said the stream is over (204).
 */
export type TopicState = 'opening' | 'live' | 'ended' | 'finished' | 'closed';

/**
 * A topic's upstream as an operator sees it: `open` (being opened, or relaying), `reconnecting`
 * (an attempt failed and another is due, or the backend ended the stream cleanly and the relay
 * asks again), `following` (another relay of the cluster reads it), `finished` (the backend said
 * it is over).
 */
export type UpstreamState = 'open' | 'reconnecting' | 'following' | 'finished';

export interface TopicInit {
  readonly key: string;
  /** Full URL of the backend stream. */
  readonly url: URL;
  /** Headers of the upstream request (the opening subscriber's identity). */
  readonly headers: Record<string, string>;
  /** Where the upstream starts: the opening subscriber's `Last-Event-ID`. */
  readonly originId: string | undefined;
  /** A clean end of the backend's stream means it is over. */
  readonly final?: boolean | undefined;
  /** Origins besides the backend's that its redirects may lead to. */
  readonly redirectOrigins?: ReadonlySet<string> | undefined;
  /** The backend resends what came after any id it sent: a resume from before the history is caught up from it. */
  readonly replays?: boolean | undefined;
  /** The topic's own feed instead of the backend stream at `url` (a POST's answer). */
  readonly source?: FeedSource | undefined;
  /** How long it is kept with no subscriber before it finishes; defaults to `topicLingerMs`. */
  readonly unfinishedLingerMs?: number | undefined;
  /** How long it is kept once finished, counted from the finish; defaults to `topicLingerMs`. */
  readonly finishedLingerMs?: number | undefined;
}

export interface TopicContext {
  readonly config: RelayConfig;
  readonly ownership: TopicOwnership;
  readonly stats: RelayStats;
  readonly logger: Logger;
  /** Called once when the topic is gone, so the hub forgets it. */
  onClosed(topic: Topic): void;
  /**
   * Opens a catch-up read of the backend for one client, if the relay may hold one more backend
   * stream now (they count against `maxUpstreams`); undefined when it may not.
   */
  catchUp?(init: UpstreamInit, listener: UpstreamListener): EventFeed | undefined;
}

interface Waiting {
  readonly subscriber: TopicMember;
  readonly lastEventId: string | undefined;
  /** The member's identity headers, for a catch-up request; undefined once it was caught up (or tried). */
  readonly identity: Record<string, string> | undefined;
}

// The id goes to the backend as `Last-Event-ID`: one a header cannot carry cannot be caught up.
const HEADER_SAFE = /^[\t\x20-\x7e\x80-\xff]+$/;

/**
 * One upstream stream shared by every subscriber of a key: serializes each event
 * once, keeps it for replay, and writes the same buffer to everyone.
 */
export class Topic {
  state: TopicState = 'opening';
  readonly subscribers = new Set<TopicMember>();
  private waiting: Waiting[] = [];
  private readonly replay: ReplayBuffer;
  private readonly upstream: EventFeed;
  private lingerTimer: NodeJS.Timeout | undefined;
  /** Where the history starts: the opening subscriber's `Last-Event-ID`, or a shared history's origin. */
  private originId: string | undefined;
  /** A shared history this topic loaded had already lost its oldest events. */
  private sharedTruncated = false;
  /** The backend's `retry:` as clients get it (bounded), once it sent one. */
  private retryMs: number | undefined;
  /**
   * The upstream resumed after events were relayed: until it sends an id not relayed yet, an
   * event whose id was relayed is a resend from at or before the resume point, and dropped.
   */
  private overlap = false;
  /** Whether this topic relayed any event yet (history may have been evicted since). */
  private relayedAny = false;
  /** Where the upstream would resume: the last effective id it sent (or the origin). */
  private resumeId: string | undefined;
  /** Why the topic failed, for the log line of a subscriber that was refused. */
  failure: string | undefined;
  /** When the last event was relayed (epoch ms), if any. */
  lastEventAt: number | undefined;
  /** An upstream attempt failed and no connection opened since. */
  private retrying = false;
  /** Members being caught up from the backend: not yet among `subscribers`, which get the live events. */
  private readonly catchingUp = new Map<TopicMember, CatchUp>();
  /** The last look at a lingering topic found clients reading it on other relays. */
  private readElsewhere = false;
  /** When the backend said the stream is over. */
  private finishedAt = 0;

  constructor(
    private readonly init: TopicInit,
    private readonly context: TopicContext,
  ) {
    this.replay = context.ownership.history(init.key);
    this.originId = init.originId;
    this.resumeId = init.originId;
    this.upstream = context.ownership.feed(
      init.key,
      {
        url: init.url,
        headers: init.headers,
        lastEventId: init.originId,
        final: init.final,
        redirectOrigins: init.redirectOrigins,
        source: init.source,
      },
      {
        onOpen: (resumedFrom) => this.onOpen(resumedFrom),
        onEvent: (event, id) => {
          this.resumeId = id;
          this.publish(event, id);
        },
        onReconnectTime: (ms) => this.onReconnectTime(ms),
        onEnd: () => this.onEnd(),
        onFinish: () => this.onFinish(),
        onRefused: (refusal) => this.onRefused(refusal),
        onGiveUp: (reason, cause) => this.onGiveUp(reason, cause),
        onHistory: (origin, truncated) => {
          this.originId = origin;
          this.resumeId = origin;
          this.sharedTruncated = truncated;
        },
        onRetry: (attempt, delayMs, cause) => {
          this.retrying = true;
          context.stats.upstreamReconnects += 1;
          context.logger.warn({ topic: init.key, attempt, delayMs, cause }, 'upstream attempt failed; retrying');
        },
      },
    );
    this.upstream.start();
  }

  get key(): string {
    return this.init.key;
  }

  /** Subscribers attached, waiting for the upstream's answer, or being caught up. */
  get size(): number {
    return this.subscribers.size + this.waiting.length + this.catchingUp.size;
  }

  /** Whether `member` is attached to this topic or waiting for it. */
  has(member: TopicMember): boolean {
    return this.subscribers.has(member) || this.waiting.some((w) => w.subscriber === member);
  }

  get upstreamState(): UpstreamState {
    if (this.state === 'finished') return 'finished';
    if (this.upstream.following === true) return 'following';
    return this.retrying || this.state === 'ended' ? 'reconnecting' : 'open';
  }

  /** What the replay history holds now. */
  get historySize(): { events: number; bytes: number } {
    return { events: this.replay.length ?? 0, bytes: this.replay.bytes ?? 0 };
  }

  /** Members being caught up from the backend now. */
  get catchUps(): number {
    return this.catchingUp.size;
  }

  /**
   * Adds a subscriber that resumes after `lastEventId` (or from the start). `identity` (the
   * headers that say who it is to the backend) lets the topic catch it up from the backend when
   * its id is older than the history; without it, such a resume gets `resync`.
   */
  attach(subscriber: TopicMember, lastEventId: string | undefined, identity?: Record<string, string>): void {
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if (subscriber.isClosed) return this.linger();
    this.join(subscriber, lastEventId, identity);
  }

  detach(subscriber: TopicMember): void {
    this.subscribers.delete(subscriber);
    const catchUp = this.catchingUp.get(subscriber);
    if (catchUp) {
      catchUp.abort();
      this.catchingUp.delete(subscriber);
    }
    if (this.waiting.length > 0) this.waiting = this.waiting.filter((w) => w.subscriber !== subscriber);
    if (this.size === 0) this.linger();
  }

  private join(subscriber: TopicMember, lastEventId: string | undefined, identity: Record<string, string> | undefined): void {
    if (this.state !== 'finished') this.replay.setIdle(false);
    if (this.state === 'ended') {
      // [spec] what a client reconnecting to the backend would do: ask again with Last-Event-ID.
      this.state = 'opening';
      this.upstream.resume();
    }
    if (this.state === 'opening') this.waiting.push({ subscriber, lastEventId, identity });
    else this.deliver(subscriber, lastEventId, identity);
  }

  /** Ends every subscriber and the upstream now. */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.lingerTimer);
    this.upstream.close();
    this.replay.release();
    for (const { subscriber } of this.waiting) subscriber.reject(new HttpError('shutting_down'));
    this.waiting = [];
    this.endCatchingUp('shutdown');
    for (const subscriber of this.subscribers) subscriber.end('shutdown');
    this.subscribers.clear();
    this.context.onClosed(this);
  }

  private deliver(subscriber: TopicMember, lastEventId: string | undefined, identity: Record<string, string> | undefined): void {
    if (subscriber.isClosed) return;
    const { events, gap } = this.history(lastEventId);
    if (gap && identity !== undefined && lastEventId !== undefined && this.startCatchUp(subscriber, lastEventId, identity)) return;
    // Nothing left that a client would dispatch: 204, or a client that skips id-only frames would
    // resume from before them, be sent them again, and reconnect for as long as the topic is kept.
    if (this.state === 'finished' && !gap && !events.some(hasData)) return subscriber.noContent();
    subscriber.open(this.retryMs ?? this.context.config.retryHintMs);
    if (gap) {
      this.context.stats.resyncs += 1;
      subscriber.resync();
    }
    if (events.length > 0) this.context.stats.replays += 1;
    subscriber.catchUp(events);
    if (this.state === 'finished') subscriber.end('upstream_ended');
    else if (!subscriber.isClosed) this.subscribers.add(subscriber);
  }

  /**
   * Catches `member` up from the backend, from `lastEventId` to where the history starts, if the
   * backend replays and the relay may open one more backend stream; false when it cannot.
   */
  private startCatchUp(member: TopicMember, lastEventId: string, identity: Record<string, string>): boolean {
    const open = this.context.catchUp;
    if (open === undefined || this.init.replays !== true || !HEADER_SAFE.test(lastEventId)) return false;
    const catchUp = new CatchUp(
      member,
      lastEventId,
      { reaches: (id) => this.continuesAfter(id), follows: (from, id) => this.follows(from, id) },
      (done, lastId, outcome, why) => this.caughtUp(done, member, lastId, outcome, why),
      (event, err) => {
        this.context.stats.eventsDropped += 1;
        this.context.logger.warn({ topic: this.key, id: event.id, err }, 'catch-up event dropped: it cannot be re-encoded');
      },
    );
    // Its stream opens now: the client sees the 200 at once, and what it missed as it comes.
    member.open(this.retryMs ?? this.context.config.retryHintMs);
    if (member.isClosed) return true;
    this.catchingUp.set(member, catchUp);
    const started = catchUp.start((listener) =>
      open({ url: this.init.url, headers: identity, lastEventId, final: true, redirectOrigins: this.init.redirectOrigins }, listener),
    );
    if (!started) {
      this.catchingUp.delete(member);
      return false;
    }
    this.context.stats.catchUps += 1;
    return true;
  }

  /** A catch-up ended: its member joins the topic after the last id it got (`resync` then, if part of what it missed is not held). */
  private caughtUp(catchUp: CatchUp, member: TopicMember, lastId: string, outcome: CatchUpOutcome, why: string): void {
    if (this.catchingUp.get(member) !== catchUp) return;
    this.catchingUp.delete(member);
    if (outcome === 'fell_back') this.context.stats.catchUpFallbacks += 1;
    this.context.logger.debug({ topic: this.key, from: catchUp.from, to: lastId, outcome, why }, 'catch-up done');
    if (member.isClosed) {
      if (this.size === 0) this.linger();
      return;
    }
    if (this.state === 'closed') return member.end('shutdown');
    this.join(member, lastId, undefined);
  }

  /** Whether a client whose last id is `id` can go on from this topic's history without a gap. */
  private continuesAfter(id: string): boolean {
    return this.replay.has(id) || (id === this.originId && !this.replay.truncated && !this.sharedTruncated);
  }

  /**
   * Whether the history holds `id` right after `from`. When `id` is the first event held, only a
   * history that lost older events leaves room for `from` before it.
   */
  private follows(from: string, id: string): boolean {
    const held = this.replay.all();
    const at = held.findIndex((event) => event.id === id);
    if (at < 0) return true;
    if (at === 0) return this.replay.truncated || this.sharedTruncated;
    return held[at - 1]?.id === from;
  }

  /** Ends the members being caught up, as the topic ends its subscribers. */
  private endCatchingUp(reason: CloseReason, event?: { event: string; data: unknown }): void {
    if (this.catchingUp.size === 0) return;
    const members = [...this.catchingUp];
    this.catchingUp.clear();
    for (const [member, catchUp] of members) {
      catchUp.abort();
      member.end(reason, event);
    }
  }

  /** What a subscriber resuming after `lastEventId` missed, and whether some of it is gone. */
  private history(lastEventId: string | undefined): { events: StoredEvent[]; gap: boolean } {
    if (lastEventId !== undefined) {
      const missed = this.replay.after(lastEventId);
      if (missed) return { events: missed, gap: false };
    }
    // The buffer begins where the upstream began: at the origin id, or at the start.
    const fromOrigin = lastEventId === this.originId;
    return { events: this.replay.all(), gap: this.replay.truncated || this.sharedTruncated || !fromOrigin };
  }

  private publish(message: SseEvent, effectiveId: string | undefined): void {
    const started = performance.now();
    const { stats } = this.context;
    if (this.overlap && message.id !== undefined) {
      if (this.replay.has(message.id)) {
        stats.duplicatesDropped += 1;
        return;
      }
      this.overlap = false;
    }
    let frame: Buffer;
    try {
      frame = encodeEvent(message);
    } catch (err) {
      // A relay bug or a feed that breaks the SSE rules, not a broken connection: the stream goes on.
      stats.eventsDropped += 1;
      this.context.logger.warn({ topic: this.key, id: message.id, err }, 'upstream event dropped: it cannot be re-encoded');
      return;
    }
    const stored = { id: effectiveId, frame };
    this.replay.push(stored);
    this.relayedAny = true;
    stats.eventsRelayed += 1;
    stats.deliveries += this.subscribers.size;
    stats.bytesRelayed += frame.length * this.subscribers.size;
    const now = Date.now();
    this.lastEventAt = now;
    for (const subscriber of this.subscribers) subscriber.relay(stored, now);
    stats.onDelivered((performance.now() - started) / 1000);
    // A client caught up past where the topic's upstream was (the upstream was still sending its
    // own backlog) goes on from the history as soon as it holds the client's last id.
    if (this.catchingUp.size > 0 && effectiveId !== undefined) {
      for (const catchUp of [...this.catchingUp.values()]) if (catchUp.position === effectiveId) catchUp.reached();
    }
  }

  private onOpen(resumedFrom: string | undefined): void {
    this.state = 'live';
    this.retrying = false;
    // Only events relayed before this connection can be resent by it (repeated ids on a live
    // connection are the backend's to send, and delivered).
    this.overlap = resumedFrom !== undefined && this.relayedAny;
    this.flushWaiting();
  }

  /** The backend's reconnection time, bounded, for the clients it concerns. */
  private onReconnectTime(ms: number): void {
    const { retryHintMinMs, retryHintMaxMs } = this.context.config;
    const bounded = Math.min(retryHintMaxMs, Math.max(retryHintMinMs, ms));
    if (bounded === this.retryMs) return;
    this.retryMs = bounded;
    const frame = encodeRetry(bounded);
    for (const subscriber of this.subscribers) subscriber.retryHint(bounded, frame);
  }

  /**
   * A clean end is passed on: every subscriber's stream ends, so clients reconnect as they would
   * to the backend. The topic keeps its history for them, and the first to come back reopens the
   * upstream with Last-Event-ID. Without an id to resume from there is nothing to reopen: the
   * topic goes, and a client that comes back starts afresh as it would with the backend.
   */
  private onEnd(): void {
    for (const subscriber of this.subscribers) subscriber.end('upstream_ended');
    this.subscribers.clear();
    const resumable = this.resumeId !== undefined && this.resumeId !== '';
    if (!resumable && this.waiting.length === 0) return this.fail();
    this.state = 'ended';
    if (this.waiting.length > 0) {
      this.state = 'opening';
      this.upstream.resume();
    }
    this.linger();
  }

  /** The backend said the stream is over: everyone gets what they miss, then the end (or 204). */
  private onFinish(): void {
    this.state = 'finished';
    this.finishedAt = Date.now();
    // Only resuming clients read a finished topic's history: it is the first to go when memory is short.
    this.replay.setIdle(true);
    this.flushWaiting();
    for (const subscriber of this.subscribers) subscriber.end('upstream_ended');
    this.subscribers.clear();
    this.linger();
  }

  private onRefused({ status, kind, body, reason }: UpstreamRefusal): void {
    this.failure = `backend refused: ${reason}`;
    this.context.logger.warn({ topic: this.key, status, reason }, 'upstream refused');
    const error =
      parseError(body) ??
      (kind === 'not_event_stream'
        ? { code: 'upstream_not_event_stream', message: `The backend answered ${reason}, not an event stream.` }
        : kind === 'redirect'
          ? { code: 'upstream_redirect_refused', message: 'The backend redirected the stream where the relay may not follow.' }
          : { code: 'upstream_refused', message: `The backend answered ${status}.` });
    // A 200 that is not an event stream is a stream route that failed, not a success: it is answered
    // 502 (an invalid answer from the backend, RFC 9110 §15.6.3), never as an error body under 200.
    const answered = kind === 'not_event_stream' ? 502 : status;
    for (const { subscriber } of this.waiting) subscriber.reject(new HttpError(error.code, error.message, answered));
    this.waiting = [];
    this.endCatchingUp('relay_error', { event: 'relay_error', data: { reason: `upstream_status_${status}` } });
    for (const subscriber of this.subscribers) subscriber.end('relay_error', { event: 'relay_error', data: { reason: `upstream_status_${status}` } });
    this.subscribers.clear();
    this.fail();
  }

  private onGiveUp(reason: string, cause: string): void {
    this.context.stats.upstreamGiveUps += 1;
    this.failure = `${reason} after ${this.context.config.reconnectMaxAttempts} retries: ${cause}`;
    this.context.logger.error({ topic: this.key, reason, cause }, 'upstream given up');
    for (const { subscriber } of this.waiting) {
      subscriber.reject(
        reason === 'redis_unavailable' ? new HttpError('redis_unavailable', "The relay cannot reach Redis, which holds this stream's events; retry once it is back.") : new HttpError('upstream_unavailable'),
      );
    }
    this.waiting = [];
    this.endCatchingUp('relay_error', { event: 'relay_error', data: { reason } });
    for (const subscriber of this.subscribers) subscriber.end('relay_error', { event: 'relay_error', data: { reason } });
    this.subscribers.clear();
    this.fail();
  }

  private fail(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.lingerTimer);
    this.endCatchingUp('upstream_ended');
    this.upstream.close();
    this.replay.release();
    this.context.onClosed(this);
  }

  private flushWaiting(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const { subscriber, lastEventId, identity } of waiting) this.deliver(subscriber, lastEventId, identity);
  }

  /** Keeps an empty or finished topic a little, so quick reconnects reuse it, then closes it. */
  private linger(): void {
    if (this.state === 'closed' || this.size > 0) return;
    this.replay.setIdle(true);
    this.readElsewhere = false;
    const { topicLingerMs } = this.context.config;
    // A finished topic is kept for its time after the finish, however many clients came since.
    if (this.state === 'finished') return this.lingerFor(Math.max(0, this.finishedAt + (this.init.finishedLingerMs ?? topicLingerMs) - Date.now()));
    this.lingerFor(this.init.unfinishedLingerMs ?? topicLingerMs);
  }

  private lingerFor(ms: number): void {
    clearTimeout(this.lingerTimer);
    const timer = setTimeout(() => void this.lapse(timer), ms);
    this.lingerTimer = timer;
    timer.unref();
  }

  /**
   * The linger ran out with nobody here: the topic closes, unless clients on other relays still
   * read it (a POST answer). Then it looks again when their mark would lapse, and once it has, it
   * lingers its whole time anew: they left at most a mark's length ago.
   */
  private async lapse(timer: NodeJS.Timeout): Promise<void> {
    if (this.size > 0) return;
    const elsewhere = this.state === 'finished' ? 0 : await (this.upstream.readElsewhere?.().catch(() => 0) ?? 0);
    // A client came and went meanwhile: the linger its leaving started decides.
    if (this.size > 0 || this.state === 'closed' || this.lingerTimer !== timer) return;
    if (elsewhere > 0) {
      this.readElsewhere = true;
      return this.lingerFor(elsewhere);
    }
    if (!this.readElsewhere) return this.fail();
    this.readElsewhere = false;
    const { topicLingerMs } = this.context.config;
    this.lingerFor(this.init.unfinishedLingerMs ?? topicLingerMs);
  }
}

function hasData(event: StoredEvent): boolean {
  return dispatches(event.frame);
}

function parseError(body: string): { code: string; message: string } | undefined {
  try {
    const parsed: unknown = JSON.parse(body);
    const error = (parsed as { error?: { code?: unknown; message?: unknown } }).error;
    if (typeof error?.code === 'string' && typeof error.message === 'string') return { code: error.code, message: error.message };
  } catch {
    // not the contract's JSON: fall back to a generic message
  }
  return undefined;
}
