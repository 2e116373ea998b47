import express, { type RequestHandler, type Router } from 'express';
import cors from 'cors';
import helmet from 'helmet';
import { Agent } from 'undici';
import { identify, type JwtOptions, requireUser } from '../middleware/authenticate';
import { errorHandler } from '../middleware/errors';
import { limitConnections, limitRequests } from '../middleware/limits';
import { type ConnectionCounter, MemoryConnectionCounter } from '../src/limits/connections';
import { type RelayOptions, resolveOptions } from '../src/options';
import { type AuthorizeTopic, backendAuthorizer } from '../src/relay/authorize';
import { Hub } from '../src/relay/hub';
import { LocalOwnership, type TopicOwnership } from '../src/relay/ownership';
import { RelayStats } from '../src/relay/stats';
import { proxy } from './proxy';
import { sharedStreamRoutes } from './streams';

/** Options of `createRelay`: the core's, plus how clients authenticate and what they may use. */
export interface CreateRelayOptions extends RelayOptions {
  /** Token verification. Required. */
  jwt: JwtOptions;
  /** Largest request body passed to the backend (uploads); past it: 413. Defaults to 2 GiB. */
  maxUploadBytes?: number;
  /** Your own policy for "may this user see this topic"; resolves with an HTTP status (2xx admits). Defaults to asking the backend's status route. */
  authorize?: AuthorizeTopic;
  /** Who reads each topic's upstream and keeps its replay history. Defaults to this process, in memory. */
  ownership?: TopicOwnership;
  /** Open streams (shared streams, uploads, chat) in all; past it: 503. Defaults to 20000. */
  maxConnections?: number;
  /** Open streams per user; past it: 429. Defaults to 20. */
  maxConnectionsPerUser?: number;
  /** Open streams per client IP (see Express `trust proxy`); past it: 429. Defaults to 200. */
  maxConnectionsPerIp?: number;
  /** Where open streams are counted. Defaults to this process's memory, with the three limits above. */
  connections?: ConnectionCounter;
  /** Stream opens and POSTs per user (per IP for requests without a valid token) per minute; 0 turns it off. Defaults to 120. */
  rateLimitPerMinute?: number;
  /** Origins allowed to call the relay from a browser, with credentials (the cookie). Defaults to none: same-origin only. */
  corsOrigins?: readonly string[];
  /** Security headers (helmet); set false if your app already sets them. Defaults to true. */
  helmet?: boolean;
}

/** A mounted relay: its router, its live state, and how to stop it. */
export interface Relay {
  /** Mount at the root of your app: serves `/api/*` and `/healthz`. */
  readonly router: Router;
  readonly hub: Hub;
  readonly stats: RelayStats;
  readonly connections: ConnectionCounter;
  /** Ends every stream and upstream now, aborting requests still in flight, and releases sockets. */
  close(): Promise<void>;
}

/** The streaming POSTs: each holds a connection slot like a shared stream does. */
const STREAMING_POSTS = ['/documents/upload-sse', '/chat/stream'];

/** Builds the relay as an Express router. */
export function createRelay(options: CreateRelayOptions): Relay {
  const config = resolveOptions(options);
  // Each open stream pins a connection: streams get their own pool so REST calls never queue behind them.
  const streamAgent = new Agent({ pipelining: 1, connections: null });
  const callAgent = new Agent({ pipelining: 1, connections: 64 });
  const stats = new RelayStats();
  const hub = new Hub(config, options.ownership ?? new LocalOwnership(streamAgent, config), stats);
  const authorize = options.authorize ?? backendAuthorizer(callAgent, config.authorizationCacheMs, config.upstreamHeadersTimeoutMs);
  const connections =
    options.connections ??
    new MemoryConnectionCounter({
      total: positive('maxConnections', options.maxConnections, 20_000),
      perUser: positive('maxConnectionsPerUser', options.maxConnectionsPerUser, 20),
      perIp: positive('maxConnectionsPerIp', options.maxConnectionsPerIp, 200),
    });
  const holdSlot = limitConnections(connections, (limit) => stats.countRejection(limit));
  const rateLimited = limitRequests(nonNegative('rateLimitPerMinute', options.rateLimitPerMinute, 120), () => stats.countRejection('rate'));
  // A request without a valid token is counted (by IP) before it is refused; with one,
  // only stream opens and POSTs count, by user.
  const countRequest: RequestHandler = (req, res, next) => {
    if (res.locals.user === undefined || req.method === 'POST') rateLimited(req, res, next);
    else next();
  };

  const router = express.Router();
  if (options.helmet !== false) router.use(helmet());
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  if (options.corsOrigins !== undefined && options.corsOrigins.length > 0) {
    router.use(
      '/api',
      cors({
        origin: [...options.corsOrigins],
        credentials: true,
        maxAge: 600,
        exposedHeaders: ['Retry-After', 'RateLimit', 'RateLimit-Policy'],
      }),
    );
  }
  const refuseAnonymous: RequestHandler = (req, res, next) => {
    if (res.locals.user === undefined) stats.authFailures += 1;
    requireUser(req, res, next);
  };
  router.use('/api', identify(options.jwt), countRequest, refuseAnonymous);
  router.use('/api', sharedStreamRoutes(hub, config.backendUrl, authorize, [rateLimited, holdSlot]));
  router.post(STREAMING_POSTS.map((path) => `/api${path}`), holdSlot);
  router.use(
    '/api',
    proxy({
      backendUrl: config.backendUrl,
      dispatcher: streamAgent,
      headersTimeoutMs: config.upstreamHeadersTimeoutMs,
      maxBodyBytes: options.maxUploadBytes ?? 2 * 1024 ** 3,
    }),
  );
  router.use(errorHandler());

  return {
    router,
    hub,
    stats,
    connections,
    async close() {
      hub.close();
      await Promise.all([streamAgent.destroy(), callAgent.destroy()]);
    },
  };
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`${name} must be an integer >= 1, got ${String(value)}`);
  return value;
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  return value === 0 ? 0 : positive(name, value, fallback);
}
