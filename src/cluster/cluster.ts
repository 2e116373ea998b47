import type { Logger } from 'pino';
import type { Store } from 'express-rate-limit';
import type { RelayConfig } from '../options';
import type { ConnectionCounter } from '../limits/connections';
import type { EventFeed, FeedInit, LocalOwnership, TopicOwnership } from '../relay/ownership';
import type { SharedAnswers } from '../relay/post-answer';
import type { ReplayBuffer } from '../relay/replay';
import type { UpstreamInit, UpstreamListener } from '../relay/upstream';
import { Broadcasts, CANCEL_ANSWER, END_USER } from './broadcast';
import { AppendWatch } from './append-watch';
import { ClusterFeed } from './cluster-feed';
import { RedisConnectionCounter } from './connection-counter';
import { ClusterMembers, type Member } from './members';
import { redisRateLimitStore } from './rate-limit-store';
import { RedisLink, type RedisTarget, parseClusterSeeds } from './redis';
import { SharedTopicStore } from './shared-topic';
import { ClusterSigner, type SignedKind } from './signer';

/** Several relays sharing upstreams, history and limits through one Redis or a Redis Cluster. */
export interface Cluster {
  readonly ownership: TopicOwnership;
  readonly connections: ConnectionCounter;
  readonly rateLimitStore: Store;
  /** Whether Redis answers now and holds this relay's slots (`/readyz` says 503 `redis_unavailable` otherwise). */
  readonly ready: boolean;
  /** Takeovers this relay did, and how long each took from the lease found lapsed to the upstream reopened. */
  readonly takeovers: number[];
  /** Ends a user's streams on every relay: the other relays call `onUserEnded`; rejects when Redis is away. */
  endUser(user: string): Promise<void>;
  /** What this relay does when another one ends a user's streams. */
  onUserEnded(end: (user: string) => void): void;
  /** The streaming POSTs' answers, resumed and cancelled on any relay. */
  readonly answers: SharedAnswers;
  /** This relay, as the others see it. */
  readonly self: Member;
  /** The relays on this Redis now (this one too); rejects when Redis does not answer. */
  members(): Promise<Member[]>;
  close(): Promise<void>;
}

/**
 * Where the relays meet, from `createRelay`'s `redisUrl` or `redisClusterNodes` (one of them at
 * most); undefined: this process alone. Throws a TypeError naming the option that is wrong.
 */
export function redisTarget(redisUrl: string | URL | undefined, redisClusterNodes: readonly string[] | undefined): RedisTarget | undefined {
  if (redisUrl !== undefined && redisClusterNodes !== undefined) throw new TypeError('redisUrl and redisClusterNodes: set one of them, not both');
  if (redisUrl !== undefined) return { url: new URL(String(redisUrl)) };
  if (redisClusterNodes === undefined) return undefined;
  try {
    return { clusterNodes: parseClusterSeeds(redisClusterNodes) };
  } catch (err) {
    throw new TypeError(`redisClusterNodes: ${(err as Error).message}`);
  }
}

/** Keys in Redis all start with this. */
const PREFIX = 'sse-relay';

/** How a cluster trusts what it reads from Redis. */
export interface ClusterTrust {
  /** The secret every relay of the cluster signs its entries and messages with; undefined: none (Redis is trusted). */
  readonly signingSecret: string | undefined;
  /** Something read from Redis did not carry a valid signature, and was dropped. */
  onForged(kind: SignedKind): void;
}

/** Between two log lines about entries that failed their signature. */
const FORGED_LOG_INTERVAL_MS = 10_000;

/**
 * Builds the cluster parts on one Redis or a Redis Cluster: the topic feeds (lease, shared
 * history, the append watch), the shared connection counter and the rate-limit store. `local`
 * reads upstreams and keeps each topic's in-memory history (which mirrors the shared one).
 */
export function createCluster(target: RedisTarget, config: RelayConfig, local: LocalOwnership, logger: Logger, trust: ClusterTrust): Cluster {
  const signer = trust.signingSecret === undefined ? undefined : new ClusterSigner(trust.signingSecret);
  const link = new RedisLink(target, PREFIX, logger);
  let forgedLoggedAt = -Infinity;
  let forgedSinceLog = 0;
  const onForged = (kind: SignedKind, detail: Record<string, string>): void => {
    trust.onForged(kind);
    forgedSinceLog += 1;
    // Forged entries, or a relay with another secret (or none): one line now and then, not one per entry.
    if (Date.now() - forgedLoggedAt < FORGED_LOG_INTERVAL_MS) return;
    logger.warn({ kind, ...detail, dropped: forgedSinceLog }, 'dropped what Redis held without a valid signature: forged, or written by a relay with another signing secret (REDIS_SIGNING_SECRET) or none');
    forgedLoggedAt = Date.now();
    forgedSinceLog = 0;
  };
  const store = new SharedTopicStore(
    link,
    { maxEntries: config.replayBufferSize, maxBytes: config.replayBufferBytes },
    config.clusterLeaseMs,
    // The history outlives the last write or renewal by the linger period, plus a lease or two for a takeover.
    config.topicLingerMs + 3 * config.clusterLeaseMs,
  );
  const watch = new AppendWatch(link, store);
  const connections = new RedisConnectionCounter(
    link,
    { total: config.maxConnections, perUser: config.maxConnectionsPerUser, perIp: config.maxConnectionsPerIp },
    config.clusterSlotTtlMs,
  );
  const takeovers: number[] = [];
  const broadcasts = new Broadcasts(link, logger, signer, onForged);
  const userEnds = broadcasts.of(END_USER);
  const answerCancels = broadcasts.of(CANCEL_ANSWER);
  const dropAnswer = async (key: string): Promise<boolean> => {
    const held = await store.discard(key);
    // The relay that reads it aborts the backend's answer now, not at its next lease renewal, and
    // relays that follow it end their clients' streams now, not at their next look at its state.
    if (held) await answerCancels.publish(key).catch(() => logger.warn({ topic: key }, 'dropped an answer, but Redis did not take the message for the relays reading it: they find out at their next look'));
    return held;
  };
  const members = new ClusterMembers(link, config.clusterSlotTtlMs, signer, onForged);
  const context = {
    link,
    store,
    watch,
    local,
    logger,
    finishedKeepMs: config.topicLingerMs,
    recentIds: config.replayBufferSize,
    // What a client would wait before reconnecting: the backend's retry: as clients get it (bounded), else the relay's hint.
    reopenDelayMs: (backendRetryMs: number | undefined) =>
      backendRetryMs === undefined ? config.retryHintMs : Math.min(config.retryHintMaxMs, Math.max(config.retryHintMinMs, backendRetryMs)),
    signer,
    onForged,
    dropAnswer,
    onTakeover: (ms: number) => {
      takeovers.push(ms);
      if (takeovers.length > 100) takeovers.shift();
    },
  };
  const ownership: TopicOwnership = {
    feed: (key: string, init: FeedInit, listener: UpstreamListener): EventFeed => new ClusterFeed(key, init, listener, context),
    history: (key: string): ReplayBuffer => local.history(key),
    catchUp: (init: UpstreamInit, listener: UpstreamListener): EventFeed => local.catchUp(init, listener),
  };
  return {
    ownership,
    connections,
    rateLimitStore: redisRateLimitStore(link),
    get ready() {
      // Until its slots are written to Redis, a relay counts them alone: not ready for the cluster yet.
      return link.ready && connections.shared;
    },
    takeovers,
    endUser: (user) => userEnds.publish(user),
    onUserEnded: (end) => userEnds.listen(end),
    answers: {
      userDigest: signer && ((user: string) => signer.sign('answer_user', [user])),
      follow: (key, init, listener) => new ClusterFeed(key, init, listener, context, true),
      cancel: dropAnswer,
      held: (key) => store.held(key),
      onCancelled: (close) => answerCancels.listen(close),
    },
    self: members.self,
    members: () => members.list(),
    async close() {
      watch.close();
      await Promise.all([connections.close(), members.close()]);
      link.close();
    },
  };
}
