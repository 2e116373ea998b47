import { randomBytes } from 'node:crypto';
import { ConfigError, type Env, EnvReader } from './env';
import { MIN_SECRET_LENGTH } from '../middleware/authenticate';

/** Everything the standalone relay reads from its environment, validated. */
export interface ServerConfig {
  readonly port: number;
  readonly production: boolean;
  /** Unset: the bundled reference backend is started in-process. */
  readonly backendUrl: URL | undefined;
  readonly jwt: {
    readonly secret: string | undefined;
    readonly publicKey: string | undefined;
    readonly issuer: string | undefined;
    readonly audience: string | undefined;
    /** True when no key was configured and a development secret was made. */
    readonly generated: boolean;
  };
  readonly corsOrigins: readonly string[];
  readonly maxConnections: number;
  readonly maxConnectionsPerUser: number;
  readonly maxConnectionsPerIp: number;
  readonly heartbeatMs: number;
  readonly idleTimeoutMs: number;
  readonly maxStreamLifetimeMs: number;
  readonly replayBufferSize: number;
  readonly topicLingerMs: number;
  readonly clientMaxBufferedBytes: number;
  readonly rateLimitPerMinute: number;
  readonly maxTopicsPerStream: number;
  readonly maxUploadBytes: number;
  readonly trustProxy: number | string | false;
  readonly shutdownTimeoutMs: number;
  readonly logLevel: string;
  readonly redisUrl: URL | undefined;
}

const HOUR = 3_600_000;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Reads and validates the environment; throws `ConfigError` naming the first bad variable. */
export function loadConfig(env: Env = process.env): ServerConfig {
  const read = new EnvReader(env);
  const production = read.raw('NODE_ENV') === 'production';
  return {
    port: read.int('PORT', 8080, 0, 65535),
    production,
    backendUrl: read.url('BACKEND_URL'),
    jwt: readJwt(read, production),
    corsOrigins: readOrigins(read),
    maxConnections: read.int('MAX_CONNECTIONS', 20_000, 1),
    maxConnectionsPerUser: read.int('MAX_CONNECTIONS_PER_USER', 20, 1),
    maxConnectionsPerIp: read.int('MAX_CONNECTIONS_PER_IP', 200, 1),
    heartbeatMs: read.int('HEARTBEAT_MS', 15_000, 1, HOUR),
    idleTimeoutMs: read.int('IDLE_TIMEOUT_MS', 300_000, 0, 24 * HOUR),
    maxStreamLifetimeMs: read.int('MAX_STREAM_LIFETIME_MS', HOUR, 0, 7 * 24 * HOUR),
    replayBufferSize: read.int('REPLAY_BUFFER_SIZE', 1000, 1, 1_000_000),
    topicLingerMs: read.int('TOPIC_LINGER_MS', 30_000, 0, HOUR),
    clientMaxBufferedBytes: read.int('CLIENT_MAX_BUFFERED_BYTES', 1024 * 1024, 1024),
    rateLimitPerMinute: read.int('RATE_LIMIT_PER_MINUTE', 120, 0),
    maxTopicsPerStream: read.int('MAX_TOPICS_PER_STREAM', 32, 1, 256),
    maxUploadBytes: read.int('MAX_UPLOAD_BYTES', 2 * 1024 ** 3, 1),
    trustProxy: readTrustProxy(read),
    shutdownTimeoutMs: read.int('SHUTDOWN_TIMEOUT_MS', 30_000, 0, HOUR),
    logLevel: read.oneOf('LOG_LEVEL', LOG_LEVELS, 'info'),
    redisUrl: readRedisUrl(read),
  };
}

function readJwt(read: EnvReader, production: boolean): ServerConfig['jwt'] {
  const secret = read.raw('JWT_SECRET');
  const publicKey = read.raw('JWT_PUBLIC_KEY')?.replace(/\\n/g, '\n');
  const issuer = read.raw('JWT_ISSUER');
  const audience = read.raw('JWT_AUDIENCE');
  if (secret !== undefined && publicKey !== undefined) {
    throw new ConfigError('JWT_SECRET', 'to be unset when JWT_PUBLIC_KEY is set (choose one)', '(set)');
  }
  if (secret !== undefined && secret.length < MIN_SECRET_LENGTH) {
    throw new ConfigError('JWT_SECRET', `at least ${MIN_SECRET_LENGTH} characters`, `(${secret.length} characters)`);
  }
  if (publicKey !== undefined && !publicKey.includes('-----BEGIN PUBLIC KEY-----')) {
    throw new ConfigError('JWT_PUBLIC_KEY', 'a PEM public key (-----BEGIN PUBLIC KEY-----)', '(not PEM)');
  }
  if (secret === undefined && publicKey === undefined) {
    if (production) throw new ConfigError('JWT_SECRET', 'a secret (or JWT_PUBLIC_KEY) in production', '');
    return { secret: randomBytes(32).toString('base64url'), publicKey, issuer, audience, generated: true };
  }
  return { secret, publicKey, issuer, audience, generated: false };
}

function readOrigins(read: EnvReader): string[] {
  return read.list('CORS_ORIGINS').map((origin) => {
    let url: URL | undefined;
    try {
      url = new URL(origin);
    } catch {
      url = undefined;
    }
    if (!url || url.origin !== origin) throw new ConfigError('CORS_ORIGINS', 'comma-separated origins like https://app.example.com', origin);
    return origin;
  });
}

/** A hop count, or a comma-separated list of addresses/subnets/names Express understands; never `true`. */
function readTrustProxy(read: EnvReader): number | string | false {
  const value = read.raw('TRUST_PROXY');
  if (value === undefined || value === 'false') return false;
  if (/^\d+$/.test(value)) return read.int('TRUST_PROXY', 0, 0, 32);
  if (value === 'true') throw new ConfigError('TRUST_PROXY', 'a hop count or subnets (true would let any client forge its IP)', value);
  if (!/^[0-9A-Za-z.:/,\s_-]+$/.test(value)) throw new ConfigError('TRUST_PROXY', 'a hop count or comma-separated subnets', value);
  return value;
}

function readRedisUrl(read: EnvReader): URL | undefined {
  const value = read.raw('REDIS_URL');
  if (value === undefined) return undefined;
  try {
    const url = new URL(value);
    if (url.protocol === 'redis:' || url.protocol === 'rediss:') return url;
  } catch {
    // reported below
  }
  throw new ConfigError('REDIS_URL', 'a redis:// or rediss:// URL', value);
}
