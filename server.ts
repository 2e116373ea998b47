import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import express from 'express';
import jwt from 'jsonwebtoken';
import { ConfigError } from './config/env';
import { type ServerConfig, loadConfig } from './config';
import { createHttpServer } from './src/http-server';
import { createRelay } from './src/create-relay';
import { createAdminServer } from './routes/admin';
import { developmentRoutes } from './routes/development';
import { DEV_SECRET_FILE, developmentSecret } from './config/dev-secret';
import { logOutput } from './config/log-output';
import { errorHandler, notFound } from './middleware/errors';
import { pino } from 'pino';

/** The user of the printed development token. */
const DEV_USER = 'dev-user';

/**
 * Connections the kernel queues while the process is busy; Linux lowers it to `net.core.somaxconn`
 * (4096 by default), so raising that is all it takes for more. After a restart every client comes
 * back within a few seconds: past Node's default of 511, the others' SYNs are dropped, and they
 * come back after TCP's retransmits (1, 3, 7, 15, 31 s).
 */
const LISTEN_BACKLOG = 65_535;

/** Listens on `port`; a port that is taken (or not allowed) is a `ConfigError` naming `variable`. */
async function listen(server: Server, port: number, host: string | undefined, variable: string): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    const refused = (err: NodeJS.ErrnoException): void => {
      const why = err.code === 'EADDRINUSE' ? 'a free port' : err.code === 'EACCES' ? 'a port this user may bind' : undefined;
      reject(why === undefined ? err : new ConfigError(variable, `${why} (${err.code ?? ''} on ${host ?? 'all interfaces'})`, String(port)));
    };
    server.once('error', refused);
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      // Only a failure to listen rejects; a later server error must not vanish into a settled promise.
      server.off('error', refused);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
}

/**
 * Starts the bundled reference backend in this process; returns its URL and how to stop it.
 * Loaded only here, so a build without `backend/` (the production image) runs against a real one.
 */
async function startBundledBackend(): Promise<{ url: URL; close(): Promise<void> }> {
  if (!existsSync(join(__dirname, 'backend'))) {
    throw new ConfigError('BACKEND_URL', "your backend's http(s) URL: this build leaves the bundled reference backend out", 'bundled');
  }
  const [{ createBackend }, { ConfigError: BackendConfigError, loadBackendConfig }] = await Promise.all([import('./backend/app.js'), import('./backend/config.js')]);
  let config: ReturnType<typeof loadBackendConfig>;
  try {
    config = loadBackendConfig();
  } catch (err) {
    throw err instanceof BackendConfigError ? new ConfigError(err.variable, err.expected, err.got) : err;
  }
  const backend = createBackend(config.options);
  const server = createServer({ requestTimeout: 0 }, backend.app);
  const url = await listen(server, config.port, config.host, 'BACKEND_PORT');
  return {
    url: new URL(url),
    async close() {
      server.close();
      await backend.close();
      server.closeAllConnections();
    },
  };
}

async function main(config: ServerConfig): Promise<void> {
  const logger = pino(
    {
      level: config.logLevel,
      // Request lines never carry headers; this is the net under anything else that might.
      redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'headers.cookie', 'token'], censor: '[redacted]' },
    },
    logOutput({ production: config.production, isTTY: process.stdout.isTTY === true }),
  );
  for (const warning of config.warnings) logger.warn(warning);
  // Kept in a file, so yesterday's `npm run token` still works after a restart.
  const jwtOptions = config.jwt.generated ? { ...config.jwt, secret: developmentSecret() } : config.jwt;
  const bundled = config.backendUrl === 'bundled' ? await startBundledBackend() : undefined;
  const backendUrl = bundled?.url ?? (config.backendUrl as URL);
  const relay = createRelay({
    ...config.relay,
    backendUrl,
    logger,
    jwt: jwtOptions,
    corsOrigins: config.corsOrigins,
    redisUrl: config.redisUrl,
    redisClusterNodes: config.redisClusterNodes,
    redisSigningSecret: config.redisSigningSecret,
    upstreamRedirectOrigins: config.upstreamRedirectOrigins,
    healthPath: config.backendHealthPath,
  });

  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', config.trustProxy);
  app.use(relay.router);
  // It mints tokens for anyone who asks: only where they reach nothing but the demo backend (see `developmentLogin`).
  if (config.developmentLogin && jwtOptions.secret !== undefined) app.use(developmentRoutes({ secret: jwtOptions.secret, user: DEV_USER }));
  app.use(notFound, errorHandler());
  const server = createHttpServer(app, config.http);
  const url = await listen(server, config.port, config.host, 'PORT');
  // Its own listener, never the public one: loopback by default, and no slot of the relay's limits.
  const admin = config.admin && { server: createAdminServer(relay, { apiKey: config.admin.apiKey, logger }), ...config.admin };
  const adminUrl = admin && (await listen(admin.server, admin.port, admin.host, 'ADMIN_PORT'));
  logger.info(
    {
      url,
      ...(adminUrl !== undefined && { admin: `${adminUrl}/admin/` }),
      backend: backendUrl.href,
      bundledBackend: bundled !== undefined,
      openFileLimit: config.openFileLimit ?? 'unknown',
      maxSockets: config.http.maxSockets,
      maxConnections: config.relay.maxConnections,
      maxUpstreams: config.relay.maxUpstreams,
    },
    'relay listening',
  );

  if (config.jwt.generated && jwtOptions.secret !== undefined) {
    const token = jwt.sign({}, jwtOptions.secret, { subject: DEV_USER, expiresIn: '12h' });
    const base = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(`\nDevelopment mode: JWT_SECRET is unset, so a development secret is used (kept in ${DEV_SECRET_FILE}).`);
    if (config.developmentLogin) console.log(`The demo: ${base}/  (npm run token prints a fresh token)`);
    console.log(`A token for "${DEV_USER}", valid 12 h:\n\n  export TOKEN=${token}\n`);
    console.log('Watch a download progress through the relay:\n');
    console.log(
      `  code=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" ${base}/api/downloads | sed 's/.*"code":"\\([^"]*\\)".*/\\1/')\n` +
        `  curl -N -H "Authorization: Bearer $TOKEN" ${base}/api/downloads/$code/events\n`,
    );
  }

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    // A second signal means "now"; exit before anything (even a log write) can stand in the way.
    if (stopping) process.exit(1);
    stopping = true;
    const started = Date.now();
    // Streams end within the window (at once by default: with one instance, spreading their ends
    // only delays the restart; their jittered `retry:` spreads the reconnects), uploads and chats
    // in flight get the whole budget, and the process exits as soon as nothing is left.
    const drainWindowMs = Math.min(config.drainWindowMs, config.shutdownTimeoutMs);
    logger.info({ signal, drainWindowMs, shutdownTimeoutMs: config.shutdownTimeoutMs, streams: relay.connections.snapshot().total }, 'stopping');
    // Still listening while streams drain: a load balancer sees /readyz answer 503 and moves on.
    await relay.drain(drainWindowMs);
    server.close();
    admin?.server.close();
    admin?.server.closeAllConnections();
    // An answer read on another relay (or waiting for a resume there) holds no connection here.
    while ((relay.connections.snapshot().total > 0 || relay.answersReading > 0) && Date.now() - started < config.shutdownTimeoutMs) {
      server.closeIdleConnections();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const abandoned = relay.connections.snapshot().total;
    await relay.close();
    server.closeAllConnections();
    await bundled?.close();
    logger.info({ ms: Date.now() - started, abandoned }, 'stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

let config: ServerConfig;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`sse-relay: ${err.message}`);
  process.exit(1);
}
main(config).catch((err: unknown) => {
  if (err instanceof ConfigError) console.error(`sse-relay: ${err.message}`);
  else console.error('sse-relay: failed to start:', err);
  process.exit(1);
});
