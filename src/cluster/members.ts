import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { RedisLink } from './redis';
import type { ClusterSigner, SignedKind } from './signer';

/** One relay of a cluster, as it describes itself. */
export interface Member {
  /** The relay's id in Redis (its `RedisLink.instanceId`). */
  readonly id: string;
  readonly hostname: string;
  readonly pid: number;
  /** When it joined (ISO 8601). */
  readonly startedAt: string;
}

// Each relay scores itself in a sorted set with the time its membership lapses (from Redis's
// clock, so the relays' clocks do not matter) and keeps its description in a hash beside it;
// both under one hash tag. Listing skips lapsed members, and a beat forgets them.

const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** KEYS: live, info. ARGV: id, TTL ms, description. */
const BEAT = `${NOW}
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - 1)) do redis.call('HDEL', KEYS[2], dead) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1)
return 1`;

/** KEYS: live, info. The descriptions of the members whose membership has not lapsed. */
const LIST = `${NOW}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(ids))`;

/** KEYS: live, info. ARGV: id. */
const LEAVE = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1`;

type Scripted = Redis & {
  memberBeat(...args: string[]): Promise<number>;
  memberList(...args: string[]): Promise<(string | null)[]>;
  memberLeave(...args: string[]): Promise<number>;
};

/**
 * Which relays share this Redis now: each says it is there every third of `ttlMs`, and one that
 * stopped saying so (killed, paused, cut off from Redis) is gone from the list within `ttlMs`.
 */
export class ClusterMembers {
  /** This relay's description. */
  readonly self: Member;
  private readonly redis: Scripted;
  private readonly keys: [string, string];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly link: RedisLink,
    private readonly ttlMs: number,
    /** Signs this relay's description and checks the others'; undefined: Redis is trusted. */
    private readonly signer?: ClusterSigner,
    private readonly onForged: (kind: SignedKind, detail: Record<string, string>) => void = () => undefined,
  ) {
    this.self = { id: link.instanceId, hostname: hostname(), pid: process.pid, startedAt: new Date().toISOString() };
    const root = `{${link.prefix}:members}`;
    this.keys = [`${root}:live`, `${root}:info`];
    this.redis = link.commands as Scripted;
    this.redis.defineCommand('memberBeat', { numberOfKeys: 2, lua: BEAT });
    this.redis.defineCommand('memberList', { numberOfKeys: 2, lua: LIST });
    this.redis.defineCommand('memberLeave', { numberOfKeys: 2, lua: LEAVE });
    this.timer = setInterval(() => void this.beat(), Math.max(50, Math.floor(ttlMs / 3)));
    this.timer.unref();
    // When the link is ready, not when a connection is: on a Redis Cluster that is once the slots are all served.
    link.onReady(() => void this.beat());
  }

  /** The relays whose membership has not lapsed, this one among them while Redis holds it; rejects when Redis does not answer. */
  async list(): Promise<Member[]> {
    const descriptions = await this.redis.memberList(...this.keys);
    const members: Member[] = [];
    for (const description of descriptions) {
      const parsed = description === null ? undefined : parseMember(description);
      if (!parsed) continue;
      const { member, sig } = parsed;
      if (this.signer !== undefined && !this.signer.verify('member', partsOf(member), sig)) {
        this.onForged('member', { id: member.id });
        continue;
      }
      members.push(member);
    }
    return members.sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.id.localeCompare(b.id));
  }

  /** Stops saying it is there, and leaves the list at once. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.redis.memberLeave(...this.keys, this.link.instanceId).catch(() => undefined);
  }

  private async beat(): Promise<void> {
    if (!this.link.ready) return;
    // A missed beat is the next one's to make up; the list says who is there meanwhile.
    const description = JSON.stringify({ ...this.self, sig: this.signer?.sign('member', partsOf(this.self)) });
    await this.redis.memberBeat(...this.keys, this.link.instanceId, String(this.ttlMs), description).catch(() => undefined);
  }
}

/** What a member's signature covers: every field of its description. */
function partsOf(member: Member): string[] {
  return [member.id, member.hostname, String(member.pid), member.startedAt];
}

/** A description a relay wrote, with its signature if any; undefined when it is not one: Redis is shared, its contents not trusted. */
function parseMember(text: string): { member: Member; sig: string | undefined } | undefined {
  try {
    const value = JSON.parse(text) as Partial<Member> & { sig?: unknown };
    if (typeof value.id === 'string' && typeof value.hostname === 'string' && typeof value.pid === 'number' && typeof value.startedAt === 'string') {
      return { member: { id: value.id, hostname: value.hostname, pid: value.pid, startedAt: value.startedAt }, sig: typeof value.sig === 'string' ? value.sig : undefined };
    }
  } catch {
    // not a description: skipped
  }
  return undefined;
}
