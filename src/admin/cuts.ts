/** Why a stream was cut short, or a request refused, as the ops page lists it. */
export type CutReason = 'slow_client' | 'token_expired' | 'ended_by_app' | 'limit';

/** One cut, or a run of alike cuts that came close together. */
export interface Cut {
  /** When the last cut of the run came (epoch ms). */
  readonly at: number;
  readonly reason: CutReason;
  /** For `limit`: which one (`total`, `perUser`, `perIp`, `rate` or `upstreams`, a refusal for want of an upstream, which names no user). */
  readonly detail: string | undefined;
  /** The user as the backend knows them (the token's `sub`); undefined for a request without a valid token. */
  readonly user: string | undefined;
  /** How many alike cuts this entry stands for. */
  readonly count: number;
}

/** Alike cuts this close together are one entry: a limit hit in a loop would push every other cut out. */
const RUN_MS = 10_000;

/**
 * The last cuts of one relay, newest last, at most `capacity` entries. A cut alike to the newest
 * one (same reason, detail and user, within 10 s) adds to its count instead of taking an entry.
 */
export class RecentCuts {
  private readonly entries: Cut[] = [];

  constructor(private readonly capacity = 100) {}

  add(reason: CutReason, user: string | undefined, detail?: string, now = Date.now()): void {
    const last = this.entries.at(-1);
    if (last && last.reason === reason && last.user === user && last.detail === detail && now - last.at < RUN_MS) {
      this.entries[this.entries.length - 1] = { ...last, at: now, count: last.count + 1 };
      return;
    }
    this.entries.push({ at: now, reason, detail, user, count: 1 });
    if (this.entries.length > this.capacity) this.entries.shift();
  }

  /** The newest `limit` entries, newest first. */
  latest(limit = this.capacity): Cut[] {
    return this.entries.slice(-limit).reverse();
  }
}
