import { type Server, type ServerResponse, createServer } from 'node:http';
import express, { type Request, type RequestHandler } from 'express';
import { type Logger, pino } from 'pino';
import { requireAdminKey } from '../middleware/admin-key';
import { USER } from '../middleware/authenticate';
import { errorHandler, notFound } from '../middleware/errors';
import { requestLog } from '../middleware/request-log';
import { RateHistory } from '../src/admin/rates';
import { type OpsSources, OpsView } from '../src/admin/view';
import { HttpError } from '../src/errors';
import { SSE_HEADERS, encodeEvent, encodeRetry } from '../src/sse/encode';
import { OPS_ICON, OPS_PAGE, OPS_PAGE_CSP } from './admin-page';

/** Options of `createAdminServer`. */
export interface AdminOptions {
  /** The key every request must carry, as `Authorization: Bearer <key>` or as the HTTP Basic password; at least 32 characters. Required. */
  apiKey: string;
  /** Where the admin's request lines go (never a header, so never the key). Defaults to a silent logger. */
  logger?: Logger;
}

/** What the admin API reads and does (a `Relay` has it all). */
export interface AdminSources extends OpsSources {
  endUserStreams(user: string): Promise<number>;
}

/** Ops pages open at once; more are refused (each gets a snapshot a second). */
const MAX_PAGES = 16;
/** An ops page that leaves this much unread is dropped: it reconnects and gets the current snapshot. */
const MAX_UNSENT_BYTES = 1024 ** 2;
const MAX_TOPICS = 1000;
/** Headers of every admin answer: nothing cached or framed, nothing sent on to another site. */
const ADMIN_HEADERS = {
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
};

/**
 * The admin API and the live ops page of `relay`, on an HTTP server of their own (not listening
 * yet: call `listen`, on a port that is not the relay's, loopback unless you put it behind
 * something). Every request must carry `apiKey`; nothing here takes a connection slot of the
 * relay's limits. Routes (all under `/admin`): `GET /overview`, `GET /topics?limit=`,
 * `GET /users/:userId`, `DELETE /users/:userId/streams`, the page at `GET /` and its feed
 * `GET /events`. See docs/operations.md. Throws `TypeError` for a key shorter than 32 characters.
 */
export function createAdminServer(relay: AdminSources, options: AdminOptions): Server {
  const logger = options.logger ?? pino({ level: 'silent' });
  const checkKey = requireAdminKey(options.apiKey);
  const view = new OpsView(relay);
  const pages = new PageFeed(view, relay, logger);

  const app = express();
  app.disable('x-powered-by');
  // `/admin` and `/admin/` are two routes: the page's relative links need the slash.
  app.set('strict routing', true);
  app.use(requestLog(logger), adminHeaders, checkKey);
  app.get('/admin', (_req, res) => res.redirect(301, '/admin/'));
  app.get('/admin/', (_req, res) => {
    res.set('Content-Security-Policy', OPS_PAGE_CSP).type('html').send(OPS_PAGE);
  });
  app.get('/admin/icon.svg', (_req, res) => {
    res.type('image/svg+xml').send(OPS_ICON);
  });
  app.get('/admin/events', (_req, res) => pages.add(res));
  app.get('/admin/overview', async (_req, res) => {
    res.json(await view.overview());
  });
  app.get('/admin/topics', (req, res) => {
    res.json({ topics: view.topics(limitOf(req)) });
  });
  app.get('/admin/users/:userId', (req, res) => {
    const user = userIdOf(req);
    res.json({ user, streams: view.userStreams(user) });
  });
  app.delete('/admin/users/:userId/streams', async (req, res) => {
    const user = userIdOf(req);
    const origin = req.headers.origin;
    // A browser's request from another page (a preflight would stop it first; this holds without one).
    if (origin !== undefined && origin !== `http://${req.headers.host ?? ''}` && origin !== `https://${req.headers.host ?? ''}`) {
      throw new HttpError('forbidden', 'Another site may not end streams: send this request from the ops page or a command line.');
    }
    let ended: number;
    try {
      ended = await relay.endUserStreams(user);
    } catch (err) {
      logger.error({ user, err }, 'admin could not tell the other relays to end a user');
      throw new HttpError('redis_unavailable');
    }
    logger.info({ user, ended }, 'admin ended user streams');
    res.json({ ended });
  });
  app.use(
    notFound,
    errorHandler((err) => logger.error({ err }, 'admin request failed')),
  );

  const server = createServer(
    {
      // The ops page's feed is held open; a request head must still come soon.
      requestTimeout: 0,
      headersTimeout: 10_000,
      keepAliveTimeout: 5000,
      connectionsCheckingInterval: 2500,
    },
    app,
  );
  server.maxConnections = 4 * MAX_PAGES;
  server.on('close', () => pages.close());
  return server;
}

const adminHeaders: RequestHandler = (_req, res, next) => {
  res.set(ADMIN_HEADERS);
  next();
};

/** `?limit=`: 1 to 1000, 50 when absent. */
function limitOf(req: Request): number {
  const raw = req.query.limit;
  if (raw === undefined) return 50;
  const limit = typeof raw === 'string' && /^\d{1,4}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(limit >= 1 && limit <= MAX_TOPICS)) throw new HttpError('bad_request', `limit must be an integer from 1 to ${MAX_TOPICS}.`);
  return limit;
}

/** The user id of the path, as the backend knows it (the tokens' `sub`): 1-256 characters a header can carry. */
function userIdOf(req: Request): string {
  const user = req.params.userId;
  if (typeof user !== 'string' || !USER.test(user)) {
    throw new HttpError('bad_request', 'The user id must be the user as the tokens name them (`sub`): 1-256 printable characters, no leading or trailing space.');
  }
  return user;
}

/**
 * The ops pages' feed: every second the rates get a point and, while a page is open, one
 * snapshot is made, encoded once and written to every page.
 */
class PageFeed {
  private readonly pages = new Set<ServerResponse>();
  private readonly rates: RateHistory;
  private readonly timer: NodeJS.Timeout;
  private last: Buffer | undefined;
  private busy = false;

  constructor(
    private readonly view: OpsView,
    relay: AdminSources,
    private readonly logger: Logger,
  ) {
    const { stats } = relay;
    this.rates = new RateHistory(() => ({ events: stats.eventsRelayed, deliveries: stats.deliveries, opens: stats.streamsOpened }));
    this.rates.sample();
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
  }

  add(res: ServerResponse): void {
    if (this.pages.size >= MAX_PAGES) throw new HttpError('over_capacity', `At most ${MAX_PAGES} ops pages may be open at once.`, undefined, { 'Retry-After': '5' });
    res.writeHead(200, SSE_HEADERS);
    res.write(encodeRetry(2000));
    this.pages.add(res);
    res.on('close', () => this.pages.delete(res));
    // The page shows something at once, not a second later.
    if (this.last) res.write(this.last);
    else this.tick(false);
  }

  close(): void {
    clearInterval(this.timer);
    for (const page of this.pages) page.end();
    this.pages.clear();
  }

  private tick(sample = true): void {
    if (sample) this.rates.sample();
    if (this.pages.size === 0) {
      this.last = undefined;
      return;
    }
    if (this.busy) return;
    this.busy = true;
    this.view
      .snapshot(this.rates)
      .then((snapshot) => {
        this.last = encodeEvent({ event: 'snapshot', data: JSON.stringify(snapshot) });
        for (const page of this.pages) {
          if (page.writableLength > MAX_UNSENT_BYTES) page.destroy();
          else page.write(this.last);
        }
      })
      .catch((err: unknown) => this.logger.error({ err }, 'ops page snapshot failed'))
      .finally(() => {
        this.busy = false;
      });
  }
}
