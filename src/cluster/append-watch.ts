import type { Redis } from 'ioredis';
import type { RedisLink } from './redis';
import { type HistoryEntry, type SharedTopicStore, toEntry } from './shared-topic';

/** What a followed topic's owner is told. */
export interface StreamFollower {
  /**
   * Whether an entry is one a relay of the cluster wrote (its signature verifies). An
   * announcement is only what someone published: its entries' ids count as positions in the
   * stream only when this accepts them.
   */
  accepts(entry: HistoryEntry): boolean;
  /** New entries it accepted, oldest first, in the order Redis holds them. */
  onEntries(entries: HistoryEntry[]): void;
  /** The announcements of this topic can no longer be heard: entries may have been missed, the follower must give up. */
  onLost(): void;
}

/** Entries taken per read when catching up: bounds one reply, the next read takes the rest. */
const CATCH_UP_BATCH = 1000;

/**
 * How far past the newest id this relay read from a node, allowing for the time since, an
 * announced id may be and still be believed without a read (the append's delay and clocks'
 * drift fit well within it).
 */
const ANNOUNCED_AHEAD_MS = 1000;

/** What an append announces: the id before it, its last id, and its entries when they were small enough to carry. */
interface Announcement {
  readonly prev: string;
  readonly last: string;
  readonly entries: HistoryEntry[] | undefined;
}

interface Followed {
  readonly topic: string;
  readonly channel: string;
  /** The last entry handed to the follower. */
  cursor: string;
  readonly follower: StreamFollower;
  /** The node whose connection hears this topic's announcements (undefined: between two nodes). */
  listener: NodeListener | undefined;
  /** History reads in flight; announcements wait in `held` until none is. */
  reading: number;
  held: Announcement[];
}

/** One subscriber connection to one Redis node, for the announcements of every followed topic it serves. */
interface NodeListener {
  readonly node: string;
  readonly client: Redis;
  readonly channels: Set<string>;
  /**
   * The largest gap seen between an id read from this node's streams and this relay's clock at
   * the time (ids are the node's clock when appended): undefined until a read returned an entry.
   */
  aheadMs: number | undefined;
}

/**
 * Hears the appends of every topic this relay follows. The owner's append script announces
 * each batch on the topic's channel (PUBLISH; SPUBLISH on a Redis Cluster, so only the shard
 * holding the topic carries it) with its entries; this relay listens on one connection per
 * node, whatever the number of topics, and needs no command per event. Each announcement says
 * which id came before it: one that does not follow the last entry handed on (a missed
 * announcement, a topic joined mid-stream, entries too big to carry) is filled in by reading
 * the stream after that entry, so followers get every entry once, in order.
 *
 * On a Redis Cluster a topic's slot can move to another node (resharding, failover): Redis then
 * unsubscribes its channel on the old node, and once the client learned the new slot map the
 * topic is heard on the new node and the history read from where it was.
 */
export class AppendWatch {
  private readonly followed = new Map<string, Followed>();
  private readonly listeners = new Map<string, NodeListener>();

  constructor(
    private readonly link: RedisLink,
    private readonly store: SharedTopicStore,
  ) {
    link.onSlotsRefreshed(() => this.relocate());
  }

  /** Follows `topic` after `cursor` (a stream id; `0-0` for everything). Returns how to stop. */
  follow(topic: string, cursor: string, follower: StreamFollower): () => void {
    const channel = this.store.channel(topic);
    const followed: Followed = { topic, channel, cursor, follower, listener: undefined, reading: 0, held: [] };
    const before = this.followed.get(channel);
    if (before) this.detach(before);
    this.followed.set(channel, followed);
    this.attach(followed);
    return () => {
      if (this.followed.get(channel) !== followed) return;
      this.followed.delete(channel);
      this.detach(followed);
    };
  }

  close(): void {
    this.followed.clear();
    for (const listener of this.listeners.values()) listener.client.disconnect(false);
    this.listeners.clear();
  }

  /** Listens for the topic's announcements on the node that holds it, then reads what came before. */
  private attach(followed: Followed): void {
    const node = this.link.nodeOf(followed.channel);
    if (node === undefined) return this.lose(followed);
    const listener = this.listenerOf(node);
    followed.listener = listener;
    listener.channels.add(followed.channel);
    // Announcements that arrive before the read below are held, then sorted out against it.
    followed.reading += 1;
    const subscribed = this.link.sharded ? listener.client.ssubscribe(followed.channel) : listener.client.subscribe(followed.channel);
    subscribed.then(
      () => {
        followed.reading -= 1;
        if (this.current(followed, listener)) void this.catchUp(followed);
      },
      (err: unknown) => {
        followed.reading -= 1;
        if (!this.current(followed, listener)) return;
        listener.channels.delete(followed.channel);
        followed.listener = undefined;
        // The slot moved before the client knew: listen where the next slot map says.
        if (err instanceof Error && err.message.startsWith('MOVED ')) return this.link.refreshSlots();
        this.lose(followed);
      },
    );
  }

  private detach(followed: Followed): void {
    const listener = followed.listener;
    followed.listener = undefined;
    if (!listener || !listener.channels.delete(followed.channel)) return;
    if (listener.client.status !== 'ready') return;
    const unsubscribed = this.link.sharded ? listener.client.sunsubscribe(followed.channel) : listener.client.unsubscribe(followed.channel);
    unsubscribed.catch(() => undefined);
  }

  /** The slot map changed: topics whose slot another node serves now are heard there. */
  private relocate(): void {
    for (const followed of this.followed.values()) {
      const node = this.link.nodeOf(followed.channel);
      if (node === undefined || followed.listener?.node === node) continue;
      this.detach(followed);
      this.attach(followed);
    }
  }

  private listenerOf(node: string): NodeListener {
    const known = this.listeners.get(node);
    if (known) return known;
    const listener: NodeListener = { node, client: this.link.nodeConnection(node, 'appends'), channels: new Set(), aheadMs: undefined };
    this.listeners.set(node, listener);
    listener.client.on(this.link.sharded ? 'smessage' : 'message', (channel: string, message: string) => {
      const followed = this.followed.get(channel);
      if (followed && followed.listener === listener) this.hear(followed, message);
    });
    // Redis unsubscribed this node's channels of a slot that moved away (ioredis says `moved`).
    listener.client.on('moved', () => this.link.refreshSlots());
    listener.client.once('end', () => {
      if (this.listeners.get(node) === listener) this.listeners.delete(node);
      // What was announced while the connection was down is unknown: its topics give up.
      for (const channel of listener.channels) {
        const followed = this.followed.get(channel);
        if (followed && followed.listener === listener) this.lose(followed);
      }
      listener.channels.clear();
    });
    return listener;
  }

  private hear(followed: Followed, message: string): void {
    const announcement = parseAnnouncement(message);
    // Anything on the channel is Redis's to carry, not ours to trust: a malformed message is dropped.
    if (announcement) this.handle(followed, announcement);
  }

  private handle(followed: Followed, announcement: Announcement): void {
    if (followed.reading > 0) {
      followed.held.push(announcement);
      return;
    }
    if (compareIds(announcement.last, followed.cursor) <= 0) return;
    if (announcement.entries && compareIds(announcement.prev, followed.cursor) <= 0 && this.plausible(followed, announcement.last)) {
      return this.deliver(followed, announcement.entries, false);
    }
    void this.catchUp(followed);
  }

  /**
   * Whether an announced id could be in the stream by now: Redis made it from its clock, moments
   * ago. One much later (published by someone else) would put the cursor past every append to
   * come; the entries are read from the stream instead, where ids are what Redis holds.
   */
  private plausible(followed: Followed, id: string): boolean {
    const ahead = followed.listener?.aheadMs;
    return ahead !== undefined && idMs(id) <= Date.now() + ahead + ANNOUNCED_AHEAD_MS;
  }

  /** Reads the history after the cursor, then sorts out the announcements held meanwhile. */
  private async catchUp(followed: Followed): Promise<void> {
    followed.reading += 1;
    try {
      for (;;) {
        const entries = await this.store.after(followed.topic, followed.cursor, CATCH_UP_BATCH);
        if (this.followed.get(followed.channel) !== followed) return;
        const newest = entries.at(-1);
        if (newest && followed.listener) followed.listener.aheadMs = Math.max(followed.listener.aheadMs ?? -Infinity, idMs(newest.streamId) - Date.now());
        this.deliver(followed, entries, true);
        if (entries.length < CATCH_UP_BATCH) break;
      }
    } catch {
      return this.lose(followed);
    } finally {
      followed.reading -= 1;
    }
    if (followed.reading > 0) return;
    const held = followed.held;
    followed.held = [];
    for (const announcement of held) this.handle(followed, announcement);
  }

  /**
   * Hands on the accepted entries after the cursor; `entries` follow on from an id at or before it.
   * Ids read from the stream are where Redis holds entries, forged or not: the cursor moves past
   * them all, so a forged one is not read again. An announcement's ids are whatever its publisher
   * wrote: only entries the follower accepts move the cursor, else one forged far ahead would
   * make every later append look old.
   */
  private deliver(followed: Followed, entries: HistoryEntry[], read: boolean): void {
    const fresh = entries.filter((entry) => compareIds(entry.streamId, followed.cursor) > 0);
    const accepted = fresh.filter((entry) => followed.follower.accepts(entry));
    const last = read ? fresh.at(-1) : accepted.at(-1);
    if (last) followed.cursor = last.streamId;
    if (accepted.length > 0) followed.follower.onEntries(accepted);
  }

  private lose(followed: Followed): void {
    if (this.followed.get(followed.channel) !== followed) return;
    this.followed.delete(followed.channel);
    this.detach(followed);
    followed.follower.onLost();
  }

  private current(followed: Followed, listener: NodeListener): boolean {
    return this.followed.get(followed.channel) === followed && followed.listener === listener;
  }
}

/** An announcement as the append script writes it (see shared-topic.ts), or undefined. */
function parseAnnouncement(message: string): Announcement | undefined {
  let value: unknown;
  try {
    value = JSON.parse(message);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || !isId(value[0]) || !isId(value[1]) || compareIds(value[0], value[1]) >= 0) return undefined;
  if (value.length === 2) return { prev: value[0], last: value[1], entries: undefined };
  const entries: HistoryEntry[] = [];
  let before = value[0];
  for (const item of value.slice(2) as unknown[]) {
    // Ids in order after `prev`, the last one `last`: the cursor never moves back.
    if (!Array.isArray(item) || !isId(item[0]) || compareIds(item[0], before) <= 0 || !Array.isArray(item[1])) return undefined;
    const flat = item[1] as unknown[];
    if (!flat.every((field) => typeof field === 'string')) return undefined;
    entries.push(toEntry([item[0], flat as string[]]));
    before = item[0];
  }
  if (before !== value[1]) return undefined;
  return { prev: value[0], last: value[1], entries };
}

function isId(value: unknown): value is string {
  return typeof value === 'string' && /^\d{1,15}-\d{1,15}$/.test(value);
}

/** The milliseconds part of a stream id. */
function idMs(id: string): number {
  return Number(id.slice(0, id.indexOf('-')));
}

/** Orders two stream ids (`<ms>-<seq>`). */
function compareIds(a: string, b: string): number {
  const [aMs = 0, aSeq = 0] = a.split('-').map(Number);
  const [bMs = 0, bSeq = 0] = b.split('-').map(Number);
  return aMs - bMs || aSeq - bSeq;
}
