import type { Redis } from 'ioredis';
import { type HistoryEntry, toEntry } from './shared-topic';
import type { RedisLink } from './redis';

/** What a followed stream's owner is told. */
export interface StreamFollower {
  /** New entries, oldest first, in the order Redis holds them. */
  onEntries(entries: HistoryEntry[]): void;
  /** The reader lost Redis: entries may have been missed, the follower must give up. */
  onLost(): void;
}

/** Longest a read blocks; a new follower interrupts it (CLIENT UNBLOCK) rather than waiting. */
const BLOCK_MS = 5000;
/** Entries taken per stream per read: bounds one reply, the next read takes the rest. */
const BATCH = 1000;

/**
 * One blocking reader connection per relay for every topic it follows: a single
 * `XREAD BLOCK` over all their streams, so Redis work per event is one read per relay,
 * whatever the number of subscribers.
 */
export class StreamReader {
  private readonly followed = new Map<string, { cursor: string; follower: StreamFollower }>();
  private readonly client: Redis;
  private clientId: number | undefined;
  private wake: (() => void) | undefined;
  private closed = false;
  private reading = false;

  constructor(private readonly link: RedisLink) {
    this.client = link.blocking('reader');
    this.client.on('ready', () => {
      this.client.client('ID').then(
        (id) => (this.clientId = Number(id)),
        () => (this.clientId = undefined),
      );
      this.wake?.();
    });
    void this.loop();
  }

  /** Follows `streamKey` after `cursor` (a stream id; `0-0` for everything). Returns how to stop. */
  follow(streamKey: string, cursor: string, follower: StreamFollower): () => void {
    const entry = { cursor, follower };
    this.followed.set(streamKey, entry);
    this.interrupt();
    return () => {
      if (this.followed.get(streamKey) === entry) this.followed.delete(streamKey);
    };
  }

  close(): void {
    this.closed = true;
    this.followed.clear();
    this.wake?.();
  }

  /** Ends a blocked read so the next one includes the streams followed since. */
  private interrupt(): void {
    this.wake?.();
    if (this.reading && this.clientId !== undefined && this.link.ready) {
      this.link.commands.call('CLIENT', 'UNBLOCK', String(this.clientId)).catch(() => undefined);
    }
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      if (this.followed.size === 0 || this.client.status !== 'ready') {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          // A lost connection comes back on its own; look again now and then.
          setTimeout(resolve, 200).unref();
        });
        continue;
      }
      const keys = [...this.followed.keys()];
      const cursors = keys.map((key) => this.followed.get(key)?.cursor ?? '$');
      let reply: [string, [string, string[]][]][] | null;
      this.reading = true;
      try {
        reply = (await this.client.xread('COUNT', BATCH, 'BLOCK', BLOCK_MS, 'STREAMS', ...keys, ...cursors)) as typeof reply;
      } catch {
        this.reading = false;
        this.lose();
        continue;
      } finally {
        this.reading = false;
      }
      for (const [key, items] of reply ?? []) {
        const followed = this.followed.get(key);
        if (!followed || items.length === 0) continue;
        followed.cursor = items[items.length - 1]?.[0] ?? followed.cursor;
        followed.follower.onEntries(items.map(toEntry));
      }
    }
  }

  /** Redis went away mid-read: whatever was appended meanwhile may be gone, every follower gives up. */
  private lose(): void {
    const followers = [...this.followed.values()];
    this.followed.clear();
    for (const { follower } of followers) follower.onLost();
  }
}
