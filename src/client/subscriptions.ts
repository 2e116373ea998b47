import { type Topic, checkTopic } from './topics';
import type { Delivery, SubscribeHandlers, Subscription } from './types';

/** Ids remembered per topic to drop an event seen twice (a takeover resumes from the cursor the tabs last heard; a replay for a new tab). Above the relay's default history of 1000. */
const SEEN_IDS = 2048;

/** What the subscriptions ask of the stream. */
export interface SubscriptionsHooks {
  /** A subscription was added, closed, or changed its topics. */
  changed(): void;
  /** This tab waits for the replayed history of that topic: what goes by on the stream before it is not this tab's yet. */
  awaits(topic: Topic): boolean;
}

/** This tab's subscriptions, their topics and callbacks, and the topics that ended; each event is handed to them once. */
export class Subscriptions {
  private readonly subscriptions = new Set<SubscriptionState>();
  private readonly ended = new Set<Topic>();
  private readonly seen = new Map<Topic, Set<string>>();

  constructor(private readonly hooks: SubscriptionsHooks) {}

  /** Adds a subscription (throws `TypeError` on a bad topic, before adding anything). */
  add(topics: readonly Topic[], handlers: SubscribeHandlers): Subscription {
    const state = new SubscriptionState(handlers, () => this.hooks.changed());
    for (const topic of topics) state.topics.add(checkTopic(topic));
    this.subscriptions.add(state);
    state.close = () => {
      this.subscriptions.delete(state);
      this.hooks.changed();
    };
    return state.handle(this.ended);
  }

  /** Adds the topics of every subscription to `topics`, and drops from it every topic that ended. */
  wanted(topics: Set<Topic>): Set<Topic> {
    for (const subscription of this.subscriptions) for (const topic of subscription.topics) topics.add(topic);
    for (const topic of this.ended) topics.delete(topic);
    return topics;
  }

  /** This tab's own topics that have not ended, sorted. */
  own(): Topic[] {
    const topics = new Set<Topic>();
    for (const subscription of this.subscriptions) for (const topic of subscription.topics) if (!this.ended.has(topic)) topics.add(topic);
    return [...topics].sort();
  }

  hasEnded(topic: Topic): boolean {
    return this.ended.has(topic);
  }

  /** Drops a topic the relay refused from every subscription. */
  refuse(topic: Topic): void {
    for (const subscription of this.subscriptions) subscription.topics.delete(topic);
  }

  /**
   * Hands a delivery to the subscriptions of its topic; returns true when it ended a topic. An
   * event id seen before for its topic is dropped: after a takeover the new holder may resume
   * from a cursor a little behind what the tabs already got.
   */
  deliver(delivery: Delivery): boolean {
    // Nothing is remembered of a topic this tab does not watch: it may start to, and then needs the replay.
    if (delivery.type === 'event' && !this.watches(delivery.event.topic)) return false;
    // A topic that has ended may be replayed for a tab that asked while it ended: this tab has had all of it.
    if (delivery.type !== 'end' && this.ended.has(delivery.type === 'event' ? delivery.event.topic : delivery.topic)) return false;
    // A topic this tab started to watch mid-stream is delivered from its replayed history, not from what happened to go by first.
    if (delivery.type !== 'end' && delivery.cursor !== undefined && this.hooks.awaits(delivery.type === 'event' ? delivery.event.topic : delivery.topic)) return false;
    if (delivery.type === 'event' && delivery.event.id !== undefined) {
      const ids = this.seen.get(delivery.event.topic) ?? new Set<string>();
      if (ids.has(delivery.event.id)) return false;
      ids.add(delivery.event.id);
      if (ids.size > SEEN_IDS) ids.delete(ids.values().next().value as string);
      this.seen.set(delivery.event.topic, ids);
    }
    switch (delivery.type) {
      case 'event': {
        const event = delivery.event;
        this.dispatch(event.topic, (h) => h.onEvent?.(event));
        return false;
      }
      case 'resync':
        this.dispatch(delivery.topic, (h) => h.onResync?.(delivery.topic));
        return false;
      case 'end':
        this.seen.delete(delivery.topic);
        return this.finish(delivery.topic);
    }
  }

  /** Calls every subscription. */
  broadcast(call: (handlers: SubscribeHandlers) => void): void {
    for (const subscription of [...this.subscriptions]) call(subscription.handlers);
  }

  private watches(topic: Topic): boolean {
    for (const subscription of this.subscriptions) if (subscription.topics.has(topic)) return true;
    return false;
  }

  private finish(topic: Topic): boolean {
    if (this.ended.has(topic)) return false;
    this.ended.add(topic);
    this.dispatch(topic, (h) => h.onEnd?.(topic));
    return true;
  }

  private dispatch(topic: Topic, call: (handlers: SubscribeHandlers) => void): void {
    for (const subscription of [...this.subscriptions]) if (subscription.topics.has(topic)) call(subscription.handlers);
  }
}

/** A subscription's topics and callbacks. */
class SubscriptionState {
  readonly topics = new Set<Topic>();
  close: () => void = () => undefined;

  constructor(
    readonly handlers: SubscribeHandlers,
    private readonly changed: () => void,
  ) {}

  handle(ended: ReadonlySet<Topic>): Subscription {
    const topics = this.topics;
    return {
      get topics() {
        return [...topics].filter((topic) => !ended.has(topic));
      },
      add: (more) => {
        for (const topic of more) topics.add(checkTopic(topic));
        this.changed();
      },
      remove: (fewer) => {
        for (const topic of fewer) topics.delete(topic);
        this.changed();
      },
      close: () => this.close(),
    };
  }
}
