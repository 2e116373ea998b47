import type { RequestHandler, Response } from 'express';
import { BackendError } from './errors';

// A JWT `sub` can be an email, a UUID or "provider|id": any printable ASCII, bounded.
const USER_ID = /^[\x21-\x7e]{1,256}$/;

/**
 * Takes the caller from `X-User-Id`. The relay sets it from the verified token and
 * strips any a browser sent, so this backend must only be reachable through the relay.
 */
export const requireUser: RequestHandler = (req, res, next) => {
  const user = req.get('x-user-id');
  if (user === undefined || user === '') return next(new BackendError('missing_user'));
  if (!USER_ID.test(user)) return next(new BackendError('invalid_user'));
  res.locals.user = user;
  next();
};

/** The caller set by `requireUser`. */
export function userOf(res: Response): string {
  const user: unknown = res.locals.user;
  if (typeof user !== 'string') throw new BackendError('missing_user');
  return user;
}
