import type { Redis } from 'ioredis';
import type { RedisLink } from './redis';

// What Redis holds per topic, all under one hash tag so the scripts may touch every key:
//   lease   "<relay>/<token>" while a relay owns the upstream (SET NX PX, renewed)
//   fence   the token counter (INCR): every claim gets a larger one
//   events  a stream of the topic's history, one entry per relayed event or marker
//   meta    epoch (new whenever the history starts afresh), origin (the upstream id the
//           history starts after), bytes held, truncated (an entry was evicted), finished
// Appends check the lease in the same script, so a relay that lost it (paused past its
// lease, partitioned) writes nothing, however late its events arrive.

const NOW = `local t = redis.call('TIME')`;

/** The field APPEND puts first in every entry: its size, for the byte bound (no relay reads it). */
export const SIZE_FIELD = 's';

/** KEYS: lease, fence, events, meta. ARGV: relay, lease ms, retention ms, origin ('' none), has origin (0/1). */
const CLAIM = `${NOW}
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
if redis.call('HGET', KEYS[4], 'finished') == '1' then return false end
local token = redis.call('INCR', KEYS[2])
local holder = ARGV[1] .. '/' .. token
redis.call('SET', KEYS[1], holder, 'PX', ARGV[2])
if redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[4], 'epoch', t[1] .. '.' .. t[2] .. '.' .. token, 'bytes', 0)
  if ARGV[5] == '1' then redis.call('HSET', KEYS[4], 'origin', ARGV[4]) end
end
for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return holder`;

/** KEYS: lease, fence, events, meta. ARGV: holder, lease ms, retention ms. */
const RENEW = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return 1`;

/** KEYS: lease. ARGV: holder. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`;

/**
 * KEYS: lease, fence, events, meta. ARGV: holder, max entries, max bytes, retention ms, size,
 * finish (0/1), then the entry's field/value pairs. Refused (nil) unless `holder` holds the lease.
 */
const APPEND = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[3], '*', '${SIZE_FIELD}', ARGV[5], unpack(fields))
local bytes = redis.call('HINCRBY', KEYS[4], 'bytes', ARGV[5])
local length = redis.call('XLEN', KEYS[3])
while length > 1 and (length > tonumber(ARGV[2]) or bytes > tonumber(ARGV[3])) do
  local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
  redis.call('XDEL', KEYS[3], oldest[1])
  bytes = redis.call('HINCRBY', KEYS[4], 'bytes', -tonumber(oldest[2][2]))
  length = length - 1
  redis.call('HSET', KEYS[4], 'truncated', 1)
end
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[4], 'finished', 1)
  for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
elseif length == 1 then
  -- A stream XADD just made has no TTL yet; after that, the owner's renewals push every key's on.
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
return id`;

/** One entry of a topic's shared history: its stream id and its fields. */
export interface HistoryEntry {
  readonly streamId: string;
  readonly fields: ReadonlyMap<string, string>;
}

/** A topic's shared history as one relay found it. */
export interface LoadedHistory {
  /** Undefined when Redis holds no history for the topic. */
  readonly epoch: string | undefined;
  /** The upstream id the history starts after; undefined: from the start of the stream. */
  readonly origin: string | undefined;
  /** An entry was evicted: the history no longer reaches back to `origin`. */
  readonly truncated: boolean;
  readonly finished: boolean;
  readonly entries: HistoryEntry[];
}

type Scripted = Redis & {
  topicClaim(...args: string[]): Promise<string | null>;
  topicRenew(...args: string[]): Promise<number>;
  topicRelease(...args: string[]): Promise<number>;
  topicAppend(...args: string[]): Promise<string | null>;
};

/** Bounds of a topic's shared history, as the in-memory one's. */
export interface HistoryBounds {
  readonly maxEntries: number;
  readonly maxBytes: number;
}

/** The Redis side of shared topics: lease with fencing token, fenced append, history load. */
export class SharedTopicStore {
  private readonly redis: Scripted;

  constructor(
    private readonly link: RedisLink,
    private readonly bounds: HistoryBounds,
    /** How long an owner's lease lasts without renewal: how soon a dead owner is replaced. */
    readonly leaseMs: number,
    /** How long a topic's history outlives its last write or renewal. */
    private readonly retentionMs: number,
  ) {
    this.redis = link.commands as Scripted;
    this.redis.defineCommand('topicClaim', { numberOfKeys: 4, lua: CLAIM });
    this.redis.defineCommand('topicRenew', { numberOfKeys: 4, lua: RENEW });
    this.redis.defineCommand('topicRelease', { numberOfKeys: 1, lua: RELEASE });
    this.redis.defineCommand('topicAppend', { numberOfKeys: 4, lua: APPEND });
  }

  /** The stream key of a topic (what the shared reader follows). */
  eventsKey(topic: string): string {
    return this.keys(topic)[2];
  }

  /**
   * Takes the topic's lease if nobody holds it (and the topic is not finished); resolves with the
   * holder value to write with, or undefined. A history that Redis lost starts afresh here, with a
   * new epoch, from `origin`.
   */
  async claim(topic: string, origin: string | undefined): Promise<string | undefined> {
    const holder = await this.redis.topicClaim(...this.keys(topic), this.link.instanceId, String(this.leaseMs), String(this.retentionMs), origin ?? '', origin === undefined ? '0' : '1');
    return holder ?? undefined;
  }

  /** Pushes the lease forward; false when it is no longer this holder's. */
  async renew(topic: string, holder: string): Promise<boolean> {
    return (await this.redis.topicRenew(...this.keys(topic), holder, String(this.leaseMs), String(this.retentionMs))) === 1;
  }

  /** Gives the lease up (a relay with subscribers elsewhere takes over at its next check). */
  async release(topic: string, holder: string): Promise<void> {
    await this.redis.topicRelease(this.keys(topic)[0], holder);
  }

  /**
   * Appends one entry if `holder` still holds the lease; resolves with its stream id, or
   * undefined when refused (another relay owns the topic now). `finish` marks the topic
   * finished and keeps its keys for `keepMs` only.
   */
  async append(topic: string, holder: string, fields: readonly string[], size: number, finish?: { keepMs: number }): Promise<string | undefined> {
    const keepMs = finish ? finish.keepMs : this.retentionMs;
    const id = await this.redis.topicAppend(
      ...this.keys(topic),
      holder,
      String(this.bounds.maxEntries),
      String(this.bounds.maxBytes),
      String(Math.max(1, keepMs)),
      String(size),
      finish ? '1' : '0',
      ...fields,
    );
    return id ?? undefined;
  }

  /** The topic's meta and every entry of its history, read atomically. */
  async load(topic: string): Promise<LoadedHistory> {
    const [, , events, meta] = this.keys(topic);
    const replies = await this.redis.multi().hgetall(meta).xrange(events, '-', '+').exec();
    if (!replies) throw new Error('redis transaction aborted');
    const [metaReply, rangeReply] = replies;
    if (metaReply?.[0]) throw metaReply[0];
    if (rangeReply?.[0]) throw rangeReply[0];
    const fields = (metaReply?.[1] ?? {}) as Record<string, string>;
    const range = (rangeReply?.[1] ?? []) as [string, string[]][];
    return {
      epoch: fields.epoch,
      origin: fields.origin,
      truncated: fields.truncated === '1',
      finished: fields.finished === '1',
      entries: range.map(toEntry),
    };
  }

  /** The entries after `streamId`, oldest first (catching up before taking over). */
  async after(topic: string, streamId: string): Promise<HistoryEntry[]> {
    const range = (await this.redis.xrange(this.keys(topic)[2], `(${streamId}`, '+')) as [string, string[]][];
    return range.map(toEntry);
  }

  private keys(topic: string): [lease: string, fence: string, events: string, meta: string] {
    const root = `${this.link.prefix}:{${topic}}`;
    return [`${root}:lease`, `${root}:fence`, `${root}:events`, `${root}:meta`];
  }
}

/** An XRANGE/XREAD item as an entry. */
export function toEntry([streamId, flat]: [string, string[]]): HistoryEntry {
  const fields = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) fields.set(flat[i] as string, flat[i + 1] as string);
  return { streamId, fields };
}
