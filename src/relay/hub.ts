import type { ServerResponse } from 'node:http';
import { type Logger, pino } from 'pino';
import { NodeInternals } from '../internals';
import type { RelayConfig } from '../options';
import { StreamPolicy } from '../stream-policy';
import type { EventFeed, TopicOwnership } from './ownership';
import type { UpstreamInit, UpstreamListener } from './upstream';
import type { RelayStats } from './stats';
import { type CloseReason, Subscriber } from './subscriber';
import { Topic } from './topic';
import { jitteredRetry } from './come-back';
import { UpstreamBudget } from '../limits/upstream-budget';

/** Where a shared stream comes from: its key and the backend URL of its events. */
export interface TopicRef {
  /** Subscribers with the same key share one upstream. */
  readonly key: string;
  /** The backend's event stream for this key. */
  readonly url: URL;
  /** A clean end of the backend's stream means it is over (no reconnect to ask). */
  readonly final?: boolean | undefined;
  /** Origins besides the backend's that its redirects may lead to. */
  readonly redirectOrigins?: ReadonlySet<string> | undefined;
  /** The backend resends what came after any id it sent: a resume from before the history is caught up from it. */
  readonly replays?: boolean | undefined;
}

export interface SubscribeRequest {
  /** Headers for the upstream request if this subscriber opens the topic, or for its catch-up (identity). */
  readonly headers: Record<string, string>;
  /** The client's `Last-Event-ID`, if it resumes. */
  readonly lastEventId: string | undefined;
}

/**
 * The topics of one relay: opens a topic with its first subscriber, forgets it when it
 * closes, and holds the relay's stream policy, whose one timer heartbeats and expires every
 * stream (its own, and those other parts put under it).
 */
export class Hub {
  private readonly topics = new Map<string, Topic>();
  private readonly streams = new Set<Subscriber>();
  private readonly upstreamBudget: UpstreamBudget;
  /** What every client stream of the relay goes by: idle, lifetime, heartbeat, slow client. */
  readonly policy: StreamPolicy;
  /** The tricks past Node's and Express's public API that held streams use, checked. */
  readonly internals: NodeInternals;
  /** Catch-up reads of the backend open now: each is a backend stream, counted against `maxUpstreams`. */
  private catchUps = 0;

  constructor(
    private readonly config: RelayConfig,
    private readonly ownership: TopicOwnership,
    readonly stats: RelayStats,
    private readonly logger: Logger = pino({ level: 'silent' }),
    /** A stream or topic refused for want of an upstream (`maxUpstreams`): counted, and listed with the relay's cuts. */
    onRefused: (limit: 'upstreams') => void = (limit) => stats.countRejection(limit),
  ) {
    this.policy = new StreamPolicy(config);
    this.policy.watch(this.streams);
    this.internals = new NodeInternals({ enabled: config.nodeInternals === 1, warn: (line) => logger.warn(line) });
    this.upstreamBudget = new UpstreamBudget(config.maxUpstreams, logger, () => onRefused('upstreams'));
  }

  /** The live topic of a key, if any. */
  topic(key: string): Topic | undefined {
    return this.topics.get(key);
  }

  get topicCount(): number {
    return this.topics.size;
  }

  /** Every topic held now (for the admin API). */
  allTopics(): IterableIterator<Topic> {
    return this.topics.values();
  }

  /**
   * Topics counted against `maxUpstreams`: every one that holds an upstream or opens one again
   * (opening, live, or ended and about to be resumed; in a cluster a followed topic too, which
   * may take its upstream over). A finished topic only serves its history.
   */
  get budgetedUpstreams(): number {
    let held = this.catchUps;
    for (const topic of this.topics.values()) if (topic.state !== 'finished' && topic.state !== 'closed') held += 1;
    return held;
  }

  /** Topic upstreams this hub may hold (`maxUpstreams`). */
  get maxUpstreams(): number {
    return this.upstreamBudget.max;
  }

  /**
   * Throws 503 `over_capacity` unless the topics of `keys` that this hub does not hold yet fit
   * in `maxUpstreams`. Call it right before attaching, with no await in between.
   */
  admitTopics(keys: readonly string[]): void {
    let needed = 0;
    for (const key of keys) if (!this.topics.has(key)) needed += 1;
    // Counting the held ones walks every topic: only when the relay may be near its budget.
    if (needed === 0 || this.topics.size + this.catchUps + needed <= this.upstreamBudget.max) return;
    this.upstreamBudget.admit(this.budgetedUpstreams, needed);
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /**
   * Attaches a client's response to the topic of `ref`, opening it if needed.
   * Returns undefined when the client has already gone; throws `over_capacity` when the topic
   * needs an upstream past `maxUpstreams`.
   */
  subscribe(res: ServerResponse, ref: TopicRef, request: SubscribeRequest): Subscriber | undefined {
    if (res.destroyed || !res.socket || res.socket.destroyed) return undefined;
    this.admitTopics([ref.key]);
    const topic = this.topicFor(ref, request);
    const subscriber = this.stream(res, (closed) => topic.detach(closed));
    topic.attach(subscriber, request.lastEventId, request.headers);
    return subscriber;
  }

  /** The topic of `ref`, opened with `request` (identity and origin id) if it is not held. */
  topicFor(ref: TopicRef, request: SubscribeRequest): Topic {
    let topic = this.topics.get(ref.key);
    if (!topic) {
      topic = new Topic(
        {
          key: ref.key,
          url: ref.url,
          headers: request.headers,
          originId: request.lastEventId,
          final: ref.final,
          redirectOrigins: ref.redirectOrigins,
          replays: ref.replays,
        },
        {
          config: this.config,
          logger: this.logger,
          ownership: this.ownership,
          stats: this.stats,
          onClosed: (closed) => {
            if (this.topics.get(closed.key) === closed) this.topics.delete(closed.key);
          },
          catchUp: (init, listener) => this.openCatchUp(init, listener),
        },
      );
      this.topics.set(ref.key, topic);
    }
    return topic;
  }

  /**
   * A catch-up read of the backend, if the ownership can make one and it fits `maxUpstreams`
   * beside the topics' upstreams; a client that cannot be caught up gets `resync` instead, not a
   * 503: it is already streaming.
   */
  private openCatchUp(init: UpstreamInit, listener: UpstreamListener): EventFeed | undefined {
    if (this.ownership.catchUp === undefined) return undefined;
    if (this.topics.size + this.catchUps >= this.upstreamBudget.max && this.budgetedUpstreams >= this.upstreamBudget.max) return undefined;
    const feed = this.ownership.catchUp(init, listener);
    this.catchUps += 1;
    let released = false;
    return {
      start: () => feed.start(),
      resume: () => feed.resume(),
      close: () => {
        feed.close();
        if (released) return;
        released = true;
        this.catchUps -= 1;
      },
    };
  }

  /**
   * A client stream held by the hub: the stream policy, drain and close apply. `onClose` is
   * called once when its response is gone. A multiplexed stream is one of these.
   */
  stream(res: ServerResponse, onClose: (subscriber: Subscriber, reason: CloseReason) => void): Subscriber {
    const subscriber = new Subscriber(res, this.policy, {
      onClose: (closed, reason) => {
        this.streams.delete(closed);
        onClose(closed, reason);
        if (reason === 'slow_client') this.stats.slowClientsCut += 1;
        this.stats.countClose(reason);
      },
    }, this.internals);
    this.streams.add(subscriber);
    this.stats.streamsOpened += 1;
    return subscriber;
  }

  /**
   * Ends every stream at a random moment within `windowMs` (0: at once), each told to come
   * back after `retryMs` plus jitter, so clients reconnect spread out, not all at once. Then
   * closes the topics and their upstreams. The policy's clock runs on for the streams others
   * put under it (uploads and chats left to finish), until `close`.
   */
  async drain(windowMs: number, retryMs: number): Promise<void> {
    const ends = [...this.streams].map(
      (subscriber) =>
        new Promise<void>((resolve) => {
          setTimeout(() => {
            subscriber.endWithRetry('shutdown', jitteredRetry(retryMs));
            resolve();
          }, Math.random() * windowMs);
        }),
    );
    await Promise.all(ends);
    this.closeTopicsAndStreams();
  }

  /** Closes every topic and stream and stops the policy's timer. */
  close(): void {
    this.policy.close();
    this.closeTopicsAndStreams();
  }

  private closeTopicsAndStreams(): void {
    for (const topic of [...this.topics.values()]) topic.close();
    for (const subscriber of this.streams) subscriber.end('shutdown');
  }
}
