import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import { parse as parseCookie } from 'cookie';
import jwt, { type Algorithm } from 'jsonwebtoken';
import { type Logger, pino } from 'pino';
import { HttpError } from '../src/errors';
import { CLAIM_NAME, MIN_SECRET_LENGTH } from '../src/jwt';
import { TopicGrants } from '../src/relay/grants';
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
  /**
   * A claim listing topics (`download:abc`) and prefixes (`download:*`) the token admits its user
   * to without asking the backend (see docs/security.md, "Topics granted in the token"). A claim
   * that is not an array of at most 100 valid patterns grants nothing and is logged. Defaults to
   * none: every topic is checked with the backend.
   */
  topicsClaim?: string | undefined;
}

const DEFAULT_TOKEN_CACHE_SIZE = 10_000;

// The user travels to the backend as X-User-Id, which must carry it unchanged: undici refuses control
// characters and anything past U+00FF, and HTTP drops a leading or trailing space (" alice" arrives as "alice").
export const USER = /^(?! )[\x20-\x7e\xa0-\xff]{1,256}(?<! )$/;
/** The shortest gap between two log lines about malformed grants: with a bug in the issuer, every token has one. */
const GRANT_WARNING_EVERY_MS = 10_000;

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

/** The topics the request's token grants (`JwtOptions.topicsClaim`), if it grants any. */
export function grantsOf(res: Response): TopicGrants | undefined {
  const grants: unknown = res.locals.grants;
  return grants instanceof TopicGrants ? grants : undefined;
}

/**
 * Verifies the JWT of every request: its `sub` goes to `res.locals.user` (and its expiry, with
 * the clock tolerance, to `res.locals.tokenExpiresAt`, its topic grants to `res.locals.grants`),
 * or the reason it was refused to `res.locals.authError`. Never answers; `requireUser` does, so a
 * rate limit can sit in between and count refused requests by IP. `logger` hears of malformed grants.
 */
export function identify(options: JwtOptions, logger: Logger = pino({ level: 'silent' })): RequestHandler {
  const { key, algorithms } = verificationKey(options);
  const cookieName = options.cookieName ?? 'access_token';
  const cacheSize = options.cacheSize ?? DEFAULT_TOKEN_CACHE_SIZE;
  if (!Number.isSafeInteger(cacheSize) || cacheSize < 0) throw new TypeError(`jwt.cacheSize must be an integer of 0 or more, got ${String(cacheSize)}`);
  const { topicsClaim } = options;
  if (topicsClaim !== undefined && !CLAIM_NAME.test(topicsClaim)) {
    throw new TypeError(`jwt.topicsClaim: expected a claim name of 1-256 printable ASCII characters, got ${JSON.stringify(topicsClaim)}`);
  }
  const grantsIn = topicsClaim === undefined ? () => undefined : grantReader(topicsClaim, logger);
  const cache = new TokenCache(cacheSize);
  const verifyOptions: jwt.VerifyOptions = {
    algorithms,
    clockTolerance: options.clockToleranceSec ?? 5,
    ...(options.issuer !== undefined && { issuer: options.issuer }),
    ...(options.audience !== undefined && { audience: options.audience }),
  };

  const toleranceMs = (options.clockToleranceSec ?? 5) * 1000;
  const verify = (token: string | undefined): { user: string; expiresAt: number; grants: TopicGrants | undefined } | HttpError => {
    if (token === undefined) return new HttpError('unauthorized', undefined, 401, CHALLENGE);
    const known = cache.get(token);
    if (known !== undefined) return { user: known.user, expiresAt: known.expiresAtMs + toleranceMs, grants: known.grants };
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
    const grants = grantsIn(payload as Record<string, unknown>, payload.sub);
    // Kept until `exp` itself, not `exp` plus the clock tolerance: past it, the token is verified again.
    cache.set(token, { user: payload.sub, expiresAtMs: payload.exp * 1000, grants });
    return { user: payload.sub, expiresAt: payload.exp * 1000 + toleranceMs, grants };
  };

  return (req, res, next) => {
    const outcome = verify(tokenOf(req, cookieName));
    if (outcome instanceof HttpError) res.locals.authError = outcome;
    else {
      res.locals.user = outcome.user;
      res.locals.tokenExpiresAt = outcome.expiresAt;
      if (outcome.grants !== undefined) res.locals.grants = outcome.grants;
    }
    next();
  };
}

/**
 * Reads `claim` of a verified payload as topic grants. A token without the claim grants nothing,
 * silently; one whose claim is malformed grants nothing either, and says so in a warning (at
 * most one per `GRANT_WARNING_EVERY_MS`, with how many tokens since): the user is then checked
 * with the backend as if the claim were absent, so a bug in the issuer costs status requests,
 * never access.
 */
function grantReader(claim: string, logger: Logger): (payload: Record<string, unknown>, user: string) => TopicGrants | undefined {
  let warnedAt = Number.NEGATIVE_INFINITY;
  let unreported = 0;
  return (payload, user) => {
    const value = payload[claim];
    if (value === undefined) return undefined;
    const grants = TopicGrants.parse(value);
    if (grants instanceof TopicGrants) return grants;
    unreported += 1;
    const now = Date.now();
    if (now - warnedAt >= GRANT_WARNING_EVERY_MS) {
      logger.warn({ claim, user, reason: grants, tokens: unreported }, 'topics claim ignored: the token grants no topic, its topics are checked with the backend');
      warnedAt = now;
      unreported = 0;
    }
    return undefined;
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
