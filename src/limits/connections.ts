/** The three stream limits of a relay. */
export interface ConnectionLimits {
  /** Open streams in all. */
  readonly total: number;
  /** Open streams of one user. */
  readonly perUser: number;
  /** Open streams from one client IP. */
  readonly perIp: number;
}

/** Which limit refused a stream. */
export type LimitName = keyof ConnectionLimits;

/** A granted slot: call `release` (as a method) once when the stream is over (further calls do nothing). */
export interface Lease {
  readonly ok: true;
  release(): void;
}

export interface Refusal {
  readonly ok: false;
  readonly limit: LimitName;
}

/**
 * Which per-user count a slot comes from: a user's streams, or their plain API calls (so a user
 * whose streams fill the per-user cap can still call). Each pool has its own count per user, never
 * a key built from the user's name, so no user id can name another user's count; the total and
 * per-IP caps count both pools.
 */
export type SlotPool = 'streams' | 'calls';

/**
 * Counts open streams per relay, user and IP. In memory for one process; a shared
 * implementation (e.g. Redis) counts across processes behind the same interface.
 */
export interface ConnectionCounter {
  /** Takes a slot for a stream of `user` from `ip` if every limit allows it; `pool` defaults to `streams`. */
  acquire(user: string, ip: string, pool?: SlotPool): Promise<Lease | Refusal>;
  /** Open streams now: in all, and how many per-user counts (of either pool) and IPs hold one (for metrics and tests). */
  snapshot(): { total: number; users: number; ips: number };
}

/** Counters in this process's memory; users and IPs with no open stream are forgotten. */
export class MemoryConnectionCounter implements ConnectionCounter {
  private total = 0;
  private readonly pools: Readonly<Record<SlotPool, UserCounts>> = { streams: new UserCounts(this), calls: new UserCounts(this) };
  private readonly ips = new Map<string, number>();

  constructor(private readonly limits: ConnectionLimits) {}

  acquire(user: string, ip: string, pool: SlotPool = 'streams'): Promise<Lease | Refusal> {
    return Promise.resolve(this.take(user, ip, pool));
  }

  snapshot(): { total: number; users: number; ips: number } {
    return { total: this.total, users: this.pools.streams.size + this.pools.calls.size, ips: this.ips.size };
  }

  private take(user: string, ip: string, pool: SlotPool): Lease | Refusal {
    const counts = this.pools[pool];
    // The global limit first: a full relay says 503 (go elsewhere), not 429 (slow down).
    if (this.total >= this.limits.total) return { ok: false, limit: 'total' };
    if (counts.of(user) >= this.limits.perUser) return { ok: false, limit: 'perUser' };
    if ((this.ips.get(ip) ?? 0) >= this.limits.perIp) return { ok: false, limit: 'perIp' };
    this.total += 1;
    counts.add(user, 1);
    increment(this.ips, ip, 1);
    return new SlotLease(counts, user, ip);
  }

  /** Gives back a slot taken by `take` from `pool`; called once per lease. */
  free(pool: SlotPool, user: string, ip: string): void {
    this.pools[pool].free(user, ip);
  }

  /** The part of giving a slot back that every pool shares. */
  freeShared(ip: string): void {
    this.total -= 1;
    increment(this.ips, ip, -1);
  }
}

/** One pool's count per user, and the owner of the slots taken from it. */
class UserCounts implements SlotOwner {
  private readonly counts = new Map<string, number>();

  constructor(private readonly counter: MemoryConnectionCounter) {}

  get size(): number {
    return this.counts.size;
  }

  of(user: string): number {
    return this.counts.get(user) ?? 0;
  }

  add(user: string, by: number): void {
    increment(this.counts, user, by);
  }

  free(user: string, ip: string): void {
    increment(this.counts, user, -1);
    this.counter.freeShared(ip);
  }
}

/** Whoever counted a slot (one per pool), and gives it back. */
export interface SlotOwner {
  /** Gives back the slot of `user` and `ip`; called once per lease. */
  free(user: string, ip: string): void;
}

/**
 * A granted slot. A held stream keeps its lease for as long as it is open: one object with fixed
 * fields, its `release` on the prototype (the caller calls it as a method), no closure of its own.
 */
export class SlotLease implements Lease {
  readonly ok = true;
  private held = true;

  constructor(
    private readonly owner: SlotOwner,
    private readonly user: string,
    private readonly ip: string,
  ) {}

  release(): void {
    if (!this.held) return;
    this.held = false;
    this.owner.free(this.user, this.ip);
  }
}

/** Adds `by` to the count of `key`, forgetting keys whose count falls to zero. */
export function increment(counts: Map<string, number>, key: string, by: number): void {
  const next = (counts.get(key) ?? 0) + by;
  if (next <= 0) counts.delete(key);
  else counts.set(key, next);
}
