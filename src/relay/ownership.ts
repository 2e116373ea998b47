import type { Dispatcher } from 'undici';
import type { RelayConfig } from '../options';
import { HistoryBudget } from './history-budget';
import { MemoryReplayBuffer, type ReplayBuffer } from './replay';
import { RelayStats } from './stats';
import { Upstream, type UpstreamInit, type UpstreamListener } from './upstream';

/** A topic's source of events, started once and closed once. */
export interface EventFeed {
  start(): void;
  /** After the listener's `onEnd`: asks the backend again with the last event id, as a spec client reconnects. */
  resume(): void;
  /** Stops at once; no listener method is called after this. */
  close(): void;
  /** Another process reads the upstream and this feed follows its events (a cluster). */
  readonly following?: boolean;
  /**
   * How long clients on other processes are still counted as reading this feed's topic, in ms
   * (0: none): a POST answer is not given up while they are.
   */
  readElsewhere?(): Promise<number>;
}

/**
 * A feed a topic brings with it instead of a backend stream to subscribe to: a streaming POST's
 * answer, which only the relay that received the POST can read, and which is never reopened.
 */
export type FeedSource = (listener: UpstreamListener) => EventFeed;

/** How a topic's feed is opened: the backend stream to subscribe to, or the feed it brings. */
export interface FeedInit extends UpstreamInit {
  /** The topic's own feed (a POST's answer); the URL is then only where it came from. */
  readonly source?: FeedSource | undefined;
}

/**
 * Who reads a topic's upstream and keeps its history. The in-memory implementation
 * makes every process the owner of its own topics; a shared one (e.g. Redis) lets
 * one process read the backend and the others follow its events.
 */
export interface TopicOwnership {
  /** The feed of a topic's events, reported to `listener` as an upstream would. */
  feed(key: string, init: FeedInit, listener: UpstreamListener): EventFeed;
  /** The replay history of a topic. */
  history(key: string): ReplayBuffer;
  /**
   * One read of the backend's stream for one client, never shared and never retried: a resume
   * from before the topic's history is caught up this way (see `Topic`). Without it, such a
   * resume gets `resync`.
   */
  catchUp?(init: UpstreamInit, listener: UpstreamListener): EventFeed;
}

/** One process, no sharing: each topic reads its own upstream and keeps its history in memory. */
export class LocalOwnership implements TopicOwnership {
  /** What the histories of all this process's topics hold, against `replayTotalBytes`. */
  readonly budget: HistoryBudget;
  private readonly catchUpConfig: RelayConfig;

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly config: RelayConfig,
    /** Where the upstreams it opens are counted: what this process holds, whoever owns the topics. */
    private readonly stats: RelayStats = new RelayStats(),
  ) {
    this.budget = new HistoryBudget(config.replayTotalBytes);
    this.catchUpConfig = Object.freeze({ ...config, reconnectMaxAttempts: 0 });
  }

  feed(_key: string, init: FeedInit, listener: UpstreamListener): EventFeed {
    if (init.source !== undefined) return init.source(listener);
    this.stats.upstreamConnects += 1;
    return new Upstream(init, this.dispatcher, this.config, listener, this.stats);
  }

  history(_key: string): ReplayBuffer {
    return new MemoryReplayBuffer(this.config.replayBufferSize, this.config.replayBufferBytes, this.budget);
  }

  catchUp(init: UpstreamInit, listener: UpstreamListener): EventFeed {
    // One attempt: a catch-up that fails hands its client back to the topic (and `resync`) at
    // once, rather than keeping it waiting through a backoff.
    return new Upstream(init, this.dispatcher, this.catchUpConfig, listener);
  }
}
