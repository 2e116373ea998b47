import type { Dispatcher } from 'undici';

/** Decides whether a user may see a topic: resolves with an HTTP status (2xx admits). */
export type AuthorizeTopic = (user: string, statusUrl: URL) => Promise<number>;

/** Most (user, topic) answers kept; past it the oldest are dropped. */
const MAX_CACHED = 50_000;

/** The default policy, with a way to drop the yeses it keeps for a user (their access was revoked). */
export type CachingAuthorizer = AuthorizeTopic & { forget(user: string): void };

/**
 * Asks the backend's status route with the user's identity, and trusts a yes
 * for `cacheMs`. A no is never cached: a code made a moment ago must work.
 */
export function backendAuthorizer(dispatcher: Dispatcher, cacheMs: number, timeoutMs: number): CachingAuthorizer {
  const admitted = new Map<string, number>();
  const authorize: AuthorizeTopic = async (user, statusUrl) => {
    const key = `${user}\0${statusUrl.href}`;
    const until = admitted.get(key);
    if (until !== undefined && until > Date.now()) return 200;
    const statusCode = await statusOf(dispatcher, statusUrl, user, timeoutMs);
    if (statusCode >= 200 && statusCode < 300 && cacheMs > 0) {
      admitted.delete(key);
      admitted.set(key, Date.now() + cacheMs);
      // Map iteration order is insertion order: the first keys are the oldest.
      for (const old of admitted.keys()) {
        if (admitted.size <= MAX_CACHED) break;
        admitted.delete(old);
      }
    }
    return statusCode;
  };
  return Object.assign(authorize, {
    forget(user: string): void {
      const prefix = `${user}\0`;
      for (const key of admitted.keys()) if (key.startsWith(prefix)) admitted.delete(key);
    },
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
