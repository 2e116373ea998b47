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
}

/** A fixed-size ring in memory, with an id index so lookups do not scan. */
export class MemoryReplayBuffer implements ReplayBuffer {
  private readonly ring: (StoredEvent | undefined)[];
  /** Sequence number of the oldest held event; events are numbered from 0. */
  private head = 0;
  private next = 0;
  /** First sequence number per id: a client that saw an id has seen at least its first event. */
  private readonly index = new Map<string, number>();

  constructor(private readonly capacity: number) {
    this.ring = new Array<StoredEvent | undefined>(capacity);
  }

  get truncated(): boolean {
    return this.head > 0;
  }

  push(event: StoredEvent): void {
    if (this.next - this.head === this.capacity) {
      const evicted = this.ring[this.head % this.capacity];
      if (evicted?.id !== undefined && this.index.get(evicted.id) === this.head) this.index.delete(evicted.id);
      this.head += 1;
    }
    this.ring[this.next % this.capacity] = event;
    if (event.id !== undefined && !this.index.has(event.id)) this.index.set(event.id, this.next);
    this.next += 1;
  }

  has(id: string): boolean {
    return this.index.has(id);
  }

  after(id: string): StoredEvent[] | undefined {
    const seq = this.index.get(id);
    return seq === undefined ? undefined : this.slice(seq + 1);
  }

  all(): StoredEvent[] {
    return this.slice(this.head);
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
