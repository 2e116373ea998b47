import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { RequestHandler } from 'express';
import { HttpError } from '../src/errors';

/** The shortest admin key accepted: as long as the JWT secret must be. */
export const MIN_ADMIN_KEY_LENGTH = 32;

/** Asked of a browser, which then shows its login box and sends the key as the Basic password. */
const CHALLENGE = { 'WWW-Authenticate': 'Basic realm="sse-relay admin", charset="UTF-8"' };

/**
 * Admits a request that carries `key` as `Authorization: Bearer <key>` or as the password of
 * HTTP Basic auth (any user name), else answers 401 `admin_unauthorized` with a Basic challenge:
 * the same answer for a missing key, a wrong one and any user name. The key is compared as
 * SHA-256 digests with `timingSafeEqual`, so the time taken says nothing of how much of it
 * matched, nor of its length. A key in the URL is never looked at.
 */
export function requireAdminKey(key: string): RequestHandler {
  if (key.length < MIN_ADMIN_KEY_LENGTH) throw new TypeError(`the admin key must be at least ${MIN_ADMIN_KEY_LENGTH} characters, got ${key.length}`);
  const expected = digest(key);
  return (req, _res, next) => {
    const given = presentedKey(req.headers);
    next(given !== undefined && timingSafeEqual(digest(given), expected) ? undefined : new HttpError('admin_unauthorized', undefined, undefined, CHALLENGE));
  };
}

/** The key a request presents: the Bearer token, or the Basic password; undefined when there is none. */
export function presentedKey(headers: IncomingHttpHeaders): string | undefined {
  const authorization = headers.authorization;
  if (authorization === undefined) return undefined;
  const space = authorization.indexOf(' ');
  if (space === -1) return undefined;
  const scheme = authorization.slice(0, space).toLowerCase();
  const credentials = authorization.slice(space + 1).trim();
  if (scheme === 'bearer') return credentials;
  if (scheme !== 'basic') return undefined;
  // RFC 7617: user-id ":" password; the user id holds no colon, the password may.
  const decoded = Buffer.from(credentials, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? undefined : decoded.slice(colon + 1);
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
