import type { BackendOptions } from './options';

/** Everything the standalone reference backend reads from its environment, validated. */
export interface BackendServerConfig {
  /** `BACKEND_PORT`: where it listens. */
  readonly port: number;
  /** `BACKEND_HOST`: the interface it binds; loopback by default because it trusts `X-User-Id`. */
  readonly host: string;
  /** Options for `createBackend`; unset variables stay `undefined` and get the backend's defaults. */
  readonly options: Partial<BackendOptions>;
}

const HOUR = 3_600_000;

type Env = Readonly<Record<string, string | undefined>>;

/** A variable that cannot be used; the message names it and what it expects. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly expected: string,
    readonly got: string,
  ) {
    super(`${variable}: expected ${expected}, got ${JSON.stringify(got)}`);
    this.name = 'ConfigError';
  }
}

/**
 * Reads the backend's environment (every name starts with `BACKEND_`); throws
 * `ConfigError` naming the first bad variable and what it expects.
 */
export function loadBackendConfig(env: Env = process.env): BackendServerConfig {
  // An empty or blank variable counts as unset.
  const raw = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === '' ? undefined : value;
  };
  const integer = (name: string, min: number, max: number): number | undefined => {
    const value = raw(name);
    if (value === undefined) return undefined;
    const number = /^-?\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(number) || number < min || number > max) throw new ConfigError(name, `an integer from ${min} to ${max}`, value);
    return number;
  };
  return {
    port: integer('BACKEND_PORT', 0, 65535) ?? 8081,
    host: raw('BACKEND_HOST') ?? '127.0.0.1',
    options: {
      tickMs: integer('BACKEND_TICK_MS', 0, HOUR),
      chunkMs: integer('BACKEND_CHUNK_MS', 0, HOUR),
      tokenMs: integer('BACKEND_TOKEN_MS', 0, HOUR),
      heartbeatMs: integer('BACKEND_HEARTBEAT_MS', 1, HOUR),
      retryMs: integer('BACKEND_RETRY_MS', 0, HOUR),
      reconnectGraceMs: integer('BACKEND_RECONNECT_GRACE_MS', 0, HOUR),
      uploadDir: raw('BACKEND_UPLOAD_DIR'),
      maxUploadBytes: integer('BACKEND_MAX_UPLOAD_BYTES', 1, Number.MAX_SAFE_INTEGER),
      maxChunks: integer('BACKEND_MAX_CHUNKS', 1, 10_000_000),
      downloadRows: integer('BACKEND_DOWNLOAD_ROWS', 0, 1_000_000),
      maxActivePerUser: integer('BACKEND_MAX_ACTIVE_PER_USER', 1, 100_000),
      retentionMs: integer('BACKEND_RETENTION_MS', 0, 24 * HOUR),
    },
  };
}
