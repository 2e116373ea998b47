import type { Topic } from './topics';
import type { Transport } from './transport';

/** What a topic change reads of the stream and tells back. */
export interface TopicChangesHooks {
  /** The relay's id of the open stream; undefined between streams. */
  streamId(): string | undefined;
  /** The topics the relay has on the open stream. */
  live(): ReadonlySet<Topic>;
  /** The relay answered a change of stream `streamId`: these are its topics now. */
  answered(streamId: string, topics: readonly Topic[]): void;
  /** The topics the stream should carry. */
  wanted(): ReadonlySet<Topic>;
  /** The relay refused a change that added this topic. */
  refused(topic: Topic, error: Error): void;
  /** The relay refused a change that only removed or replayed topics. */
  onError(error: Error): void;
}

/**
 * Makes the open stream's topics match the wanted ones with `POST /api/events/:id/topics`, one
 * request at a time, and keeps the changes sent until the stream shows where each took effect.
 */
export class TopicChanges {
  private syncing: Promise<void> | undefined;
  /** Topics on the stream to be replayed from the start of their history (for a tab that starts to watch them). */
  private readonly replay = new Set<Topic>();
  /** The topics each change sent adds, oldest first, until its `topics` event shows on the stream. */
  private readonly markers: Topic[][] = [];

  constructor(
    private readonly transport: Transport,
    private readonly hooks: TopicChangesHooks,
  ) {}

  /** Sends the changes the stream needs now; resolves when none is left. */
  sync(): Promise<void> {
    // `finally` as a callback, not inside the async function: a loop with nothing to do returns
    // before `??=` has stored its promise, and would leave `syncing` set for good.
    this.syncing ??= this.syncLoop().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  /** Asks for the topic's history again at the next change (it is on the stream already). */
  replayAgain(topic: Topic): void {
    this.replay.add(topic);
  }

  /** The stream carries these topics' whole history from its start: no replay is needed for them. */
  historyStarts(topics: Iterable<Topic>): void {
    for (const topic of topics) this.replay.delete(topic);
  }

  /** A change under way adds the topic: its history will follow on the stream. */
  adding(topic: Topic): boolean {
    return this.markers.some((topics) => topics.includes(topic));
  }

  /** The stream's `topics` event: the oldest change sent took effect; returns the topics it added. */
  applied(): Topic[] | undefined {
    return this.markers.shift();
  }

  /** The stream closed: changes whose `topics` event did not come are forgotten (the next stream's holder asks again for what a tab still waits for). */
  streamClosed(): void {
    this.markers.length = 0;
  }

  private async syncLoop(): Promise<void> {
    for (;;) {
      const streamId = this.hooks.streamId();
      if (streamId === undefined) return;
      const wanted = this.hooks.wanted();
      const live = this.hooks.live();
      const again = [...this.replay].filter((topic) => live.has(topic) && wanted.has(topic));
      this.replay.clear();
      const added = [...wanted].filter((topic) => !live.has(topic));
      const removed = [...live].filter((topic) => !wanted.has(topic));
      if (added.length === 0 && removed.length === 0 && again.length === 0) return;
      const add = [...added, ...again];
      // The relay marks the change on the stream with a `topics` event, one per change, in order.
      this.markers.push(add);
      try {
        // Removed and added in one change: the relay replays an added topic's history.
        const answer = await this.transport.json<{ topics: Topic[] }>(`/api/events/${encodeURIComponent(streamId)}/topics`, {
          add,
          remove: [...removed, ...again],
        });
        this.hooks.answered(streamId, answer.topics);
      } catch (err) {
        // A refused change leaves the stream as it was: no `topics` event comes for it.
        const at = this.markers.indexOf(add);
        if (at >= 0) this.markers.splice(at, 1);
        // A refused topic must not loop: it is dropped from every subscription (of every tab).
        const error = err instanceof Error ? err : new Error(String(err));
        for (const topic of added) this.hooks.refused(topic, error);
        if (added.length === 0) this.hooks.onError(error);
      }
    }
  }
}
