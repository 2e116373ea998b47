import type { RequestHandler } from 'express';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Readiness } from '../src/admin/ops';
import type { ConnectionCounter } from '../src/limits/connections';
import type { Hub } from '../src/relay/hub';
import type { Multiplexer } from '../src/relay/multiplex';
import type { RelayStats } from '../src/relay/stats';

interface Sources {
  readonly hub: Hub;
  readonly stats: RelayStats;
  readonly connections: ConnectionCounter;
  readonly multiplexer?: Multiplexer;
  /** What `/readyz` would answer now. */
  readonly readiness?: () => Promise<Readiness>;
  /** The cap on open streams in all. */
  readonly maxConnections?: number;
  /** In a cluster: whether Redis answers and holds this relay's slots. */
  readonly redisUp?: (() => boolean) | undefined;
}

/**
 * A Prometheus registry of one relay. The hot path keeps plain integer totals in
 * `RelayStats`; the counters here read them at scrape time, so a delivery costs an
 * addition, not a metric update per subscriber.
 */
export function relayMetrics({ hub, stats, connections, multiplexer, readiness, maxConnections, redisUp }: Sources, defaultMetrics = true): { registry: Registry; handler: RequestHandler } {
  const registry = new Registry();
  if (defaultMetrics) collectDefaultMetrics({ register: registry });

  const gauge = (name: string, help: string, read: () => number | Promise<number>): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        this.set(await read());
      },
    });
  };
  const total = (name: string, help: string, read: () => number): void => {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  };
  const byLabel = (name: string, help: string, label: string, read: () => ReadonlyMap<string, number>): void => {
    new Counter({
      name,
      help,
      labelNames: [label],
      registers: [registry],
      collect() {
        this.reset();
        for (const [value, count] of read()) this.inc({ [label]: value }, count);
      },
    });
  };

  gauge('sse_relay_open_streams', 'Client streams open now (shared streams, uploads, chat).', () => connections.snapshot().total);
  gauge('sse_relay_subscribers', 'Subscribers attached to shared topics now.', () => hub.streamCount);
  gauge('sse_relay_topics', "Shared topics held now (live, opening or lingering), read from the backend by this relay or, in a cluster, followed from another relay's.", () => hub.topicCount);
  gauge(
    'sse_relay_upstream_connections',
    'Requests this relay holds open to backend event streams now (a cluster follower reads its topics from Redis and holds none).',
    () => stats.upstreamsOpen,
  );
  gauge(
    'sse_relay_upstream_budget_used',
    'Topics counted against MAX_UPSTREAMS now: each holds a backend stream or may open one (opening, live, ended and about to resume; in a cluster, followed topics too, which may take theirs over).',
    () => hub.budgetedUpstreams,
  );
  gauge('sse_relay_upstream_budget', 'MAX_UPSTREAMS: past it a stream open or topic add that needs a new upstream gets 503.', () => hub.maxUpstreams);
  if (maxConnections !== undefined) gauge('sse_relay_max_connections', 'The cap on open streams in all (MAX_CONNECTIONS); sse_relay_open_streams counts against it.', () => maxConnections);
  // The backend's health is checked at most once a second, whatever the scrape rate.
  if (readiness) gauge('sse_relay_ready', '1 while /readyz answers 200 (backend healthy, Redis up in a cluster, not stopping), else 0.', async () => ((await readiness()) === 'ready' ? 1 : 0));
  if (redisUp) gauge('sse_relay_redis_up', 'Cluster mode: 1 while Redis answers and holds this relay\'s connection slots, else 0.', () => (redisUp() ? 1 : 0));
  if (multiplexer) {
    gauge('sse_relay_multiplexed_streams', 'Multiplexed streams (GET /api/events) open now; each is one of sse_relay_subscribers.', () => multiplexer.streamCount);
    gauge('sse_relay_multiplexed_topics', 'Topic memberships of multiplexed streams now, summed over the streams.', () => multiplexer.membershipCount);
  }
  total('sse_relay_events_total', 'Events received from upstreams and relayed.', () => stats.eventsRelayed);
  total('sse_relay_deliveries_total', 'Event deliveries: one per event per subscriber.', () => stats.deliveries);
  total('sse_relay_bytes_total', 'Bytes of events written to subscribers.', () => stats.bytesRelayed);
  total('sse_relay_replays_total', 'Resuming subscribers served from the replay buffer.', () => stats.replays);
  total('sse_relay_resyncs_total', 'Resuming subscribers whose id was older than the buffer (resync sent).', () => stats.resyncs);
  total('sse_relay_catch_ups_total', 'Resuming subscribers whose id was older than the buffer, caught up from the backend (one request each).', () => stats.catchUps);
  total('sse_relay_catch_up_fallbacks_total', 'Catch-ups that did not reach the buffer (the backend refused, broke off or did not replay); resync sent if events were missing.', () => stats.catchUpFallbacks);
  total('sse_relay_duplicates_dropped_total', 'Upstream events dropped because their id was already relayed.', () => stats.duplicatesDropped);
  total('sse_relay_events_dropped_total', 'Upstream events dropped because they could not be re-encoded (each one logged).', () => stats.eventsDropped);
  total(
    'sse_relay_upstream_connects_total',
    'Backend event streams this relay subscribed to (one per topic it reads itself; a cluster follower none until it takes a topic over).',
    () => stats.upstreamConnects,
  );
  total('sse_relay_upstream_reconnects_total', 'Upstream reconnects after a drop or a 5xx.', () => stats.upstreamReconnects);
  total('sse_relay_upstream_give_ups_total', 'Upstreams abandoned after the retry budget (relay_error sent).', () => stats.upstreamGiveUps);
  total('sse_relay_slow_clients_cut_total', 'Subscribers disconnected because their unsent bytes passed the cap.', () => stats.slowClientsCut);
  total('sse_relay_streams_opened_total', 'Subscriber streams opened.', () => stats.streamsOpened);
  total('sse_relay_auth_failures_total', 'Requests refused for a missing or invalid token.', () => stats.authFailures);
  byLabel('sse_relay_streams_closed_total', 'Subscriber streams closed, by reason.', 'reason', () => stats.closeReasons);
  byLabel('sse_relay_rejections_total', 'Requests refused by a limit: total, perUser, perIp, rate, or upstreams (MAX_UPSTREAMS).', 'limit', () => stats.rejections);
  byLabel('sse_relay_cluster_forged_total', 'Entries (a topic\'s shared history), end_user messages and member descriptions read from Redis without a valid signature, dropped.', 'kind', () => stats.forged);

  const fanout = new Histogram({
    name: 'sse_relay_delivery_seconds',
    help: 'From an event parsed off the upstream to its write to the last subscriber.',
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
    registers: [registry],
  });
  stats.onDelivered = (seconds) => fanout.observe(seconds);

  const handler: RequestHandler = async (_req, res) => {
    res.set('Content-Type', registry.contentType).set('Cache-Control', 'no-store').send(await registry.metrics());
  };
  return { registry, handler };
}
