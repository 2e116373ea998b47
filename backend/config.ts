import type { BackendOptions } from './options';
import { type Env, EnvReader } from '../config/env';

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

/**
 * Reads the backend's environment (every name starts with `BACKEND_`); throws
 * `ConfigError` naming the first bad variable and what it expects.
 */
export function loadBackendConfig(env: Env = process.env): BackendServerConfig {
  const read = new EnvReader(env);
  const optional = (name: string, min: number, max: number): number | undefined =>
    read.raw(name) === undefined ? undefined : read.int(name, min, min, max);
  return {
    port: read.int('BACKEND_PORT', 8081, 0, 65535),
    host: read.string('BACKEND_HOST', '127.0.0.1'),
    options: {
      tickMs: optional('BACKEND_TICK_MS', 0, HOUR),
      chunkMs: optional('BACKEND_CHUNK_MS', 0, HOUR),
      tokenMs: optional('BACKEND_TOKEN_MS', 0, HOUR),
      heartbeatMs: optional('BACKEND_HEARTBEAT_MS', 1, HOUR),
      retryMs: optional('BACKEND_RETRY_MS', 0, HOUR),
      reconnectGraceMs: optional('BACKEND_RECONNECT_GRACE_MS', 0, HOUR),
      uploadDir: read.raw('BACKEND_UPLOAD_DIR'),
      maxUploadBytes: optional('BACKEND_MAX_UPLOAD_BYTES', 1, Number.MAX_SAFE_INTEGER),
      maxChunks: optional('BACKEND_MAX_CHUNKS', 1, 10_000_000),
      downloadRows: optional('BACKEND_DOWNLOAD_ROWS', 0, 1_000_000),
      maxActivePerUser: optional('BACKEND_MAX_ACTIVE_PER_USER', 1, 100_000),
      retentionMs: optional('BACKEND_RETENTION_MS', 0, 24 * HOUR),
    },
  };
}
