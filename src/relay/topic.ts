import type { Logger } from 'pino';
import { HttpError } from '../errors';
import { type SseEvent, dispatches, encodeEvent, encodeRetry } from '../sse/encode';
import type { RelayConfig } from '../options';
import type { EventFeed, FeedSource, TopicOwnership } from './ownership';
import type { UpstreamRefusal } from './upstream';
import type { ReplayBuffer, StoredEvent } from './replay';
import type { RelayStats } from './stats';
import type { TopicMember } from './member';

/**
 * `opening`: waiting for the backend's answer; `live`: relaying; `ended`: the backend ended the
 * stream cleanly, and the next subscriber to come reopens it with `Last-Event-ID`; `finished`:
 * the backend said the stream is over (204).
 */
export type TopicState = 'opening' | 'live' | 'ended' | 'finished' | 'closed';

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
  /** The topic's own feed instead of the backend stream at `url` (a POST's answer). */
  readonly source?: FeedSource | undefined;
  /** How long it is kept with no subscriber before it finishes; defaults to `topicLingerMs`. */
  readonly unfinishedLingerMs?: number | undefined;
}

export interface TopicContext {
  readonly config: RelayConfig;
  readonly ownership: TopicOwnership;
  readonly stats: RelayStats;
  readonly logger: Logger;
  /** Called once when the topic is gone, so the hub forgets it. */
  onClosed(topic: Topic): void;
}

interface Waiting {
  readonly subscriber: TopicMember;
  readonly lastEventId: string | undefined;
}

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

  /** Subscribers attached or waiting for the upstream's answer. */
  get size(): number {
    return this.subscribers.size + this.waiting.length;
  }

  /** Adds a subscriber that resumes after `lastEventId` (or from the start). */
  attach(subscriber: TopicMember, lastEventId: string | undefined): void {
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if (subscriber.isClosed) return this.linger();
    if (this.state !== 'finished') this.replay.setIdle(false);
    if (this.state === 'ended') {
      // [spec] what a client reconnecting to the backend would do: ask again with Last-Event-ID.
      this.state = 'opening';
      this.upstream.resume();
    }
    if (this.state === 'opening') this.waiting.push({ subscriber, lastEventId });
    else this.deliver(subscriber, lastEventId);
  }

  detach(subscriber: TopicMember): void {
    this.subscribers.delete(subscriber);
    if (this.waiting.length > 0) this.waiting = this.waiting.filter((w) => w.subscriber !== subscriber);
    if (this.size === 0) this.linger();
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
    for (const subscriber of this.subscribers) subscriber.end('shutdown');
    this.subscribers.clear();
    this.context.onClosed(this);
  }

  private deliver(subscriber: TopicMember, lastEventId: string | undefined): void {
    if (subscriber.isClosed) return;
    const { events, gap } = this.history(lastEventId);
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
    for (const subscriber of this.subscribers) subscriber.relay(stored, now);
    stats.onDelivered((performance.now() - started) / 1000);
  }

  private onOpen(resumedFrom: string | undefined): void {
    this.state = 'live';
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
    for (const subscriber of this.subscribers) subscriber.end('relay_error', { event: 'relay_error', data: { reason: `upstream_status_${status}` } });
    this.subscribers.clear();
    this.fail();
  }

  private onGiveUp(reason: string, cause: string): void {
    this.context.stats.upstreamGiveUps += 1;
    this.failure = `${reason} after ${this.context.config.reconnectMaxAttempts} retries: ${cause}`;
    this.context.logger.error({ topic: this.key, reason, cause }, 'upstream given up');
    for (const { subscriber } of this.waiting) {
      subscriber.reject(new HttpError('upstream_unavailable'));
    }
    this.waiting = [];
    for (const subscriber of this.subscribers) subscriber.end('relay_error', { event: 'relay_error', data: { reason } });
    this.subscribers.clear();
    this.fail();
  }

  private fail(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.lingerTimer);
    this.upstream.close();
    this.replay.release();
    this.context.onClosed(this);
  }

  private flushWaiting(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const { subscriber, lastEventId } of waiting) this.deliver(subscriber, lastEventId);
  }

  /** Keeps an empty or finished topic a little, so quick reconnects reuse it, then closes it. */
  private linger(): void {
    if (this.state === 'closed' || this.size > 0) return;
    this.replay.setIdle(true);
    clearTimeout(this.lingerTimer);
    const { topicLingerMs } = this.context.config;
    this.lingerTimer = setTimeout(
      () => {
        if (this.size === 0) this.fail();
      },
      this.state === 'finished' ? topicLingerMs : (this.init.unfinishedLingerMs ?? topicLingerMs),
    );
    this.lingerTimer.unref();
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
