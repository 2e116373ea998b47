import type { ServerResponse } from 'node:http';
import { MAX_TIMER_MS } from '../setting';

/** Why the relay ends a stream on the user's behalf. */
type UserEndReason = 'token_expired' | 'ended_by_app';

/** Why the relay cut a user's stream short: on the user's behalf, or because the client did not read. */
export type UserCutReason = UserEndReason | 'slow_client';

/**
 * Ends one open stream, telling its client to come back after `retryMs`: a function, or an
 * object that does it in `endWithRetry` (a `Subscriber`, held as it is, with no closure around it),
 * which may say why it ended once it has.
 */
export type EndStream =
  | ((reason: UserEndReason, retryMs: number) => void)
  | { endWithRetry(reason: UserEndReason, retryMs: number): void; readonly closeReason?: string };

/** One tracked stream: fields, so that a held stream costs one small object and no closure of its own. */
class HeldStream {
  constructor(
    readonly user: string,
    /** Epoch ms at which the token runs out; undefined when no timer can wait that long (or no `exp`). */
    readonly expiresAt: number | undefined,
    readonly retryMs: number,
    readonly ender: EndStream,
  ) {}

  end(reason: UserEndReason, retryMs: number): void {
    if (typeof this.ender === 'function') this.ender(reason, retryMs);
    else this.ender.endWithRetry(reason, retryMs);
  }
}

/**
 * The open streams of each user, so that none outlives the token it was opened with and an
 * app can end a user's streams at once (logout, revoked access). Each stream leaves when its
 * response closes, however it closes.
 *
 * Expiries share one timer, armed for the earliest, so a held stream keeps no Timeout or
 * callback of its own. Streams are grouped by their expiry instant:
 * `exp` is whole seconds, so the groups are few next to the streams.
 */
export class UserStreams {
  private readonly byUser = new Map<string, Set<HeldStream>>();
  private readonly byResponse = new Map<ServerResponse, HeldStream>();
  /** The streams expiring at each instant (epoch ms), and those instants in ascending order. */
  private readonly expiring = new Map<number, Set<HeldStream>>();
  private readonly instants: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The instant the timer is armed for. */
  private armedFor = Infinity;
  /** Every tracked response's `close` listener: the same function for all, called with the response as `this`. */
  private readonly onClose: (this: ServerResponse) => void;

  /** `onCut` hears of every stream cut short, with its user: ended here, or cut as a slow client. */
  constructor(private readonly onCut: (user: string, reason: UserCutReason) => void = () => undefined) {
    const leave = (res: ServerResponse): void => this.leave(res);
    this.onClose = function (this: ServerResponse) {
      leave(this);
    };
  }

  /**
   * Holds `end` for `user` until `res` closes, and calls it at `expiresAt` (epoch ms; the
   * token's `exp` plus the clock tolerance), never before, telling the client to come back after
   * `retryMs` with a fresh credential. Once per response.
   */
  track(user: string, res: ServerResponse, expiresAt: number | undefined, retryMs: number, end: EndStream): void {
    if (res.closed) return;
    // A token good for more than 24 days: no timer can wait that long, and the stream lifetime (at most 7 days) ends it first.
    // Whole milliseconds, as the timer and the wall clock count them.
    const expiry = expiresAt !== undefined && expiresAt - Date.now() <= MAX_TIMER_MS ? Math.ceil(expiresAt) : undefined;
    const held = new HeldStream(user, expiry, retryMs, end);
    let streams = this.byUser.get(user);
    if (!streams) {
      streams = new Set();
      this.byUser.set(user, streams);
    }
    streams.add(held);
    this.byResponse.set(res, held);
    if (expiry !== undefined) this.expireAt(held, expiry);
    res.on('close', this.onClose);
  }

  /** Ends every open stream of `user` now, each told to come back after `retryMs`; returns how many. */
  endUser(user: string, retryMs: number): number {
    const streams = this.byUser.get(user);
    if (!streams) return 0;
    const ends = [...streams];
    for (const held of ends) {
      held.end('ended_by_app', retryMs);
      this.onCut(user, 'ended_by_app');
    }
    return ends.length;
  }

  /** Users with at least one open stream. */
  get userCount(): number {
    return this.byUser.size;
  }

  /** Calls `visit` with every open stream: its user, response and ender (for the admin API: a scan, not for hot paths). */
  forEachStream(visit: (user: string, res: ServerResponse, ender: EndStream) => void): void {
    for (const [res, held] of this.byResponse) visit(held.user, res, held.ender);
  }

  private expireAt(held: HeldStream, at: number): void {
    let group = this.expiring.get(at);
    if (!group) {
      group = new Set();
      this.expiring.set(at, group);
      this.instants.splice(insertionPoint(this.instants, at), 0, at);
    }
    group.add(held);
    if (at < this.armedFor) this.arm(at);
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.armedFor = at;
    this.timer = setTimeout(() => this.expire(), Math.max(0, at - Date.now()));
    this.timer.unref();
  }

  /**
   * Ends the streams whose instant has come by the wall clock. Node's timer clock and
   * `Date.now()` round apart, so the timer may fire a millisecond early: what is not due yet
   * waits for the timer armed again.
   */
  private expire(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = Date.now();
    const instants = this.instants.splice(0, insertionPoint(this.instants, now + 1));
    const next = this.instants[0];
    if (next !== undefined) this.arm(next);
    for (const at of instants) {
      const group = this.expiring.get(at);
      this.expiring.delete(at);
      for (const held of group ?? []) {
        held.end('token_expired', held.retryMs);
        this.onCut(held.user, 'token_expired');
      }
    }
  }

  private leave(res: ServerResponse): void {
    const held = this.byResponse.get(res);
    if (!held) return;
    this.byResponse.delete(res);
    if (typeof held.ender !== 'function' && held.ender.closeReason === 'slow_client') this.onCut(held.user, 'slow_client');
    const streams = this.byUser.get(held.user);
    if (streams?.delete(held) === true && streams.size === 0) this.byUser.delete(held.user);
    if (held.expiresAt === undefined) return;
    const group = this.expiring.get(held.expiresAt);
    if (group?.delete(held) !== true || group.size > 0) return;
    this.expiring.delete(held.expiresAt);
    this.instants.splice(insertionPoint(this.instants, held.expiresAt), 1);
    // The timer stays armed if it was for this instant: it finds nothing due, and arms for the next.
  }
}

/** Where `at` goes in the ascending `instants` (the index of `at` itself when it is there). */
function insertionPoint(instants: readonly number[], at: number): number {
  let low = 0;
  let high = instants.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((instants[middle] ?? Infinity) < at) low = middle + 1;
    else high = middle;
  }
  return low;
}
