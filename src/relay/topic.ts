import type { EventSourceMessage } from 'eventsource-parser';
import { encodeEvent } from '../sse/encode';
import type { RelayConfig } from '../options';
import type { EventFeed, TopicOwnership } from './ownership';
import type { ReplayBuffer, StoredEvent } from './replay';
import type { RelayStats } from './stats';
import type { Subscriber } from './subscriber';

/** `opening`: waiting for the backend's answer; `live`: relaying; `finished`: the backend ended the stream. */
export type TopicState = 'opening' | 'live' | 'finished' | 'closed';

const RESYNC = encodeEvent({ event: 'resync', data: JSON.stringify({ reason: 'history_gap' }) });

export interface TopicInit {
  readonly key: string;
  /** Full URL of the backend stream. */
  readonly url: URL;
  /** Headers of the upstream request (the opening subscriber's identity). */
  readonly headers: Record<string, string>;
  /** Where the upstream starts: the opening subscriber's `Last-Event-ID`. */
  readonly originId: string | undefined;
}

export interface TopicContext {
  readonly config: RelayConfig;
  readonly ownership: TopicOwnership;
  readonly stats: RelayStats;
  /** Called once when the topic is gone, so the hub forgets it. */
  onClosed(topic: Topic): void;
}

interface Waiting {
  readonly subscriber: Subscriber;
  readonly lastEventId: string | undefined;
}

/**
 * One upstream stream shared by every subscriber of a key: serializes each event
 * once, keeps it for replay, and writes the same buffer to everyone.
 */
export class Topic {
  state: TopicState = 'opening';
  readonly subscribers = new Set<Subscriber>();
  private waiting: Waiting[] = [];
  private readonly replay: ReplayBuffer;
  private readonly upstream: EventFeed;
  private lingerTimer: NodeJS.Timeout | undefined;
  /** Where the history starts: the opening subscriber's `Last-Event-ID`, or a shared history's origin. */
  private originId: string | undefined;
  /** A shared history this topic loaded had already lost its oldest events. */
  private sharedTruncated = false;

  constructor(
    private readonly init: TopicInit,
    private readonly context: TopicContext,
  ) {
    this.replay = context.ownership.history(init.key);
    this.originId = init.originId;
    this.upstream = context.ownership.feed(
      init.key,
      { url: init.url, headers: init.headers, lastEventId: init.originId },
      {
        onOpen: () => this.onOpen(),
        onEvent: (event, id) => this.publish(event, id),
        onEnd: () => this.onEnd(),
        onRefused: (status, body) => this.onRefused(status, body),
        onGiveUp: (reason) => this.onGiveUp(reason),
        onHistory: (origin, truncated) => {
          this.originId = origin;
          this.sharedTruncated = truncated;
        },
        onRetry: () => {
          context.stats.upstreamReconnects += 1;
        },
      },
    );
    context.stats.upstreamConnects += 1;
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
  attach(subscriber: Subscriber, lastEventId: string | undefined): void {
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if (subscriber.isClosed) return this.linger();
    if (this.state === 'opening') this.waiting.push({ subscriber, lastEventId });
    else this.deliver(subscriber, lastEventId);
  }

  detach(subscriber: Subscriber): void {
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
    for (const { subscriber } of this.waiting) subscriber.reject(503, 'shutting_down', 'The relay is shutting down; retry.');
    this.waiting = [];
    for (const subscriber of this.subscribers) subscriber.end('shutdown');
    this.subscribers.clear();
    this.context.onClosed(this);
  }

  private deliver(subscriber: Subscriber, lastEventId: string | undefined): void {
    if (subscriber.isClosed) return;
    const { events, gap } = this.history(lastEventId);
    if (this.state === 'finished' && events.length === 0 && !gap) return subscriber.noContent();
    subscriber.open(this.context.config.retryHintMs);
    if (gap) {
      this.context.stats.resyncs += 1;
      subscriber.send(RESYNC);
    }
    if (events.length > 0) this.context.stats.replays += 1;
    subscriber.replay(events.map((event) => event.frame));
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

  private publish(message: EventSourceMessage, effectiveId: string | undefined): void {
    const started = performance.now();
    const { stats } = this.context;
    // After a reconnect, a backend may resend what we already relayed: drop it.
    if (message.id !== undefined && this.replay.has(message.id)) {
      stats.duplicatesDropped += 1;
      return;
    }
    const frame = encodeEvent(message);
    this.replay.push({ id: effectiveId, frame });
    stats.eventsRelayed += 1;
    stats.deliveries += this.subscribers.size;
    stats.bytesRelayed += frame.length * this.subscribers.size;
    const now = Date.now();
    for (const subscriber of this.subscribers) subscriber.send(frame, now);
    stats.onDelivered((performance.now() - started) / 1000);
  }

  private onOpen(): void {
    this.state = 'live';
    this.flushWaiting();
  }

  private onEnd(): void {
    this.state = 'finished';
    this.flushWaiting();
    for (const subscriber of this.subscribers) subscriber.end('upstream_ended');
    this.subscribers.clear();
    this.linger();
  }

  private onRefused(status: number, body: string): void {
    const error = parseError(body) ?? { code: 'upstream_refused', message: `The backend answered ${status}.` };
    for (const { subscriber } of this.waiting) subscriber.reject(status, error.code, error.message);
    this.waiting = [];
    this.fail();
  }

  private onGiveUp(reason: string): void {
    this.context.stats.upstreamGiveUps += 1;
    for (const { subscriber } of this.waiting) {
      subscriber.reject(502, 'upstream_unavailable', 'The backend stream could not be reached; retry later.');
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
    clearTimeout(this.lingerTimer);
    this.lingerTimer = setTimeout(() => {
      if (this.size === 0) this.fail();
    }, this.context.config.topicLingerMs);
    this.lingerTimer.unref();
  }
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
