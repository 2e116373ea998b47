import express, { type Router } from 'express';
import { Agent } from 'undici';
import { authenticate, type JwtOptions } from '../middleware/authenticate';
import { errorHandler } from '../middleware/errors';
import { type RelayOptions, resolveOptions } from '../src/options';
import { type AuthorizeTopic, backendAuthorizer } from '../src/relay/authorize';
import { Hub } from '../src/relay/hub';
import { RelayStats } from '../src/relay/stats';
import { proxy } from './proxy';
import { sharedStreamRoutes } from './streams';

/** Options of `createRelay`: the core's, plus how clients authenticate. */
export interface CreateRelayOptions extends RelayOptions {
  /** Token verification. Required. */
  jwt: JwtOptions;
  /** Largest request body passed to the backend (uploads); past it: 413. Defaults to 2 GiB. */
  maxUploadBytes?: number;
  /** Largest JSON request body passed to the backend; past it: 413. Defaults to 1 MiB (1048576). */
  maxJsonBodyBytes?: number;
  /** Your own policy for "may this user see this topic"; resolves with an HTTP status (2xx admits). Defaults to asking the backend's status route. */
  authorize?: AuthorizeTopic;
}

/** A mounted relay: its router, its live state, and how to stop it. */
export interface Relay {
  /** Mount at the root of your app: serves `/api/*` and `/healthz`. */
  readonly router: Router;
  readonly hub: Hub;
  readonly stats: RelayStats;
  /** Ends every stream and upstream and releases sockets. */
  close(): Promise<void>;
}

/** Builds the relay as an Express router. */
export function createRelay(options: CreateRelayOptions): Relay {
  const config = resolveOptions(options);
  // Each open stream pins a connection: streams get their own pool so REST calls never queue behind them.
  const streamAgent = new Agent({ pipelining: 1, connections: null });
  const callAgent = new Agent({ pipelining: 1, connections: 64 });
  const stats = new RelayStats();
  const hub = new Hub(config, streamAgent, stats);
  const authorize = options.authorize ?? backendAuthorizer(callAgent, config.authorizationCacheMs, config.upstreamHeadersTimeoutMs);

  const router = express.Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.use(
    '/api',
    authenticate(options.jwt),
    sharedStreamRoutes(hub, config.backendUrl, authorize),
    proxy({
      backendUrl: config.backendUrl,
      dispatcher: streamAgent,
      headersTimeoutMs: config.upstreamHeadersTimeoutMs,
      maxBodyBytes: options.maxUploadBytes ?? 2 * 1024 ** 3,
      maxJsonBodyBytes: options.maxJsonBodyBytes ?? 1024 ** 2,
    }),
  );
  router.use(errorHandler());

  return {
    router,
    hub,
    stats,
    async close() {
      hub.close();
      await Promise.all([streamAgent.close(), callAgent.close()]);
    },
  };
}
