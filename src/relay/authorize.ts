import type { Dispatcher } from 'undici';
import { HttpError } from '../errors';

/** Decides whether a user may see a topic: resolves with an HTTP status (2xx admits). */
export type AuthorizeTopic = (user: string, statusUrl: URL) => Promise<number>;

/**
 * What a client is told when the policy did not admit it: `not_found` for a no (401, 403 or
 * 404: another user's topic looks exactly like one that does not exist), `bad_gateway` for any
 * other answer that is not a 2xx (its cause for the log line); undefined for a yes.
 */
export function refusalOf(status: number, cause?: unknown): HttpError | undefined {
  if (status === 401 || status === 403 || status === 404) return new HttpError('not_found');
  if (status >= 200 && status < 300) return undefined;
  // The client gets the registry's message; the log line gets the cause.
  return Object.assign(new HttpError('bad_gateway'), { cause: cause ?? new Error(`status route answered ${status}`) });
}

/** Most (user, topic) answers kept by default; past it the oldest are dropped. */
const MAX_CACHED = 50_000;

/** The default policy, with a way to drop the yeses it keeps for a user (their access was revoked). */
export type CachingAuthorizer = AuthorizeTopic & {
  forget(user: string): void;
  /** Yeses held now (expired ones are dropped as new ones come in). */
  cached(): number;
};

/**
 * Asks the backend's status route with the user's identity, and trusts a yes
 * for `cacheMs`, at most `maxCached` of them. A no, or any answer but a 2xx, is never
 * cached: a code made a moment ago must work.
 */
export function backendAuthorizer(dispatcher: Dispatcher, cacheMs: number, timeoutMs: number, maxCached = MAX_CACHED): CachingAuthorizer {
  // Every yes is trusted for the same `cacheMs` and a refreshed one is moved to the end, so
  // insertion order is expiry order: the expired are always at the front.
  const admitted = new Map<string, number>();
  const prune = (now: number): void => {
    for (const [key, until] of admitted) {
      if (until > now && admitted.size <= maxCached) break;
      admitted.delete(key);
    }
  };
  const authorize: AuthorizeTopic = async (user, statusUrl) => {
    const key = `${user}\0${statusUrl.href}`;
    const until = admitted.get(key);
    if (until !== undefined) {
      if (until > Date.now()) return 200;
      admitted.delete(key);
    }
    const statusCode = await statusOf(dispatcher, statusUrl, user, timeoutMs);
    if (statusCode >= 200 && statusCode < 300 && cacheMs > 0 && maxCached > 0) {
      const now = Date.now();
      admitted.delete(key);
      admitted.set(key, now + cacheMs);
      // Dropped as they expire, not only past `maxCached`: a relay opening streams for many
      // users would otherwise hold every yes until `maxCached` piled up, long-lived heap for the GC.
      prune(now);
    }
    return statusCode;
  };
  return Object.assign(authorize, {
    forget(user: string): void {
      const prefix = `${user}\0`;
      for (const key of admitted.keys()) if (key.startsWith(prefix)) admitted.delete(key);
    },
    cached: () => admitted.size,
  });
}

/**
 * The status of a GET, its body read and dropped. A bare `dispatch` rather than `request()`:
 * this runs once per new stream, and `request()` builds a body stream, a signal listener and
 * a promise chain that nobody here reads.
 */
function statusOf(dispatcher: Dispatcher, url: URL, user: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let status = 0;
    dispatcher.dispatch(
      {
        origin: url.origin,
        path: url.pathname + url.search,
        method: 'GET',
        headers: { 'x-user-id': user, accept: 'application/json' },
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      },
      {
        // undici tells this handler API from its older one by `onRequestStart`.
        onRequestStart: () => undefined,
        onResponseStart: (_controller, statusCode) => {
          status = statusCode;
        },
        onResponseEnd: () => resolve(status),
        onResponseError: (_controller, error) => reject(error),
      },
    );
  });
}
