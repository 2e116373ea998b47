import type { SseEvent } from '../sse/encode';
import { encodeEvent } from '../sse/encode';
import type { TopicMember } from './member';
import type { EventFeed } from './ownership';
import type { StoredEvent } from './replay';
import type { UpstreamListener } from './upstream';

/** What a catch-up asks its topic's history about the events it reads. */
export interface CatchUpSeam {
  /** A client whose last id is `id` can go on from the topic's history without a gap. */
  reaches(id: string): boolean;
  /**
   * The backend's first answer to the catch-up is `id`, which the history holds: whether the
   * history has it right after `from` (false: the backend skipped what came between, so it
   * does not replay from an id, and the client must be told `resync`).
   */
  follows(from: string, id: string): boolean;
}

/** How a catch-up ended: it reached the topic's history, or it could not (the client gets `resync` if it missed anything). */
export type CatchUpOutcome = 'joined' | 'fell_back';

/**
 * One client's private read of the backend's stream from its `Last-Event-ID`, when the topic's
 * history starts after that id: the events the client missed are relayed to it alone, as they
 * come, until it reaches an id the history holds (or the id the history starts after). Then
 * `onDone` hands it back to the topic, which gives it the history from there: nothing twice,
 * nothing skipped. It reads a chunk at a time and waits for the client to drain what it was
 * given before reading on, so a long catch-up holds at most about one chunk and the client's cap.
 *
 * Whatever goes wrong (the backend refuses, breaks off, ends, or answers from later than the
 * client's id) ends it too, at the last id the client got: the topic then serves the client as
 * it would have without a catch-up, with `resync` if part of what it missed is not held.
 */
export class CatchUp {
  private feed: EventFeed | undefined;
  /** Events read but not written yet: they go to the client a chunk at a time. */
  private batch: StoredEvent[] = [];
  /** The client's last event id, counting what is in `batch`. */
  private last: string;
  private first = true;
  private done = false;

  constructor(
    private readonly member: TopicMember,
    readonly from: string,
    private readonly seam: CatchUpSeam,
    private readonly onDone: (catchUp: CatchUp, lastId: string, outcome: CatchUpOutcome, why: string) => void,
    private readonly onDropped: (event: SseEvent, err: unknown) => void,
  ) {
    this.last = from;
  }

  /** The client's last id, counting what it is about to be written. */
  get position(): string {
    return this.last;
  }

  /** Reads through `feed`, made with the listener this returns: call once. */
  start(open: (listener: UpstreamListener) => EventFeed | undefined): boolean {
    this.feed = open({
      onOpen: () => undefined,
      onEvent: (event, effectiveId) => this.onEvent(event, effectiveId),
      onChunkRead: () => {
        this.flush();
        return this.member.drained();
      },
      onEnd: () => this.finish('fell_back', 'the backend ended the stream before reaching the history'),
      onFinish: () => this.finish('fell_back', 'the backend said the stream is over before reaching the history'),
      onRefused: (refusal) => this.finish('fell_back', `the backend refused: ${refusal.reason}`),
      onGiveUp: (_reason, cause) => this.finish('fell_back', `the backend could not be read: ${cause}`),
    });
    if (this.feed === undefined) return false;
    this.feed.start();
    return true;
  }

  /** The topic now holds the client's last id: it goes on from there (the request is no longer needed). */
  reached(): void {
    this.finish('joined', 'the history reached the client');
  }

  /** Stops at once, handing nothing back (the client left, or the topic closed). */
  abort(): void {
    this.done = true;
    this.batch = [];
    this.feed?.close();
  }

  private onEvent(event: SseEvent, effectiveId: string | undefined): void {
    if (this.done) return;
    // [spec] an empty id resets the last event id: nothing the history could continue from.
    if (effectiveId === undefined || effectiveId === '') return this.finish('fell_back', 'the backend reset the event id');
    if (this.first) {
      this.first = false;
      // A backend that starts with the resume point itself resends it: the client has it.
      if (event.id === this.from) return;
      if (this.seam.reaches(effectiveId) && !this.seam.follows(this.from, effectiveId)) {
        return this.finish('fell_back', 'the backend answered from later than the client\'s id: it does not replay');
      }
    }
    let frame: Buffer;
    try {
      frame = encodeEvent(event);
    } catch (err) {
      this.onDropped(event, err);
      return;
    }
    this.batch.push({ id: effectiveId, frame });
    this.last = effectiveId;
    if (this.seam.reaches(effectiveId)) this.finish('joined', 'the backend reached the history');
  }

  private flush(): void {
    if (this.batch.length === 0) return;
    const events = this.batch;
    this.batch = [];
    this.member.catchUp(events);
  }

  private finish(outcome: CatchUpOutcome, why: string): void {
    if (this.done) return;
    this.flush();
    this.done = true;
    this.feed?.close();
    this.onDone(this, this.last, outcome, why);
  }
}
