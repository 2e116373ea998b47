import express, { type RequestHandler, type Router } from 'express';
import cors from 'cors';
import helmet from 'helmet';
import { type Logger, pino } from 'pino';
import type { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import { identify, type JwtOptions, requireUser } from '../middleware/authenticate';
import { canonicalPath } from '../middleware/canonical-path';
import { errorHandler } from '../middleware/errors';
import { HttpError } from './errors';
import { limitConnections, limitRequests } from '../middleware/limits';
import { requestLog } from '../middleware/request-log';
import { type Cluster, createCluster, redisTarget } from './cluster/cluster';
import { type ConnectionCounter, MemoryConnectionCounter } from './limits/connections';
import { type RelayOptions, optionWarnings, originsOption, resolveOptions } from './options';
import { type AuthorizeTopic, backendAuthorizer } from './relay/authorize';
import { Hub } from './relay/hub';
import { Multiplexer } from './relay/multiplex';
import { LocalOwnership, type TopicOwnership } from './relay/ownership';
import { RelayStats } from './relay/stats';
import { createStreamAgent } from './relay/stream-agent';
import { comeBackLater, jitteredRetry } from './relay/come-back';
import { UserStreams } from './relay/user-streams';
import { RecentCuts } from './admin/cuts';
import type { Readiness, RelayOps } from './admin/ops';
import { diagnosticTicks } from '../routes/diagnostics';
import { clientScript } from '../routes/client-script';
import { multiplexRoutes, topicResolver } from '../routes/events';
import { relayMetrics } from '../routes/metrics';
import { proxy } from '../routes/proxy';
import { resumablePosts } from '../routes/post-streams';
import { PostAnswers } from './relay/post-answer';
import { SHARED_STREAMS, type SharedStream, sharedStreamRoutes } from '../routes/streams';

/** Options of `createRelay`: the core's, plus how clients authenticate and what they may use. */
export interface CreateRelayOptions extends RelayOptions {
  /** Token verification. Required. */
  jwt: JwtOptions;
  /** Your own policy for "may this user see this topic"; resolves with an HTTP status (2xx admits). Defaults to asking the backend's status route. */
  authorize?: AuthorizeTopic;
  /** The shared streams: per path, its topic key, backend stream and status route. Defaults to the contract's downloads and upload sessions. */
  streams?: readonly SharedStream[];
  /**
   * Who reads each topic's upstream and keeps its replay history: an object, or a function given the
   * relay's in-process `LocalOwnership` (on the relay's connection pool, closed by `close()`) that returns
   * one wrapping it. Defaults to this process, in memory.
   */
  ownership?: TopicOwnership | ((local: LocalOwnership) => TopicOwnership);
  /** Where open streams are counted. Defaults to this process's memory, with the three limits above (or Redis with `redisUrl`). */
  connections?: ConnectionCounter;
  /**
   * Origins (like `https://cdn.example.com`) besides the backend's to which a stream's redirects
   * may be followed; the identity header is never sent there. Defaults to none: a redirect to
   * another origin is answered 502 `upstream_redirect_refused`.
   */
  upstreamRedirectOrigins?: readonly string[];
  /**
   * Run as one of several relays sharing a Redis (`redis://` or `rediss://`): one upstream per topic
   * across them, shared replay history, connection limits and rate limit (see docs/cluster.md).
   * Defaults to none: this process alone, in memory.
   */
  redisUrl?: string | URL;
  /**
   * Instead of `redisUrl`: `host:port` seed nodes of a Redis Cluster (Redis 7 or later); the same
   * cluster mode, each topic's keys on the shard of its hash tag (see docs/cluster.md). Defaults to none.
   */
  redisClusterNodes?: readonly string[];
  /**
   * A secret shared by every relay of the cluster, at least 32 characters: what a relay writes to
   * Redis for the others (a topic's events, ends, finishes and retry hints; ended users) carries an
   * HMAC-SHA256 of it, and whatever does not verify is dropped and counted
   * (`sse_relay_cluster_forged_total`). Give every relay the same one at the same time. Defaults to
   * none: whoever can write to the Redis can make every relay send its subscribers anything.
   */
  redisSigningSecret?: string;
  /** Origins allowed to call the relay from a browser, with credentials (the cookie). Defaults to none: same-origin only. */
  corsOrigins?: readonly string[];
  /** Security headers (helmet); set false if your app already sets them. Defaults to true. */
  helmet?: boolean;
  /** Where request and stream lines go (pino). Defaults to a silent logger. */
  logger?: Logger;
  /** Serve Prometheus metrics at `/metrics` (with Node's process metrics). Defaults to true. */
  metrics?: boolean;
  /** Serve the browser client at `/client.js` (no auth). Defaults to true. */
  clientScript?: boolean;
  /** Backend path that `/readyz` checks; its 2xx within 2 s means ready. Defaults to `/health`. */
  healthPath?: string;
}

/** A mounted relay: its router, its live state, and how to stop it. */
export interface Relay {
  /** Mount at the root of your app: serves `/api/*` and `/healthz`. */
  readonly router: Router;
  readonly hub: Hub;
  /** The multiplexed streams (`GET /api/events`), by id. */
  readonly multiplexer: Multiplexer;
  readonly stats: RelayStats;
  readonly connections: ConnectionCounter;
  /** The cluster parts when `redisUrl` is set. */
  readonly cluster: Cluster | undefined;
  /** The Prometheus registry behind `/metrics`, to add your own metrics or merge. */
  readonly registry: Registry | undefined;
  /** What the admin API reads besides the above: open streams by user, the last cuts, readiness. */
  readonly ops: RelayOps;
  /**
   * With `redisUrl`: the streaming POSTs' answers this relay still reads from the backend, whether
   * their clients are here, on other relays or gone for the grace period (a graceful stop waits
   * for them too); 0 without.
   */
  readonly answersReading: number;
  /**
   * Starts a graceful stop: `/readyz` answers 503, new event-stream requests get a 200 that
   * only says when to come back (`retry:`), the streaming POSTs 503, and open streams end at
   * random moments within `windowMs` (0: at once), each told to reconnect after `retryMs`
   * plus up to 50% jitter (defaults to `drainRetryMs`). Resolves when they have all ended.
   * Uploads and chats in flight are left to finish.
   */
  drain(windowMs: number, retryMs?: number): Promise<void>;
  /**
   * Ends every open stream of `user` now (logout, revoked access), each told to come back after
   * `retryHintMs`: a client that still has a valid credential and access resumes without a gap,
   * one logged out gets 401, one whose access was revoked 404 (the default policy forgets its
   * cached yeses for the user). Resolves with how many streams this process ended. With
   * `redisUrl`, every other relay is told over Redis (pub/sub) and ends its own; it resolves once
   * Redis took the message and rejects when it could not (this relay's streams are ended anyway).
   * Streams also end by themselves when their token expires.
   */
  endUserStreams(user: string): Promise<number>;
  /** Ends every stream and upstream now, aborting requests still in flight, and releases sockets. */
  close(): Promise<void>;
}

/** The streaming POSTs: refused while draining, like a new shared stream. */
const STREAMING_POSTS = ['/documents/upload-sse', '/chat/stream'];

/** Builds the relay as an Express router. */
export function createRelay(options: CreateRelayOptions): Relay {
  const config = resolveOptions(options);
  // Before anything opens a socket or a timer: a bad key must leave nothing behind it.
  const logger = options.logger ?? pino({ level: 'silent' });
  const identified = identify(options.jwt, logger);
  const redirectOrigins = originsOption('upstreamRedirectOrigins', options.upstreamRedirectOrigins);
  for (const warning of optionWarnings(config)) logger.warn(warning);
  const streamAgent = createStreamAgent();
  const callAgent = new Agent({ pipelining: 1, connections: 64 });
  const stats = new RelayStats();
  const local = new LocalOwnership(streamAgent, config, stats);
  const trust = { signingSecret: options.redisSigningSecret, onForged: (kind: string) => stats.countForged(kind) };
  const target = redisTarget(options.redisUrl, options.redisClusterNodes);
  const cluster: Cluster | undefined = target === undefined ? undefined : createCluster(target, config, local, logger, trust);
  const ownership = typeof options.ownership === 'function' ? options.ownership(local) : (options.ownership ?? cluster?.ownership ?? local);
  // Refusals for want of an upstream are counted and listed with the other limits' (`refused`, below).
  const hub = new Hub(config, ownership, stats, logger, (limit) => refused(limit, undefined));
  // A POST's answer is read by the relay that received it; in a cluster its events go through the
  // shared history, so that a resume works on any relay (with no grace period there is none to
  // resume: they stay in memory, and cost Redis nothing).
  const answers = new PostAnswers({
    config,
    ownership: cluster !== undefined && config.postResumeGraceMs > 0 ? cluster.ownership : local,
    shared: cluster?.answers,
    stats,
    logger,
    policy: hub.policy,
    internals: hub.internals,
  });
  const streams = options.streams ?? SHARED_STREAMS;
  const resolveTopic = topicResolver(streams, config.backendUrl, redirectOrigins);
  const multiplexer = new Multiplexer(hub, config, resolveTopic);
  const cachingAuthorizer = options.authorize === undefined ? backendAuthorizer(callAgent, config.authorizationCacheMs, config.upstreamHeadersTimeoutMs) : undefined;
  const authorize = options.authorize ?? (cachingAuthorizer as AuthorizeTopic);
  const cuts = new RecentCuts();
  const userStreams = new UserStreams((user, reason) => cuts.add(reason, user));
  const endLocally = (user: string): number => {
    cachingAuthorizer?.forget(user);
    return userStreams.endUser(user, jitteredRetry(config.retryHintMs));
  };
  cluster?.onUserEnded(endLocally);
  const connections =
    options.connections ??
    cluster?.connections ??
    new MemoryConnectionCounter({
      total: config.maxConnections,
      perUser: config.maxConnectionsPerUser,
      perIp: config.maxConnectionsPerIp,
    });
  const refused = (limit: string, user: string | undefined): void => {
    stats.countRejection(limit);
    cuts.add('limit', user, limit);
  };
  const holdSlot = limitConnections(connections, refused);
  const holdCallSlot = limitConnections(connections, refused, 'calls');
  const rateLimited = limitRequests(config.rateLimitPerMinute, (user) => refused('rate', user), cluster?.rateLimitStore);
  // A request without a valid token is counted (by IP) before it is refused; with one,
  // only stream opens and POSTs count, by user.
  const countRequest: RequestHandler = (req, res, next) => {
    if (res.locals.user === undefined || req.method === 'POST') rateLimited(req, res, next);
    else next();
  };

  const backendReady = cachedCheck(new URL(options.healthPath ?? '/health', config.backendUrl), callAgent);
  let draining = false;
  const readiness = async (): Promise<Readiness> =>
    draining ? 'shutting_down' : cluster && !cluster.ready ? 'redis_unavailable' : (await backendReady()) ? 'ready' : 'backend_unavailable';
  const ops: RelayOps = { userStreams, cuts, startedAt: Date.now(), maxConnections: config.maxConnections, readiness };
  const metrics =
    options.metrics === false
      ? undefined
      : relayMetrics({ hub, stats, connections, multiplexer, readiness, maxConnections: config.maxConnections, redisUp: cluster && (() => cluster.ready) });
  const refuseWhileDraining: RequestHandler = (_req, _res, next) => {
    next(draining ? new HttpError('shutting_down', undefined, undefined, { 'Retry-After': '1' }) : undefined);
  };
  // An event-stream request while draining gets a 200 that says when to come back, never a 503:
  // a native EventSource gives up for good after an error status, and with one instance the
  // restarted relay is where it must come back to.
  const comeBackWhileDraining =
    (always: boolean): RequestHandler =>
    (req, res, next) => {
      if (draining && (always || (isRead(req.method) && acceptsEventStream(req.headers.accept)))) {
        comeBackLater(res, jitteredRetry(config.drainRetryMs));
      } else next();
    };

  // Only the relay's own paths: the app's routes after this router get no relay headers or log lines.
  const own = ['/api', '/healthz', '/readyz', '/metrics'];

  const logged = requestLog(logger);
  const corsAllowed =
    options.corsOrigins !== undefined && options.corsOrigins.length > 0
      ? cors({
          origin: [...options.corsOrigins],
          credentials: true,
          maxAge: 600,
          exposedHeaders: ['Retry-After', 'RateLimit', 'RateLimit-Policy', 'X-Stream-Id', 'X-Heartbeat-Ms'],
        })
      : undefined;
  const refuseAnonymous: RequestHandler = (req, res, next) => {
    if (res.locals.user === undefined) stats.authFailures += 1;
    requireUser(req, res, next);
  };

  // The handlers a request runs before its route, each list built once: a shared stream GET runs
  // them as one handler (`sharedStreamRoutes`, ahead of the router), every other request meets
  // the same lists in the same order as the router's layers below.
  // Every answer on the relay's paths: its log line, and no X-Powered-By.
  const entry = [logged, unbranded];
  // Every /api request: CORS, then one spelling per route before anything routes on the path (or
  // the shared streams' limits can be walked around), then who is asking.
  const api = [...(corsAllowed === undefined ? [] : [corsAllowed]), canonicalPath, identified, countRequest, refuseAnonymous];
  // Every stream open: sent away to come back while draining, the rate limit, a connection slot.
  const streamGuards = [comeBackWhileDraining(true), rateLimited, holdSlot];

  const router = express.Router();
  router.use(
    sharedStreamRoutes(hub, {
      backendUrl: config.backendUrl,
      redirectOrigins,
      authorize,
      // In a cluster the backend's answer to the first request is seen only by the topic's owner.
      authorizeNewTopics: options.authorize !== undefined || cluster !== undefined,
      prefix: '/api',
      // helmet aside: an event stream carries its own few headers (see `helmetBesideStreams`).
      checks: [...entry, ...api],
      guards: streamGuards,
      streams,
      logger,
      userStreams,
      retryHintMs: config.retryHintMs,
    }),
  );
  router.use(own, ...entry);
  if (options.helmet !== false) router.use(helmetBesideStreams(own, streams));
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const status = await readiness();
    res.status(status === 'ready' ? 200 : 503).set('Cache-Control', 'no-store').json({ status });
  });
  if (metrics) router.get('/metrics', metrics.handler);
  if (options.clientScript !== false) router.get('/client.js', clientScript());
  router.use('/api', ...api, comeBackWhileDraining(false));
  // Ahead of the GET, which Express would run for a HEAD too: checked alike, but neither limited nor opened.
  const ticks = diagnosticTicks({ heartbeatMs: config.heartbeatMs, userStreams, retryHintMs: config.retryHintMs });
  router.head('/api/diagnostics/ticks', ticks);
  router.get('/api/diagnostics/ticks', ...streamGuards, ticks);
  router.use(
    '/api',
    multiplexRoutes(multiplexer, {
      resolve: resolveTopic,
      authorize,
      guards: streamGuards,
      maxTopics: config.maxTopicsPerStream,
      logger,
      userStreams,
      retryHintMs: config.retryHintMs,
    }),
  );
  router.post(STREAMING_POSTS.map((path) => `/api${path}`), refuseWhileDraining, holdSlot);
  const resumable = resumablePosts(answers, { paths: STREAMING_POSTS, guards: streamGuards, userStreams, retryHintMs: config.retryHintMs, logger });
  router.use('/api', resumable.router);
  // Every other proxied request holds a slot while it is open too (any backend route may answer
  // with a stream), counted per user apart from the streams, so a user at the stream cap can still call.
  router.use('/api', (req, res, next) => (res.locals.slotHeld === true ? next() : holdCallSlot(req, res, next)));
  router.use(
    '/api',
    proxy({
      backendUrl: config.backendUrl,
      dispatcher: streamAgent,
      headersTimeoutMs: config.upstreamHeadersTimeoutMs,
      maxBodyBytes: config.maxUploadBytes,
      maxJsonBodyBytes: config.maxJsonBodyBytes,
      policy: hub.policy,
      userStreams,
      retryHintMs: config.retryHintMs,
      takeOver: resumable.takeOver,
      onSlowClientCut: () => {
        stats.slowClientsCut += 1;
      },
    }),
  );
  router.use(errorHandler());

  return {
    router,
    hub,
    multiplexer,
    stats,
    connections,
    cluster,
    registry: metrics?.registry,
    ops,
    get answersReading() {
      return answers.reading;
    },
    async drain(windowMs, retryMs = config.drainRetryMs) {
      draining = true;
      await hub.drain(windowMs, retryMs);
    },
    async endUserStreams(user) {
      const ended = endLocally(user);
      await cluster?.endUser(user);
      return ended;
    },
    async close() {
      draining = true;
      hub.close();
      answers.close();
      await Promise.all([streamAgent.destroy(), callAgent.destroy(), cluster?.close()]);
    },
  };
}

/**
 * helmet on every answer of the relay's paths but the shared streams' GETs. A response keeps
 * its headers for as long as it is open, so helmet's dozen would be heap held by every stream
 * for hours. An event stream carries the two that matter to it instead (SSE_HEADERS: nosniff
 * and same-origin CORP), and its JSON errors nosniff.
 */
function helmetBesideStreams(own: string[], streams: readonly SharedStream[]): Router {
  const router = express.Router();
  // `use`, not `get`: a route would also answer OPTIONS on these paths, before CORS could.
  router.use(
    [...streams.map((stream) => `/api${stream.path}`), '/api/events', '/api/streams/:streamId'],
    (req, _res, next) => next(req.method === 'GET' || req.method === 'HEAD' ? 'router' : undefined),
  );
  router.use(own, helmet());
  return router;
}

function isRead(method: string): boolean {
  return method === 'GET' || method === 'HEAD';
}

function acceptsEventStream(accept: string | undefined): boolean {
  return accept !== undefined && accept.toLowerCase().includes('text/event-stream');
}

/** helmet drops `X-Powered-By`, but an open stream skips helmet: drop it for every relay answer. */
const unbranded: RequestHandler = (_req, res, next) => {
  res.removeHeader('X-Powered-By');
  next();
};

/** Whether the backend's health route answers 2xx within 2 s; one check at a time, its answer kept for 1 s. */
function cachedCheck(url: URL, dispatcher: Agent): () => Promise<boolean> {
  let last: { at: number; answer: Promise<boolean> } | undefined;
  return () => {
    if (last && Date.now() - last.at < 1000) return last.answer;
    const answer = request(url, { dispatcher, headersTimeout: 2000, bodyTimeout: 2000, signal: AbortSignal.timeout(2000) })
      .then(async ({ statusCode, body }) => {
        await body.dump();
        return statusCode >= 200 && statusCode < 300;
      })
      .catch(() => false);
    last = { at: Date.now(), answer };
    return answer;
  };
}
