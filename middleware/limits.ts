import { isIPv4 } from 'node:net';
import type { Request, RequestHandler, Response } from 'express';
import { ipKeyGenerator, rateLimit, type Store } from 'express-rate-limit';
import { HttpError } from '../src/errors';
import type { ConnectionCounter, Lease, LimitName, SlotPool } from '../src/limits/connections';
import { userOf } from './authenticate';

/** Seconds a refused client is told to wait: a full relay spreads its retries, a busy user waits a little. */
function retryAfter(limit: LimitName): string {
  return limit === 'total' ? String(5 + Math.floor(Math.random() * 10)) : '10';
}

/**
 * The client's address as Express sees it: the socket's peer, or `X-Forwarded-For` when
 * `trust proxy` allows. IPv6 is keyed by its /56 (express-rate-limit's `ipKeyGenerator`).
 * IPv4, plain or mapped into IPv6 by a dual-stack listener, skips that parser, which is
 * costly for a step of every stream open.
 */
export function clientIp(req: Request): string {
  const ip = req.ip ?? req.socket.remoteAddress ?? 'unknown';
  if (isIPv4(ip)) return ip;
  if (ip.startsWith('::ffff:') && isIPv4(ip.slice(7))) return ip.slice(7);
  return ipKeyGenerator(ip);
}

/**
 * Every held slot's `close` listener, the same function for all (`this` is the response, its
 * lease in `res.locals.slot`): a held stream keeps no closure of its own for its slot.
 */
function releaseSlot(this: Response): void {
  (this.locals.slot as Lease | undefined)?.release();
}

/**
 * Holds a connection slot for as long as the response is open. The slot is released
 * on the response's `close`, which every ending emits: finished, aborted, destroyed.
 * `pool` names the per-user count the slot is taken from: streams, or plain calls, so a
 * user whose streams fill the per-user cap can still make REST calls (the total and
 * per-IP caps count both).
 */
export function limitConnections(counter: ConnectionCounter, onRefused?: (limit: LimitName, user: string) => void, pool: SlotPool = 'streams'): RequestHandler {
  return async (req, res, next) => {
    const user = userOf(res);
    const admission = await counter.acquire(user, clientIp(req), pool);
    if (!admission.ok) {
      onRefused?.(admission.limit, user);
      const code = admission.limit === 'total' ? 'over_capacity' : 'too_many_connections';
      throw new HttpError(code, undefined, undefined, { 'Retry-After': retryAfter(admission.limit) });
    }
    if (res.closed) return admission.release();
    res.locals.slot = admission;
    res.locals.slotHeld = true;
    res.on('close', releaseSlot);
    next();
  };
}

/**
 * Requests per user per minute (`perMinute`, 0: off), or per IP for requests without a
 * valid token, with the standard `RateLimit` and `RateLimit-Policy` headers. Mount after
 * `identify`; the caller picks which requests count. Counts in this process's memory unless a
 * `store` is given (the Redis store shares them between relays); a store that fails lets the
 * request through rather than refusing everyone.
 */
export function limitRequests(perMinute: number, onRefused?: (user: string | undefined) => void, store?: Store): RequestHandler {
  if (perMinute === 0) return (_req, _res, next) => next();
  return rateLimit({
    windowMs: 60_000,
    limit: perMinute,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    identifier: 'requests',
    ...(store ? { store, passOnStoreError: true } : {}),
    keyGenerator: (req, res) => (typeof res.locals.user === 'string' ? `user:${res.locals.user}` : `ip:${clientIp(req)}`),
    handler: (_req, res, next) => {
      onRefused?.(typeof res.locals.user === 'string' ? res.locals.user : undefined);
      next(new HttpError('rate_limited'));
    },
  });
}
