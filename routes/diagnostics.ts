import type { Request, RequestHandler } from 'express';
import { tokenExpiryOf, userOf } from '../middleware/authenticate';
import { HttpError } from '../src/errors';
import type { UserStreams } from '../src/relay/user-streams';
import { SSE_HEADERS, encodeComment, encodeEvent, encodeRetry } from '../src/sse/encode';

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
    const user = userOf(res);
    const timers = new Set<NodeJS.Timeout>();
    const at = (ms: number, run: () => void): void => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        run();
      }, Math.max(0, ms - Date.now()));
      timers.add(timer);
    };
    const stop = (): void => timers.forEach(clearTimeout);
    res.once('close', stop);

    res.writeHead(200, SSE_HEADERS);
    res.socket?.setNoDelay(true);
    const started = Date.now();
    res.write(encodeEvent({ event: 'start', data: JSON.stringify({ interval, count, quiet, heartbeatMs: options.heartbeatMs, sentAt: started }) }));
    // Due times from the start, not from the previous tick: a late timer does not push the rest back.
    for (let seq = 1; seq <= count; seq++) {
      at(started + seq * interval, () => {
        res.write(encodeEvent({ event: 'tick', id: String(seq), data: JSON.stringify({ seq, sentAt: Date.now() }) }));
      });
    }
    const quietFrom = started + count * interval;
    for (let beat = quietFrom + options.heartbeatMs; beat < quietFrom + quiet; beat += options.heartbeatMs) {
      at(beat, () => res.write(encodeComment('hb')));
    }
    at(quietFrom + quiet, () => {
      res.end(encodeEvent({ event: 'done', data: JSON.stringify({ quietMs: quiet, sentAt: Date.now() }) }));
    });
    options.userStreams.track(user, res, tokenExpiryOf(res), options.retryHintMs, (_reason, retryMs) => {
      stop();
      res.end(encodeRetry(retryMs));
    });
  };
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
