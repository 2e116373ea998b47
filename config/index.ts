import { isIP } from 'node:net';
import { ConfigError, type Env, EnvReader } from './env';
import { descriptorBudget, filesNeeded, openFileLimit } from './open-files';
import { parseClusterSeeds } from '../src/cluster/redis';
import { CLAIM_NAME, MIN_SECRET_LENGTH } from '../src/jwt';
import { HTTP_SERVER_SETTINGS } from '../src/http-server';
import { MIN_ADMIN_KEY_LENGTH } from '../middleware/admin-key';
import { RELAY_SETTINGS, type RelaySettingName } from '../src/options';
import { MINUTE, type Setting, resolveSettings } from '../src/setting';
import type { CreateRelayOptions, JwtOptions } from '../index';

/**
 * The settings only the standalone server reads (the relay's and the HTTP server's are in
 * `RELAY_SETTINGS` and `HTTP_SERVER_SETTINGS`); see `SETTINGS` for all of them.
 */
export const SERVER_SETTINGS = {
  nodeEnv: {
    kind: 'text',
    env: 'NODE_ENV',
    defaultNote: 'unset',
    doc: '`production`: a JWT key and `BACKEND_URL` are required, and no development token is printed; `development` or unset: with the bundled backend and no JWT key, the demo and its login (`POST /dev/login`) are served; `test`: neither; any other value is warned about at start',
  },
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
    doc: 'HS256 secret, at least 32 characters; required unless `JWT_PUBLIC_KEY` is set or `NODE_ENV` is `development`, `test` or unset (then a development secret is used)',
  },
  jwtPublicKey: { kind: 'text', env: 'JWT_PUBLIC_KEY', defaultNote: 'unset', doc: 'PEM public key: RSA → RS256, EC P-256 → ES256 (`\\n` escapes accepted)' },
  jwtIssuer: { kind: 'text', env: 'JWT_ISSUER', defaultNote: 'unset', doc: "the tokens' `iss`, checked when set" },
  jwtAudience: { kind: 'text', env: 'JWT_AUDIENCE', defaultNote: 'unset', doc: "the tokens' `aud`, checked when set" },
  jwtClockToleranceSec: {
    kind: 'count',
    env: 'JWT_CLOCK_TOLERANCE_SEC',
    default: 5,
    min: 0,
    max: 300,
    doc: "seconds of clock difference allowed on a token's `exp` and `nbf` (between the relay and whoever issues tokens)",
  },
  jwtCookieName: { kind: 'text', env: 'JWT_COOKIE_NAME', defaultNote: '`access_token`', doc: 'the cookie a token is read from when a request has no `Authorization` header' },
  jwtTopicsClaim: {
    kind: 'text',
    env: 'JWT_TOPICS_CLAIM',
    defaultNote: 'unset',
    doc: 'a claim (say `topics`) listing the topics (`download:abc`) and prefixes (`download:*`) a token admits its user to without asking the backend\'s status route; at most 100 patterns of 160 characters, else ignored (see docs/security.md)',
  },
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
  redisSigningSecret: {
    kind: 'text',
    env: 'REDIS_SIGNING_SECRET',
    defaultNote: 'unset (Redis trusted)',
    doc: "with `REDIS_URL` or `REDIS_CLUSTER_NODES`: a secret of at least 32 characters, the same on every relay; what relays write to Redis for each other is signed with it (HMAC-SHA256), and what does not verify is dropped and counted",
  },
  upstreamRedirectOrigins: {
    kind: 'text',
    env: 'UPSTREAM_REDIRECT_ORIGINS',
    defaultNote: 'none',
    doc: "comma-separated origins besides the backend's to which a stream's redirects are followed (without the identity header); a redirect elsewhere is answered 502",
  },
  backendHealthPath: { kind: 'text', env: 'BACKEND_HEALTH_PATH', defaultNote: '`/health`', doc: "the backend's path that `/readyz` checks: a 2xx within 2 s means ready" },
  adminApiKey: {
    kind: 'text',
    env: 'ADMIN_API_KEY',
    defaultNote: 'unset: no admin listener',
    doc: 'set (at least 32 characters): the admin API and the ops page listen on `ADMIN_PORT`, and every request there must carry this key (see docs/operations.md)',
  },
  adminPort: { kind: 'port', env: 'ADMIN_PORT', default: 9091, min: 0, max: 65535, doc: "the admin listener's port, with `ADMIN_API_KEY`; never the same as `PORT`" },
  adminHost: { kind: 'text', env: 'ADMIN_HOST', defaultNote: '`127.0.0.1`', doc: 'the address the admin listener binds, with `ADMIN_API_KEY`: loopback by default, reached through a tunnel or a private network' },
  redisClusterNodes: {
    kind: 'text',
    env: 'REDIS_CLUSTER_NODES',
    defaultNote: 'unset',
    doc: 'instead of `REDIS_URL`: comma-separated `host:port` seed nodes of a Redis Cluster (Redis 7+); the same cluster mode, each topic on the shard of its hash tag (see "Running several relays")',
  },
} as const satisfies Record<string, Setting>;

/**
 * Where the standalone server gets each `createRelay` option that is not in `RELAY_SETTINGS`
 * (those all have a variable): the variable that sets it, or why none does. Typed over the
 * options, so an option added to `createRelay` does not build until it is listed here.
 */
export const RELAY_OPTION_SOURCES = {
  backendUrl: { env: 'BACKEND_URL' },
  'jwt.secret': { env: 'JWT_SECRET' },
  'jwt.publicKey': { env: 'JWT_PUBLIC_KEY' },
  'jwt.issuer': { env: 'JWT_ISSUER' },
  'jwt.audience': { env: 'JWT_AUDIENCE' },
  'jwt.clockToleranceSec': { env: 'JWT_CLOCK_TOLERANCE_SEC' },
  'jwt.cookieName': { env: 'JWT_COOKIE_NAME' },
  'jwt.topicsClaim': { env: 'JWT_TOPICS_CLAIM' },
  'jwt.cacheSize': { why: 'a speed-up bounded by its default (10,000 verified tokens): a token not in it is verified again, never refused' },
  authorize: { why: "a policy is code; the server asks the backend's status routes, as the contract says" },
  streams: { why: "the server relays the contract's routes; streams of another shape are what the library is for" },
  ownership: { why: 'an implementation, not a setting; REDIS_URL selects the shared one' },
  connections: { why: 'an implementation, not a setting; REDIS_URL selects the shared counter, the MAX_CONNECTIONS variables its limits' },
  upstreamRedirectOrigins: { env: 'UPSTREAM_REDIRECT_ORIGINS' },
  redisUrl: { env: 'REDIS_URL' },
  redisClusterNodes: { env: 'REDIS_CLUSTER_NODES' },
  redisSigningSecret: { env: 'REDIS_SIGNING_SECRET' },
  corsOrigins: { env: 'CORS_ORIGINS' },
  helmet: { why: 'the server is the whole app, so nothing else sets the security headers: they are always on' },
  logger: { env: 'LOG_LEVEL' },
  metrics: { why: '/metrics holds counts, no user data, and is kept from the internet at the proxy in front (the nginx files deny it)' },
  clientScript: { why: '/client.js is a public file with nothing secret in it, and the demo page loads it' },
  healthPath: { env: 'BACKEND_HEALTH_PATH' },
} as const satisfies Record<Exclude<keyof CreateRelayOptions, RelaySettingName | 'jwt'> | `jwt.${keyof JwtOptions}`, { env: string } | { why: string }>;

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
  /**
   * Serve the demo and its login (`POST /dev/login`, which hands out tokens): only in an explicit
   * development set-up, where nothing but the bundled demo backend can be reached with them:
   * NODE_ENV `development` or unset, `BACKEND_URL` bundled, and no JWT key configured.
   */
  readonly developmentLogin: boolean;
  /** `bundled`: the reference backend is started in-process. */
  readonly backendUrl: URL | 'bundled';
  readonly jwt: {
    readonly secret: string | undefined;
    readonly publicKey: string | undefined;
    readonly issuer: string | undefined;
    readonly audience: string | undefined;
    readonly clockToleranceSec: number;
    readonly cookieName: string | undefined;
    /** The claim whose topics a token admits its user to without asking the backend. */
    readonly topicsClaim: string | undefined;
    /** True when no key was configured (NODE_ENV development, test or unset): the server then uses `developmentSecret()`, kept in a file. */
    readonly generated: boolean;
  };
  readonly corsOrigins: readonly string[];
  /** Origins besides the backend's that a stream's redirects may lead to. */
  readonly upstreamRedirectOrigins: readonly string[];
  /** The backend path `/readyz` checks; undefined: the relay's default. */
  readonly backendHealthPath: string | undefined;
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
  /** The cluster's signing secret, if set. */
  readonly redisSigningSecret: string | undefined;
  /** The admin listener, when `ADMIN_API_KEY` is set. */
  readonly admin: { readonly apiKey: string; readonly port: number; readonly host: string } | undefined;
  /** Settings that work but probably not as meant; logged at start. */
  readonly warnings: readonly string[];
}

const NODE_ENVS: readonly string[] = ['production', 'development', 'test'];
/** Where a missing JWT key means the development secret (NODE_ENV unset too). */
const DEVELOPMENT_ENVS: readonly string[] = ['development', 'test'];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * Reads and validates the environment; throws `ConfigError` naming the first bad variable.
 * `readFileLimit` gives the process's open-file limit (read from the system by default).
 */
export function loadConfig(env: Env = process.env, readFileLimit: () => number | undefined = openFileLimit): ServerConfig {
  const read = new EnvReader(env);
  const fileLimit = readFileLimit();
  const nodeEnv = read.raw(SERVER_SETTINGS.nodeEnv.env);
  const production = nodeEnv === 'production';
  const { relay, http, warnings: capWarnings } = readCaps(read, fileLimit);
  const warnings = [...capWarnings];
  if (nodeEnv !== undefined && !NODE_ENVS.includes(nodeEnv)) {
    warnings.push(
      `NODE_ENV=${nodeEnv} is none of ${NODE_ENVS.join(', ')}: the relay runs without production's BACKEND_URL check and without the development login; a deployment sets NODE_ENV=production`,
    );
  }
  const { port, shutdownTimeoutMs, drainWindowMs } = resolveSettings(
    { port: SERVER_SETTINGS.port, shutdownTimeoutMs: SERVER_SETTINGS.shutdownTimeoutMs, drainWindowMs: SERVER_SETTINGS.drainWindowMs },
    read,
  );
  if (drainWindowMs > shutdownTimeoutMs) {
    warnings.push(
      `DRAIN_WINDOW_MS (${drainWindowMs}) is over SHUTDOWN_TIMEOUT_MS (${shutdownTimeoutMs}): a stop ends every stream within the latter, so their reconnects spread over ${shutdownTimeoutMs} ms only`,
    );
  }
  const host = readHost(read);
  const backendUrl = readBackendUrl(read, production);
  const jwt = readJwt(read, nodeEnv);
  return {
    port,
    host,
    production,
    developmentLogin: (nodeEnv === undefined || nodeEnv === 'development') && backendUrl === 'bundled' && jwt.generated,
    backendUrl,
    jwt,
    corsOrigins: readOrigins(read, SERVER_SETTINGS.corsOrigins.env),
    upstreamRedirectOrigins: readOrigins(read, SERVER_SETTINGS.upstreamRedirectOrigins.env),
    backendHealthPath: readHealthPath(read),
    relay,
    http,
    openFileLimit: fileLimit,
    trustProxy: readTrustProxy(read),
    shutdownTimeoutMs,
    drainWindowMs,
    logLevel: read.oneOf(SERVER_SETTINGS.logLevel.env, LOG_LEVELS, 'info'),
    ...readRedis(read),
    redisSigningSecret: readRedisSigningSecret(read),
    admin: readAdmin(read, port),
    warnings,
  };
}

/**
 * The relay's and HTTP server's settings, with the socket, stream and upstream caps defaulting
 * from the open-file limit (an explicit MAX_CONNECTIONS lifts the socket cap above it).
 */
function readCaps(read: EnvReader, fileLimit: number | undefined): Pick<ServerConfig, 'relay' | 'http'> & { warnings: string[] } {
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

function readHost(read: EnvReader, name: string = SERVER_SETTINGS.host.env): string | undefined {
  const value = read.raw(name);
  if (value === undefined) return undefined;
  if (isIP(value) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(value)) {
    throw new ConfigError(name, 'an IP address or a host name', value);
  }
  return value;
}

/** The admin listener's key, port and address; undefined without a key. The key itself is never quoted in an error. */
function readAdmin(read: EnvReader, publicPort: number): ServerConfig['admin'] {
  // A bad ADMIN_PORT stops the start even without a key, as every other bad value does.
  const { adminPort: port } = resolveSettings({ adminPort: SERVER_SETTINGS.adminPort }, read);
  const apiKey = read.raw(SERVER_SETTINGS.adminApiKey.env);
  if (apiKey === undefined) return undefined;
  if (apiKey.length < MIN_ADMIN_KEY_LENGTH) {
    throw new ConfigError(SERVER_SETTINGS.adminApiKey.env, `at least ${MIN_ADMIN_KEY_LENGTH} characters`, `(${apiKey.length} characters)`);
  }
  // Port 0 asks for a free port: it cannot be the public one.
  if (port !== 0 && port === publicPort) {
    throw new ConfigError(SERVER_SETTINGS.adminPort.env, 'a port other than PORT (the admin API never shares the public port)', String(port));
  }
  return { apiKey, port, host: readHost(read, SERVER_SETTINGS.adminHost.env) ?? '127.0.0.1' };
}

function readBackendUrl(read: EnvReader, production: boolean): URL | 'bundled' {
  const name = SERVER_SETTINGS.backendUrl.env;
  const value = read.raw(name);
  if (value === 'bundled') return 'bundled';
  // In production the demo backend would quietly serve made-up data: it has to be asked for.
  if (value === undefined && production) throw new ConfigError(name, "your backend's http(s) URL in production (or bundled, for the demo backend)", '');
  return read.url(name) ?? 'bundled';
}

function readJwt(read: EnvReader, nodeEnv: string | undefined): ServerConfig['jwt'] {
  const secret = read.raw(SERVER_SETTINGS.jwtSecret.env);
  const publicKey = read.raw(SERVER_SETTINGS.jwtPublicKey.env)?.replace(/\\n/g, '\n');
  const issuer = read.raw(SERVER_SETTINGS.jwtIssuer.env);
  const audience = read.raw(SERVER_SETTINGS.jwtAudience.env);
  // A key variable that is there but blank is a deployment's template left unfilled, not a wish
  // for the development secret.
  for (const setting of [SERVER_SETTINGS.jwtSecret, SERVER_SETTINGS.jwtPublicKey]) {
    const blank = read.blank(setting.env);
    if (blank !== undefined) throw new ConfigError(setting.env, `a key, or no ${setting.env} at all for the development secret`, blank);
  }
  const topicsClaim = read.raw(SERVER_SETTINGS.jwtTopicsClaim.env);
  if (topicsClaim !== undefined && !CLAIM_NAME.test(topicsClaim)) {
    throw new ConfigError(SERVER_SETTINGS.jwtTopicsClaim.env, 'a claim name of 1-256 printable ASCII characters, without spaces', topicsClaim);
  }
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
  if (generated && nodeEnv === 'production') throw new ConfigError(SERVER_SETTINGS.jwtSecret.env, 'a secret (or JWT_PUBLIC_KEY) in production', '');
  // A misspelt production (`prod`, `Production`) must not run on a development secret whose token it prints.
  if (generated && nodeEnv !== undefined && !DEVELOPMENT_ENVS.includes(nodeEnv)) {
    throw new ConfigError(SERVER_SETTINGS.jwtSecret.env, `a secret (or JWT_PUBLIC_KEY) unless NODE_ENV is development or test (NODE_ENV=${nodeEnv})`, '');
  }
  const { jwtClockToleranceSec: clockToleranceSec } = resolveSettings({ jwtClockToleranceSec: SERVER_SETTINGS.jwtClockToleranceSec }, read);
  const cookieName = read.raw(SERVER_SETTINGS.jwtCookieName.env);
  // RFC 6265's cookie-name (an HTTP token): anything else could never arrive in a Cookie header.
  if (cookieName !== undefined && !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(cookieName)) {
    throw new ConfigError(SERVER_SETTINGS.jwtCookieName.env, 'a cookie name (letters, digits and !#$%&\'*+-.^_`|~)', cookieName);
  }
  return { secret, publicKey, issuer, audience, clockToleranceSec, cookieName, topicsClaim, generated };
}

function readOrigins(read: EnvReader, name: string): string[] {
  return read.list(name).map((origin) => {
    let url: URL | undefined;
    try {
      url = new URL(origin);
    } catch {
      url = undefined;
    }
    if (!url || url.origin !== origin) throw new ConfigError(name, 'comma-separated origins like https://app.example.com', origin);
    return origin;
  });
}

function readHealthPath(read: EnvReader): string | undefined {
  const value = read.raw(SERVER_SETTINGS.backendHealthPath.env);
  // `//host/x` is a URL of another host, not a path of the backend.
  if (value !== undefined && !/^\/(?!\/)\S*$/.test(value)) throw new ConfigError(SERVER_SETTINGS.backendHealthPath.env, 'a path of the backend, like /health', value);
  return value;
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

function readRedisSigningSecret(read: EnvReader): string | undefined {
  const secret = read.raw(SERVER_SETTINGS.redisSigningSecret.env);
  if (secret !== undefined && secret.trim().length < MIN_SECRET_LENGTH) {
    throw new ConfigError(SERVER_SETTINGS.redisSigningSecret.env, `at least ${MIN_SECRET_LENGTH} characters (not counting surrounding spaces)`, `(${secret.trim().length} characters)`);
  }
  return secret;
}
