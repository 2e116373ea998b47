import { isIP } from 'node:net';
import { ConfigError, type Env, EnvReader } from './env';
import { descriptorBudget, filesNeeded, openFileLimit } from './open-files';
import { parseClusterSeeds } from '../src/cluster/redis';
import { MIN_SECRET_LENGTH } from '../src/jwt';
import { HTTP_SERVER_SETTINGS } from '../routes/http-server';
import { RELAY_SETTINGS, type RelaySettingName } from '../src/options';
import { MINUTE, type Setting, resolveSettings } from '../src/setting';

/**
 * The settings only the standalone server reads (the relay's and the HTTP server's are in
 * `RELAY_SETTINGS` and `HTTP_SERVER_SETTINGS`); see `SETTINGS` for all of them.
 */
export const SERVER_SETTINGS = {
  nodeEnv: { kind: 'text', env: 'NODE_ENV', defaultNote: 'unset', doc: '`production`: a JWT key and `BACKEND_URL` are required, and no development token is printed' },
  port: { kind: 'port', env: 'PORT', default: 8080, min: 0, max: 65535, doc: 'relay port' },
  host: { kind: 'text', env: 'HOST', defaultNote: 'all interfaces (`::`, or `0.0.0.0` without IPv6)', doc: 'the address the relay listens on, e.g. `127.0.0.1` behind a local proxy' },
  backendUrl: {
    kind: 'text',
    env: 'BACKEND_URL',
    defaultNote: 'required in production',
    doc: 'upstream base URL; `bundled` (or unset outside production) starts the reference backend in-process on `BACKEND_PORT` (8081, loopback)',
  },
  jwtSecret: {
    kind: 'text',
    env: 'JWT_SECRET',
    defaultNote: 'generated in development',
    doc: 'HS256 secret, at least 32 characters; required in production (`NODE_ENV=production`) unless `JWT_PUBLIC_KEY` is set',
  },
  jwtPublicKey: { kind: 'text', env: 'JWT_PUBLIC_KEY', defaultNote: 'unset', doc: 'PEM public key: RSA → RS256, EC P-256 → ES256 (`\\n` escapes accepted)' },
  jwtIssuer: { kind: 'text', env: 'JWT_ISSUER', defaultNote: 'unset', doc: "the tokens' `iss`, checked when set" },
  jwtAudience: { kind: 'text', env: 'JWT_AUDIENCE', defaultNote: 'unset', doc: "the tokens' `aud`, checked when set" },
  corsOrigins: { kind: 'text', env: 'CORS_ORIGINS', defaultNote: 'none', doc: 'comma-separated exact origins allowed to call the relay from a browser' },
  trustProxy: { kind: 'text', env: 'TRUST_PROXY', defaultNote: 'unset', doc: 'hop count or subnets for `X-Forwarded-For`; `true` is refused' },
  shutdownTimeoutMs: {
    kind: 'ms',
    env: 'SHUTDOWN_TIMEOUT_MS',
    default: 30_000,
    min: 0,
    max: 10 * MINUTE,
    doc: 'on SIGTERM/SIGINT: the longest a stop takes; streams end within `DRAIN_WINDOW_MS`, uploads and chats get the rest, then exit 0 (at once when nothing is left)',
  },
  drainWindowMs: {
    kind: 'ms',
    env: 'DRAIN_WINDOW_MS',
    default: 0,
    min: 0,
    max: 10 * MINUTE,
    doc: 'on SIGTERM/SIGINT, open streams end at random moments within this (0: all at once; at most `SHUTDOWN_TIMEOUT_MS`); with several instances, a few seconds spreads the others\' load',
  },
  logLevel: { kind: 'text', env: 'LOG_LEVEL', defaultNote: 'info', doc: 'pino level' },
  redisUrl: { kind: 'text', env: 'REDIS_URL', defaultNote: 'unset', doc: 'set: several relays share one upstream per topic, the replay history, the connection limits and the rate limit through this Redis (see "Running several relays")' },
  redisClusterNodes: {
    kind: 'text',
    env: 'REDIS_CLUSTER_NODES',
    defaultNote: 'unset',
    doc: 'instead of `REDIS_URL`: comma-separated `host:port` seed nodes of a Redis Cluster (Redis 7+); the same cluster mode, each topic on the shard of its hash tag (see "Running several relays")',
  },
} as const satisfies Record<string, Setting>;

/** Every setting of the standalone server, by who takes it as an option, in the order docs/configuration.md lists them. */
export const SETTING_TABLES = [
  { takenBy: undefined, settings: SERVER_SETTINGS },
  { takenBy: 'createHttpServer', settings: HTTP_SERVER_SETTINGS },
  { takenBy: 'createRelay', settings: RELAY_SETTINGS },
] as const satisfies readonly { takenBy: string | undefined; settings: Record<string, Setting> }[];

export const SETTINGS: readonly Setting[] = SETTING_TABLES.flatMap((table) => Object.values(table.settings));

/** Everything the standalone relay reads from its environment, validated. */
export interface ServerConfig {
  readonly port: number;
  /** Undefined: every interface. */
  readonly host: string | undefined;
  readonly production: boolean;
  /** `bundled`: the reference backend is started in-process. */
  readonly backendUrl: URL | 'bundled';
  readonly jwt: {
    readonly secret: string | undefined;
    readonly publicKey: string | undefined;
    readonly issuer: string | undefined;
    readonly audience: string | undefined;
    /** True when no key was configured (outside production): the server then uses `developmentSecret()`, kept in a file. */
    readonly generated: boolean;
  };
  readonly corsOrigins: readonly string[];
  /** `createRelay`'s timings, sizes and limits. */
  readonly relay: { readonly [K in RelaySettingName]: number };
  /** `createHttpServer`'s socket rules. */
  readonly http: { readonly [K in keyof typeof HTTP_SERVER_SETTINGS]: number };
  /** The process's soft limit on open files, when known: the socket and stream caps default from it. */
  readonly openFileLimit: number | undefined;
  readonly trustProxy: number | string | false;
  readonly shutdownTimeoutMs: number;
  readonly drainWindowMs: number;
  readonly logLevel: string;
  readonly redisUrl: URL | undefined;
  /** `REDIS_CLUSTER_NODES` as given (validated `host:port` entries); undefined when unset. */
  readonly redisClusterNodes: readonly string[] | undefined;
  /** Settings that work but probably not as meant; logged at start. */
  readonly warnings: readonly string[];
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * Reads and validates the environment; throws `ConfigError` naming the first bad variable.
 * `readFileLimit` gives the process's open-file limit (read from the system by default).
 */
export function loadConfig(env: Env = process.env, readFileLimit: () => number | undefined = openFileLimit): ServerConfig {
  const read = new EnvReader(env);
  const fileLimit = readFileLimit();
  const production = read.raw(SERVER_SETTINGS.nodeEnv.env) === 'production';
  const { relay, http, warnings } = readCaps(read, fileLimit);
  const { port, shutdownTimeoutMs, drainWindowMs } = resolveSettings(
    { port: SERVER_SETTINGS.port, shutdownTimeoutMs: SERVER_SETTINGS.shutdownTimeoutMs, drainWindowMs: SERVER_SETTINGS.drainWindowMs },
    read,
  );
  return {
    port,
    host: readHost(read),
    production,
    backendUrl: readBackendUrl(read, production),
    jwt: readJwt(read, production),
    corsOrigins: readOrigins(read),
    relay,
    http,
    openFileLimit: fileLimit,
    trustProxy: readTrustProxy(read),
    shutdownTimeoutMs,
    drainWindowMs,
    logLevel: read.oneOf(SERVER_SETTINGS.logLevel.env, LOG_LEVELS, 'info'),
    ...readRedis(read),
    warnings,
  };
}

/**
 * The relay's and HTTP server's settings, with the socket, stream and upstream caps defaulting
 * from the open-file limit (an explicit MAX_CONNECTIONS lifts the socket cap above it).
 */
function readCaps(read: EnvReader, fileLimit: number | undefined): Pick<ServerConfig, 'relay' | 'http' | 'warnings'> {
  const budget = fileLimit === undefined ? undefined : descriptorBudget(fileLimit);
  const relay = resolveSettings(RELAY_SETTINGS, read, { maxConnections: budget?.maxConnections, maxUpstreams: budget?.maxUpstreams });
  const { maxConnections, maxUpstreams } = relay;
  // Room above the stream cap, so a client over it still gets its 503 instead of a dropped socket.
  const fitting = Math.max(budget?.maxSockets ?? HTTP_SERVER_SETTINGS.maxSockets.default, maxConnections + Math.max(8, Math.ceil(maxConnections / 10)));
  const http = resolveSettings(HTTP_SERVER_SETTINGS, read, { maxSockets: fitting });
  const { maxSockets } = http;
  const warnings: string[] = [];
  if (maxConnections >= maxSockets) {
    warnings.push(`MAX_CONNECTIONS (${maxConnections}) is not below MAX_SOCKETS (${maxSockets}): clients over the socket cap are dropped without their 503`);
  }
  const needed = filesNeeded({ maxSockets, maxConnections, maxUpstreams });
  if (fileLimit !== undefined && needed > fileLimit) {
    warnings.push(
      `MAX_SOCKETS (${maxSockets}) clients, MAX_CONNECTIONS (${maxConnections}) proxied requests and MAX_UPSTREAMS (${maxUpstreams}) topic upstreams need up to ${needed} open files, over this process's limit (${fileLimit}): raise ulimit -n or lower them; past it clients get connection resets instead of 503`,
    );
  }
  return { relay, http, warnings };
}

function readHost(read: EnvReader): string | undefined {
  const value = read.raw(SERVER_SETTINGS.host.env);
  if (value === undefined) return undefined;
  if (isIP(value) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(value)) {
    throw new ConfigError(SERVER_SETTINGS.host.env, 'an IP address or a host name', value);
  }
  return value;
}

function readBackendUrl(read: EnvReader, production: boolean): URL | 'bundled' {
  const name = SERVER_SETTINGS.backendUrl.env;
  const value = read.raw(name);
  if (value === 'bundled') return 'bundled';
  // In production the demo backend would quietly serve made-up data: it has to be asked for.
  if (value === undefined && production) throw new ConfigError(name, "your backend's http(s) URL in production (or bundled, for the demo backend)", '');
  return read.url(name) ?? 'bundled';
}

function readJwt(read: EnvReader, production: boolean): ServerConfig['jwt'] {
  const secret = read.raw(SERVER_SETTINGS.jwtSecret.env);
  const publicKey = read.raw(SERVER_SETTINGS.jwtPublicKey.env)?.replace(/\\n/g, '\n');
  const issuer = read.raw(SERVER_SETTINGS.jwtIssuer.env);
  const audience = read.raw(SERVER_SETTINGS.jwtAudience.env);
  if (secret !== undefined && publicKey !== undefined) {
    throw new ConfigError(SERVER_SETTINGS.jwtSecret.env, 'to be unset when JWT_PUBLIC_KEY is set (choose one)', '(set)');
  }
  if (secret !== undefined && secret.length < MIN_SECRET_LENGTH) {
    throw new ConfigError(SERVER_SETTINGS.jwtSecret.env, `at least ${MIN_SECRET_LENGTH} characters`, `(${secret.length} characters)`);
  }
  if (publicKey !== undefined && !publicKey.includes('-----BEGIN PUBLIC KEY-----')) {
    throw new ConfigError(SERVER_SETTINGS.jwtPublicKey.env, 'a PEM public key (-----BEGIN PUBLIC KEY-----)', '(not PEM)');
  }
  const generated = secret === undefined && publicKey === undefined;
  if (generated && production) throw new ConfigError(SERVER_SETTINGS.jwtSecret.env, 'a secret (or JWT_PUBLIC_KEY) in production', '');
  return { secret, publicKey, issuer, audience, generated };
}

function readOrigins(read: EnvReader): string[] {
  return read.list(SERVER_SETTINGS.corsOrigins.env).map((origin) => {
    let url: URL | undefined;
    try {
      url = new URL(origin);
    } catch {
      url = undefined;
    }
    if (!url || url.origin !== origin) throw new ConfigError(SERVER_SETTINGS.corsOrigins.env, 'comma-separated origins like https://app.example.com', origin);
    return origin;
  });
}

/** A hop count, or a comma-separated list of addresses/subnets/names Express understands; never `true`. */
function readTrustProxy(read: EnvReader): number | string | false {
  const value = read.raw(SERVER_SETTINGS.trustProxy.env);
  if (value === undefined || value === 'false') return false;
  if (/^\d+$/.test(value)) return read.int(SERVER_SETTINGS.trustProxy.env, 0, 0, 32);
  if (value === 'true') throw new ConfigError(SERVER_SETTINGS.trustProxy.env, 'a hop count or subnets (true would let any client forge its IP)', value);
  if (!/^[0-9A-Za-z.:/,\s_-]+$/.test(value)) throw new ConfigError(SERVER_SETTINGS.trustProxy.env, 'a hop count or comma-separated subnets', value);
  return value;
}

/** One Redis (`REDIS_URL`) or a Redis Cluster's seed nodes (`REDIS_CLUSTER_NODES`), not both. */
function readRedis(read: EnvReader): Pick<ServerConfig, 'redisUrl' | 'redisClusterNodes'> {
  const redisUrl = read.url(SERVER_SETTINGS.redisUrl.env, ['redis:', 'rediss:'], 'a redis:// or rediss:// URL');
  const name = SERVER_SETTINGS.redisClusterNodes.env;
  const raw = read.raw(name);
  if (raw === undefined) return { redisUrl, redisClusterNodes: undefined };
  if (redisUrl !== undefined) throw new ConfigError(name, `to be unset when ${SERVER_SETTINGS.redisUrl.env} is set (one Redis or one Redis Cluster)`, raw);
  const nodes = read.list(name);
  try {
    parseClusterSeeds(nodes);
  } catch {
    throw new ConfigError(name, 'comma-separated host:port seed nodes of a Redis Cluster, like 10.0.0.1:7000,10.0.0.2:7000', raw);
  }
  return { redisUrl, redisClusterNodes: nodes };
}
