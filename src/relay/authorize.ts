import { type Dispatcher, request } from 'undici';

/** Decides whether a user may see a topic: resolves with an HTTP status (2xx admits). */
export type AuthorizeTopic = (user: string, statusUrl: URL) => Promise<number>;

/** Most (user, topic) answers kept; past it the oldest are dropped. */
const MAX_CACHED = 50_000;

/**
 * Asks the backend's status route with the user's identity, and trusts a yes
 * for `cacheMs`. A no is never cached: a code made a moment ago must work.
 */
export function backendAuthorizer(dispatcher: Dispatcher, cacheMs: number, timeoutMs: number): AuthorizeTopic {
  const admitted = new Map<string, number>();
  return async (user, statusUrl) => {
    const key = `${user}\0${statusUrl.href}`;
    const until = admitted.get(key);
    if (until !== undefined && until > Date.now()) return 200;
    const { statusCode, body } = await request(statusUrl, {
      method: 'GET',
      headers: { 'x-user-id': user, accept: 'application/json' },
      dispatcher,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    await body.dump();
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
}
