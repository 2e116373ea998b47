import express, { Router, type Request, type RequestHandler, type Response } from 'express';
import type { Logger } from 'pino';
import { HttpError } from '../src/errors';
import { type AuthorizeTopic, refusalOf } from '../src/relay/authorize';
import { type CursorEntry, type CursorId, decodeCursor, maxCursorLength, topicHash } from '../src/relay/cursor';
import type { TopicRef } from '../src/relay/hub';
import type { Multiplexer, PlannedTopic } from '../src/relay/multiplex';
import type { UserStreams } from '../src/relay/user-streams';
import { grantsOf, tokenExpiryOf, userOf } from '../middleware/authenticate';
import type { TopicGrants } from '../src/relay/grants';
import { loggedRequest } from '../middleware/request-log';
import { STREAM_ID, type SharedStream, lastEventIdOf } from './streams';
import { answerHead } from './stream-head';

/** Longest topic name looked at: a kind, a colon and an id of at most 128 characters. */
const MAX_TOPIC_LENGTH = 160;

/** A topic a client named, with the backend URLs of its stream and of its authorization. */
export interface ResolvedTopic extends TopicRef {
  readonly statusUrl: URL;
}

/** A topic a stream starts with, as the route resolved it. */
interface Planned extends PlannedTopic {
  readonly ref: ResolvedTopic;
}

/** How `multiplexRoutes` names topics, authorizes them and bounds a stream. */
export interface MultiplexRouting {
  /** A topic's name to its stream (`topicResolver`), or undefined when it names none. */
  readonly resolve: (topic: string) => ResolvedTopic | undefined;
  readonly authorize: AuthorizeTopic;
  /** Handlers run first on every stream open (limits, the connection slot). */
  readonly guards: readonly RequestHandler[];
  readonly maxTopics: number;
  readonly logger: Logger;
  /** Every open stream by user: each ends when its token expires, or when the app ends the user's streams. */
  readonly userStreams: UserStreams;
  /** The `retry:` a stream ended for its user is told. */
  readonly retryHintMs: number;
}

/**
 * A topic is `KIND:ID` where some shared stream's `key(ID)` is that very name: with the
 * contract's streams, `download:CODE` and `session:SESSION_ID`.
 */
export function topicResolver(
  streams: readonly SharedStream[],
  backendUrl: URL,
  redirectOrigins: ReadonlySet<string>,
): (topic: string) => ResolvedTopic | undefined {
  return (topic) => {
    if (topic.length > MAX_TOPIC_LENGTH) return undefined;
    const id = topic.slice(topic.lastIndexOf(':') + 1);
    if (!STREAM_ID.test(id)) return undefined;
    const stream = streams.find((candidate) => candidate.key(id) === topic);
    if (!stream) return undefined;
    return {
      key: topic,
      url: new URL(stream.streamPath(id), backendUrl),
      final: stream.final,
      redirectOrigins,
      replays: stream.replays,
      statusUrl: new URL(stream.statusPath(id), backendUrl),
    };
  };
}

/** `GET /events?topic=…` (one stream, many topics) and `POST /events/:streamId/topics` (change them live). */
export function multiplexRoutes(multiplexer: Multiplexer, routing: MultiplexRouting): Router {
  const router = Router();
  const { resolve } = routing;
  const maxCursor = maxCursorLength(routing.maxTopics, MAX_TOPIC_LENGTH);

  /**
   * Every topic admitted for `user`, or the request fails without saying which one was refused.
   * The topics its token grants are admitted without asking.
   */
  const authorizeAll = async (user: string, grants: TopicGrants | undefined, topics: readonly ResolvedTopic[]): Promise<void> => {
    const asked = grants === undefined ? topics : topics.filter((topic) => !grants.admits(topic.key));
    const verdicts = await Promise.all(
      asked.map((topic) => routing.authorize(user, topic.statusUrl).then((status) => refusalOf(status), (err: unknown) => refusalOf(502, err))),
    );
    const refusals = verdicts.filter((refusal) => refusal !== undefined);
    const refusal = refusals.find((one) => one.code === 'not_found') ?? refusals[0];
    if (refusal !== undefined) throw refusal;
  };

  const resolveAll = (names: readonly string[]): ResolvedTopic[] =>
    [...new Set(names)].map((name) => {
      const topic = resolve(name);
      if (!topic) throw new HttpError('invalid_topic');
      return topic;
    });

  /** The topics a stream request starts with; a 4xx when the request names them wrong. */
  const requested = (req: Request): { planned: Planned[]; tombstones: string[] } => {
    const asked = resolveAll(queryTopics(req, routing.maxTopics));
    const cursor = lastEventIdOf(req, 'invalid_cursor');
    // A URL topic and its tombstone, or a topic added live: twice the topics at most.
    const entries = cursor === undefined ? [] : decodeCursor(cursor, maxCursor, 2 * routing.maxTopics);
    if (entries === undefined) throw new HttpError('invalid_cursor');
    const result = plan(asked, entries, resolve);
    if (result.planned.length > routing.maxTopics) throw new HttpError('too_many_topics');
    return result;
  };
  // Every topic the cursor had is removed or ended: 204 tells EventSource to stop reconnecting.
  const nothingLeft = (res: Response): void => void res.status(204).set('Cache-Control', 'no-store').end();

  // Ahead of the GET, which Express would run for a HEAD too: checked alike, but neither limited nor opened.
  router.head('/events', (req, res) => {
    if (requested(req).planned.length === 0) return nothingLeft(res);
    answerHead(res);
  });

  router.get('/events', ...routing.guards, async (req, res) => {
    const user = userOf(res);
    const { planned, tombstones } = requested(req);
    if (planned.length === 0) return nothingLeft(res);
    await authorizeAll(user, grantsOf(res), planned.map((topic) => topic.ref));
    const stream = multiplexer.open(res, user, planned, tombstones);
    if (!stream) return;
    // The writer itself, not a closure: it also says why it closed (a slow client's cut is listed by the admin API).
    routing.userStreams.track(user, res, tokenExpiryOf(res), routing.retryHintMs, stream.writer);
    res.locals.closeReason = () => stream.writer.closeReason;
    routing.logger.info({ req: loggedRequest(req, res), topics: planned.map((topic) => topic.ref.key), streamId: stream.id }, 'stream opened');
    // As for a shared stream: a held response keeps nothing of Express's routing for hours.
    stream.writer.shedRoutingState();
  });

  router.post('/events/:streamId/topics', express.json({ limit: '64kb' }), async (req, res) => {
    const user = userOf(res);
    const change = topicChange(req.body, routing.maxTopics);
    const remove = resolveAll(change.remove).map((topic) => topic.key);
    const add = resolveAll(change.add);
    const stream = multiplexer.find(String(req.params.streamId), user);
    if (!stream) throw new HttpError('not_found');
    const topics = await stream.inTurn(async () => {
      if (stream.isClosed) throw new HttpError('not_found');
      const added = stream.joining(remove, add);
      // Refused before the backend is asked; `update` checks again where the topics attach.
      stream.checkTopicCount(remove, added, routing.maxTopics);
      await authorizeAll(user, grantsOf(res), added);
      // The stream may have closed while the backend was asked.
      if (stream.isClosed) throw new HttpError('not_found');
      return stream.update(remove, added, routing.maxTopics);
    });
    res.json({ topics });
  });

  return router;
}

/** The `topic` query values: one at least, `max` at most (more is refused before any is parsed). */
function queryTopics(req: Request, max: number): string[] {
  const value = req.query.topic;
  const values = typeof value === 'string' ? [value] : Array.isArray(value) ? value : [];
  if (values.length === 0 || values.length > max) throw new HttpError('too_many_topics');
  if (!values.every((topic): topic is string => typeof topic === 'string')) throw new HttpError('invalid_topic');
  return values;
}

/** `{"add":[…],"remove":[…]}`, both optional arrays of at most `max` strings. */
function topicChange(body: unknown, max: number): { add: string[]; remove: string[] } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError('bad_request', 'Send a JSON object {"add":[topics],"remove":[topics]}.');
  }
  const list = (field: 'add' | 'remove'): string[] => {
    const value = (body as Record<string, unknown>)[field];
    if (value === undefined) return [];
    if (!Array.isArray(value) || value.length > max || !value.every((topic): topic is string => typeof topic === 'string')) {
      throw new HttpError('bad_request', `"${field}" must be an array of at most ${max} topic strings.`);
    }
    return value;
  };
  return { add: list('add'), remove: list('remove') };
}

/**
 * The topics a request starts with. Without a cursor: the URL's, from their start. With one:
 * the URL's that the cursor does not mark removed or ended, each from its id in the cursor, plus
 * the topics the cursor names that were added live (so a native EventSource, which reconnects
 * to the same URL, keeps them).
 */
function plan(
  asked: readonly ResolvedTopic[],
  entries: readonly CursorEntry[],
  resolve: (topic: string) => ResolvedTopic | undefined,
): { planned: Planned[]; tombstones: string[] } {
  // Two URL topics with the same short hash (36 bits: it takes a few hundred thousand to
  // expect one) are named in full in the cursor instead.
  const byHash = new Map<string, ResolvedTopic | null>();
  for (const topic of asked) {
    const hash = topicHash(topic.key);
    byHash.set(hash, byHash.has(hash) ? null : topic);
  }
  const lastIds = new Map<string, CursorId>();
  const gone = new Set<string>();
  const named = new Set<string>();
  const added: ResolvedTopic[] = [];
  for (const entry of entries) {
    if (entry.ref === 'hash') {
      const topic = byHash.get(entry.hash);
      if (!topic) continue; // a topic this URL no longer asks for
      if (entry.live) lastIds.set(topic.key, entry.lastId);
      else gone.add(topic.key);
    } else {
      const topic = resolve(entry.topic);
      if (!topic) throw new HttpError('invalid_cursor');
      lastIds.set(topic.key, entry.lastId);
      named.add(topic.key);
      if (!asked.some((known) => known.key === topic.key)) added.push(topic);
    }
  }
  const planned: Planned[] = [];
  const tombstones: string[] = [];
  for (const topic of asked) {
    const hash = topicHash(topic.key);
    const short = byHash.get(hash) === topic ? hash : undefined;
    // Named in full: removed from the URL's topics, then added back live.
    if (gone.has(topic.key) && !named.has(topic.key)) {
      if (short !== undefined) tombstones.push(short);
      continue;
    }
    planned.push({ ref: topic, lastId: lastIds.get(topic.key), hash: short });
  }
  for (const topic of added) planned.push({ ref: topic, lastId: lastIds.get(topic.key), hash: undefined });
  return { planned, tombstones };
}
