import { browser } from './browser';

/** How the client waits between stream attempts. */
export interface ReconnectOptions {
  /** Wait before the first retry. Defaults to 3000 ms. */
  initialDelayMs: number;
  /** Each further wait is the previous one times this. Defaults to 1.5. */
  factor: number;
  /** Longest wait. Defaults to 60000 ms. */
  maxDelayMs: number;
  /** Each wait is moved at random by up to this fraction either way, so tabs do not reconnect in lock-step. Defaults to 0.25. */
  jitter: number;
  /** Failed attempts in a row before the client falls back to polling. Defaults to 5. */
  attempts: number;
}

const RECONNECT_DEFAULTS: Readonly<ReconnectOptions> = Object.freeze({
  initialDelayMs: 3000,
  factor: 1.5,
  maxDelayMs: 60_000,
  jitter: 0.25,
  attempts: 5,
});

/** Drops `undefined`, applies the defaults and checks the bounds; throws `TypeError` naming the bad field. */
export function resolveReconnect(options: Partial<ReconnectOptions> = {}): Readonly<ReconnectOptions> {
  const resolved = { ...RECONNECT_DEFAULTS };
  for (const key of Object.keys(RECONNECT_DEFAULTS) as (keyof ReconnectOptions)[]) {
    const value = options[key];
    if (value !== undefined) resolved[key] = value;
  }
  const check = (key: keyof ReconnectOptions, ok: boolean, expected: string): void => {
    if (!ok) throw new TypeError(`reconnect.${key} must be ${expected}, got ${String(resolved[key])}`);
  };
  check('initialDelayMs', Number.isFinite(resolved.initialDelayMs) && resolved.initialDelayMs >= 0, 'a number of ms >= 0');
  check('factor', Number.isFinite(resolved.factor) && resolved.factor >= 1, 'a number >= 1');
  check('maxDelayMs', Number.isFinite(resolved.maxDelayMs) && resolved.maxDelayMs >= resolved.initialDelayMs, 'a number of ms >= initialDelayMs');
  check('jitter', resolved.jitter >= 0 && resolved.jitter < 1, 'a fraction from 0 to below 1');
  check('attempts', Number.isInteger(resolved.attempts) && resolved.attempts >= 0, 'an integer >= 0');
  return Object.freeze(resolved);
}

/** The wait before retry number `attempt` (1-based): initial × factor^(attempt-1), capped, then jittered. */
export function backoffDelay(attempt: number, options: Readonly<ReconnectOptions>, random: () => number = Math.random): number {
  const base = Math.min(options.maxDelayMs, options.initialDelayMs * options.factor ** Math.max(0, attempt - 1));
  return Math.round(base * (1 + options.jitter * (2 * random() - 1)));
}

/** A `Retry-After` header (seconds, or an HTTP date) in milliseconds from `now`; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now: number = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Waits `ms`, or less: the browser coming back online ends the wait at once. Rejects when `signal` aborts. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanUp = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', aborted);
      browser.removeEventListener?.('online', done);
    };
    const done = (): void => {
      cleanUp();
      resolve();
    };
    const aborted = (): void => {
      cleanUp();
      reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    const timer = setTimeout(done, ms);
    if (signal.aborted) return aborted();
    signal.addEventListener('abort', aborted, { once: true });
    browser.addEventListener?.('online', done);
  });
}
