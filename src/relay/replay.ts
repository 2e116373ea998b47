import type { HistoryBudget } from './history-budget';

/** One relayed event as kept for replay: its serialized frame and the id a client resumes from. */
export interface StoredEvent {
  /** The effective event id (what a client's `Last-Event-ID` will be after this event). */
  readonly id: string | undefined;
  /** The exact bytes written to subscribers. */
  readonly frame: Buffer;
}

/** Per-topic history for `Last-Event-ID` resume. */
export interface ReplayBuffer {
  /** Appends an event, evicting the oldest when full. */
  push(event: StoredEvent): void;
  /** Whether an event with this id is held (to drop upstream duplicates). */
  has(id: string): boolean;
  /** The events after the one with this id, or `undefined` when the id is not held. */
  after(id: string): StoredEvent[] | undefined;
  /** Everything held, oldest first. */
  all(): StoredEvent[];
  /** Whether any event was ever evicted (the history no longer starts at the beginning). */
  readonly truncated: boolean;
  /** Events held now, for the admin API. */
  readonly length?: number;
  /** Bytes of the frames held now, for the admin API. */
  readonly bytes?: number;
  /**
   * Says whether the topic has no reader (lingering or finished): an idle history is the
   * first to give up its events when the process holds too much.
   */
  setIdle(idle: boolean): void;
  /** The topic is gone: drops everything held and gives its memory back. */
  release(): void;
}

/**
 * A ring in memory, bounded by count and by bytes, with an id index so lookups do not
 * scan. When a `HistoryBudget` is given, the ring's bytes count towards it and the
 * budget may evict the ring's oldest events to keep the whole process under its cap.
 */
export class MemoryReplayBuffer implements ReplayBuffer {
  private readonly ring: (StoredEvent | undefined)[];
  /** Sequence number of the oldest held event; events are numbered from 0. */
  private headSeq = 0;
  private next = 0;
  /** First sequence number per id: a client that saw an id has seen at least its first event. */
  private readonly index = new Map<string, number>();
  /** The newest id relayed, kept when its event is evicted: a client holding it has missed nothing. */
  private newestId: string | undefined;
  private held = 0;
  /** Set by the topic: nobody reads this history now. */
  idle = false;

  constructor(
    private readonly capacity: number,
    private readonly maxBytes = Number.POSITIVE_INFINITY,
    private readonly budget?: HistoryBudget,
  ) {
    this.ring = new Array<StoredEvent | undefined>(capacity);
  }

  get truncated(): boolean {
    return this.headSeq > 0;
  }

  /** Bytes of the frames held. */
  get bytes(): number {
    return this.held;
  }

  /** Events held. */
  get length(): number {
    return this.next - this.headSeq;
  }

  /** Sequence number of the oldest event held (the next one pushed, when empty). */
  get head(): number {
    return this.headSeq;
  }

  push(event: StoredEvent): void {
    const size = event.frame.length;
    while (this.length === this.capacity || (this.length > 0 && this.held + size > this.maxBytes)) this.evictOldest();
    if (event.id !== undefined) this.newestId = event.id;
    if (size > this.maxBytes) {
      // Too big to keep at all: the history now starts after it.
      this.headSeq = this.next = this.next + 1;
      return;
    }
    this.ring[this.next % this.capacity] = event;
    if (event.id !== undefined && !this.index.has(event.id)) this.index.set(event.id, this.next);
    this.held += size;
    this.next += 1;
    this.budget?.added(this, this.next - 1, size);
  }

  has(id: string): boolean {
    return this.index.has(id) || id === this.newestId;
  }

  after(id: string): StoredEvent[] | undefined {
    const seq = this.index.get(id);
    if (seq !== undefined) return this.slice(seq + 1);
    return id === this.newestId && this.length === 0 ? [] : undefined;
  }

  all(): StoredEvent[] {
    return this.slice(this.headSeq);
  }

  setIdle(idle: boolean): void {
    this.idle = idle;
    this.budget?.idleChanged(this);
  }

  release(): void {
    while (this.length > 0) this.evictOldest();
    // Out of the budget's idle set too, or a closed topic's ring would stay referenced for good.
    this.idle = false;
    this.budget?.idleChanged(this);
  }

  /** Drops the oldest event held; returns its size in bytes (0 when empty). */
  evictOldest(): number {
    if (this.length === 0) return 0;
    const slot = this.headSeq % this.capacity;
    const evicted = this.ring[slot];
    this.ring[slot] = undefined;
    if (evicted?.id !== undefined && this.index.get(evicted.id) === this.headSeq) this.index.delete(evicted.id);
    this.headSeq += 1;
    const size = evicted?.frame.length ?? 0;
    this.held -= size;
    this.budget?.removed(size);
    return size;
  }

  private slice(from: number): StoredEvent[] {
    const events: StoredEvent[] = [];
    for (let seq = from; seq < this.next; seq++) {
      const event = this.ring[seq % this.capacity];
      if (event) events.push(event);
    }
    return events;
  }
}
