import { type Channel, type Locks, browser } from './browser';
import type { Delivery, StatusInfo, StreamStatus } from './types';
import type { Topic } from './topics';

/** Everything sent on the channel. */
export type TabMessage =
  | Delivery
  | { readonly type: 'replay'; readonly topics: readonly Topic[] } // these topics' whole history comes next on the stream
  | { readonly type: 'want'; readonly tab: string; readonly topics: readonly Topic[]; readonly awaiting: readonly Topic[] } // a tab's topics, whole, and those it waits for a replay of
  | { readonly type: 'bye'; readonly tab: string } // a tab leaves
  | { readonly type: 'hello' } // a new holder asks every tab for its topics
  | { readonly type: 'status'; readonly status: StreamStatus; readonly info: StatusInfo }
  | { readonly type: 'error'; readonly message: string; readonly refused?: Topic };

/** What the link tells its tab. */
export interface TabLinkHooks {
  /** This tab now holds the connection (the previous holder closed, or there was none). */
  becameHolder(): void;
  /** Another tab's topics changed (only told to the holder). */
  othersChanged(): void;
  /** A message of the holder (only told to the others). */
  fromHolder(message: TabMessage): void;
  /** A new holder asks for this tab's topics. */
  announce(): void;
}

/** Whether this browser can share one stream between tabs: Web Locks and BroadcastChannel. */
export function canShareAcrossTabs(): boolean {
  return typeof browser.BroadcastChannel === 'function' && typeof browser.navigator?.locks?.request === 'function';
}

/**
 * One tab's part in sharing a stream between the tabs of an origin. The tab that holds the
 * Web Lock `name` holds the connection; the lock is released when that tab closes, and the
 * next tab waiting for it takes over. Every tab keeps every other tab's topics, heard on the
 * `BroadcastChannel` `name`, so a new holder knows them at once. Each tab also holds a lock
 * of its own for its lifetime, so a new holder can forget the topics of a tab that closed
 * without saying so.
 */
export class TabLink {
  readonly tab = randomId();
  /** This tab holds the connection. */
  holding = false;
  private readonly channel: Channel;
  private readonly locks: Locks;
  private readonly others = new Map<string, ReadonlySet<Topic>>();
  /** The topics each other tab waits for a replay of (the holder forgets one once it announced its replay). */
  private readonly awaitedBy = new Map<string, Set<Topic>>();
  private readonly released = new AbortController();
  private mine: readonly Topic[] = [];
  private mineAwaiting: readonly Topic[] = [];

  constructor(
    private readonly name: string,
    private readonly hooks: TabLinkHooks,
  ) {
    if (!browser.BroadcastChannel || !browser.navigator?.locks) throw new TypeError('sharing across tabs needs BroadcastChannel and Web Locks');
    this.locks = browser.navigator.locks;
    this.channel = new browser.BroadcastChannel(name);
    this.channel.onmessage = (message) => this.received(message.data as TabMessage);
    const signal = this.released.signal;
    const held = new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    // Both requests are held until the tab closes (or the link does): the browser releases them then.
    void this.locks.request(`${name} tab ${this.tab}`, { signal }, () => held).catch(() => undefined);
    void this.locks
      .request(name, { signal }, async () => {
        await this.forgetClosedTabs();
        this.holding = true;
        this.post({ type: 'hello' });
        this.hooks.becameHolder();
        await held;
      })
      .catch(() => undefined);
    browser.addEventListener?.('pagehide', () => this.post({ type: 'bye', tab: this.tab }));
    // Back from the back/forward cache: the holder forgot this tab at its pagehide.
    browser.addEventListener?.('pageshow', (event) => {
      if (event.persisted !== true) return;
      this.mine = [];
      this.mineAwaiting = [];
      this.hooks.announce();
    });
  }

  /** Tells the other tabs this tab's topics (all of them, each time), and those whose history it waits for. */
  announce(topics: readonly Topic[], awaiting: readonly Topic[]): void {
    if (sameTopics(topics, this.mine) && sameTopics(awaiting, this.mineAwaiting)) return;
    this.mine = topics;
    this.mineAwaiting = awaiting;
    this.post({ type: 'want', tab: this.tab, topics, awaiting });
  }

  /** The topics the other tabs watch. */
  otherTopics(): Set<Topic> {
    const topics = new Set<Topic>();
    for (const set of this.others.values()) for (const topic of set) topics.add(topic);
    return topics;
  }

  /** The topics some other tab waits for a replay of. */
  awaited(): Set<Topic> {
    const topics = new Set<Topic>();
    for (const set of this.awaitedBy.values()) for (const topic of set) topics.add(topic);
    return topics;
  }

  /** The holder announced the replay of these topics (or their end): no tab waits for them any more. */
  served(topics: readonly Topic[]): void {
    for (const set of this.awaitedBy.values()) for (const topic of topics) set.delete(topic);
  }

  /** Drops a topic the relay refused from every other tab's wishes (each tab is told by an `error`). */
  forget(topic: Topic): void {
    for (const [tab, set] of this.others) if (set.has(topic)) this.others.set(tab, new Set([...set].filter((t) => t !== topic)));
    this.served([topic]);
  }

  post(message: TabMessage): void {
    this.channel.postMessage(message);
  }

  private received(message: TabMessage): void {
    switch (message.type) {
      case 'want':
        this.others.set(message.tab, new Set(message.topics));
        this.awaitedBy.set(message.tab, new Set(message.awaiting));
        if (this.holding) this.hooks.othersChanged();
        return;
      case 'bye':
        this.others.delete(message.tab);
        this.awaitedBy.delete(message.tab);
        if (this.holding) this.hooks.othersChanged();
        return;
      case 'hello':
        this.mine = [];
        this.mineAwaiting = [];
        this.hooks.announce();
        return;
      default:
        if (!this.holding) this.hooks.fromHolder(message);
    }
  }

  private async forgetClosedTabs(): Promise<void> {
    const { held = [] } = await this.locks.query();
    const alive = new Set(held.map((lock) => lock.name));
    for (const tab of [...this.others.keys()]) {
      if (alive.has(`${this.name} tab ${tab}`)) continue;
      this.others.delete(tab);
      this.awaitedBy.delete(tab);
    }
  }
}

function sameTopics(a: readonly Topic[], b: readonly Topic[]): boolean {
  return a.length === b.length && a.every((topic, i) => topic === b[i]);
}

function randomId(): string {
  return typeof crypto.randomUUID === 'function' ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}
