import type { ServerResponse } from 'node:http';
import { MAX_TIMER_MS } from '../setting';

/** Why the relay ends a stream on the user's behalf. */
type UserEndReason = 'token_expired' | 'ended_by_app';

/** Ends one open stream, telling its client to come back after `retryMs`. */
export type EndStream = (reason: UserEndReason, retryMs: number) => void;

/**
 * The open streams of each user, so that none outlives the token it was opened with and an
 * app can end a user's streams at once (logout, revoked access). Each stream leaves when its
 * response closes, however it closes.
 */
export class UserStreams {
  private readonly byUser = new Map<string, Set<EndStream>>();

  /**
   * Holds `end` for `user` until `res` closes, and calls it at `expiresAt` (epoch ms; the
   * token's `exp` plus the clock tolerance), telling the client to come back after `retryMs`
   * with a fresh credential.
   */
  track(user: string, res: ServerResponse, expiresAt: number | undefined, retryMs: number, end: EndStream): void {
    if (res.closed) return;
    let streams = this.byUser.get(user);
    if (!streams) {
      streams = new Set();
      this.byUser.set(user, streams);
    }
    streams.add(end);
    const left = expiresAt === undefined ? Infinity : expiresAt - Date.now();
    // A token good for more than 24 days: no timer can wait that long, and the stream lifetime (at most 7 days) ends it first.
    const timer = left <= MAX_TIMER_MS ? setTimeout(() => end('token_expired', retryMs), Math.max(0, left)) : undefined;
    timer?.unref();
    res.on('close', () => {
      clearTimeout(timer);
      streams.delete(end);
      if (streams.size === 0 && this.byUser.get(user) === streams) this.byUser.delete(user);
    });
  }

  /** Ends every open stream of `user` now, each told to come back after `retryMs`; returns how many. */
  endUser(user: string, retryMs: number): number {
    const streams = this.byUser.get(user);
    if (!streams) return 0;
    const ends = [...streams];
    for (const end of ends) end('ended_by_app', retryMs);
    return ends.length;
  }

  /** Users with at least one open stream. */
  get userCount(): number {
    return this.byUser.size;
  }
}
