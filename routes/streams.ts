import type { Request, RequestHandler } from 'express';
import { match, type MatchFunction } from 'path-to-regexp';
import type { Logger } from 'pino';
import { HttpError } from '../src/errors';
import { type AuthorizeTopic, refusalOf } from '../src/relay/authorize';
import type { Hub } from '../src/relay/hub';
import type { UserStreams } from '../src/relay/user-streams';
import { grantsOf, tokenExpiryOf, userOf } from '../middleware/authenticate';
import { loggedRequest, redactTokens } from '../middleware/request-log';
import { inSequence } from '../middleware/in-sequence';
import { answerHead } from './stream-head';

/** A shared stream family: how a path id maps to its topic key and backend URLs. */
export interface SharedStream {
  /** Express path with an `:id` parameter, relative to the router. */
  readonly path: string;
  /** Topic key of an id; subscribers with equal keys share one upstream. */
  key(id: string): string;
  /** Backend path of the id's event stream. */
  streamPath(id: string): string;
  /** Backend path whose 2xx for a user admits that user to the topic. */
  statusPath(id: string): string;
  /**
   * The backend ends this stream only when it is over, so a clean end is final: subscribers get
   * the end and late ones the replay, without asking the backend again. Defaults to false: as a
   * spec client, the relay asks again with `Last-Event-ID` and the stream is over on a 204.
   */
  readonly final?: boolean;
  /**
   * The backend resends what came after any id it sent on this stream (`Last-Event-ID`), as the
   * contract's backend does: a client resuming from an id older than the relay's history is then
   * caught up from the backend (one request for that client) instead of told `resync`. A backend
   * that no longer holds an id should refuse it (any error status), not start over. Defaults to
   * false: such a client gets `resync`, then the history.
   */
  readonly replays?: boolean;
}

/** The contract's two shared streams. */
export const SHARED_STREAMS: readonly SharedStream[] = [
  {
    path: '/downloads/:id/events',
    key: (id) => `download:${id}`,
    streamPath: (id) => `/downloads/${id}/events`,
    statusPath: (id) => `/downloads/${id}/status`,
    replays: true,
  },
  {
    path: '/documents/upload-sse/reconnect/:id',
    key: (id) => `session:${id}`,
    streamPath: (id) => `/documents/upload-sse/reconnect/${id}`,
    statusPath: (id) => `/sessions/${id}`,
    replays: true,
  },
];

type Params = Record<string, string>;

/** A download code or an upload session id, as the contract spells them. */
export const STREAM_ID = /^[A-Za-z0-9_-]{1,128}$/;
const LAST_EVENT_ID_MAX = 256;
// The id goes upstream as a header: one undici refuses (a control character, or past U+00FF from
// `?lastEventId=`) would keep the new topic retrying for its whole budget, and everyone who joined it waiting.
const NOT_IN_A_HEADER = /[^\t\x20-\x7e\x80-\xff]/;

/** How `sharedStreamRoutes` reaches the backend and decides who may join a topic. */
export interface SharedStreamRouting {
  readonly backendUrl: URL;
  /** Origins besides the backend's that a stream's redirects may lead to. */
  readonly redirectOrigins: ReadonlySet<string>;
  readonly authorize: AuthorizeTopic;
  /**
   * Ask `authorize` before opening a new topic too. Not needed when `authorize` asks the
   * backend, whose answer to the first stream request says the same; a policy of your own must.
   */
  readonly authorizeNewTopics: boolean;
  /**
   * Where the streams' paths start within the router (`/api`): they are matched before the
   * router's generic chain, so everything that chain would run for them is in `checks` and `guards`.
   */
  readonly prefix: string;
  /** Handlers run first on every stream request, GET or HEAD, in order: request log, CORS, path check, authentication. */
  readonly checks: readonly RequestHandler[];
  /** Handlers run after `checks` on a GET only: draining, rate limit, connection slot. */
  readonly guards: readonly RequestHandler[];
  readonly streams: readonly SharedStream[];
  /** Where `stream opened` goes. */
  readonly logger: Logger;
  /** Every open stream by user: each ends when its token expires, or when the app ends the user's streams. */
  readonly userStreams: UserStreams;
  /** The `retry:` a stream ended for its user (token expired, ended by the app) is told. */
  readonly retryHintMs: number;
}

/**
 * Serves each shared stream's GET (and HEAD) at `prefix` + its path: `checks` and `guards` first, then validate, authorize, and attach to the hub's topic, all as one handler (see
 * `inSequence`). Other methods pass by untouched: a route would answer an OPTIONS itself,
 * before CORS could.
 */
export function sharedStreamRoutes(hub: Hub, routing: SharedStreamRouting): RequestHandler {
  // Paths matched as Express's router matches a route's (path-to-regexp, any case, an optional
  // trailing slash), without a router of their own: its `handle`, `next`, layer and route
  // dispatch would be one more level of closures and matching on every stream open.
  const routes = routing.streams.map((stream) => ({
    matches: match<Params>(`${routing.prefix}${stream.path}`, { sensitive: false, end: true, trailing: true, decode: false }),
    handle: inSequence([...routing.checks, ...routing.guards, sharedStreamHandler(hub, routing, stream)]),
    // Checked as the GET is, but neither limited nor attached: nothing is opened for it.
    head: inSequence([...routing.checks, headHandler]),
  }));
  return (req, res, next) => {
    const route = req.method === 'GET' || req.method === 'HEAD' ? matching(routes, req.path) : undefined;
    if (route === undefined) return next();
    req.params = route.params;
    (req.method === 'HEAD' ? route.head : route.handle)(req, res, next);
  };
}

function sharedStreamHandler(hub: Hub, routing: SharedStreamRouting, stream: SharedStream): RequestHandler {
  const { backendUrl, redirectOrigins, authorize, authorizeNewTopics, logger, userStreams, retryHintMs, prefix } = routing;
  return async (req, res) => {
    const id = idOf(typeof req.params.id === 'string' ? req.params.id : undefined);
    const user = userOf(res);
    const lastEventId = checkedLastEventId(lastEventIdOf(req, 'invalid_last_event_id'));
    const key = stream.key(id);
    // A topic that is already open was authorized for someone else: ask about this user first.
    // A new topic is authorized by the backend answering its first request, unless the policy is not the backend's.
    // A topic the token grants is admitted as it is: its issuer said so.
    if ((authorizeNewTopics || hub.topic(key)) && grantsOf(res)?.admits(key) !== true) {
      let cause: unknown;
      const status = await authorize(user, new URL(stream.statusPath(id), backendUrl)).catch((err: unknown) => {
        cause = err;
        return 502;
      });
      const refusal = refusalOf(status, cause);
      if (refusal !== undefined) throw refusal;
    }
    const url = new URL(stream.streamPath(id), backendUrl);
    const subscriber = hub.subscribe(res, { key, url, final: stream.final, redirectOrigins, replays: stream.replays }, {
      headers: { 'x-user-id': user, 'x-forwarded-prefix': `${req.baseUrl}${prefix}` },
      lastEventId,
    });
    if (!subscriber) return;
    userStreams.track(user, res, tokenExpiryOf(res), retryHintMs, subscriber);
    const topic = hub.topic(key);
    // A stream refused after waiting for the backend (502 and the like) says why in its log line.
    res.locals.closeReason = () =>
      subscriber.closeReason === 'rejected' && topic?.failure !== undefined ? `rejected: ${topic.failure}` : subscriber.closeReason;
    if (logger.isLevelEnabled('info')) logger.info({ req: loggedRequest(req, res), topic: key, lastEventId: lastEventId && redactTokens(lastEventId) }, 'stream opened');
    subscriber.shedRoutingState();
  };
}

const headHandler: RequestHandler = (req, res) => {
  idOf(typeof req.params.id === 'string' ? req.params.id : undefined);
  checkedLastEventId(lastEventIdOf(req, 'invalid_last_event_id'));
  answerHead(res);
};

interface Route {
  matches: MatchFunction<Params>;
  handle: RequestHandler;
  head: RequestHandler;
}

/** The route whose path matches, with the path's parameters. */
function matching(routes: readonly Route[], path: string): { params: Params; handle: RequestHandler; head: RequestHandler } | undefined {
  for (const route of routes) {
    const found = route.matches(path);
    if (found !== false) return { params: found.params, handle: route.handle, head: route.head };
  }
  return undefined;
}

/** The path's id, percent-decoded as Express decodes a route parameter; 400 unless it decodes to a valid id. */
function idOf(raw: string | undefined): string {
  let id = raw;
  if (id?.includes('%') === true) {
    try {
      id = decodeURIComponent(id);
    } catch {
      throw new HttpError('bad_request', 'The id in the path is not valid percent-encoding.');
    }
  }
  if (id === undefined || !STREAM_ID.test(id)) throw new HttpError('invalid_id');
  return id;
}

/**
 * Where a client resumes: the `Last-Event-ID` header, else `?lastEventId=` for clients that
 * cannot set headers. A query that gives it more than once is refused with `refusal`.
 */
export function lastEventIdOf(req: Request, refusal: 'invalid_last_event_id' | 'invalid_cursor'): string | undefined {
  const header = req.headers['last-event-id'];
  if (typeof header === 'string') return header;
  const query = req.query.lastEventId;
  if (query !== undefined && typeof query !== 'string') throw new HttpError(refusal);
  return query;
}

/** A shared stream's last event id, which goes upstream as a header as it is. */
export function checkedLastEventId(value: string | undefined): string | undefined {
  if (value !== undefined && (value.length > LAST_EVENT_ID_MAX || NOT_IN_A_HEADER.test(value))) throw new HttpError('invalid_last_event_id');
  return value;
}
