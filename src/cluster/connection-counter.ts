import type { Redis } from 'ioredis';
import type { ConnectionCounter, ConnectionLimits, Lease, Refusal, SlotOwner, SlotPool } from '../limits/connections';
import { MemoryConnectionCounter, SlotLease, increment } from '../limits/connections';
import type { RedisLink } from './redis';

// Each count is a hash per user and pool, per IP and one for the total, with one field per relay
// holding that relay's open streams. A relay is alive while its member in the `relays`
// sorted set scores in the future; it pushes that score forward every third of the slot
// TTL. Counting skips the fields of relays that stopped doing so, so a killed relay's
// slots come back within the TTL without anyone cleaning up; the sweep in HEARTBEAT then
// deletes them for good. Times come from Redis (TIME), so the relays' clocks do not matter.

const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** KEYS: relays, total, user, ip, this relay's key set. ARGV: relay, limit total, per user, per IP. */
const ACQUIRE = `${NOW}
local function live(hash)
  local sum = 0
  local fields = redis.call('HGETALL', hash)
  for i = 1, #fields, 2 do
    local until_ms = redis.call('ZSCORE', KEYS[1], fields[i])
    if until_ms and tonumber(until_ms) >= now then sum = sum + tonumber(fields[i + 1]) end
  end
  return sum
end
if live(KEYS[2]) >= tonumber(ARGV[2]) then return 'total' end
if live(KEYS[3]) >= tonumber(ARGV[3]) then return 'perUser' end
if live(KEYS[4]) >= tonumber(ARGV[4]) then return 'perIp' end
for i = 2, 4 do
  redis.call('HINCRBY', KEYS[i], ARGV[1], 1)
  redis.call('SADD', KEYS[5], KEYS[i])
end
return 'ok'`;

/** KEYS: total, user, ip, this relay's key set. ARGV: relay. */
const RELEASE = `
for i = 1, 3 do
  if redis.call('HINCRBY', KEYS[i], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[i], ARGV[1])
    redis.call('SREM', KEYS[4], KEYS[i])
  end
end
return 1`;

/**
 * KEYS: relays. ARGV: relay, TTL ms, key-set prefix. Pushes this relay's lease forward and
 * says whether it had lapsed (the relay was paused, or Redis lost it): then its counts must
 * be written again. Sweeps one dead relay's fields per call.
 */
const HEARTBEAT = `${NOW}
local before = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - 1, 'LIMIT', 0, 1)
if dead[1] then
  local set = ARGV[3] .. dead[1]
  for _, hash in ipairs(redis.call('SMEMBERS', set)) do redis.call('HDEL', hash, dead[1]) end
  redis.call('DEL', set)
  redis.call('ZREM', KEYS[1], dead[1])
end
if before and tonumber(before) >= now then return 0 end
return 1`;

/** KEYS: this relay's key set. ARGV: relay, then hash and count pairs. Replaces every count of this relay. */
const REWRITE = `
for _, hash in ipairs(redis.call('SMEMBERS', KEYS[1])) do redis.call('HDEL', hash, ARGV[1]) end
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 2 do
  redis.call('HSET', ARGV[i], ARGV[1], ARGV[i + 1])
  redis.call('SADD', KEYS[1], ARGV[i])
end
return 1`;

/** KEYS: relays, this relay's key set. ARGV: relay. A relay that stops gives its slots back at once. */
const LEAVE = `
for _, hash in ipairs(redis.call('SMEMBERS', KEYS[2])) do redis.call('HDEL', hash, ARGV[1]) end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1`;

/** How soon a relay tries to write its counts back after a failed write. */
const RETRY_MS = 1000;

type Scripted = Redis & {
  slotAcquire(...args: string[]): Promise<string>;
  slotRelease(...args: string[]): Promise<number>;
  slotHeartbeat(...args: string[]): Promise<number>;
  slotRewrite(...args: string[]): Promise<number>;
  slotLeave(...args: string[]): Promise<number>;
};

/**
 * Open streams counted across every relay that shares a Redis: per user, per IP and in all.
 * A dead relay's slots come back within `slotTtlMs`. While Redis is away, each relay holds
 * the limits alone with its own counts, and writes them back once Redis answers again.
 */
export class RedisConnectionCounter implements ConnectionCounter {
  private readonly local: MemoryConnectionCounter;
  private readonly pools: Readonly<Record<SlotPool, PoolSlots>> = { streams: new PoolSlots(this, 'streams'), calls: new PoolSlots(this, 'calls') };
  private readonly redis: Scripted;
  private readonly timer: NodeJS.Timeout;
  /** The heartbeat tried again soon after a failure. */
  private retry: NodeJS.Timeout | undefined;
  /** Per key: how many slots this relay holds there (what REWRITE puts back). */
  private readonly held = new Map<string, number>();
  /** Whether Redis holds this relay's counts right; false after any failed write, until a rewrite. */
  private trusted = false;
  /** Bumped on every failure, so a rewrite that raced one does not vouch for it. */
  private failures = 0;
  /** Rewrites sent: an acquire sent before one was wiped by it. */
  private rewrites = 0;
  private readonly keys: { relays: string; total: string; user: Readonly<Record<SlotPool, string>>; ip: string; set: string };

  constructor(
    private readonly link: RedisLink,
    private readonly limits: ConnectionLimits,
    private readonly slotTtlMs: number,
  ) {
    this.local = new MemoryConnectionCounter(limits);
    const root = `{${link.prefix}:slots}`;
    // Per-user keys of each pool under their own prefix: neither prefix starts the other, so no user id reaches another pool's key.
    const user = { streams: `${root}:user:`, calls: `${root}:call:` };
    this.keys = { relays: `${root}:relays`, total: `${root}:total`, user, ip: `${root}:ip:`, set: `${root}:held:` };
    this.redis = link.commands as Scripted;
    this.redis.defineCommand('slotAcquire', { numberOfKeys: 5, lua: ACQUIRE });
    this.redis.defineCommand('slotRelease', { numberOfKeys: 4, lua: RELEASE });
    this.redis.defineCommand('slotHeartbeat', { numberOfKeys: 1, lua: HEARTBEAT });
    this.redis.defineCommand('slotRewrite', { numberOfKeys: 1, lua: REWRITE });
    this.redis.defineCommand('slotLeave', { numberOfKeys: 2, lua: LEAVE });
    this.timer = setInterval(() => void this.heartbeat(), Math.max(50, Math.floor(slotTtlMs / 3)));
    this.timer.unref();
    // Counts go to Redis as soon as it answers, not a third of the TTL later: until then slots are counted here alone.
    link.onReady(() => void this.heartbeat());
    void this.heartbeat();
  }

  async acquire(user: string, ip: string, pool: SlotPool = 'streams'): Promise<Lease | Refusal> {
    const { relays, total } = this.keys;
    const userKey = this.keys.user[pool] + user;
    const ipKey = this.keys.ip + ip;
    const self = this.link.instanceId;
    let verdict = 'local';
    if (this.trusted && this.link.ready) {
      const rewrites = this.rewrites;
      verdict = await this.redis
        .slotAcquire(relays, total, userKey, ipKey, this.keys.set + self, self, String(this.limits.total), String(this.limits.perUser), String(this.limits.perIp))
        .catch(() => 'local');
      // A rewrite ran after this script: its count was replaced by a snapshot without it.
      if (verdict === 'ok' && rewrites !== this.rewrites) this.distrust();
    }
    if (verdict === 'total' || verdict === 'perUser' || verdict === 'perIp') return { ok: false, limit: verdict };
    const lease = await this.local.acquire(user, ip, pool);
    if (!lease.ok) {
      // Redis said yes but this relay alone is over: give the cluster slot back.
      if (verdict === 'ok') void this.releaseShared(userKey, ipKey);
      return lease;
    }
    // Counted in Redis only when Redis took it ('ok'); a local-only slot is written back by the next rewrite.
    if (verdict !== 'ok') this.distrust();
    for (const key of [total, userKey, ipKey]) increment(this.held, key, 1);
    // The local count's own lease is dropped: this lease gives the local slot back through `free`.
    return new SlotLease(this.pools[pool], user, ip);
  }

  /** Gives back a slot this counter granted from `pool`: here, and in Redis. */
  free(pool: SlotPool, user: string, ip: string): void {
    const userKey = this.keys.user[pool] + user;
    const ipKey = this.keys.ip + ip;
    this.local.free(pool, user, ip);
    for (const key of [this.keys.total, userKey, ipKey]) increment(this.held, key, -1);
    void this.releaseShared(userKey, ipKey);
  }

  /** Whether slots are counted in Redis now (false while Redis is away and until this relay's counts were written back). */
  get shared(): boolean {
    return this.trusted && this.link.ready;
  }

  snapshot(): { total: number; users: number; ips: number } {
    return this.local.snapshot();
  }

  /** Stops the heartbeat and gives this relay's slots back to the cluster. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    clearTimeout(this.retry);
    await this.redis.slotLeave(this.keys.relays, this.keys.set + this.link.instanceId, this.link.instanceId).catch(() => undefined);
  }

  private async releaseShared(userKey: string, ipKey: string): Promise<void> {
    const self = this.link.instanceId;
    if (!this.trusted || !this.link.ready) return this.distrust();
    await this.redis.slotRelease(this.keys.total, userKey, ipKey, this.keys.set + self, self).catch(() => this.distrust());
  }

  private distrust(): void {
    this.trusted = false;
    this.failures += 1;
    // The counts go back soon, not a third of the TTL later: a shard's failover or a lost write
    // must not keep the relay unready (and counting alone) for seconds after Redis answers again.
    if (this.retry !== undefined) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.heartbeat();
    }, RETRY_MS);
    this.retry.unref();
  }

  private async heartbeat(): Promise<void> {
    if (!this.link.ready) return this.distrust();
    const self = this.link.instanceId;
    try {
      const lapsed = await this.redis.slotHeartbeat(this.keys.relays, self, String(this.slotTtlMs), this.keys.set);
      if (lapsed === 0 && this.trusted) return;
      const failures = this.failures;
      // The snapshot and the script leave in the same tick: every release already sent runs
      // before it, every later one after it, so only acquires in flight can be missed (see acquire).
      const pairs = [...this.held].flatMap(([key, count]) => [key, String(count)]);
      this.rewrites += 1;
      await this.redis.slotRewrite(this.keys.set + self, self, ...pairs);
      if (failures === this.failures) this.trusted = true;
    } catch {
      this.distrust();
    }
  }
}

/** The owner of the slots one pool granted: gives them back through the counter. */
class PoolSlots implements SlotOwner {
  constructor(
    private readonly counter: RedisConnectionCounter,
    private readonly pool: SlotPool,
  ) {}

  free(user: string, ip: string): void {
    this.counter.free(this.pool, user, ip);
  }
}
