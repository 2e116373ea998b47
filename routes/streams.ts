import type { Request, RequestHandler } from 'express';
import { match, type MatchFunction } from 'path-to-regexp';
import type { Logger } from 'pino';
import { HttpError } from '../src/errors';
import { type AuthorizeTopic, refusalOf } from '../src/relay/authorize';
import type { Hub } from '../src/relay/hub';
import type { UserStreams } from '../src/relay/user-streams';
import { tokenExpiryOf, userOf } from '../middleware/authenticate';
import { loggedRequest, redactTokens } from '../middleware/request-log';
import { inSequence } from '../middleware/in-sequence';

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
}

/** The contract's two shared streams. */
export const SHARED_STREAMS: readonly SharedStream[] = [
  {
    path: '/downloads/:id/events',
    key: (id) => `download:${id}`,
    streamPath: (id) => `/downloads/${id}/events`,
    statusPath: (id) => `/downloads/${id}/status`,
  },
  {
    path: '/documents/upload-sse/reconnect/:id',
    key: (id) => `session:${id}`,
    streamPath: (id) => `/documents/upload-sse/reconnect/${id}`,
    statusPath: (id) => `/sessions/${id}`,
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
   * router's generic chain, so everything that chain would run for them is in `opening`.
   */
  readonly prefix: string;
  /** Handlers run first on every stream request, in order: request log, CORS, path check, authentication, limits. */
  readonly opening: readonly RequestHandler[];
  readonly streams: readonly SharedStream[];
  /** Where `stream opened` goes. */
  readonly logger: Logger;
  /** Every open stream by user: each ends when its token expires, or when the app ends the user's streams. */
  readonly userStreams: UserStreams;
  /** The `retry:` a stream ended for its user (token expired, ended by the app) is told. */
  readonly retryHintMs: number;
}

/**
 * Serves each shared stream's GET (and HEAD) at `prefix` + its path: `opening` first, then validate, authorize, and attach to the hub's topic, all as one handler (see
 * `inSequence`). Other methods pass by untouched: a route would answer an OPTIONS itself,
 * before CORS could.
 */
export function sharedStreamRoutes(hub: Hub, routing: SharedStreamRouting): RequestHandler {
  // Paths matched as Express's router matches a route's (path-to-regexp, any case, an optional
  // trailing slash), without a router of their own: its `handle`, `next`, layer and route
  // dispatch would be one more level of closures and matching on every stream open.
  const routes = routing.streams.map((stream) => ({
    matches: match<Params>(`${routing.prefix}${stream.path}`, { sensitive: false, end: true, trailing: true, decode: false }),
    handle: inSequence([...routing.opening, sharedStreamHandler(hub, routing, stream)]),
  }));
  return (req, res, next) => {
    const route = req.method === 'GET' || req.method === 'HEAD' ? matching(routes, req.path) : undefined;
    if (route === undefined) return next();
    req.params = route.params;
    route.handle(req, res, next);
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
    if (authorizeNewTopics || hub.topic(key)) {
      let cause: unknown;
      const status = await authorize(user, new URL(stream.statusPath(id), backendUrl)).catch((err: unknown) => {
        cause = err;
        return 502;
      });
      const refusal = refusalOf(status, cause);
      if (refusal !== undefined) throw refusal;
    }
    const url = new URL(stream.streamPath(id), backendUrl);
    const subscriber = hub.subscribe(res, { key, url, final: stream.final, redirectOrigins }, {
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

/** The route whose path matches, with the path's parameters. */
function matching(routes: readonly { matches: MatchFunction<Params>; handle: RequestHandler }[], path: string): { params: Params; handle: RequestHandler } | undefined {
  for (const route of routes) {
    const found = route.matches(path);
    if (found !== false) return { params: found.params, handle: route.handle };
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
