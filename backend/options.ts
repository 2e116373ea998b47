import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** Options of the reference backend. Every field is optional (see `createBackend`). */
export interface BackendOptions {
  /** Time between two steps of a download (progress 0, 10, … 100, then the result). Defaults to 500 ms. */
  tickMs: number;
  /** Time to process one chunk in each upload stage (ocr, llm_metadata, embedding). Defaults to 40 ms. */
  chunkMs: number;
  /** Time between two tokens of a chat answer. Defaults to 40 ms. */
  tokenMs: number;
  /** Interval of `: hb` comments on every open stream. Defaults to 15000 ms. */
  heartbeatMs: number;
  /** The `retry:` hint sent first on the resumable GET streams, telling `EventSource` how soon to reconnect. Defaults to 2000 ms. */
  retryMs: number;
  /** How long a processing upload session with no stream attached waits for a reconnect before it is cancelled. Defaults to 10000 ms. */
  reconnectGraceMs: number;
  /** Where uploaded files are stored while their session exists. Defaults to a fresh directory under the OS temp dir, removed by `close()`. */
  uploadDir: string | undefined;
  /** Largest uploaded file, in bytes; a bigger one ends its stream with an `error` event. Defaults to 2147483648 (2 GiB). */
  maxUploadBytes: number;
  /** Most chunks one upload may have; more (too small a `chunk_size` for the file) ends its stream with an `error` event. Defaults to 20000. */
  maxChunks: number;
  /** While a file arrives, another `file_saving` event is sent each time this many more bytes were stored. Defaults to 4194304 (4 MiB). */
  savingEventBytes: number;
  /** Rows of a download's generated CSV file, when the request does not say. Defaults to 10000. */
  downloadRows: number;
  /** Running downloads, and running upload sessions, one user may have at once; more get 429. Defaults to 10. */
  maxActivePerUser: number;
  /** How long a finished download or upload session (its history, state and file) is kept. Defaults to 3600000 ms (1 hour). */
  retentionMs: number;
  /** Messages kept per (user, chatbot) conversation; older ones are dropped. Defaults to 1000. */
  maxChatMessages: number;
  /** Longest chat message accepted, in characters. Defaults to 8000. */
  maxMessageChars: number;
  /** Called with unexpected errors (a 500, or a stream cut after its headers). Defaults to printing them to stderr. */
  onError: (err: unknown) => void;
}

/** The resolved, validated options. `uploadDirIsOwn` is true when the backend made the directory and removes it on close. */
export type BackendConfig = Readonly<Omit<BackendOptions, 'uploadDir'> & { uploadDir: string; uploadDirIsOwn: boolean }>;

type NumericOption = Exclude<keyof BackendOptions, 'uploadDir' | 'onError'>;

const DEFAULTS: Readonly<Record<NumericOption, number>> = {
  tickMs: 500,
  chunkMs: 40,
  tokenMs: 40,
  heartbeatMs: 15_000,
  retryMs: 2000,
  reconnectGraceMs: 10_000,
  maxUploadBytes: 2 * 1024 ** 3,
  maxChunks: 20_000,
  savingEventBytes: 4 * 1024 ** 2,
  downloadRows: 10_000,
  maxActivePerUser: 10,
  retentionMs: 3_600_000,
  maxChatMessages: 1000,
  maxMessageChars: 8000,
};

/** Lowest accepted value per field. */
const MINIMUM: Readonly<Record<NumericOption, number>> = {
  tickMs: 0,
  chunkMs: 0,
  tokenMs: 0,
  heartbeatMs: 1,
  retryMs: 0,
  reconnectGraceMs: 0,
  maxUploadBytes: 1,
  maxChunks: 1,
  savingEventBytes: 1,
  downloadRows: 0,
  maxActivePerUser: 1,
  retentionMs: 0,
  maxChatMessages: 2,
  maxMessageChars: 1,
};

// Node timers overflow to 1 ms past 2^31-1 ms; a longer setting would silently fire at once.
const MAX_TIMER_MS = 2 ** 31 - 1;
const TIMERS: ReadonlySet<NumericOption> = new Set(['tickMs', 'chunkMs', 'tokenMs', 'heartbeatMs', 'retryMs', 'reconnectGraceMs', 'retentionMs']);

/** Drops `undefined`, applies defaults, validates and freezes. Throws `TypeError` naming the bad field. */
export function resolveBackendOptions(options: Partial<BackendOptions> = {}): BackendConfig {
  const numbers: Record<string, number> = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS) as NumericOption[]) {
    const value = options[key];
    if (value === undefined) continue;
    const max = TIMERS.has(key) ? MAX_TIMER_MS : Number.MAX_SAFE_INTEGER;
    if (!Number.isSafeInteger(value) || value < MINIMUM[key] || value > max) {
      throw new TypeError(`${key} must be an integer from ${MINIMUM[key]} to ${max}, got ${String(value)}`);
    }
    numbers[key] = value;
  }
  if (options.onError !== undefined && typeof options.onError !== 'function') {
    throw new TypeError(`onError must be a function, got ${typeof options.onError}`);
  }
  if (options.uploadDir !== undefined && (typeof options.uploadDir !== 'string' || options.uploadDir.trim() === '')) {
    throw new TypeError(`uploadDir must be a non-empty path, got ${JSON.stringify(options.uploadDir)}`);
  }
  const uploadDirIsOwn = options.uploadDir === undefined;
  const uploadDir = uploadDirIsOwn ? join(tmpdir(), `sse-backend-${process.pid}-${randomBytes(4).toString('hex')}`) : resolve(options.uploadDir as string);
  return Object.freeze({
    ...(numbers as Record<NumericOption, number>),
    uploadDir,
    uploadDirIsOwn,
    onError: options.onError ?? printError,
  });
}

function printError(err: unknown): void {
  console.error('reference backend:', err);
}
