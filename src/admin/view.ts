import type { ServerResponse } from 'node:http';
import { isIPv4 } from 'node:net';
import { hostname } from 'node:os';
import type { Cluster } from '../cluster/cluster';
import type { Member } from '../cluster/members';
import type { ConnectionCounter } from '../limits/connections';
import type { Hub } from '../relay/hub';
import type { Multiplexer, MultiplexStream } from '../relay/multiplex';
import type { RelayStats } from '../relay/stats';
import { Subscriber } from '../relay/subscriber';
import type { Topic, UpstreamState } from '../relay/topic';
import type { CutReason } from './cuts';
import type { Readiness, RelayOps } from './ops';
import type { RateHistory } from './rates';

/** The parts of a relay the admin API reads (a `Relay` has them all). */
export interface OpsSources {
  readonly hub: Hub;
  readonly multiplexer: Multiplexer;
  readonly stats: RelayStats;
  readonly connections: ConnectionCounter;
  readonly cluster: Cluster | undefined;
  readonly ops: RelayOps;
}

/** Which relay answers: its cluster id (null alone), host, process and start. */
export interface RelayIdentity {
  readonly id: string | null;
  readonly hostname: string;
  readonly pid: number;
  readonly startedAt: string;
}

interface Counts {
  readonly relay: RelayIdentity;
  readonly streams: { shared: number; multiplexed: number; posts: number; other: number };
  readonly topics: number;
  readonly upstreams: Record<UpstreamState, number>;
  readonly users: number;
  readonly connections: { open: number; limit: number };
}

export interface Overview extends Counts {
  readonly ready: Readiness;
  /** null alone; else the relays on the cluster's Redis now (null when Redis does not answer). */
  readonly cluster: null | { self: string; members: (Member & { self: boolean })[] | null };
}

export interface TopicView {
  readonly topic: string;
  readonly subscribers: number;
  readonly upstream: UpstreamState;
  readonly lastEventAt: string | null;
  readonly history: { events: number; bytes: number };
}

/**
 * One open stream of a user: `shared` (one topic's stream), `multiplexed` (`/api/events`), `post`
 * (a streamed POST answer: upload or chat), `other` (any other proxied event stream, or the path check).
 */
export interface StreamView {
  readonly kind: 'shared' | 'multiplexed' | 'post' | 'other';
  readonly topics: string[];
  readonly openedAt: string | null;
  /** The client's address as the relay counts it for its per-IP limit (after `trust proxy`). */
  readonly remoteAddress: string | null;
}

interface CutView {
  readonly at: string;
  readonly reason: CutReason;
  readonly detail: string | null;
  readonly user: string | null;
  readonly count: number;
}

/** What the ops page gets every second. */
export interface Snapshot extends Overview {
  readonly at: string;
  /** Per-second rates, oldest first, one point a second. */
  readonly rates: Record<'events' | 'deliveries' | 'opens', number[]>;
  /** How many seconds of rates the page shows (the rates may hold fewer yet). */
  readonly windowSeconds: number;
  readonly busiest: TopicView[];
  readonly cuts: CutView[];
}

/** The relay as its operators see it: counts, topics, one user's streams, the last cuts. Everything here is read, nothing changed. */
export class OpsView {
  private readonly identity: RelayIdentity;

  constructor(private readonly sources: OpsSources) {
    const self = sources.cluster?.self;
    this.identity = {
      id: self?.id ?? null,
      hostname: self?.hostname ?? hostname(),
      pid: self?.pid ?? process.pid,
      startedAt: new Date(sources.ops.startedAt).toISOString(),
    };
  }

  async overview(): Promise<Overview> {
    const { cluster, ops } = this.sources;
    const [ready, members] = await Promise.all([ops.readiness(), cluster?.members().catch(() => null)]);
    return {
      ...this.counts(),
      ready,
      cluster: cluster === undefined ? null : { self: cluster.self.id, members: members?.map((member) => ({ ...member, self: member.id === cluster.self.id })) ?? null },
    };
  }

  /** The `limit` topics with the most subscribers, most first (ties by name). */
  topics(limit: number): TopicView[] {
    const top: Topic[] = [];
    for (const topic of this.sources.hub.allTopics()) {
      if (top.length === limit && !busierThan(topic, top[top.length - 1] as Topic)) continue;
      const at = top.findIndex((held) => busierThan(topic, held));
      top.splice(at === -1 ? top.length : at, 0, topic);
      if (top.length > limit) top.pop();
    }
    return top.map(topicView);
  }

  /** The open streams of `user` on this relay. */
  userStreams(user: string): StreamView[] {
    const { hub, multiplexer, ops } = this.sources;
    const multiplexed = new Map<Subscriber, MultiplexStream>(multiplexer.streamsOf(user).map((stream) => [stream.writer, stream]));
    const streams: StreamView[] = [];
    ops.userStreams.forEachStream((owner, res, ender) => {
      if (owner !== user) return;
      const remoteAddress = addressOf(res);
      if (!(ender instanceof Subscriber)) {
        streams.push({ kind: unsharedKind(res), topics: [], openedAt: requestStartOf(res), remoteAddress });
        return;
      }
      const openedAt = new Date(ender.openedAt).toISOString();
      const stream = multiplexed.get(ender);
      if (stream) {
        streams.push({ kind: 'multiplexed', topics: stream.topics, openedAt, remoteAddress });
        return;
      }
      const topics: string[] = [];
      for (const topic of hub.allTopics()) if (topic.has(ender)) topics.push(topic.key);
      streams.push({ kind: 'shared', topics, openedAt, remoteAddress });
    });
    return streams.sort((a, b) => (a.openedAt ?? '').localeCompare(b.openedAt ?? ''));
  }

  async snapshot(rates: RateHistory, now = Date.now()): Promise<Snapshot> {
    return {
      ...(await this.overview()),
      at: new Date(now).toISOString(),
      rates: rates.series(),
      windowSeconds: rates.windowSeconds,
      busiest: this.topics(10),
      cuts: this.sources.ops.cuts.latest(20).map((cut) => ({
        at: new Date(cut.at).toISOString(),
        reason: cut.reason,
        detail: cut.detail ?? null,
        user: cut.user ?? null,
        count: cut.count,
      })),
    };
  }

  private counts(): Counts {
    const { hub, multiplexer, connections, ops } = this.sources;
    const upstreams: Record<UpstreamState, number> = { open: 0, reconnecting: 0, following: 0, finished: 0 };
    for (const topic of hub.allTopics()) if (topic.state !== 'closed') upstreams[topic.upstreamState] += 1;
    let posts = 0;
    let other = 0;
    ops.userStreams.forEachStream((_user, res, ender) => {
      if (ender instanceof Subscriber) return;
      if (unsharedKind(res) === 'post') posts += 1;
      else other += 1;
    });
    return {
      relay: this.identity,
      streams: { shared: hub.streamCount - multiplexer.streamCount, multiplexed: multiplexer.streamCount, posts, other },
      topics: hub.topicCount,
      upstreams,
      users: ops.userStreams.userCount,
      connections: { open: connections.snapshot().total, limit: ops.maxConnections },
    };
  }
}

/** A stream the hub does not hold: a streaming POST's answer (on its POST or a resume), or another proxied stream. */
function unsharedKind(res: ServerResponse): 'post' | 'other' {
  const locals = (res as ServerResponse & { locals?: { answerStream?: unknown } }).locals;
  return res.req.method === 'POST' || locals?.answerStream === true ? 'post' : 'other';
}

function busierThan(a: Topic, b: Topic): boolean {
  return a.size > b.size || (a.size === b.size && a.key < b.key);
}

function topicView(topic: Topic): TopicView {
  return {
    topic: topic.key,
    subscribers: topic.size,
    upstream: topic.upstreamState,
    lastEventAt: topic.lastEventAt === undefined ? null : new Date(topic.lastEventAt).toISOString(),
    history: topic.historySize,
  };
}

/** The client address Express resolved (`req.ip`, after `trust proxy`), else the socket's peer; IPv4 without its IPv6 mapping. */
function addressOf(res: ServerResponse): string | null {
  const req = res.req as ServerResponse['req'] & { ip?: unknown };
  const address = typeof req.ip === 'string' ? req.ip : req.socket.remoteAddress;
  if (address === undefined) return null;
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/** When the request log saw the request arrive (`res.locals.requestStartedAt`), if it did. */
function requestStartOf(res: ServerResponse): string | null {
  const started = (res as ServerResponse & { locals?: { requestStartedAt?: unknown } }).locals?.requestStartedAt;
  return typeof started === 'number' ? new Date(started).toISOString() : null;
}
