import { createHash, randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { HttpError } from '../errors';
import type { NodeInternals } from '../internals';
import type { RelayConfig } from '../options';
import { EventStreamReader } from '../sse/reader';
import type { StreamPolicy } from '../stream-policy';
import type { CloseReason } from './close-reason';
import type { EventFeed, FeedInit, TopicOwnership } from './ownership';
import type { RelayStats } from './stats';
import { Subscriber } from './subscriber';
import { Topic, type TopicInit } from './topic';
import type { UpstreamListener } from './upstream';

/** 144 random bits, base64url: 24 characters that pass the stream id pattern of the routes. */
const STREAM_ID_BYTES = 18;

/** 132 bits of a digest of the user, in an answer's key. */
const USER_DIGEST_CHARS = 22;

/** The digest of a user in an answer's key, when no cluster secret keys it. */
function plainDigest(user: string): string {
  return createHash('sha256').update(user, 'utf8').digest('base64url');
}

/** The backend's answer to a streaming POST, taken over to be kept and resumed. */
export interface PostAnswerInit {
  /** Who made the POST: the only user who may resume or cancel it. */
  readonly user: string;
  /** Where the POST went, for logs and the topic's record. */
  readonly url: URL;
  /** The answer's body, as the backend sends it. */
  readonly body: AsyncIterable<Buffer>;
  /** Aborts the upstream request (the backend sees the client leave). */
  abort(): void;
  /** Whether the request body is still being sent: a client that leaves then cancels at once. */
  bodyArriving(): boolean;
  /** The `relay_error` reason when the answer breaks (`payload_too_large` past the body cap). */
  failure(): string;
}

/** An opened answer: its id (`X-Stream-Id`) and the POST's own response as one of its streams. */
export interface OpenedAnswer {
  readonly streamId: string;
  readonly subscriber: Subscriber;
}

/** The answers of every relay of a cluster, through Redis. */
export interface SharedAnswers {
  /**
   * With a signing secret: a digest of a user keyed with it (base64url), for an answer's key, so
   * that reading Redis does not tell whose answers they are. Without: a plain SHA-256 is used.
   */
  readonly userDigest?: ((user: string) => string) | undefined;
  /** The feed of an answer another relay reads: its events as that relay appends them. */
  follow(key: string, init: FeedInit, listener: UpstreamListener): EventFeed;
  /** Cancels an answer whichever relay reads it, and drops its history; false when Redis holds none. */
  cancel(key: string): Promise<boolean>;
  /** Whether Redis holds an answer's history. */
  held(key: string): Promise<boolean>;
  /** What this relay does when another one cancels an answer (it may read or follow it). */
  onCancelled(close: (key: string) => void): void;
}

/** What the answers need of their relay. */
export interface PostAnswersContext {
  readonly config: RelayConfig;
  /** Where the answers this relay receives are kept: its memory, or a cluster's shared history. */
  readonly ownership: TopicOwnership;
  /** With a cluster: the answers other relays received, resumed and cancelled here. */
  readonly shared?: SharedAnswers | undefined;
  readonly stats: RelayStats;
  readonly logger: Logger;
  /** The relay's one stream policy: the answers' streams go by it too. */
  readonly policy: StreamPolicy;
  readonly internals: NodeInternals;
}

/**
 * The streaming POSTs' answers, each a topic keyed by its id and its user whose feed is the
 * backend's answer instead of a GET upstream: the history, its budgets, the linger after the
 * end, replay after `Last-Event-ID`, resync and the 204 on a finished answer's last id all come
 * from the topic. A drop is not a cancel: with no client left the topic is kept for
 * `postResumeGraceMs` before it closes, and its close aborts the upstream request.
 *
 * In a cluster the relay that received the POST reads it and appends its events to the shared
 * history; a resume on another relay follows that history (a topic of its own here, gone with
 * its last client), and a cancel there reaches the reading relay through Redis.
 *
 * They are kept apart from the hub's topics: a drain leaves uploads and chats in flight to
 * finish, and a POST took no upstream of `maxUpstreams`.
 */
export class PostAnswers {
  /** The answers this relay reads, and those of other relays it follows for clients here. */
  private readonly topics = new Map<string, Topic>();
  private readonly streams = new Set<Subscriber>();

  constructor(private readonly context: PostAnswersContext) {
    context.policy.watch(this.streams);
    context.shared?.onCancelled((key) => this.topics.get(key)?.close());
  }

  /**
   * Makes the answer a topic and the POST's response `res` its first stream, with `X-Stream-Id`.
   * `res` keeps the headers already set on it (the backend's).
   */
  open(res: ServerResponse, init: PostAnswerInit): OpenedAnswer {
    const streamId = randomBytes(STREAM_ID_BYTES).toString('base64url');
    res.setHeader('X-Stream-Id', streamId);
    const topic = this.topic(this.keyOf(streamId, init.user), init);
    const subscriber = this.stream(res, (closed, reason) => {
      // Nothing whole to resume: an upload whose body was still on its way.
      if (reason === 'client_closed' && init.bodyArriving()) topic.close();
      else topic.detach(closed);
    });
    // The client made a POST, not an EventSource: it gets the backend's `retry:` only.
    subscriber.hintsRetry = false;
    topic.attach(subscriber, undefined);
    return { streamId, subscriber };
  }

  /**
   * Attaches `res` to the answer after `lastEventId`; 404 `stream_not_found` unless `user` made
   * it and this relay, or the cluster, holds it. Undefined when the client has already gone.
   */
  resume(res: ServerResponse, streamId: string, user: string, lastEventId: string | undefined): Subscriber | undefined {
    const key = this.keyOf(streamId, user);
    const topic = this.topics.get(key) ?? (this.context.shared && this.follow(key, this.context.shared));
    if (topic === undefined) throw new HttpError('stream_not_found');
    return this.attach(topic, res, lastEventId);
  }

  /**
   * Whether `user` may resume the answer: this relay or the cluster holds it (a HEAD's check, which
   * opens nothing); rejects when Redis does not answer.
   */
  async known(streamId: string, user: string): Promise<boolean> {
    const key = this.keyOf(streamId, user);
    return this.topics.has(key) || (this.context.shared !== undefined && (await this.context.shared.held(key)));
  }

  /**
   * Cancels an answer `user` made, aborting its upstream request (on the relay that reads it, in
   * a cluster); false when neither this relay nor the cluster holds it.
   */
  async cancel(streamId: string, user: string): Promise<boolean> {
    const key = this.keyOf(streamId, user);
    const topic = this.topics.get(key);
    // The cluster's cancel goes to Redis before the close's own discard of the answer: only the one
    // that finds the answer there tells the relays following it.
    const cancelled = this.context.shared?.cancel(key);
    topic?.close();
    if (cancelled === undefined) return topic !== undefined;
    try {
      return (await cancelled) || topic !== undefined;
    } catch {
      if (topic !== undefined) return true;
      throw new HttpError('redis_unavailable', 'Redis does not answer: the relay cannot tell whether another relay reads this answer; retry once Redis is back.');
    }
  }

  /**
   * The answers this relay reads from the backend that have not ended, wherever their clients are
   * (here, on other relays, or gone for the grace period): a stop waits for them. Without a
   * cluster, 0: an answer with a client here holds a connection the stop waits for already, and
   * once the listener closes nobody can resume one that has none.
   */
  get reading(): number {
    if (this.context.shared === undefined) return 0;
    let count = 0;
    for (const topic of this.topics.values()) if (topic.state !== 'finished' && topic.upstreamState !== 'following') count += 1;
    return count;
  }

  /**
   * The topic key of a streaming POST's answer, for the user who made it: another user's resume
   * names another key, which nothing holds (on any relay, or in Redis).
   */
  private keyOf(streamId: string, user: string): string {
    const digest = this.context.shared?.userDigest?.(user) ?? plainDigest(user);
    return `post:${streamId}.${digest.slice(0, USER_DIGEST_CHARS)}`;
  }

  /** Ends every answer and its streams, aborting the upstream requests. */
  close(): void {
    for (const topic of [...this.topics.values()]) topic.close();
    for (const subscriber of this.streams) subscriber.end('shutdown');
  }

  private attach(topic: Topic, res: ServerResponse, lastEventId: string | undefined): Subscriber | undefined {
    if (res.destroyed || !res.socket || res.socket.destroyed) return undefined;
    const subscriber = this.stream(res, (closed) => topic.detach(closed));
    topic.attach(subscriber, lastEventId);
    return subscriber;
  }

  private topic(key: string, init: PostAnswerInit): Topic {
    const { config, ownership } = this.context;
    return this.keep(
      {
        key,
        url: init.url,
        headers: { 'x-user-id': init.user },
        originId: undefined,
        final: true,
        unfinishedLingerMs: config.postResumeGraceMs,
        source: (listener) => new AnswerFeed(init, config.maxEventBytes, listener),
      },
      ownership,
    );
  }

  /**
   * A topic here for an answer another relay reads, while clients here read it: it follows the
   * shared history and goes with its last client (that relay keeps the answer and its grace).
   */
  private follow(key: string, shared: SharedAnswers): Topic {
    const { config, ownership } = this.context;
    return this.keep(
      // Nothing is kept here once its clients left: the shared history (and its end) is the owner's.
      { key, url: config.backendUrl, headers: {}, originId: undefined, final: true, unfinishedLingerMs: 0, finishedLingerMs: 0 },
      { feed: (_key, init, listener) => shared.follow(key, init, listener), history: (history) => ownership.history(history) },
    );
  }

  /** Makes a topic of an answer, held in `topics` while it lives. */
  private keep(init: TopicInit, ownership: TopicOwnership): Topic {
    const { config, stats, logger } = this.context;
    const topic = new Topic(init, { config, ownership, stats, logger, onClosed: () => this.topics.delete(init.key) });
    this.topics.set(init.key, topic);
    return topic;
  }

  private stream(res: ServerResponse, onClose: (subscriber: Subscriber, reason: CloseReason) => void): Subscriber {
    const { policy, internals, stats, config } = this.context;
    // An answer's stream has no `ready` event to say it: a client knows a dead stream by this.
    res.setHeader('X-Heartbeat-Ms', String(config.heartbeatMs));
    const subscriber = new Subscriber(
      res,
      policy,
      {
        onClose: (closed, reason) => {
          this.streams.delete(closed);
          onClose(closed, reason);
          if (reason === 'slow_client') stats.slowClientsCut += 1;
          stats.countClose(reason);
        },
      },
      internals,
    );
    this.streams.add(subscriber);
    stats.streamsOpened += 1;
    return subscriber;
  }
}

/**
 * A POST answer's events as a topic's feed: opened at once (the backend already answered 200),
 * finished when the body ends, given up when it breaks. Each event gets an id: its own, else
 * the relay's count of the events so far, so that every event can be resumed after.
 */
class AnswerFeed implements EventFeed {
  private closed = false;
  private count = 0;

  constructor(
    private readonly init: PostAnswerInit,
    private readonly maxEventBytes: number,
    private readonly listener: UpstreamListener,
  ) {}

  start(): void {
    this.listener.onOpen(undefined);
    void this.read();
  }

  /** An answer never ends but for good: there is nothing to ask again. */
  resume(): void {}

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.init.abort();
  }

  private async read(): Promise<void> {
    let overflow = false;
    const reader = new EventStreamReader(
      {
        onFrame: (frame) => {
          if (this.closed || overflow) return;
          this.count += 1;
          const id = frame.id ?? String(this.count);
          this.listener.onEvent({ ...frame, id }, id);
        },
        onRetry: (ms) => {
          if (!this.closed) this.listener.onReconnectTime?.(ms);
        },
        onOverflow: () => {
          overflow = true;
        },
      },
      this.maxEventBytes,
      undefined,
    );
    // TextDecoder strips a leading BOM and joins characters split across chunks.
    const decoder = new TextDecoder();
    let cause: string | undefined;
    try {
      for await (const chunk of this.init.body) {
        if (this.closed) return;
        reader.feed(decoder.decode(chunk, { stream: true }));
        if (overflow) {
          cause = `an event larger than ${this.maxEventBytes} characters`;
          break;
        }
      }
    } catch (err) {
      cause = (err as { message?: string }).message ?? String(err);
    }
    if (this.closed) return;
    if (cause === undefined) return this.listener.onFinish();
    this.init.abort();
    this.listener.onGiveUp(this.init.failure(), cause);
  }
}
