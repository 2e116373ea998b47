import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseCookie } from 'cookie';
import express, { type Router } from 'express';
import helmet from 'helmet';
import jwt from 'jsonwebtoken';
import { HttpError } from '../src/errors';

/** Options of `developmentRoutes`. */
export interface DevelopmentOptions {
  /** The HS256 secret the relay verifies tokens with. */
  secret: string;
  /** The user that `POST /dev/login` logs in when the body names none. Defaults to `dev-user`. */
  user?: string;
  /** How long the login cookie lasts, in seconds. Defaults to 43200 (12 h). */
  ttlSeconds?: number;
  /** The demo app's folder, served at `/`. Defaults to `demo/` of the package. */
  demoDir?: string;
}

const USER = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * What `npm start` adds outside production: `POST /dev/login` (body `{"user"?}`) sets the
 * `access_token` HttpOnly cookie for a development user, `GET /dev/login` says whom the cookie
 * names, `POST /dev/logout` clears it, and the demo app is served at `/`. Never mount this in production: it hands out tokens.
 */
export function developmentRoutes(options: DevelopmentOptions): Router {
  const ttlSeconds = options.ttlSeconds ?? 12 * 3600;
  const router = express.Router();
  // Only JSON bodies: a cross-site HTML form cannot send one, so another page cannot log this browser in.
  router.post('/dev/login', express.json({ limit: '1kb' }), (req, res) => {
    if (!req.is('application/json')) throw new HttpError('bad_request', 'Send a JSON body: {"user":"alice"} (or {} for the default user).');
    const body = (req.body ?? {}) as { user?: unknown };
    const user = body.user ?? options.user ?? 'dev-user';
    if (typeof user !== 'string' || !USER.test(user)) throw new HttpError('bad_request', '"user" must be 1-64 characters of A-Z, a-z, 0-9, ".", "_" or "-".');
    const token = jwt.sign({}, options.secret, { subject: user, expiresIn: ttlSeconds });
    res
      .cookie('access_token', token, { httpOnly: true, sameSite: 'strict', path: '/', maxAge: ttlSeconds * 1000 })
      .set('Cache-Control', 'no-store')
      .json({ user, expiresAt: new Date(Date.now() + ttlSeconds * 1000).toISOString() });
  });
  // The cookie is HttpOnly: a page that comes back with one asks here whom it names. Nobody (no
  // cookie, or one no longer valid) is an answer too, not an error a first visit would log.
  router.get('/dev/login', (req, res) => {
    res.set('Cache-Control', 'no-store').json(loggedInUser(parseCookie(req.headers.cookie ?? '').access_token, options.secret));
  });
  router.post('/dev/logout', (_req, res) => {
    res.clearCookie('access_token', { path: '/' }).status(204).end();
  });
  // The demo's own CSP: its module and styles come from this origin only.
  router.use(helmet({ contentSecurityPolicy: { directives: { 'script-src': ["'self'"], 'connect-src': ["'self'"] } } }));
  const demoDir = options.demoDir ?? findDemo();
  if (demoDir !== undefined) router.use(express.static(demoDir, { index: 'index.html' }));
  return router;
}

function loggedInUser(token: string | undefined, secret: string): { user: string | null; expiresAt?: string } {
  if (token === undefined) return { user: null };
  try {
    const claims = jwt.verify(token, secret, { algorithms: ['HS256'] }) as jwt.JwtPayload;
    return typeof claims.sub === 'string' ? { user: claims.sub, expiresAt: new Date((claims.exp ?? 0) * 1000).toISOString() } : { user: null };
  } catch {
    return { user: null };
  }
}

/** The package's `demo/` folder, from the compiled routes (`dist/routes`) or from source (`routes`). */
function findDemo(): string | undefined {
  return [join(__dirname, '..', '..', 'demo'), join(__dirname, '..', 'demo')].find((dir) => existsSync(join(dir, 'index.html')));
}
