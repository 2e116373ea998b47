import { type TabMessage, TabLink } from './tab-link';
import type { Topic } from './topics';

/** What the sharing tells its tab. */
export interface TabShareHooks {
  /** What the stream should carry may have changed: the link's name is known, this tab now holds the connection, or a new holder asks for this tab's topics. */
  changed(): void;
  /** Another tab's topics changed (only told to the holder). */
  othersChanged(): void;
  /** A message of the holder (only told to the others). */
  fromHolder(message: TabMessage): void;
}

/**
 * This tab's side of sharing one stream with the other tabs: the link to them once the name they
 * share is known, and the topics this tab started to watch whose history has not started over yet.
 */
export class TabShare {
  /** This tab's topics when it last looked. */
  private own = new Set<Topic>();
  /** The topics this tab started to watch, while the tabs share a stream, whose history has not started over yet. */
  private readonly awaiting = new Set<Topic>();
  /** The link once its name is known; undefined while pending, or when this tab streams alone. */
  private link: TabLink | undefined;
  /** The link's name is being worked out: no stream until it is. */
  private linking: Promise<void> | undefined;

  /** `shareName`: resolves with the name of the lock and channel the tabs share, or undefined to stream alone; no `shareName`: this tab streams alone. */
  constructor(
    private shareName: (() => Promise<string | undefined>) | undefined,
    private readonly hooks: TabShareHooks,
  ) {}

  /** Whether this tab knows if it shares the stream; when it does not, starts working out the link's name, and calls `changed` once it is known. */
  ready(): boolean {
    if (this.shareName === undefined) return true;
    this.linking ??= this.shareName().then(
      (name) => this.linked(name),
      () => this.linked(undefined),
    );
    return false;
  }

  /** This tab shares the stream with the other tabs. */
  get sharing(): boolean {
    return this.link !== undefined;
  }

  /** This tab holds the shared connection. */
  get holding(): boolean {
    return this.link?.holding ?? false;
  }

  /** The topics the other tabs watch, when this tab holds the connection (empty otherwise). */
  otherTopics(): Set<Topic> {
    return this.link?.holding ? this.link.otherTopics() : new Set<Topic>();
  }

  /**
   * Tells the other tabs this tab's topics. A topic this tab starts to watch while the tabs share
   * a stream may already be on it: the events that go by now are dropped, and the topic is
   * delivered from the start of the history the holder gets replayed for it (`historyStarts`).
   * Kept, a live event would come first and the history after.
   */
  announce(own: readonly Topic[]): void {
    if (!this.link) return;
    const now = new Set(own);
    for (const topic of now) if (!this.own.has(topic)) this.awaiting.add(topic);
    for (const topic of this.awaiting) if (!now.has(topic)) this.awaiting.delete(topic);
    this.own = now;
    this.link.announce(own, [...this.awaiting].sort());
  }

  /** The topics this tab or (when it holds the connection) another waits for the replayed history of. */
  awaited(): Set<Topic> {
    const awaited = this.link?.holding ? this.link.awaited() : new Set<Topic>();
    for (const topic of this.awaiting) awaited.add(topic);
    return awaited;
  }

  /** This tab waits for the replayed history of that topic. */
  awaits(topic: Topic): boolean {
    return this.awaiting.has(topic);
  }

  /** The stream carries these topics' whole history from here on: the tabs that waited for it take their events again. */
  historyStarts(topics: readonly Topic[]): void {
    if (this.link?.holding) {
      this.link.post({ type: 'replay', topics });
      this.link.served(topics);
    }
    for (const topic of topics) this.awaiting.delete(topic);
  }

  /** Tells the tabs that wait for a topic's history that it has ended (when this tab holds the connection). */
  tellEnded(topic: Topic): void {
    if (!this.link?.holding) return;
    this.link.post({ type: 'end', cursor: undefined, topic });
    this.link.served([topic]);
  }

  /** The topic ended: this tab waits for none of its history. */
  ended(topic: Topic): void {
    this.awaiting.delete(topic);
  }

  /** Drops a topic the relay refused from every other tab's wishes (each tab is told by an `error`). */
  forget(topic: Topic): void {
    this.link?.forget(topic);
  }

  /** Hands a message to the other tabs when this tab holds the connection (the others only listen). */
  post(message: TabMessage): void {
    if (this.link?.holding) this.link.post(message);
  }

  private linked(name: string | undefined): void {
    this.shareName = undefined;
    if (name !== undefined) {
      this.link = new TabLink(name, {
        // The stream goes on from the cursor this tab last heard from the previous holder.
        becameHolder: () => this.hooks.changed(),
        othersChanged: () => this.hooks.othersChanged(),
        fromHolder: (message) => {
          if (message.type === 'replay') for (const topic of message.topics) this.awaiting.delete(topic);
          else this.hooks.fromHolder(message);
        },
        announce: () => this.hooks.changed(),
      });
    }
    this.hooks.changed();
  }
}
