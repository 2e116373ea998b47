import type { Request, RequestHandler, Response } from 'express';
import { tokenExpiryOf, userOf } from '../middleware/authenticate';
import { HttpError } from '../src/errors';
import type { UserStreams } from '../src/relay/user-streams';
import { SSE_HEADERS, encodeComment, encodeEvent, encodeRetry } from '../src/sse/encode';
import { answerHead } from './stream-head';

/** The bounds of `GET /api/diagnostics/ticks`: a check is short, so it cannot hold a slot for long. */
const TICKS_LIMITS = {
  interval: { min: 10, max: 10_000, default: 250 },
  count: { min: 1, max: 1000, default: 20 },
  quiet: { min: 0, max: 5 * 60_000, default: 0 },
  /** Ticks and quiet together. */
  totalMs: 10 * 60_000,
} as const;

export interface TicksOptions {
  /** The relay's heartbeat: the quiet phase sends only these, as a quiet shared stream would. */
  readonly heartbeatMs: number;
  readonly userStreams: UserStreams;
  readonly retryHintMs: number;
}

/**
 * `GET /api/diagnostics/ticks?interval=&count=&quiet=`: a stream of `count` timestamped ticks
 * `interval` ms apart, then `quiet` ms with nothing but the relay's heartbeats (`quiet=auto`:
 * two heartbeats), then `event: done`. Seen through whatever stands between the relay and a
 * client, it shows whether events arrive one by one or in bursts, how late, and whether a quiet
 * stream survives (`npm run check-path`).
 */
export function diagnosticTicks(options: TicksOptions): RequestHandler {
  return (req, res) => {
    const interval = integerParam(req, 'interval', TICKS_LIMITS.interval);
    const count = integerParam(req, 'count', TICKS_LIMITS.count);
    const quiet = req.query.quiet === 'auto' ? Math.min(2 * options.heartbeatMs, TICKS_LIMITS.quiet.max) : integerParam(req, 'quiet', TICKS_LIMITS.quiet);
    if (interval * count + quiet > TICKS_LIMITS.totalMs) {
      throw new HttpError('bad_request', `interval × count + quiet must be at most ${TICKS_LIMITS.totalMs} ms.`);
    }
    if (req.method === 'HEAD') return answerHead(res);
    const user = userOf(res);
    res.writeHead(200, SSE_HEADERS);
    res.socket?.setNoDelay(true);
    const started = Date.now();
    res.write(encodeEvent({ event: 'start', data: JSON.stringify({ interval, count, quiet, heartbeatMs: options.heartbeatMs, sentAt: started }) }));
    const steps = ticksPlan(started, { interval, count, quiet, heartbeatMs: options.heartbeatMs });
    // One timer at a time, each set once the step before it was written: a ten-minute check holds one
    // timer, not one per tick, and closing the request clears the only one pending.
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const writeAt = (at: number, write: (res: Response) => void): void => {
      timer = setTimeout(() => {
        timer = undefined;
        // Node's timer clock and Date.now() round apart: a timer may fire a millisecond before its
        // due time by the wall clock, and a tick stamped early would break the promise.
        if (Date.now() < at) return writeAt(at, write);
        write(res);
        next();
      }, Math.max(0, at - Date.now()));
    };
    const next = (): void => {
      const step = steps.next();
      if (stopped || step.done === true) return;
      writeAt(step.value.at, step.value.write);
    };
    const stop = (): void => {
      stopped = true;
      clearTimeout(timer);
      timer = undefined;
    };
    res.once('close', stop);
    next();
    options.userStreams.track(user, res, tokenExpiryOf(res), options.retryHintMs, (_reason, retryMs) => {
      stop();
      res.end(encodeRetry(retryMs));
    });
  };
}

/** One write of a ticks stream, due at `at` (epoch ms). */
interface Step {
  readonly at: number;
  readonly write: (res: Response) => void;
}

/**
 * The writes of a ticks stream started at `started`, in order, made one at a time. Due times
 * count from the start, not from the write before: a late timer does not push the rest back.
 */
function* ticksPlan(started: number, { interval, count, quiet, heartbeatMs }: { interval: number; count: number; quiet: number; heartbeatMs: number }): Generator<Step> {
  for (let seq = 1; seq <= count; seq++) {
    yield { at: started + seq * interval, write: (res) => res.write(encodeEvent({ event: 'tick', id: String(seq), data: JSON.stringify({ seq, sentAt: Date.now() }) })) };
  }
  const quietFrom = started + count * interval;
  for (let beat = quietFrom + heartbeatMs; beat < quietFrom + quiet; beat += heartbeatMs) {
    yield { at: beat, write: (res) => res.write(encodeComment('hb')) };
  }
  yield { at: quietFrom + quiet, write: (res) => res.end(encodeEvent({ event: 'done', data: JSON.stringify({ quietMs: quiet, sentAt: Date.now() }) })) };
}

function integerParam(req: Request, name: string, bounds: { min: number; max: number; default: number }): number {
  const raw = req.query[name];
  if (raw === undefined) return bounds.default;
  const value = typeof raw === 'string' && /^\d{1,9}$/.test(raw) ? Number(raw) : NaN;
  if (!(value >= bounds.min && value <= bounds.max)) {
    throw new HttpError('bad_request', `${name} must be an integer from ${bounds.min} to ${bounds.max}.`);
  }
  return value;
}
