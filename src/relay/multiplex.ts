import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { HttpError } from '../errors';
import type { RelayConfig } from '../options';
import { type CursorId, encodeEntry, joinCursor } from './cursor';
import { controlOf, envelopeOf, idLine } from './envelope';
import type { Hub, TopicRef } from './hub';
import type { TopicMember } from './member';
import type { StoredEvent } from './replay';
import type { CloseReason, Subscriber } from './subscriber';
import type { Topic } from './topic';

/*
 * The path of one event to a multiplexed client:
 *
 *   backend ─▶ Upstream ─▶ Topic.publish ──▶ Subscriber.relay(stored)            (single-topic clients: the frame)
 *   (parsed once by        encodeEvent once └▶ Membership.relay(stored)
 *    eventsource-parser)   replay.push           └▶ MultiplexStream.relay
 *                                                      envelopeOf(topic, stored)   once per event, shared (WeakMap)
 *                                                      idLine(cursor)              per client: `id: <cursor>\n`
 *                                                      batch until the loop's check phase   events of every topic that came in
 *                                                      writer.sendParts(batch)              the same turn: one chunk, one write
 *
 * A multiplexed client is one `Subscriber` (the writer: headers, one connection slot, and the
 * stream policy's heartbeats, idle and lifetime ends and slow-client cap, as for any stream) and
 * one small `Membership` per topic, which a `Topic` holds among its members exactly like a
 * single-topic subscriber.
 */

/** What a multiplexed stream needs to (re)open a topic by its name. */
export type ResolveTopic = (topic: string) => TopicRef | undefined;

/** One topic a stream starts with: where it resumes, and how the cursor names it. */
export interface PlannedTopic {
  readonly ref: TopicRef;
  readonly lastId: CursorId;
  /** The cursor's short reference (the topic is in the request's URL), or undefined: named in full. */
  readonly hash: string | undefined;
}

/** `attached`: in its topic's members (or waiting for it); `failed`: off this connection, kept in the cursor. */
type MembershipState = 'attached' | 'failed' | 'gone';

/**
 * Streams holding events for the end of this turn of the event loop. Not a microtask or
 * `nextTick`: Node drains those after every I/O callback, and each upstream's bytes come in a
 * callback of their own, so topics publishing in the same instant would still be written one by
 * one. `setImmediate` runs after every socket ready in this poll was read: one write per stream
 * for all of them, for at most one turn of delay.
 */
let flushing: MultiplexStream[] = [];
let flushScheduled = false;

function flushAll(): void {
  const streams = flushing;
  flushing = [];
  flushScheduled = false;
  for (const stream of streams) stream.flush();
}

/** An id no upstream sends (NUL is not allowed in an SSE id): resumes with `resync` and the whole history. */
const UNKNOWN_ID = '\0';

/** One topic of a multiplexed stream: a member of that topic, writing through the stream. */
class Membership implements TopicMember {
  state: MembershipState = 'attached';
  topic: Topic | undefined;
  /** This topic's part of the cursor, rebuilt when its id moves. */
  entry: string;

  constructor(
    private readonly stream: MultiplexStream,
    readonly key: string,
    readonly hash: string | undefined,
    public lastId: CursorId,
  ) {
    this.entry = this.encode();
  }

  get isClosed(): boolean {
    return this.state !== 'attached' || this.stream.isClosed;
  }

  advance(id: string | undefined): void {
    if (id === undefined || id === this.lastId) return;
    this.lastId = id;
    this.entry = this.encode();
    this.stream.cursorMoved();
  }

  encode(): string {
    return this.hash === undefined
      ? encodeEntry({ ref: 'name', topic: this.key, live: true, lastId: this.lastId })
      : encodeEntry({ ref: 'hash', hash: this.hash, live: true, lastId: this.lastId });
  }

  open(): void {
    // The stream's headers went out before any topic was attached.
  }

  noContent(): void {
    this.stream.finished(this);
  }

  resync(): void {
    this.stream.control('resync', { topic: this.key, reason: 'history_gap' });
  }

  catchUp(events: readonly StoredEvent[]): void {
    this.stream.catchUp(this, events);
  }

  drained(): Promise<void> | undefined {
    return this.stream.writer.drained();
  }

  relay(event: StoredEvent, now: number): void {
    this.stream.relay(this, event, now);
  }

  retryHint(): void {
    // One topic's backend does not set the reconnect time of a stream that carries others.
  }

  end(reason: CloseReason, event?: { event: string; data: unknown }): void {
    this.stream.ended(this, reason, event);
  }

  reject({ code }: HttpError): void {
    if (code === 'shutting_down') this.stream.close('shutdown');
    else this.stream.failed(this, code);
  }
}

/** Several topics on one client response. */
export class MultiplexStream {
  readonly id = randomBytes(12).toString('base64url');
  /** Every topic the cursor names as live, in order. */
  private readonly members = new Map<string, Membership>();
  /** URL topics that were removed or ended, as cursor entries (encoded once): a resume leaves them out. */
  private readonly tombstones = new Set<string>();
  /** Events not written yet: each one's `id:` line (the cursor after it) and its shared envelope. */
  private batch: (string | Buffer)[] = [];
  private batchNow = 0;
  private cursor: string | undefined;
  /** While the first topics attach, a topic that finishes at once must not end the stream. */
  private starting = true;
  /** The topic change asked for last, until it is done (see `inTurn`). */
  private lastChange: Promise<void> | undefined;
  readonly writer: Subscriber;

  constructor(
    private readonly hub: Hub,
    private readonly resolve: ResolveTopic,
    res: ServerResponse,
    readonly user: string,
    onClosed: (stream: MultiplexStream, reason: CloseReason) => void,
  ) {
    this.writer = hub.stream(res, (_writer, reason) => {
      for (const member of this.members.values()) this.leave(member);
      onClosed(this, reason);
    });
  }

  get isClosed(): boolean {
    return this.writer.isClosed;
  }

  /** Topics live on this connection now. */
  get topics(): string[] {
    const live: string[] = [];
    for (const member of this.members.values()) if (member.state === 'attached') live.push(member.key);
    return live;
  }

  /** Memberships held (for metrics). */
  get size(): number {
    return this.members.size;
  }

  /** Sends the headers and `ready`, then attaches every topic (each replays what it missed). */
  start(retryHintMs: number, heartbeatMs: number, planned: readonly PlannedTopic[], tombstones: Iterable<string>): void {
    for (const hash of tombstones) this.tombstone(hash);
    for (const topic of planned) this.members.set(topic.ref.key, new Membership(this, topic.ref.key, topic.hash, topic.lastId));
    this.writer.open(retryHintMs);
    // heartbeatMs: the longest this stream stays silent; a client that hears nothing for twice it may call the stream dead.
    this.control('ready', { streamId: this.id, topics: [...this.members.keys()], heartbeatMs });
    for (const topic of planned) {
      const member = this.members.get(topic.ref.key);
      if (member?.state === 'attached') this.join(member, topic.ref);
    }
    this.starting = false;
    this.endIfEmpty();
  }

  /**
   * Runs `change` once every change asked before it is done: the topic changes of one stream
   * take turns, so each is decided on what the one before left, and none can pass the cap while
   * another waits for the backend's authorization.
   */
  inTurn<T>(change: () => Promise<T>): Promise<T> {
    const turn = (this.lastChange ?? Promise.resolve()).then(change);
    const done = turn.then(
      () => undefined,
      () => undefined,
    );
    this.lastChange = done;
    // Nothing kept once the last change is done: a held stream carries no settled promise.
    void done.then(() => {
      if (this.lastChange === done) this.lastChange = undefined;
    });
    return turn;
  }

  /** The topics of `add` that are not live once `remove` is removed: what a change would attach. */
  joining<T extends TopicRef>(remove: readonly string[], add: readonly T[]): T[] {
    const leaving = new Set(remove);
    return add.filter((ref) => leaving.has(ref.key) || this.members.get(ref.key)?.state !== 'attached');
  }

  /**
   * Throws `too_many_topics` unless the stream names at most `maxTopics` topics after the change.
   * A topic the backend refused counts: the cursor keeps it, and a resume asks for it again, so a
   * stream past the cap would hand its client a cursor its own reconnect is refused for.
   */
  checkTopicCount(remove: readonly string[], add: readonly TopicRef[], maxTopics: number): void {
    const leaving = new Set(remove);
    let count = 0;
    for (const key of this.members.keys()) if (!leaving.has(key)) count += 1;
    for (const key of new Set(add.map((ref) => ref.key))) if (leaving.has(key) || !this.members.has(key)) count += 1;
    if (count > maxTopics) throw new HttpError('too_many_topics');
  }

  /**
   * Removes then adds topics (added ones start with their history, like a new subscriber); returns
   * the live topics. Checked here, where they attach, and all at once: past `maxTopics` it throws
   * `too_many_topics`, and when the new upstreams do not fit the hub's budget `over_capacity`,
   * both before anything changed.
   */
  update(remove: readonly string[], add: readonly TopicRef[], maxTopics: number): string[] {
    this.checkTopicCount(remove, add, maxTopics);
    const joining = this.joining(remove, add);
    this.hub.admitTopics(joining.map((ref) => ref.key));
    let changed = false;
    for (const key of remove) {
      const member = this.members.get(key);
      if (!member) continue;
      this.drop(member);
      changed = true;
    }
    const joined: [Membership, TopicRef][] = [];
    for (const ref of joining) {
      const existing = this.members.get(ref.key);
      if (existing?.state === 'attached') continue;
      const member = existing ?? new Membership(this, ref.key, undefined, undefined);
      member.state = 'attached';
      this.members.set(ref.key, member);
      joined.push([member, ref]);
      changed = true;
    }
    // The new cursor goes out before the added topics' history, so a reconnect right after keeps the change.
    if (changed) {
      this.cursor = undefined;
      this.control('topics', { topics: this.topics });
    }
    for (const [member, ref] of joined) this.join(member, ref);
    this.endIfEmpty();
    return this.topics;
  }

  /** Ends the response (the relay's doing), for `reason`, after the events already in. */
  close(reason: CloseReason): void {
    this.flush();
    this.writer.end(reason);
  }

  cursorMoved(): void {
    this.cursor = undefined;
  }

  relay(member: Membership, event: StoredEvent, now: number): void {
    // A member that left is off its topic already; this only guards a topic ending members in a loop.
    if (member.state !== 'attached') return;
    member.advance(event.id);
    // Each event keeps the cursor after it, so a connection that breaks inside the chunk still resumes exactly.
    if (this.batch.length === 0) {
      flushing.push(this);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushAll);
      }
    }
    this.batch.push(idLine(this.currentCursor()), envelopeOf(member.key, event));
    this.batchNow = now;
  }

  /** Writes the events that came since the last write, in one chunk. */
  flush(): void {
    if (this.batch.length === 0) return;
    const parts = this.batch;
    this.batch = [];
    this.writer.sendParts(parts, this.batchNow);
  }

  catchUp(member: Membership, events: readonly StoredEvent[]): void {
    if (events.length === 0 || member.state !== 'attached') return;
    // Live events of other topics that came first go first: the cursor of this backlog includes them.
    this.flush();
    const parts: Buffer[] = [];
    for (const event of events) {
      member.advance(event.id);
      parts.push(Buffer.from(idLine(this.currentCursor()), 'latin1'), envelopeOf(member.key, event));
    }
    // One write, one chunk: not two per event (its cursor line and its envelope).
    this.writer.replay([Buffer.concat(parts)]);
  }

  /** A relay event of this stream, carrying the cursor like every other. */
  control(name: string, data: unknown): void {
    this.batch.push(idLine(this.currentCursor()), controlOf(name, data));
    this.batchNow = Date.now();
    this.flush();
  }

  /** The topic is finished and this member has all of it: `topic_end`, and the topic leaves the cursor. */
  finished(member: Membership): void {
    if (member.state !== 'attached') return;
    this.drop(member);
    this.control('topic_end', { topic: member.key });
    this.endIfEmpty();
  }

  ended(member: Membership, reason: CloseReason, event: { event: string; data: unknown } | undefined): void {
    if (member.state !== 'attached') return;
    switch (reason) {
      case 'upstream_ended':
        if (member.topic?.state === 'finished') return this.finished(member);
        // A clean end that is not a finish: the topic reconnects upstream, and this member
        // rejoins it from its last id as a reconnecting client would, unseen by the client.
        // After the topic is done ending its members, which it does in one loop.
        setImmediate(() => {
          const ref = this.resolve(member.key);
          if (member.state === 'attached' && !this.isClosed && ref) this.join(member, ref);
        });
        return;
      case 'relay_error': {
        const reasonOf = (event?.data as { reason?: unknown } | undefined)?.reason;
        return this.failed(member, typeof reasonOf === 'string' ? reasonOf : 'upstream_unavailable');
      }
      case 'client_closed':
      case 'slow_client':
      case 'idle_timeout':
      case 'lifetime':
      case 'rejected':
      case 'shutdown':
      case 'token_expired':
      case 'ended_by_app':
        return this.close(reason);
    }
  }

  /** The topic cannot go on here (the backend refused it, or the relay gave up on it); the others go on. */
  failed(member: Membership, reason: string): void {
    if (member.state !== 'attached') return;
    member.state = 'failed';
    member.topic?.detach(member);
    // It stays in the cursor: a resume tries it again from where it was.
    this.control('relay_error', { topic: member.key, reason });
    this.endIfEmpty();
  }

  private join(member: Membership, ref: TopicRef): void {
    const lastId = member.lastId;
    const headers = { 'x-user-id': this.user };
    const topic = this.hub.topicFor(ref, { headers, lastEventId: typeof lastId === 'string' ? lastId : undefined });
    member.topic = topic;
    topic.attach(member, lastId === null ? UNKNOWN_ID : lastId, headers);
  }

  /** Takes a topic off the stream for good: detached now, so none of its events follow. */
  private drop(member: Membership): void {
    this.leave(member);
    member.state = 'gone';
    this.members.delete(member.key);
    if (member.hash !== undefined) this.tombstone(member.hash);
    this.cursor = undefined;
  }

  private tombstone(hash: string): void {
    this.tombstones.add(encodeEntry({ ref: 'hash', hash, live: false, lastId: undefined }));
  }

  private leave(member: Membership): void {
    if (member.state === 'attached') member.topic?.detach(member);
  }

  private endIfEmpty(): void {
    if (this.starting || this.isClosed) return;
    for (const member of this.members.values()) if (member.state === 'attached') return;
    // EventSource reconnects with the cursor, in which no topic is live: that answers 204, and it stops.
    this.close('upstream_ended');
  }

  private currentCursor(): string {
    if (this.cursor === undefined) {
      const entries: string[] = [];
      for (const member of this.members.values()) entries.push(member.entry);
      for (const entry of this.tombstones) entries.push(entry);
      this.cursor = joinCursor(entries);
    }
    return this.cursor;
  }
}

/** The multiplexed streams of one relay, by id, for `POST /api/events/:streamId/topics`. */
export class Multiplexer {
  private readonly streams = new Map<string, MultiplexStream>();

  constructor(
    private readonly hub: Hub,
    private readonly config: RelayConfig,
    private readonly resolve: ResolveTopic,
  ) {}

  /** Multiplexed streams open now. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Topics held by multiplexed streams now, summed over the streams. */
  get membershipCount(): number {
    let count = 0;
    for (const stream of this.streams.values()) count += stream.size;
    return count;
  }

  /**
   * Opens a stream on `res` with `planned` topics; undefined when the client has already gone.
   * Throws `over_capacity` when the upstreams they need do not fit the hub's budget.
   */
  open(res: ServerResponse, user: string, planned: readonly PlannedTopic[], tombstones: Iterable<string>): MultiplexStream | undefined {
    if (res.destroyed || !res.socket || res.socket.destroyed) return undefined;
    // After the route's authorizations, with nothing in between until the topics attach.
    this.hub.admitTopics(planned.map((topic) => topic.ref.key));
    const stream = new MultiplexStream(this.hub, this.resolve, res, user, (closed) => this.streams.delete(closed.id));
    this.streams.set(stream.id, stream);
    stream.start(this.config.retryHintMs, this.config.heartbeatMs, planned, tombstones);
    return stream;
  }

  /** The open streams of `user` (for the admin API: a scan of every stream). */
  streamsOf(user: string): MultiplexStream[] {
    return [...this.streams.values()].filter((stream) => stream.user === user && !stream.isClosed);
  }

  /** The open stream `id` of `user`; another user's is not found either. */
  find(id: string, user: string): MultiplexStream | undefined {
    const stream = this.streams.get(id);
    return stream && stream.user === user && !stream.isClosed ? stream : undefined;
  }
}
