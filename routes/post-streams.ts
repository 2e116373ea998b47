import express, { type RequestHandler, type Router } from 'express';
import type { Logger } from 'pino';
import { HttpError } from '../src/errors';
import type { PostAnswers } from '../src/relay/post-answer';
import type { UserStreams } from '../src/relay/user-streams';
import { tokenExpiryOf, userOf } from '../middleware/authenticate';
import { loggedRequest } from '../middleware/request-log';
import type { ProxiedAnswer } from './proxy';
import { answerHead } from './stream-head';
import { STREAM_ID, checkedLastEventId, lastEventIdOf } from './streams';

/** How the resumable POSTs are served. */
export interface ResumablePostsOptions {
  /** The POST paths (below `/api`) whose event-stream answers are kept and resumable. */
  readonly paths: readonly string[];
  /** Handlers run before a resume opens (draining, rate limit, a connection slot). */
  readonly guards: readonly RequestHandler[];
  readonly userStreams: UserStreams;
  /** The `retry:` a stream ended for its user (token expired, ended by the app) is told. */
  readonly retryHintMs: number;
  readonly logger: Logger;
}

/**
 * The resumable streaming POSTs: `takeOver` for the proxy (the POST's answer becomes a kept
 * answer with `X-Stream-Id`), and the routes `GET` (resume) and `DELETE` (cancel)
 * `/streams/:streamId`, to mount at `/api`.
 */
export function resumablePosts(answers: PostAnswers, options: ResumablePostsOptions): { takeOver: (answer: ProxiedAnswer) => boolean; router: Router } {
  const { userStreams, retryHintMs, logger } = options;
  const paths = new Set(options.paths.map((path) => path.toLowerCase()));

  const takeOver = (answer: ProxiedAnswer): boolean => {
    const { req, res, upstream } = answer;
    if (req.method !== 'POST' || !paths.has(req.path.toLowerCase().replace(/(.)\/$/, '$1'))) return false;
    // A compressed answer cannot be read into events: it passes through as it is.
    const encoding = upstream.headers['content-encoding'];
    if (encoding !== undefined && String(encoding).toLowerCase() !== 'identity') return false;
    res.removeHeader('Content-Length');
    const { streamId, subscriber } = answers.open(res, {
      user: answer.user,
      url: answer.url,
      body: upstream.body as AsyncIterable<Buffer>,
      abort: answer.abort,
      bodyArriving: answer.bodyArriving,
      failure: answer.failure,
    });
    answer.onBodyActivity(() => {
      subscriber.activeAt = Date.now();
    });
    userStreams.track(answer.user, res, tokenExpiryOf(res), retryHintMs, (reason, retryMs) => {
      // An upload whose body is still arriving runs on past its token's exp (it cannot resume).
      if (reason === 'token_expired' && answer.bodyArriving()) return;
      subscriber.endWithRetry(reason, retryMs);
      // Token expiry is a drop (the client resumes with a fresh token); the app's end (logout,
      // revoked access) is a cancel.
      if (reason === 'ended_by_app') void answers.cancel(streamId, answer.user).catch(() => undefined);
    });
    res.locals.closeReason = () => subscriber.closeReason;
    // A POST's answer, on the POST or on a resume: the ops view counts both as one.
    res.locals.answerStream = true;
    if (logger.isLevelEnabled('info')) logger.info({ req: loggedRequest(req, res), streamId }, 'answer kept');
    return true;
  };

  const router = express.Router();
  // The GET's checks, then the headers it would start with: a HEAD takes no slot and opens nothing.
  router.head('/streams/:streamId', async (req, res) => {
    const streamId = streamIdOf(typeof req.params.streamId === 'string' ? req.params.streamId : undefined);
    checkedLastEventId(lastEventIdOf(req, 'invalid_last_event_id'));
    const known = await answers.known(streamId, userOf(res)).catch(() => {
      throw new HttpError('redis_unavailable', 'Redis does not answer: the relay cannot tell whether another relay reads this answer; retry once Redis is back.');
    });
    if (!known) throw new HttpError('stream_not_found');
    answerHead(res);
  });
  router.get('/streams/:streamId', ...options.guards, (req, res) => {
    const streamId = streamIdOf(typeof req.params.streamId === 'string' ? req.params.streamId : undefined);
    const user = userOf(res);
    const lastEventId = checkedLastEventId(lastEventIdOf(req, 'invalid_last_event_id'));
    const subscriber = answers.resume(res, streamId, user, lastEventId);
    if (!subscriber) return;
    userStreams.track(user, res, tokenExpiryOf(res), retryHintMs, (reason, retryMs) => {
      subscriber.endWithRetry(reason, retryMs);
      if (reason === 'ended_by_app') void answers.cancel(streamId, user).catch(() => undefined);
    });
    res.locals.closeReason = () => subscriber.closeReason;
    // A POST's answer, on the POST or on a resume: the ops view counts both as one.
    res.locals.answerStream = true;
    if (logger.isLevelEnabled('info')) logger.info({ req: loggedRequest(req, res), streamId, lastEventId }, 'answer resumed');
  });
  router.delete('/streams/:streamId', async (req, res) => {
    if (!(await answers.cancel(streamIdOf(typeof req.params.streamId === 'string' ? req.params.streamId : undefined), userOf(res)))) throw new HttpError('stream_not_found');
    res.status(204).end();
  });
  return { takeOver, router };
}

/** Any id that is not one the relay could have made is not found, as an unknown one is. */
function streamIdOf(raw: string | undefined): string {
  if (raw === undefined || !STREAM_ID.test(raw)) throw new HttpError('stream_not_found');
  return raw;
}
