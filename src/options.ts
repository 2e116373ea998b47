/** The relay's timings, sizes and limits. Every field is optional except `backendUrl`. */
export interface RelayOptions {
  /** Base URL of the backend whose streams are relayed. Required. */
  backendUrl: string | URL;
  /** Events kept per topic for `Last-Event-ID` replay. Defaults to 1000. */
  replayBufferSize?: number;
  /** How long a topic with no subscribers (or a finished one) is kept before its upstream closes. Defaults to 30000 ms. */
  topicLingerMs?: number;
  /** Longest silence on a subscriber's stream: one quiet for half of it gets a `: hb` comment at every half interval. Defaults to 15000 ms. */
  heartbeatMs?: number;
  /** A subscriber whose unsent bytes pass this is disconnected. Defaults to 1048576 (1 MiB). */
  clientMaxBufferedBytes?: number;
  /** Largest upstream event (characters of one frame); a bigger one is treated as a broken upstream. Defaults to 1048576. */
  maxEventBytes?: number;
  /** A subscriber that received no event for this long is ended; 0 turns it off. Defaults to 300000 ms. */
  idleTimeoutMs?: number;
  /** Every subscriber stream ends after this (plus up to 10% jitter); 0 turns it off. Defaults to 3600000 ms. */
  maxStreamLifetimeMs?: number;
  /** The `retry:` hint sent to clients when their stream opens. Defaults to 2000 ms. */
  retryHintMs?: number;
  /** How long to wait for the backend's response headers. Defaults to 10000 ms. */
  upstreamHeadersTimeoutMs?: number;
  /** An upstream that sent no byte (not even a heartbeat) for this long is reconnected. Defaults to 45000 ms. */
  upstreamIdleTimeoutMs?: number;
  /** First upstream reconnect delay cap; doubles per attempt, full jitter. Defaults to 250 ms. */
  reconnectBaseDelayMs?: number;
  /** Largest upstream reconnect delay cap. Defaults to 10000 ms. */
  reconnectMaxDelayMs?: number;
  /** Upstream reconnects in a row without an event before the relay gives up. Defaults to 10. */
  reconnectMaxAttempts?: number;
  /** How long the backend's "yes" for a (user, topic) is trusted. Defaults to 5000 ms. */
  authorizationCacheMs?: number;
  /** Largest request body passed to the backend (uploads); past it: 413. Defaults to 2 GiB. */
  maxUploadBytes?: number;
  /** Largest JSON request body passed to the backend; past it: 413. Defaults to 1 MiB (1048576). */
  maxJsonBodyBytes?: number;
  /** Open streams (shared streams, uploads, chat) in all; past it: 503. Defaults to 20000. */
  maxConnections?: number;
  /** Open streams per user; past it: 429. Defaults to 20. */
  maxConnectionsPerUser?: number;
  /** Open streams per client IP (see Express `trust proxy`); past it: 429. Defaults to 200. */
  maxConnectionsPerIp?: number;
  /** Stream opens and POSTs per user (per IP for requests without a valid token) per minute; 0 turns it off. Defaults to 120. */
  rateLimitPerMinute?: number;
  /** Topics on one multiplexed stream (`GET /api/events?topic=…`); past it: 400. Defaults to 32. */
  maxTopicsPerStream?: number;
}

export type RelayConfig = Readonly<Required<Omit<RelayOptions, 'backendUrl'>> & { backendUrl: URL }>;

const DEFAULTS: Omit<RelayConfig, 'backendUrl'> = {
  replayBufferSize: 1000,
  topicLingerMs: 30_000,
  heartbeatMs: 15_000,
  clientMaxBufferedBytes: 1024 * 1024,
  maxEventBytes: 1024 * 1024,
  idleTimeoutMs: 300_000,
  maxStreamLifetimeMs: 3_600_000,
  retryHintMs: 2000,
  upstreamHeadersTimeoutMs: 10_000,
  upstreamIdleTimeoutMs: 45_000,
  reconnectBaseDelayMs: 250,
  reconnectMaxDelayMs: 10_000,
  reconnectMaxAttempts: 10,
  authorizationCacheMs: 5000,
  maxUploadBytes: 2 * 1024 ** 3,
  maxJsonBodyBytes: 1024 ** 2,
  maxConnections: 20_000,
  maxConnectionsPerUser: 20,
  maxConnectionsPerIp: 200,
  rateLimitPerMinute: 120,
  maxTopicsPerStream: 32,
};

/** Lowest accepted value per field; anything else is a programming error. */
const MINIMUM: Readonly<Record<keyof typeof DEFAULTS, number>> = {
  replayBufferSize: 1,
  topicLingerMs: 0,
  heartbeatMs: 1,
  clientMaxBufferedBytes: 1024,
  maxEventBytes: 64,
  idleTimeoutMs: 0,
  maxStreamLifetimeMs: 0,
  retryHintMs: 0,
  upstreamHeadersTimeoutMs: 1,
  upstreamIdleTimeoutMs: 1,
  reconnectBaseDelayMs: 0,
  reconnectMaxDelayMs: 0,
  reconnectMaxAttempts: 0,
  authorizationCacheMs: 0,
  maxUploadBytes: 1,
  maxJsonBodyBytes: 1,
  maxConnections: 1,
  maxConnectionsPerUser: 1,
  maxConnectionsPerIp: 1,
  rateLimitPerMinute: 0,
  maxTopicsPerStream: 1,
};

/** Drops `undefined`, applies defaults, validates, and freezes. Throws `TypeError` naming the bad field. */
export function resolveOptions(options: RelayOptions): RelayConfig {
  const backendUrl = new URL(String(options.backendUrl));
  if (backendUrl.protocol !== 'http:' && backendUrl.protocol !== 'https:') {
    throw new TypeError(`backendUrl must be http or https, got ${backendUrl.protocol}`);
  }
  const config: Record<string, unknown> = { ...DEFAULTS, backendUrl };
  for (const key of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) {
    const value = options[key];
    if (value === undefined) continue;
    if (!Number.isSafeInteger(value) || value < MINIMUM[key]) {
      throw new TypeError(`${key} must be an integer >= ${MINIMUM[key]}, got ${String(value)}`);
    }
    config[key] = value;
  }
  return Object.freeze(config) as RelayConfig;
}
