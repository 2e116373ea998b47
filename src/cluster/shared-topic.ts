import type { Cluster, Redis } from 'ioredis';
import type { RedisLink } from './redis';

// What Redis holds per topic, all under one hash tag so the scripts may touch every key (and
// a Redis Cluster keeps them on one shard):
//   lease   "<relay>/<token>" while a relay owns the upstream (SET NX PX, renewed)
//   fence   the token counter (INCR): every claim gets a larger one
//   events  a stream of the topic's history, one entry per relayed event or marker
//   meta    epoch (new whenever the history starts afresh), origin (the upstream id the
//           history starts after), bytes held, batch (the token of the last append),
//           truncated (an entry was evicted), finished
//   appends the channel each append is announced on (PUBLISH, or SPUBLISH on a Redis Cluster)
//   readers a POST answer's only: set while clients read it on relays other than its owner
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
 * KEYS: lease, meta, readers. ARGV: readers' mark ms. Marks the answer read here for that long if
 * it is still held, and says whether it is leased, held and finished.
 */
const ANSWER_STATE = `
local held = redis.call('EXISTS', KEYS[2])
if held == 1 then redis.call('SET', KEYS[3], '1', 'PX', ARGV[1]) end
return {redis.call('EXISTS', KEYS[1]), held, redis.call('HGET', KEYS[2], 'finished') == '1' and 1 or 0}`;

/** KEYS: lease, fence, events, meta, readers. Deletes a POST answer's keys; 0 when it had none. */
const DISCARD = `
if redis.call('EXISTS', KEYS[4]) == 0 then return 0 end
redis.call('DEL', unpack(KEYS))
return 1`;

/**
 * KEYS: lease, fence, events, meta, appends channel. ARGV: holder, max entries, max bytes,
 * retention ms, finish (0/1), publish command, inline (1: the announcement carries the entries'
 * fields, 0: their ids only), the id appended before (announced as such), entry count, batch
 * token, then per entry its size, its field count and its field/value pairs. Refused (nil)
 * unless `holder` holds the lease; else the entries' stream ids, in order. The meta keeps the
 * last batch's token: a batch sent again after its reply was lost finds it there and gets the
 * same ids back, not a second copy.
 *
 * The byte bound holds after every call. The entry bound lets the stream grow a sixteenth past
 * it before trimming back to it: a full history is trimmed once per that many calls, not at
 * every one (reading the entries dropped, for their sizes, is most of a trim's work).
 *
 * The announcement is JSON: [previous id, last id, [id, [field, value, …]], …], or only
 * [previous id, last id] (readers fetch the entries).
 */
const APPEND = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local count = tonumber(ARGV[9])
local meta = redis.call('HMGET', KEYS[4], 'batch', 'bytes')
if meta[1] == ARGV[10] then
  local done = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', count)
  local ids = {}
  for j = #done, 1, -1 do ids[#ids + 1] = done[j][1] end
  return ids
end
local bytes = tonumber(meta[2]) or 0
local inline = ARGV[7] == '1'
local message = {ARGV[8], ''}
local ids = {}
local at = 11
for n = 1, count do
  local size, last_field = ARGV[at], at + 1 + tonumber(ARGV[at + 1])
  local id = redis.call('XADD', KEYS[3], '*', '${SIZE_FIELD}', size, unpack(ARGV, at + 2, last_field))
  ids[n] = id
  if inline then message[n + 2] = {id, {unpack(ARGV, at + 2, last_field)}} end
  bytes = bytes + tonumber(size)
  at = last_field + 1
end
message[2] = ids[count]
local length = redis.call('XLEN', KEYS[3])
local update = {'bytes', 0, 'batch', ARGV[10]}
local max_entries, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
if length > max_entries + math.ceil(max_entries / 16) or bytes > max_bytes then
  -- The oldest entries go, never the newest: read those the entry bound drops and the first one kept,
  -- then more, a few at a time, while the bytes are over.
  local dropped, kept, start = 0, nil, '-'
  while kept == nil do
    local want = math.max(length - max_entries - dropped, 0) + (start == '-' and 1 or 16)
    local oldest = redis.call('XRANGE', KEYS[3], start, '+', 'COUNT', want)
    if #oldest == 0 then break end
    for _, entry in ipairs(oldest) do
      if length - dropped > 1 and (length - dropped > max_entries or bytes > max_bytes) then
        dropped = dropped + 1
        bytes = bytes - tonumber(entry[2][2])
      else
        kept = entry[1]
        break
      end
    end
    start = '(' .. oldest[#oldest][1]
  end
  if dropped > 0 and kept then
    redis.call('XTRIM', KEYS[3], 'MINID', kept)
    update[#update + 1] = 'truncated'
    update[#update + 1] = 1
  end
end
update[2] = bytes
if ARGV[5] == '1' then
  update[#update + 1] = 'finished'
  update[#update + 1] = 1
end
redis.call('HSET', KEYS[4], unpack(update))
if ARGV[5] == '1' then
  for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
elseif length <= count then
  -- A stream XADD just made has no TTL yet; after that, the owner's renewals push every key's on.
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
redis.call(ARGV[6], KEYS[5], cjson.encode(message))
return ids`;

/** Above this many bytes of fields, an append's announcement carries its ids only; readers fetch the entries. */
const INLINE_LIMIT = 64 * 1024;

/** One entry to append: its field/value pairs and the size it counts against the history's byte bound. */
export interface NewEntry {
  readonly fields: readonly string[];
  readonly size: number;
}

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
  /** A relay holds the topic's lease. */
  readonly leased: boolean;
  readonly entries: HistoryEntry[];
}

type Scripted = (Redis | Cluster) & {
  topicClaim(...args: string[]): Promise<string | null>;
  topicRenew(...args: string[]): Promise<number>;
  topicRelease(...args: string[]): Promise<number>;
  topicAppend(...args: string[]): Promise<string[] | null>;
  answerState(...args: string[]): Promise<[number, number, number]>;
  answerDiscard(...args: string[]): Promise<number>;
};

/** Where a POST answer that another relay reads stands, as a relay following it finds it. */
export interface AnswerState {
  /** Its owner still holds the lease: it reads the backend's answer. */
  readonly leased: boolean;
  /** Redis holds its history (it was not cancelled, abandoned or expired). */
  readonly held: boolean;
  readonly finished: boolean;
}

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
    this.redis.defineCommand('topicAppend', { numberOfKeys: 5, lua: APPEND });
    this.redis.defineCommand('answerState', { numberOfKeys: 3, lua: ANSWER_STATE });
    this.redis.defineCommand('answerDiscard', { numberOfKeys: 5, lua: DISCARD });
  }

  /** The channel a topic's appends are announced on (what followers listen to). */
  channel(topic: string): string {
    return `${this.root(topic)}:appends`;
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

  /**
   * How long the topic's lease has left, in ms; 0 when nobody holds it (it lapsed, or was given
   * up). A lease is never set without an expiry: one without is reported as a full lease.
   */
  async leaseLeft(topic: string): Promise<number> {
    const ms = await this.redis.pttl(this.keys(topic)[0]);
    return ms === -1 ? this.leaseMs : Math.max(0, ms);
  }

  /** Gives the lease up (a relay with subscribers elsewhere takes over at its next check). */
  async release(topic: string, holder: string): Promise<void> {
    await this.redis.topicRelease(this.keys(topic)[0], holder);
  }

  /**
   * Appends `entries` in one script if `holder` still holds the lease, and announces them to the
   * followers as coming after `previous` (the last id this holder appended, or found in the history
   * when it took the lease: it is the only writer); resolves with their stream ids in order, or
   * undefined when refused (another relay owns the topic now). `token` names the batch: sent
   * again with the same token (its reply was lost), it is not appended twice. `finish` marks the
   * topic finished and keeps its keys for `keepMs` only.
   */
  async append(topic: string, holder: string, previous: string, token: string, entries: readonly NewEntry[], finish?: { keepMs: number }): Promise<string[] | undefined> {
    const keepMs = finish ? finish.keepMs : this.retentionMs;
    let announced = 0;
    for (const entry of entries) for (const field of entry.fields) announced += Buffer.byteLength(field);
    const args = [
      ...this.keys(topic),
      this.channel(topic),
      holder,
      String(this.bounds.maxEntries),
      String(this.bounds.maxBytes),
      String(Math.max(1, keepMs)),
      finish ? '1' : '0',
      this.link.sharded ? 'SPUBLISH' : 'PUBLISH',
      announced > INLINE_LIMIT ? '0' : '1',
      previous,
      String(entries.length),
      token,
    ];
    for (const entry of entries) args.push(String(entry.size), String(entry.fields.length), ...entry.fields);
    const ids = await this.redis.topicAppend(...args);
    return ids ?? undefined;
  }

  /**
   * Where a POST answer this relay follows stands; marks it read here for `readMs` (its owner
   * does not give it up while the mark lasts).
   */
  async answerState(topic: string, readMs: number): Promise<AnswerState> {
    const [lease, , , meta] = this.keys(topic);
    const [leased, held, finished] = await this.redis.answerState(lease, meta, this.readersKey(topic), String(readMs));
    return { leased: leased === 1, held: held === 1, finished: finished === 1 };
  }

  /** Whether Redis holds a topic's history (a POST answer's: it was made, and not dropped or expired). */
  async held(topic: string): Promise<boolean> {
    return (await this.redis.exists(this.keys(topic)[3])) === 1;
  }

  /** How much longer clients on other relays are marked as reading a POST answer, in ms (0: none). */
  async readersLeft(topic: string): Promise<number> {
    return Math.max(0, await this.redis.pttl(this.readersKey(topic)));
  }

  /** Deletes a POST answer's history and lease (cancelled, or abandoned); false when Redis held none. */
  async discard(topic: string): Promise<boolean> {
    return (await this.redis.answerDiscard(...this.keys(topic), this.readersKey(topic))) === 1;
  }

  /** The topic's meta and every entry of its history, read atomically, and whether its lease is held. */
  async load(topic: string): Promise<LoadedHistory> {
    const [lease, , events, meta] = this.keys(topic);
    const replies = await this.redis.multi().hgetall(meta).xrange(events, '-', '+').exists(lease).exec();
    if (!replies) throw new Error('redis transaction aborted');
    const [metaReply, rangeReply, leaseReply] = replies;
    if (metaReply?.[0]) throw metaReply[0];
    if (rangeReply?.[0]) throw rangeReply[0];
    if (leaseReply?.[0]) throw leaseReply[0];
    const fields = (metaReply?.[1] ?? {}) as Record<string, string>;
    const range = (rangeReply?.[1] ?? []) as [string, string[]][];
    return {
      epoch: fields.epoch,
      origin: fields.origin,
      truncated: fields.truncated === '1',
      finished: fields.finished === '1',
      leased: leaseReply?.[1] === 1,
      entries: range.map(toEntry),
    };
  }

  /** The entries after `streamId`, oldest first, at most `count` when given (catching up). */
  async after(topic: string, streamId: string, count?: number): Promise<HistoryEntry[]> {
    const key = this.keys(topic)[2];
    const range = (await (count === undefined ? this.redis.xrange(key, `(${streamId}`, '+') : this.redis.xrange(key, `(${streamId}`, '+', 'COUNT', count))) as [string, string[]][];
    return range.map(toEntry);
  }

  private keys(topic: string): [lease: string, fence: string, events: string, meta: string] {
    const root = this.root(topic);
    return [`${root}:lease`, `${root}:fence`, `${root}:events`, `${root}:meta`];
  }

  private readersKey(topic: string): string {
    return `${this.root(topic)}:readers`;
  }

  /** Every key of a topic starts with this: one hash tag per topic. */
  private root(topic: string): string {
    return `${this.link.prefix}:{${topic}}`;
  }
}

/** An XRANGE item as an entry. */
export function toEntry([streamId, flat]: [string, string[]]): HistoryEntry {
  const fields = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) fields.set(flat[i] as string, flat[i + 1] as string);
  return { streamId, fields };
}
