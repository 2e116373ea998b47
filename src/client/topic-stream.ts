import { browser } from './browser';
import { StreamLoop, type StreamTiming } from './stream-loop';
import { Subscriptions } from './subscriptions';
import type { TabMessage } from './tab-link';
import { TabShare } from './tab-share';
import { TopicChanges } from './topic-changes';
import type { Topic } from './topics';
import type { Transport } from './transport';
import type { Delivery, StatusInfo, StreamStatus, SubscribeHandlers, Subscription } from './types';

/**
 * The client's one multiplexed stream: the union of its subscriptions' topics (and, when this
 * tab holds a stream the tabs share, the other tabs' topics) on one connection. Joins the jobs:
 * the loop that connects and reads (`StreamLoop`), the topic changes on the open stream
 * (`TopicChanges`), the sharing with the other tabs (`TabShare`), and this tab's subscriptions,
 * which get each event once (`Subscriptions`).
 */
export class TopicStream {
  private readonly subscriptions: Subscriptions;
  private readonly tabs: TabShare;
  private readonly loop: StreamLoop;
  private readonly changes: TopicChanges;
  private status: StreamStatus = 'closed';
  private statusInfo: StatusInfo = {};

  /** `shareName`: resolves with the name of the lock and channel the tabs share, or undefined to stream alone. */
  constructor(transport: Transport, timing: StreamTiming, shareName?: () => Promise<string | undefined>) {
    this.subscriptions = new Subscriptions({
      changed: () => this.changed(),
      awaits: (topic) => this.tabs.awaits(topic),
    });
    this.tabs = new TabShare(shareName, {
      changed: () => this.changed(),
      othersChanged: () => {
        this.changed();
        // A tab that just came learns where the stream is.
        if (this.status !== 'closed') this.tabs.post({ type: 'status', status: this.status, info: this.statusInfo });
      },
      fromHolder: (message) => this.fromHolder(message),
    });
    this.loop = new StreamLoop(transport, timing, {
      topics: () => this.wanted(),
      status: (status, info) => this.setStatus(status, info),
      deliver: (delivery) => this.deliver(delivery),
      onError: (error) => this.report(error),
      opened: (topics, fromStart) => {
        if (fromStart) {
          this.changes.historyStarts(topics);
          this.tabs.historyStarts(topics);
        }
        // A resumed stream replays only what was missed: a tab that waits for a topic's whole history needs it asked for.
        if (this.tabs.holding) this.requestReplays();
        // Topics wanted or dropped while this attempt was connecting.
        void this.changes.sync();
      },
      changeApplied: () => {
        // Where a topic change took effect: the POST's answer says the topics, the stream says that the added ones' history follows.
        const added = this.changes.applied();
        if (added !== undefined && added.length > 0) this.tabs.historyStarts(added);
      },
      closed: () => this.changes.streamClosed(),
      stopped: () => {
        if (this.status !== 'closed') this.setStatus('closed', { reason: 'no topics' });
      },
    });
    this.changes = new TopicChanges(transport, {
      streamId: () => this.loop.streamId,
      live: () => this.loop.liveTopics,
      answered: (streamId, topics) => this.loop.answered(streamId, topics),
      wanted: () => this.wanted(),
      refused: (topic, error) => {
        this.subscriptions.refuse(topic);
        this.tabs.forget(topic);
        this.report(error, topic);
      },
      onError: (error) => this.report(error),
    });
    // A socket that died while the network was gone, or while the page sat in the back/forward cache,
    // may not say so for a long time: start over now rather than wait for the dead-stream check.
    browser.addEventListener?.('online', () => this.reconnectNow());
    browser.addEventListener?.('pageshow', (event) => {
      if (event.persisted === true) this.reconnectNow();
    });
  }

  /** Adds a subscription and starts the stream if it is not running. */
  subscribe(topics: readonly Topic[], handlers: SubscribeHandlers): Subscription {
    const subscription = this.subscriptions.add(topics, handlers);
    // A late subscriber learns where the stream is.
    if (this.status !== 'closed') handlers.onStatus?.(this.status, this.statusInfo);
    this.changed();
    return subscription;
  }

  /** Every topic some subscription (of this tab, or of another when this tab holds the connection) wants that has not ended. */
  private wanted(): Set<Topic> {
    return this.subscriptions.wanted(this.tabs.otherTopics());
  }

  private changed(): void {
    if (!this.tabs.ready()) return;
    if (this.tabs.sharing) {
      this.tabs.announce(this.subscriptions.own());
      if (!this.tabs.holding) return;
      this.requestReplays();
    }
    if (this.wanted().size === 0) {
      this.loop.stop();
      return;
    }
    if (!this.loop.running) this.loop.start();
    else if (this.loop.streamId !== undefined) void this.changes.sync();
  }

  /**
   * A tab that starts watching a topic the shared stream already carries would get only what
   * comes next, where a stream of its own would have replayed the topic's history: the holder
   * asks the relay for that history again (each tab drops the ids it has already seen), unless a
   * topic change under way replays it already. One that waits for a topic already ended is told so.
   */
  private requestReplays(): void {
    for (const topic of this.tabs.awaited()) {
      if (this.subscriptions.hasEnded(topic)) this.tabs.tellEnded(topic);
      else if (!this.changes.adding(topic)) this.changes.replayAgain(topic);
    }
  }

  private fromHolder(message: TabMessage): void {
    switch (message.type) {
      case 'event':
      case 'resync':
      case 'end':
        this.deliver(message, true);
        return;
      case 'status':
        this.setStatus(message.status, { ...message.info, tab: 'follower' });
        return;
      case 'error': {
        const refused = message.refused;
        if (refused !== undefined) {
          this.subscriptions.refuse(refused);
          this.changed();
        }
        this.subscriptions.broadcast((h) => h.onError?.(new Error(message.message)));
        return;
      }
      default:
    }
  }

  /** Starts the stream over at once (the network came back, the page came back from the back/forward cache). */
  private reconnectNow(): void {
    if (this.status !== 'closed') this.loop.reconnectNow();
  }

  /** Hands an event to this tab's subscriptions, and to the other tabs when this one holds the connection. */
  private deliver(delivery: Delivery, fromHolder = false): void {
    if (fromHolder && delivery.cursor !== undefined) this.loop.cursor = delivery.cursor;
    // Every event goes to the other tabs, a repeat too: a replay is for a tab that has not seen it.
    if (!fromHolder) this.tabs.post(delivery);
    if (delivery.type === 'end') this.tabs.ended(delivery.topic);
    if (this.subscriptions.deliver(delivery) && this.wanted().size === 0) this.loop.stop();
  }

  /** An error for every subscription (of every tab, when this one holds the connection). */
  private report(error: Error, refused?: Topic): void {
    this.tabs.post({ type: 'error', message: error.message, ...(refused === undefined ? {} : { refused }) });
    this.subscriptions.broadcast((h) => h.onError?.(error));
  }

  private setStatus(status: StreamStatus, info: StatusInfo): void {
    if (this.tabs.holding) {
      info = { ...info, tab: 'holder' };
      this.tabs.post({ type: 'status', status, info });
    }
    this.status = status;
    this.statusInfo = info;
    this.subscriptions.broadcast((h) => h.onStatus?.(status, info));
  }
}
