/** What the budget needs of a topic's history (a `MemoryReplayBuffer`). */
export interface BudgetedRing {
  /** Sequence number of its oldest held event; events are numbered from 0. */
  readonly head: number;
  /** Events held. */
  readonly length: number;
  /** Its topic has no reader: its events are the first to go. */
  readonly idle: boolean;
  /** Drops its oldest event; returns the bytes freed. */
  evictOldest(): number;
}

interface Entry {
  readonly ring: BudgetedRing;
  readonly seq: number;
}

/**
 * The bytes of replay history one process may hold, across all its topics. Past the cap
 * it evicts idle histories first (topics lingering with no reader, or finished), the one
 * idle longest first, then the oldest events of the process, whichever topic holds them.
 * Each eviction costs O(1) amortized: events are queued in arrival order across topics.
 */
export class HistoryBudget {
  private held = 0;
  /** Events held, in arrival order across the process; entries of events already gone are skipped. */
  private order: Entry[] = [];
  private start = 0;
  /** Events held in all rings (the live part of `order`). */
  private events = 0;
  /** Idle rings that hold something, in the order they went idle. */
  private readonly idle = new Set<BudgetedRing>();
  /** Bytes evicted to stay under the cap, since start. */
  evictedBytes = 0;

  constructor(readonly maxBytes: number) {}

  /** Bytes of history held in the process. */
  get bytes(): number {
    return this.held;
  }

  /** Called by a ring after it stored event `seq` of `size` bytes. */
  added(ring: BudgetedRing, seq: number, size: number): void {
    this.held += size;
    this.events += 1;
    this.order.push({ ring, seq });
    if (ring.idle) this.idle.add(ring);
    if (this.held > this.maxBytes) this.shrink();
    this.compact();
  }

  /** Called by a ring for every event it dropped, whoever asked. */
  removed(size: number): void {
    this.held -= size;
    this.events -= 1;
  }

  /** Called by a ring when its topic gained its first reader or lost its last. */
  idleChanged(ring: BudgetedRing): void {
    if (ring.idle && ring.length > 0) this.idle.add(ring);
    else this.idle.delete(ring);
    if (this.held > this.maxBytes) this.shrink();
  }

  private shrink(): void {
    for (const ring of this.idle) {
      while (this.held > this.maxBytes && ring.length > 0) this.evictedBytes += ring.evictOldest();
      if (this.held <= this.maxBytes) break;
      this.idle.delete(ring);
    }
    while (this.held > this.maxBytes && this.start < this.order.length) {
      const { ring, seq } = this.order[this.start] as Entry;
      this.start += 1;
      // Each ring evicts in order, so a live entry is always its ring's oldest event.
      if (seq === ring.head && ring.length > 0) this.evictedBytes += ring.evictOldest();
    }
  }

  /**
   * Drops the entries of events that are gone (evicted by their ring's own bounds, or their
   * topic closed) once they are most of the queue, so it stays within twice the events held.
   */
  private compact(): void {
    const queued = this.order.length - this.start;
    const consumed = this.start > 1024 && this.start >= queued;
    const stale = queued > 1024 && queued >= 2 * this.events;
    if (!consumed && !stale) return;
    this.order = this.order.slice(this.start).filter(({ ring, seq }) => seq >= ring.head);
    this.start = 0;
  }
}
