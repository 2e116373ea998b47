import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import { parse as parseCookie } from 'cookie';
import jwt, { type Algorithm } from 'jsonwebtoken';
import { HttpError } from '../src/errors';
import { MIN_SECRET_LENGTH } from '../src/jwt';
import { TokenCache } from './token-cache';

/** How tokens are verified. Exactly one of `secret` and `publicKey`. */
export interface JwtOptions {
  /** HS256 shared secret, at least 32 characters. */
  secret?: string | undefined;
  /** PEM public key: RS256 for RSA keys, ES256 for P-256 EC keys. */
  publicKey?: string | undefined;
  /** Required `iss` when set. Defaults to unchecked. */
  issuer?: string | undefined;
  /** Required `aud` when set. Defaults to unchecked. */
  audience?: string | undefined;
  /** Clock skew allowed on `exp` and `nbf`, in seconds. Defaults to 5. */
  clockToleranceSec?: number | undefined;
  /** Cookie read when there is no Authorization header. Defaults to `access_token`. */
  cookieName?: string | undefined;
  /**
   * Verified tokens remembered (each until its `exp`), so a token seen again is not verified
   * again; 0 turns this off. Defaults to 10000.
   */
  cacheSize?: number | undefined;
}

const DEFAULT_TOKEN_CACHE_SIZE = 10_000;

// The user travels to the backend as X-User-Id, which must carry it unchanged: undici refuses control
// characters and anything past U+00FF, and HTTP drops a leading or trailing space (" alice" arrives as "alice").
export const USER = /^(?! )[\x20-\x7e\xa0-\xff]{1,256}(?<! )$/;

const CHALLENGE = { 'WWW-Authenticate': 'Bearer' };
const INVALID = { 'WWW-Authenticate': 'Bearer error="invalid_token"' };

/** The authenticated user of a request that passed `authenticate`. */
export function userOf(res: Response): string {
  const user: unknown = res.locals.user;
  if (typeof user !== 'string') throw new HttpError('unauthorized', undefined, 401, CHALLENGE);
  return user;
}

/** When the credential of a request that passed `identify` stops being valid: its `exp` plus the clock tolerance, in epoch ms. */
export function tokenExpiryOf(res: Response): number | undefined {
  const expiresAt: unknown = res.locals.tokenExpiresAt;
  return typeof expiresAt === 'number' ? expiresAt : undefined;
}

/**
 * Verifies the JWT of every request: its `sub` goes to `res.locals.user` (and its expiry, with
 * the clock tolerance, to `res.locals.tokenExpiresAt`), or the reason
 * it was refused to `res.locals.authError`. Never answers; `requireUser` does, so a rate
 * limit can sit in between and count refused requests by IP.
 */
export function identify(options: JwtOptions): RequestHandler {
  const { key, algorithms } = verificationKey(options);
  const cookieName = options.cookieName ?? 'access_token';
  const cacheSize = options.cacheSize ?? DEFAULT_TOKEN_CACHE_SIZE;
  if (!Number.isSafeInteger(cacheSize) || cacheSize < 0) throw new TypeError(`jwt.cacheSize must be an integer of 0 or more, got ${String(cacheSize)}`);
  const cache = new TokenCache(cacheSize);
  const verifyOptions: jwt.VerifyOptions = {
    algorithms,
    clockTolerance: options.clockToleranceSec ?? 5,
    ...(options.issuer !== undefined && { issuer: options.issuer }),
    ...(options.audience !== undefined && { audience: options.audience }),
  };

  const toleranceMs = (options.clockToleranceSec ?? 5) * 1000;
  const verify = (token: string | undefined): { user: string; expiresAt: number } | HttpError => {
    if (token === undefined) return new HttpError('unauthorized', undefined, 401, CHALLENGE);
    const known = cache.get(token);
    if (known !== undefined) return { user: known.user, expiresAt: known.expiresAtMs + toleranceMs };
    let verified: jwt.Jwt;
    try {
      verified = jwt.verify(token, key, { ...verifyOptions, complete: true });
    } catch (err) {
      return rejection(err);
    }
    // RFC 7515 §4.1.11: a `crit` extension the recipient does not understand must be refused,
    // and the relay understands none (jsonwebtoken ignores the parameter).
    if ((verified.header as { crit?: unknown }).crit !== undefined) {
      return new HttpError('invalid_token', 'The token has a crit header parameter, and the relay understands no extension.', 401, INVALID);
    }
    const payload = verified.payload;
    if (typeof payload === 'string' || typeof payload.exp !== 'number') {
      return new HttpError('invalid_token', 'The token must carry an exp claim.', 401, INVALID);
    }
    if (typeof payload.sub !== 'string' || !USER.test(payload.sub)) {
      const rule = '1-256 characters, no control characters, none past U+00FF, no leading or trailing space';
      return new HttpError('invalid_token', `The token must carry a sub claim naming the user (${rule}).`, 401, INVALID);
    }
    // Kept until `exp` itself, not `exp` plus the clock tolerance: past it, the token is verified again.
    cache.set(token, { user: payload.sub, expiresAtMs: payload.exp * 1000 });
    return { user: payload.sub, expiresAt: payload.exp * 1000 + toleranceMs };
  };

  return (req, res, next) => {
    const outcome = verify(tokenOf(req, cookieName));
    if (outcome instanceof HttpError) res.locals.authError = outcome;
    else {
      res.locals.user = outcome.user;
      res.locals.tokenExpiresAt = outcome.expiresAt;
    }
    next();
  };
}

/** Answers 401 (with the reason `identify` found) unless the request carries a valid token. */
export const requireUser: RequestHandler = (_req, res, next) => {
  if (typeof res.locals.user === 'string') return next();
  const error: unknown = res.locals.authError;
  next(error instanceof HttpError ? error : new HttpError('unauthorized', undefined, 401, CHALLENGE));
};

function tokenOf(req: Request, cookieName: string): string | undefined {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer +([^ ]+) *$/i.exec(header);
    return match?.[1];
  }
  const cookies = req.headers.cookie;
  return cookies === undefined ? undefined : parseCookie(cookies)[cookieName];
}

function rejection(err: unknown): HttpError {
  if (err instanceof jwt.TokenExpiredError) return new HttpError('token_expired', undefined, 401, INVALID);
  if (err instanceof jwt.NotBeforeError) {
    return new HttpError('invalid_token', 'The token is not valid yet (nbf).', 401, INVALID);
  }
  // jsonwebtoken's messages name the failed check (signature, algorithm, issuer, audience), never the token.
  const reason = err instanceof jwt.JsonWebTokenError ? err.message : 'unreadable token';
  return new HttpError('invalid_token', `The token is not valid: ${reason}.`, 401, INVALID);
}

/** The key tokens are checked with; a missing or unusable one is a `TypeError` naming the option to set, as the server names its variable. */
function verificationKey(options: JwtOptions | undefined): { key: KeyObject; algorithms: Algorithm[] } {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`jwt must be set: { secret } (HS256) or { publicKey } (RS256, ES256), got ${String(options)}`);
  }
  if ((options.secret === undefined) === (options.publicKey === undefined)) {
    const got = options.secret === undefined ? 'neither' : 'both';
    throw new TypeError(`jwt.secret (HS256, at least ${MIN_SECRET_LENGTH} characters) or jwt.publicKey (PEM, RS256 or ES256) must be set, exactly one of them; got ${got}`);
  }
  if (options.secret !== undefined) {
    if (options.secret.length < MIN_SECRET_LENGTH) {
      throw new TypeError(`jwt.secret must be at least ${MIN_SECRET_LENGTH} characters, got ${options.secret.length}`);
    }
    // A KeyObject made once: given a string, jsonwebtoken tries createPublicKey on every
    // verify (and fails), which cost ~0.6 ms per request in the bench.
    return { key: createSecretKey(Buffer.from(options.secret, 'utf8')), algorithms: ['HS256'] };
  }
  let key: KeyObject;
  try {
    key = createPublicKey(options.publicKey as string);
  } catch (err) {
    throw new TypeError(`jwt.publicKey must be a PEM public key (-----BEGIN PUBLIC KEY-----), got one Node cannot read: ${(err as Error).message}`);
  }
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return { key, algorithms: ['RS256'] };
    case 'ec':
      return { key, algorithms: ['ES256'] };
    default:
      throw new TypeError(`jwt.publicKey must be an RSA or EC P-256 key, got ${String(key.asymmetricKeyType)}`);
  }
}
