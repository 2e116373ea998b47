import { DAY, HOUR, type IntegerSetting, MINUTE, optionSource, resolveSettings } from './setting';

/**
 * The relay's timings, sizes and limits, each declared once. `RelayOptions` has one optional
 * field per entry, the standalone server reads each from its `env` variable, and the table in
 * docs/configuration.md is generated from these (`npm run docs:config`).
 */
export const RELAY_SETTINGS = {
  replayBufferSize: { kind: 'count', env: 'REPLAY_BUFFER_SIZE', default: 1000, min: 1, max: 1_000_000, doc: 'events kept per topic for `Last-Event-ID` replay' },
  replayBufferBytes: { kind: 'bytes', env: 'REPLAY_BUFFER_BYTES', default: 4 * 1024 ** 2, min: 1024, max: 1024 ** 3, doc: 'bytes of history kept per topic (in Redis too with `REDIS_URL`); the oldest events go first past it' },
  replayTotalBytes: {
    kind: 'bytes',
    env: 'REPLAY_TOTAL_BYTES',
    default: 128 * 1024 ** 2,
    min: 1024,
    max: 64 * 1024 ** 3,
    doc: "bytes of history kept by the whole process; idle topics' history goes first, then the oldest events",
  },
  topicLingerMs: { kind: 'ms', env: 'TOPIC_LINGER_MS', default: 30_000, min: 0, max: HOUR, doc: 'how long a topic with no subscribers is kept before its upstream closes, and a finished one (a finished answer too) after its end, for clients resuming with its last id (204)' },
  postResumeGraceMs: {
    kind: 'ms',
    env: 'POST_RESUME_GRACE_MS',
    default: 15_000,
    min: 0,
    max: HOUR,
    doc: "how long the relay keeps reading a streaming POST's answer after its last client left, for a resume (`GET /api/streams/:id`), before it aborts the backend request (0: at once)",
  },
  heartbeatMs: { kind: 'ms', env: 'HEARTBEAT_MS', default: 15_000, min: 1, max: 10 * MINUTE, doc: 'longest silence on a stream: one quiet for half of it gets a `: hb` comment at every half interval, when idle and lifetime are checked too' },
  clientMaxBufferedBytes: {
    kind: 'bytes',
    env: 'CLIENT_MAX_BUFFERED_BYTES',
    default: 1024 ** 2,
    min: 1024,
    max: 1024 ** 3,
    doc: 'unsent bytes a subscriber may hold; past it, it must drain within `CLIENT_DRAIN_GRACE_MS`',
  },
  clientDrainGraceMs: {
    kind: 'ms',
    env: 'CLIENT_DRAIN_GRACE_MS',
    default: 5000,
    min: 1,
    max: HOUR,
    doc: 'a subscriber past `CLIENT_MAX_BUFFERED_BYTES` that drains no byte this long is cut (a client that reads, however slowly, is not)',
  },
  clientBufferCeilingFactor: {
    kind: 'count',
    env: 'CLIENT_BUFFER_CEILING_FACTOR',
    default: 4,
    min: 1,
    max: 1024,
    doc: 'a subscriber whose unsent bytes pass this multiple of `CLIENT_MAX_BUFFERED_BYTES` is cut at once',
  },
  maxEventBytes: { kind: 'bytes', env: 'MAX_EVENT_BYTES', default: 1024 ** 2, min: 64, max: 256 * 1024 ** 2, doc: 'largest upstream event (characters of one frame); a bigger one is treated as a broken upstream' },
  idleTimeoutMs: { kind: 'ms', env: 'IDLE_TIMEOUT_MS', default: 5 * MINUTE, min: 0, max: DAY, doc: 'a stream with no event this long is ended (0: never)' },
  maxStreamLifetimeMs: { kind: 'ms', env: 'MAX_STREAM_LIFETIME_MS', default: HOUR, min: 0, max: 7 * DAY, doc: 'every stream ends after this plus up to 10% jitter (0: never)' },
  retryHintMs: { kind: 'ms', env: 'RETRY_HINT_MS', default: 2000, min: 0, max: HOUR, doc: 'the `retry:` hint sent to a client when its stream opens' },
  drainRetryMs: {
    kind: 'ms',
    env: 'DRAIN_RETRY_MS',
    default: 3000,
    min: 0,
    max: HOUR,
    doc: 'on a stop, streams end told to come back after this plus up to 50% jitter (`retry:`), and event-stream requests meanwhile get the same 200 answer; with one instance it must cover the restart',
  },
  retryHintMinMs: { kind: 'ms', env: 'RETRY_HINT_MIN_MS', default: 250, min: 0, max: HOUR, doc: "the backend's `retry:` is passed on to clients, raised to at least this" },
  retryHintMaxMs: { kind: 'ms', env: 'RETRY_HINT_MAX_MS', default: 60_000, min: 0, max: HOUR, doc: "the backend's `retry:` is passed on to clients, lowered to at most this" },
  upstreamHeadersTimeoutMs: { kind: 'ms', env: 'UPSTREAM_HEADERS_TIMEOUT_MS', default: 10_000, min: 1, max: 10 * MINUTE, doc: "how long to wait for the backend's response headers" },
  upstreamIdleTimeoutMs: { kind: 'ms', env: 'UPSTREAM_IDLE_TIMEOUT_MS', default: 45_000, min: 1, max: HOUR, doc: 'an upstream that sent no byte (not even a heartbeat) this long is reconnected' },
  reconnectBaseDelayMs: { kind: 'ms', env: 'RECONNECT_BASE_DELAY_MS', default: 250, min: 0, max: MINUTE, doc: 'first upstream reconnect delay cap; doubles per attempt, full jitter' },
  reconnectMaxDelayMs: { kind: 'ms', env: 'RECONNECT_MAX_DELAY_MS', default: 10_000, min: 0, max: HOUR, doc: 'largest upstream reconnect delay cap' },
  reconnectMaxAttempts: { kind: 'count', env: 'RECONNECT_MAX_ATTEMPTS', default: 10, min: 0, max: 1000, doc: 'upstream reconnects in a row without an event before the relay gives up' },
  authorizationCacheMs: { kind: 'ms', env: 'AUTHORIZATION_CACHE_MS', default: 5000, min: 0, max: HOUR, doc: 'how long the backend\'s "yes" for a (user, topic) is trusted' },
  maxUploadBytes: { kind: 'bytes', env: 'MAX_UPLOAD_BYTES', default: 2 * 1024 ** 3, min: 1, max: 1024 ** 4, doc: 'largest request body passed to the backend (uploads); over it: 413' },
  maxJsonBodyBytes: { kind: 'bytes', env: 'MAX_JSON_BODY_BYTES', default: 1024 ** 2, min: 1, max: 1024 ** 3, doc: 'largest `application/json` request body passed to the backend; over it: 413' },
  maxConnections: {
    kind: 'count',
    env: 'MAX_CONNECTIONS',
    default: 20_000,
    min: 1,
    max: 10_000_000,
    doc: 'open streams (shared streams, uploads, chat) in all; over it: 503',
    defaultNote: 'from the open-file limit (see below); 20000 for `createRelay`',
  },
  maxUpstreams: {
    kind: 'count',
    env: 'MAX_UPSTREAMS',
    default: 20_000,
    min: 1,
    max: 10_000_000,
    doc: 'topic upstreams (backend event streams: one per topic however many clients follow it, and one per client being caught up from before the history) held at once; a stream open or topic add that needs one more: 503, a catch-up that would pass it: `resync` instead',
    defaultNote: 'from the open-file limit (see below); 20000 for `createRelay`',
  },
  maxConnectionsPerUser: { kind: 'count', env: 'MAX_CONNECTIONS_PER_USER', default: 20, min: 1, max: 10_000_000, doc: 'open streams per user; over it: 429' },
  maxConnectionsPerIp: { kind: 'count', env: 'MAX_CONNECTIONS_PER_IP', default: 200, min: 1, max: 10_000_000, doc: 'open streams per client IP (see `TRUST_PROXY`); over it: 429' },
  clusterLeaseMs: {
    kind: 'ms',
    env: 'CLUSTER_LEASE_MS',
    default: 5000,
    min: 100,
    max: MINUTE,
    doc: "with `REDIS_URL`: a topic's owner renews its lease every third of this; a dead owner is replaced within it",
  },
  clusterSlotTtlMs: {
    kind: 'ms',
    env: 'CLUSTER_SLOT_TTL_MS',
    default: 30_000,
    min: 300,
    max: HOUR,
    doc: "with `REDIS_URL`: a relay that stopped (killed, paused) loses its connection slots after this",
  },
  rateLimitPerMinute: {
    kind: 'count',
    env: 'RATE_LIMIT_PER_MINUTE',
    default: 120,
    min: 0,
    max: 1_000_000,
    doc: 'stream opens and POSTs per user (per IP for requests without a valid token) per minute (0: off)',
  },
  maxTopicsPerStream: { kind: 'count', env: 'MAX_TOPICS_PER_STREAM', default: 32, min: 1, max: 256, doc: 'topics on one multiplexed stream (`GET /api/events?topic=…`); over it: 400' },
  nodeInternals: {
    kind: 'count',
    env: 'NODE_INTERNALS',
    default: 1,
    min: 0,
    max: 1,
    doc: "1: held streams save memory and CPU through Node's and Express's internals (each checked at start and per stream; the public API where one does not apply, with a warning); 0: the public API only",
  },
} as const satisfies Record<string, IntegerSetting>;

export type RelaySettingName = keyof typeof RELAY_SETTINGS;

/**
 * The relay's options: `backendUrl`, plus one optional integer per entry of `RELAY_SETTINGS`,
 * whose `doc`, `default`, `min` and `max` say what it does and what it accepts (and the
 * table in docs/configuration.md lists them all).
 */
export type RelayOptions = { backendUrl: string | URL } & { [K in RelaySettingName]?: number };

export type RelayConfig = Readonly<{ backendUrl: URL } & { [K in RelaySettingName]: number }>;

/** Drops `undefined`, applies defaults, validates, and freezes. Throws `TypeError` naming the bad field. */
export function resolveOptions(options: RelayOptions): RelayConfig {
  let backendUrl: URL;
  try {
    backendUrl = new URL(String(options.backendUrl));
  } catch {
    throw new TypeError(`backendUrl must be your backend's http(s) URL, got ${JSON.stringify(options.backendUrl)}`);
  }
  if (backendUrl.protocol !== 'http:' && backendUrl.protocol !== 'https:') {
    throw new TypeError(`backendUrl must be http or https, got ${backendUrl.protocol}`);
  }
  return Object.freeze({ backendUrl, ...resolveSettings(RELAY_SETTINGS, optionSource(options)) });
}

/** The origins of `urls` (like `https://cdn.example.com`); one that is not a URL is a `TypeError` naming option `name`. */
export function originsOption(name: string, urls: readonly string[] | undefined): ReadonlySet<string> {
  return new Set(
    (urls ?? []).map((url) => {
      try {
        return new URL(url).origin;
      } catch {
        throw new TypeError(`${name} must be origins like https://cdn.example.com, got ${JSON.stringify(url)}`);
      }
    }),
  );
}

/**
 * Combinations that are valid but probably not what was meant, one sentence each; `createRelay`
 * logs them as warnings at creation (as express-rate-limit validates its options once).
 */
export function optionWarnings(config: RelayConfig): string[] {
  const warnings: string[] = [];
  if (config.reconnectMaxDelayMs < config.reconnectBaseDelayMs) {
    warnings.push(`reconnectMaxDelayMs (${config.reconnectMaxDelayMs}) is below reconnectBaseDelayMs (${config.reconnectBaseDelayMs}): every reconnect waits at most the former`);
  }
  for (const name of ['idleTimeoutMs', 'maxStreamLifetimeMs'] as const) {
    if (config[name] !== 0 && config[name] < config.heartbeatMs) {
      warnings.push(`${name} (${config[name]}) is below heartbeatMs (${config.heartbeatMs}): it is checked at each heartbeat, so streams end up to heartbeatMs late`);
    }
  }
  if (config.retryHintMaxMs < config.retryHintMinMs) {
    warnings.push(`retryHintMaxMs (${config.retryHintMaxMs}) is below retryHintMinMs (${config.retryHintMinMs}): every backend retry: is passed on as the former`);
  }
  if (config.clientMaxBufferedBytes < config.maxEventBytes) {
    warnings.push(`clientMaxBufferedBytes (${config.clientMaxBufferedBytes}) is below maxEventBytes (${config.maxEventBytes}): a subscriber that is sent one large event may be cut as slow`);
  }
  if (config.maxUpstreams < config.maxTopicsPerStream) {
    warnings.push(
      `maxUpstreams (${config.maxUpstreams}) is below maxTopicsPerStream (${config.maxTopicsPerStream}): a multiplexed stream with more new topics than maxUpstreams is always refused (503)`,
    );
  }
  return warnings;
}
