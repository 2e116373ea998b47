import type { HttpError } from '../errors';
import type { CloseReason } from './close-reason';
import type { StoredEvent } from './replay';

/**
 * What a topic fans out to: a single-topic `Subscriber` (the whole response is this topic's), or
 * one topic's membership in a multiplexed stream (one response shared by many topics). The topic
 * calls these in order: `open`, then `resync` if history is missing, `catchUp` with what the
 * member missed (several times while it is caught up from the backend), then `relay` per live
 * event, and `end` or `reject` once.
 */
export interface TopicMember {
  /** Nothing more may be sent: the member left or its response is gone. */
  readonly isClosed: boolean;
  /** The topic is there for this member: a subscriber sends its headers now. */
  open(retryHintMs: number): void;
  /** The topic is finished and the member has everything: a subscriber answers 204. */
  noContent(): void;
  /** Part of what the member missed is no longer held. */
  resync(): void;
  /** The events the member missed, oldest first, written in one go. */
  catchUp(events: readonly StoredEvent[]): void;
  /**
   * Resolves once the client has written out what it holds down to its cap (or is gone);
   * undefined when it is within its cap now. A catch-up from the backend reads on only then.
   */
  drained(): Promise<void> | undefined;
  /** The backend's `retry:` (bounded), in milliseconds and as a frame: a subscriber passes it on unless the client has it already. */
  retryHint(ms: number, frame: Buffer): void;
  /** One live event; `now` is taken once per event by the topic. */
  relay(event: StoredEvent, now: number): void;
  /** The topic ended for this member (`upstream_ended`, `relay_error`, `shutdown`); `event` is sent last. */
  end(reason: CloseReason, event?: { event: string; data: unknown }): void;
  /** The topic could not be opened for this member, before anything was sent. */
  reject(error: HttpError): void;
}
