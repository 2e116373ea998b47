import type { Topic } from './topics';

/** Where the client's one stream is. */
export type StreamStatus = 'connecting' | 'open' | 'reconnecting' | 'polling' | 'closed';

/** What goes with a status: why, and how long until the next attempt. */
export interface StatusInfo {
  /** The failed attempts in a row so far. */
  readonly attempt?: number;
  /** Milliseconds until the next stream attempt. */
  readonly delayMs?: number;
  /** The HTTP status of the failed attempt, when there was one. */
  readonly httpStatus?: number;
  /** Why the stream is not open, in a few words. */
  readonly reason?: string;
  /** The relay's id of the open stream. */
  readonly streamId?: string;
  /** With `shareAcrossTabs`: `holder` when this tab holds the connection, `follower` when it gets the events from the tab that does. */
  readonly tab?: 'holder' | 'follower';
}

/** One event of a topic. */
export interface TopicEvent {
  readonly topic: Topic;
  /** The event's name; undefined for unnamed events; `"status"` for a polled state. */
  readonly event: string | undefined;
  /** The backend's id of the event (undefined for a polled state). */
  readonly id: string | undefined;
  /** The backend's data, as a string (a polled state: its JSON). */
  readonly data: string;
}

/** The callbacks of `subscribe`. All optional. */
export interface SubscribeHandlers {
  /** An event of one of this subscription's topics. */
  onEvent?(event: TopicEvent): void;
  /** The client's stream changed state. */
  onStatus?(status: StreamStatus, info: StatusInfo): void;
  /** The relay lost part of that topic's history: refetch its state. */
  onResync?(topic: Topic): void;
  /** That topic finished; no more events will come. */
  onEnd?(topic: Topic): void;
  /** Something the client skipped or could not do (a bad event, a refused topic change). */
  onError?(error: Error): void;
}

/** The handle of one `subscribe` call. */
export interface Subscription {
  /** This subscription's topics that have not ended. */
  readonly topics: readonly Topic[];
  /** Watches more topics on the same connection. */
  add(topics: readonly Topic[]): void;
  /** Stops watching these topics. */
  remove(topics: readonly Topic[]): void;
  /** Stops this subscription; the connection closes when no subscription is left. */
  close(): void;
}

/**
 * What the stream (or the poller) hands to the subscriptions, and the holding tab to the others:
 * each carries the stream's cursor after it, for a takeover.
 */
export type Delivery =
  | { readonly type: 'event'; readonly cursor: string | undefined; readonly event: TopicEvent }
  | { readonly type: 'resync'; readonly cursor: string | undefined; readonly topic: Topic }
  | { readonly type: 'end'; readonly cursor: string | undefined; readonly topic: Topic };
