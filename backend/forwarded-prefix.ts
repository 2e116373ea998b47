import type { Request } from 'express';

// Plain path segments only: the prefix goes into URLs this backend hands out.
const PREFIX = /^(?:\/[A-Za-z0-9._~-]+)+$/;

/**
 * The path under which the client reaches this backend, from `X-Forwarded-Prefix` (the relay
 * sends `/api`, or `/mount/api` when mounted under `/mount`), so that the URLs the backend
 * hands out work where the client is. Trusted like `X-User-Id`: only the relay reaches this
 * backend. Absent or not plain path segments: no prefix.
 */
export function forwardedPrefix(req: Request): string {
  const value = req.headers['x-forwarded-prefix'];
  return typeof value === 'string' && PREFIX.test(value) ? value : '';
}
