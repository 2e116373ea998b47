import type { Logger } from 'pino';
import { ERROR_CODES, errorBody } from '../errors';
import type { EventFeed, FeedInit, LocalOwnership } from '../relay/ownership';
import type { UpstreamListener, UpstreamRefusal } from '../relay/upstream';
import type { AppendWatch } from './append-watch';
import { type HistoryEntry, type LoadedHistory, type NewEntry, SIZE_FIELD, type SharedTopicStore, toEntry } from './shared-topic';
import type { ClusterSigner, SignedKind } from './signer';
import type { RedisLink } from './redis';

/** What a cluster feed needs from its relay. */
export interface ClusterFeedContext {
  readonly link: RedisLink;
  readonly store: SharedTopicStore;
  readonly watch: AppendWatch;
  readonly local: LocalOwnership;
  readonly logger: Logger;
  /** How long a finished topic stays marked in Redis (the linger period). */
  readonly finishedKeepMs: number;
  /** Ids remembered to drop an upstream's resends after it resumed (the history's size). */
  readonly recentIds: number;
  /** How long the owner waits to reopen an upstream that ended cleanly, given the backend's `retry:` (if any). */
  reopenDelayMs(backendRetryMs: number | undefined): number;
  /** Takeover times, for metrics and the bench. */
  onTakeover?(ms: number): void;
  /** Signs the entries this relay appends and checks those it reads; undefined: entries are trusted as Redis holds them. */
  readonly signer: ClusterSigner | undefined;
  /** An entry read from Redis did not carry a valid signature, and was dropped. */
  onForged(kind: SignedKind, detail: Record<string, string>): void;
  /**
   * Drops a POST answer's history from Redis and, when Redis held it, tells the relays that read
   * or follow it (a cancel, or this relay giving it up unfinished); false when Redis held none.
   */
  dropAnswer(key: string): Promise<boolean>;
}

type Role = 'starting' | 'owner' | 'follower' | 'local' | 'closed';

/** Why the clients of a POST answer read on another relay are ended when its owner is gone. */
const ANSWER_LOST = 'answer_lost';

/** A resume of an answer Redis does not hold (never made, cancelled, abandoned, expired) is one the relay cannot find. */
const ANSWER_NOT_FOUND: UpstreamRefusal = {
  status: 404,
  kind: 'status',
  body: JSON.stringify(errorBody('stream_not_found', ERROR_CODES.stream_not_found.message)),
  reason: 'no such answer in the shared history',
};

/** How soon a failed append is tried again. */
const APPEND_RETRY_MS = 200;

/** An entry waiting for the owner's next append; `finish` ends the topic. */
interface Outgoing extends NewEntry {
  readonly fields: string[];
  readonly finish: boolean;
}

// Entry fields: k kind (v event, x clean end, f finished, r the backend's retry: hint), i the
// event's id line, e effective id, n name, d data (absent for an id-only frame), r milliseconds,
// h the signature of the topic and every field before it (with a cluster secret).
const SIGNATURE_FIELD = 'h';

/**
 * A topic's events in a cluster. The relay holding the topic's lease reads the backend and
 * appends each event to the shared history (refused once the lease is someone else's), then
 * hands it to its topic; every other relay with subscribers follows the history through the
 * relay's append watch, and takes the lease over when it lapses, resuming the backend from the
 * last id in the history. Without Redis at start the topic reads its own upstream.
 *
 * The owner appends in batches: what its upstream delivered in one turn of the event loop goes
 * in one script call, and while a call is in flight the next events wait for it and go together
 * in the next. One call in flight per topic also keeps the appends in upstream order when a Redis
 * Cluster redirects or retries one.
 *
 * A clean end of the backend's stream (not a finish) is an entry too, so every relay ends its
 * subscribers' streams and they reconnect as they would to the backend. The owner does not wait
 * for one of its own subscribers to come back (they may all be on other relays): it reopens the
 * upstream with `Last-Event-ID` after the reconnection time a client would wait (the backend's
 * `retry:`, else `retryHintMs`). A topic that resumes after the end is opened again at once on
 * any relay; the events of the reopened upstream reach it through the shared history.
 *
 * A streaming POST's answer (a feed with a `source`) is a topic only its relay can read: the
 * relay that received the POST owns it and appends its events as a topic's, and drops its history
 * when it gives the answer up unfinished (cancelled, abandoned, broken). Other relays follow it
 * (`answerFollower`) and never take it over: they mark it read while they follow (its owner keeps
 * it past the grace period while the mark lasts), and when its lease lapses unfinished, its
 * relay is gone: their clients get what was appended, then `relay_error` (`answer_lost`).
 */
export class ClusterFeed implements EventFeed {
  private role: Role = 'starting';
  private opened = false;
  /** The last stream entry handed to the topic: where following resumes. */
  private cursor = '0-0';
  /** The last effective id handed to the topic: where a new owner resumes the backend. */
  private lastId: string | undefined;
  private readonly recent: string[] = [];
  private readonly recentSet = new Set<string>();
  private holder: string | undefined;
  private upstream: EventFeed | undefined;
  private unfollow: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The upstream resumed: until a new id, an id already relayed is a resend. */
  private overlap = false;
  private lostAt = 0;
  /** The topic heard `onEnd` and has not asked to `resume()` yet. */
  private ended = false;
  /** The backend's last `retry:` hint, as shared. */
  private backendRetryMs: number | undefined;
  private reopenTimer: NodeJS.Timeout | undefined;
  /** Entries waiting for the next append, in upstream order. */
  private outgoing: Outgoing[] = [];
  /** An append is in flight, or one is due at the end of this turn. */
  private appending = false;
  /** When the first of the appends failing now failed. */
  private failingSince: number | undefined;
  /** A batch whose append failed, tried again before anything newer, under the same token. */
  private retrying: { readonly batch: Outgoing[]; readonly token: string } | undefined;
  /** Batches this feed sent: with the holder, each batch's token. */
  private batches = 0;
  /** A POST answer this relay received: never followed elsewhere's, dropped from Redis when given up unfinished. */
  private readonly answer: boolean;
  private finished = false;
  /** The link's `readyCount` when Redis last confirmed this owner's lease. */
  private confirmedIn = 0;

  constructor(
    private readonly key: string,
    private readonly init: FeedInit,
    private readonly listener: UpstreamListener,
    private readonly context: ClusterFeedContext,
    /** Another relay's POST answer: followed only, never owned. */
    private readonly answerFollower = false,
  ) {
    this.lastId = init.lastEventId;
    this.answer = init.source !== undefined;
  }

  start(): void {
    // A relay that has not reached Redis yet (it is starting, its clients came back first) waits
    // for it, up to a lease: a topic it opened alone would be a second upstream beside the owner's.
    if (this.context.link.ready) return this.begin();
    // A POST's answer is this relay's alone to read: its client does not wait for Redis.
    if (this.answer) return this.goLocal('redis unavailable at the answer\'s start');
    void this.context.link.readyWithin(this.context.store.leaseMs).then((ready) => {
      if (this.role !== 'starting') return;
      if (ready) return this.begin();
      if (this.answerFollower) return this.unavailable('redis unavailable at resume');
      this.goLocal('redis unavailable at topic open');
    });
  }

  private begin(): void {
    this.join().catch((err: unknown) => {
      if (this.role !== 'starting') return;
      // Nothing to read without Redis for another relay's answer.
      if (this.answerFollower) this.unavailable(`redis failed at resume: ${String(err)}`);
      else this.goLocal(`redis failed at topic open: ${String(err)}`);
    });
  }

  private unavailable(why: string): void {
    this.role = 'closed';
    this.listener.onGiveUp('redis_unavailable', why);
  }

  /**
   * The topic resumes after `onEnd`. The owner already reopens the upstream on its own, and a
   * follower has nothing to reopen: either way the topic is open again at once.
   */
  resume(): void {
    if (this.role === 'local') return this.upstream?.resume();
    if (this.role === 'closed' || !this.ended) return;
    this.ended = false;
    this.listener.onOpen(undefined);
  }

  close(): void {
    if (this.role === 'closed') return;
    this.stop();
  }

  get following(): boolean {
    return this.role === 'follower';
  }

  /** How long clients on other relays are still marked as reading this relay's POST answer, in ms (0: none). */
  async readElsewhere(): Promise<number> {
    if (!this.answer || this.role !== 'owner') return 0;
    return this.context.store.readersLeft(this.key);
  }

  /** Loads the shared history into the topic, then owns or follows. */
  private async join(): Promise<void> {
    const history = await this.context.store.load(this.key);
    if (this.role !== 'starting') return;
    if (this.answerFollower && history.epoch === undefined) {
      this.role = 'closed';
      return this.listener.onRefused(ANSWER_NOT_FOUND);
    }
    const entries = history.entries.filter((entry) => this.genuine(entry));
    // An empty history starts where this topic starts (the claim below records that origin). One
    // that lost an entry to a failed signature no longer reaches back to it: resuming clients get resync.
    if (history.epoch !== undefined) this.listener.onHistory?.(history.origin, history.truncated || entries.length < history.entries.length);
    for (const entry of entries) this.apply(entry, false);
    // Finished before this relay came: no open first, or a client holding the last id would be
    // answered 200 and an empty stream before the finish, where a 204 tells it to stop.
    if (this.finishedIn(history, entries)) return this.finish();
    if (this.answerFollower) {
      if (history.leased) return this.followFrom(this.cursor);
      this.open();
      return this.lose('the relay that received the POST no longer reads it');
    }
    const holder = await this.context.store.claim(this.key, this.lastId);
    if (this.role !== 'starting') {
      if (holder !== undefined) await this.context.store.release(this.key, holder);
      return;
    }
    if (holder !== undefined) this.own(holder);
    else this.followFrom(this.cursor);
  }

  private own(holder: string): void {
    this.context.logger.info({ topic: this.key, resumeFrom: this.lastId }, 'topic owned');
    this.role = 'owner';
    this.holder = holder;
    this.confirmedIn = this.context.link.readyCount;
    clearInterval(this.timer);
    this.timer = setInterval(() => void this.renew(), Math.max(20, Math.floor(this.context.store.leaseMs / 3)));
    this.timer.unref();
    this.upstream = this.context.local.feed(this.key, { ...this.init, lastEventId: this.lastId }, {
      onOpen: () => {
        this.overlap = this.lastId !== undefined && this.recent.length > 0;
        this.open();
      },
      onEvent: (event, effectiveId) => {
        if (this.overlap && event.id !== undefined) {
          if (this.recentSet.has(event.id)) return;
          this.overlap = false;
        }
        const fields = ['k', 'v'];
        if (event.id !== undefined) fields.push('i', event.id);
        if (effectiveId !== undefined) fields.push('e', effectiveId);
        if (event.event !== undefined) fields.push('n', event.event);
        if (event.data !== undefined) fields.push('d', event.data);
        this.publish(fields, (event.data?.length ?? 0) + (event.event?.length ?? 0) + (event.id?.length ?? 0));
      },
      onReconnectTime: (ms) => {
        if (ms !== this.backendRetryMs) this.publish(['k', 'r', 'r', String(ms)], 0);
      },
      onEnd: () => {
        this.publish(['k', 'x'], 0);
        this.scheduleReopen();
      },
      onFinish: () => this.publish(['k', 'f'], 0, true),
      onRefused: (refusal) => {
        this.release();
        this.listener.onRefused(refusal);
      },
      onGiveUp: (reason, cause) => {
        this.release();
        this.listener.onGiveUp(reason, cause);
      },
      onRetry: (attempt, delayMs, cause) => this.listener.onRetry?.(attempt, delayMs, cause),
    });
    this.upstream.start();
  }

  /** After a clean end: reconnects as a client would, after the reconnection time. */
  private scheduleReopen(): void {
    clearTimeout(this.reopenTimer);
    this.reopenTimer = setTimeout(() => {
      if (this.role === 'owner') this.upstream?.resume();
    }, this.context.reopenDelayMs(this.backendRetryMs));
    this.reopenTimer.unref();
  }

  /**
   * Queues an entry for the shared history; it reaches the topic once appended. A refused append
   * means another relay owns the topic now: this one stops reading the backend and follows from
   * its last entry.
   */
  private publish(fields: string[], size: number, finish = false): void {
    if (this.role === 'local') return this.apply(toEntry([this.cursor, fields]), true);
    if (this.holder === undefined) return;
    // Signed as queued: a batch sent again after a lost reply carries the same signatures.
    const { signer } = this.context;
    if (signer !== undefined) fields.push(SIGNATURE_FIELD, signer.sign('entry', [this.key, ...fields]));
    this.outgoing.push({ fields, size, finish });
    if (this.appending) return;
    this.appending = true;
    setImmediate(() => this.appendBatch());
  }

  /** Appends what is queued (up to a finish) in one script call, then the next batch when it answered. */
  private appendBatch(): void {
    const holder = this.holder;
    if (holder === undefined || this.role !== 'owner' || (this.outgoing.length === 0 && !this.retrying)) {
      this.appending = false;
      return;
    }
    let { batch, token } = this.retrying ?? { batch: [] as Outgoing[], token: '' };
    this.retrying = undefined;
    if (batch.length === 0) {
      const end = this.outgoing.findIndex((entry) => entry.finish);
      batch = this.outgoing.splice(0, end < 0 ? this.outgoing.length : end + 1);
      token = `${holder}#${++this.batches}`;
    }
    const finish = batch[batch.length - 1]?.finish === true ? { keepMs: this.context.finishedKeepMs } : undefined;
    const issuedIn = this.context.link.readyCount;
    this.context.store.append(this.key, holder, this.cursor, token, batch, finish).then(
      (streamIds) => {
        if (this.role !== 'owner' || this.holder !== holder) return;
        if (streamIds === undefined) {
          if (this.lapsedWhileAway(issuedIn)) return this.keepLocal(batch, 'Redis lost its lease while it was away');
          return this.demote('append refused: the lease is another relay\'s');
        }
        this.confirmedIn = issuedIn;
        this.failingSince = undefined;
        batch.forEach((entry, i) => this.apply(toEntry([streamIds[i] ?? this.cursor, entry.fields]), true));
        this.appendBatch();
      },
      (err: unknown) => {
        if (this.role !== 'owner' || this.holder !== holder) return;
        this.logLost(err);
        this.failingSince ??= Date.now();
        if (Date.now() - this.failingSince >= this.context.store.leaseMs) {
          // Nobody else can read a POST's answer: its clients here keep it, without the cluster.
          if (this.answer) return this.keepLocal(batch, 'the shared history took no append for a lease');
          // Past the lease another relay may own the topic: this one lets go of it, and its clients
          // reconnect (to their own upstream while Redis is away), as followers' did.
          this.stop();
          return this.listener.onGiveUp('redis_unavailable', 'the shared history took no append for a lease');
        }
        // An event relayed without its append would be a hole in the shared history, which relays
        // that follow it could not see: the batch waits (and the events after it) while the owner
        // still holds the lease, through a failover of the topic's shard or a reconnect.
        this.retrying = { batch, token };
        setTimeout(() => this.appendBatch(), APPEND_RETRY_MS).unref();
      },
    );
  }

  private async renew(): Promise<void> {
    const holder = this.holder;
    if (this.role !== 'owner' || holder === undefined || !this.context.link.ready) return;
    const issuedIn = this.context.link.readyCount;
    const held = await this.context.store.renew(this.key, holder).catch(() => undefined);
    if (held === undefined || this.role !== 'owner' || this.holder !== holder) return;
    if (held) {
      this.confirmedIn = issuedIn;
      return;
    }
    if (!this.lapsedWhileAway(issuedIn)) return this.demote('lease lost');
    // An append on its way is refused too, and goes on here with its batch.
    if (!this.appending) this.keepLocal([], 'Redis lost its lease while it was away');
  }

  /**
   * Whether a POST answer's lease, found gone, lapsed while Redis was away from this relay (or
   * Redis restarted empty): nobody else takes an answer over, and a cancel is a message, so its
   * clients here keep it, as when Redis goes away mid-answer.
   */
  private lapsedWhileAway(issuedIn: number): boolean {
    return this.answer && issuedIn !== this.confirmedIn;
  }

  /** Stops reading the backend; another relay owns the topic: follow its appends. */
  private demote(why: string): void {
    // Nobody else can read a POST's answer: it cannot be followed from here either.
    if (this.answer) return this.lose(why);
    this.context.logger.warn({ topic: this.key, why }, 'topic ownership lost; following the shared history');
    clearTimeout(this.reopenTimer);
    // Whatever the upstream gave that was not appended is the new owner's to read again from the backend.
    this.outgoing = [];
    this.retrying = undefined;
    this.failingSince = undefined;
    this.appending = false;
    this.upstream?.close();
    this.upstream = undefined;
    this.holder = undefined;
    this.followFrom(this.cursor);
  }

  private followFrom(cursor: string): void {
    this.role = 'follower';
    this.open();
    this.unfollow = this.context.watch.follow(this.key, cursor, {
      accepts: (entry) => this.genuine(entry),
      onEntries: (entries) => {
        for (const entry of entries) if (this.role === 'follower') this.apply(entry, true);
      },
      onLost: () => {
        if (this.role !== 'follower') return;
        this.close();
        this.listener.onGiveUp('redis_unavailable', 'the shared history watch lost Redis');
      },
    });
    clearInterval(this.timer);
    if (!this.answerFollower) return this.watchLease(this.context.store.leaseMs / 3);
    this.timer = setInterval(() => void this.checkAnswer(), Math.max(20, Math.floor(this.context.store.leaseMs / 3)));
    this.timer.unref();
    void this.checkAnswer();
  }

  /** Looks at the owner's lease in `ms` (see `tryTakeover`). */
  private watchLease(ms: number): void {
    clearInterval(this.timer);
    this.timer = setTimeout(() => void this.tryTakeover(), Math.max(20, Math.ceil(ms)));
    this.timer.unref();
  }

  /**
   * Marks another relay's answer read here, and ends it when that relay is gone: its lease lapsed
   * unfinished (what it appended is handed on first), or its history was dropped (cancelled).
   */
  private async checkAnswer(): Promise<void> {
    if (this.role !== 'follower' || !this.context.link.ready) return;
    const state = await this.context.store.answerState(this.key, this.context.store.leaseMs).catch(() => undefined);
    if (state === undefined || state.leased || state.finished || this.role !== 'follower') return;
    if (!state.held) {
      this.stop();
      return this.listener.onGiveUp('answer_cancelled', 'the answer was cancelled, or its relay gave it up');
    }
    const missed = await this.context.store.after(this.key, this.cursor).catch(() => []);
    for (const entry of missed) if (this.role === 'follower' && this.genuine(entry)) this.apply(entry, true);
    if (this.role === 'follower') this.lose('the relay that received the POST stopped reading it');
  }

  /** An answer nobody reads any more (its relay is gone, or this one lost it): its clients get `relay_error` and the end. */
  private lose(why: string): void {
    this.stop();
    this.listener.onGiveUp(ANSWER_LOST, why);
  }

  /** The owner's lease lapsed (it died, or closed its topic): take the topic over. */
  private async tryTakeover(): Promise<void> {
    if (this.role !== 'follower') return;
    const every = this.context.store.leaseMs / 3;
    if (!this.context.link.ready) return this.watchLease(every);
    // Nearly every look finds the owner alive: one plain command, not the claim's script. The next
    // look is a third of a lease on (an owner whose clients all left gives its lease up at once),
    // or right when the lease would lapse, if sooner (a dead owner is replaced without delay).
    const left = await this.context.store.leaseLeft(this.key).catch(() => undefined);
    if (this.role !== 'follower') return;
    if (left === undefined || left > 0) return this.watchLease(Math.min(left ?? every, every));
    const started = Date.now();
    const holder = await this.context.store.claim(this.key, this.lastId).catch(() => undefined);
    if (holder === undefined) {
      if (this.role === 'follower') this.watchLease(every);
      return;
    }
    if (this.role !== 'follower') return void this.context.store.release(this.key, holder).catch(() => undefined);
    this.unfollow?.();
    this.unfollow = undefined;
    this.role = 'owner';
    // Held from here: a close during the catch-up below must give the lease back, not leave it to lapse.
    this.holder = holder;
    // Whatever the old owner appended that the watch had not delivered yet.
    const missed = await this.context.store.after(this.key, this.cursor).catch(() => []);
    for (const entry of missed) if (this.genuine(entry)) this.apply(entry, true);
    if (this.role !== 'owner') return;
    this.context.logger.info({ topic: this.key, resumeFrom: this.lastId }, 'topic taken over');
    this.context.onTakeover?.(Date.now() - started);
    this.own(holder);
  }

  /**
   * Whether an entry read from Redis was written by a relay of this cluster: its signature matches
   * (always true without a signer). One that does not is dropped, counted and logged.
   */
  private genuine(entry: HistoryEntry): boolean {
    const { signer } = this.context;
    if (signer === undefined) return true;
    const parts = [this.key];
    let signature: string | undefined;
    for (const [name, value] of entry.fields) {
      if (name === SIGNATURE_FIELD) signature = value;
      else if (name !== SIZE_FIELD) parts.push(name, value);
    }
    if (signer.verify('entry', parts, signature)) return true;
    this.context.onForged('entry', { topic: this.key, streamId: entry.streamId });
    return false;
  }

  /**
   * Whether a loaded history is finished. With signing, the meta's flag must be borne out by a
   * signed finish as its last entry (the finish is appended last, and the oldest entries go
   * first): a flag set by hand in Redis would end every client's stream for good.
   */
  private finishedIn(history: LoadedHistory, genuine: readonly HistoryEntry[]): boolean {
    if (!history.finished) return false;
    return this.context.signer === undefined || genuine.at(-1)?.fields.get('k') === 'f';
  }

  /** Hands one entry of the shared history to the topic. */
  private apply(entry: HistoryEntry, live: boolean): void {
    this.cursor = entry.streamId;
    const { fields } = entry;
    switch (fields.get('k')) {
      case 'f':
        if (live) this.finish();
        return;
      case 'x':
        // A topic that has not opened yet waits for the owner's reopened upstream instead.
        if (live && this.opened && !this.ended) {
          this.ended = true;
          this.listener.onEnd();
        }
        return;
      case 'r': {
        const ms = Number(fields.get('r'));
        if (!Number.isFinite(ms)) return;
        this.backendRetryMs = ms;
        this.listener.onReconnectTime?.(ms);
        return;
      }
      default: {
        const id = fields.get('i');
        const effectiveId = fields.get('e');
        this.lastId = effectiveId;
        if (id !== undefined) this.remember(id);
        this.listener.onEvent({ id, event: fields.get('n'), data: fields.get('d') }, effectiveId);
      }
    }
  }

  private remember(id: string): void {
    if (this.recentSet.has(id)) return;
    this.recent.push(id);
    this.recentSet.add(id);
    if (this.recent.length > this.context.recentIds) this.recentSet.delete(this.recent.shift() ?? '');
  }

  private open(): void {
    if (this.opened) return;
    this.opened = true;
    // Resends after a resume are dropped here, before the shared history: the topic needs no overlap check.
    this.listener.onOpen(undefined);
  }

  private finish(): void {
    this.finished = true;
    this.stop();
    this.listener.onFinish();
  }

  /** Stops reading, following and renewing, and lets go of the topic if this relay owned it. */
  private stop(): void {
    const wasOwner = this.role === 'owner';
    this.role = 'closed';
    clearInterval(this.timer);
    clearTimeout(this.reopenTimer);
    this.unfollow?.();
    this.upstream?.close();
    // Handing over at once: a relay that still has subscribers claims it at its next check.
    if (wasOwner && this.holder !== undefined) this.letGo(this.holder);
  }

  private release(): void {
    const holder = this.holder;
    this.role = 'closed';
    clearInterval(this.timer);
    clearTimeout(this.reopenTimer);
    if (holder !== undefined) this.letGo(holder);
  }

  /** Gives the lease up; a POST answer given up unfinished goes from Redis (a resume anywhere: 404). */
  private letGo(holder: string): void {
    if (!this.answer || this.finished) return void this.context.store.release(this.key, holder).catch(() => undefined);
    this.context.dropAnswer(this.key).catch(() => undefined);
  }

  /**
   * A POST answer whose appends Redis has not taken for a lease, or whose lease Redis lost while
   * away: what waited and what follows go to its clients here at once, as on a single relay (a resume elsewhere can no longer find it).
   */
  private keepLocal(unappended: Outgoing[], why: string): void {
    this.context.logger.warn({ topic: this.key, why }, 'the answer goes on without the cluster');
    this.role = 'local';
    this.holder = undefined;
    clearInterval(this.timer);
    const waiting = [...unappended, ...this.outgoing];
    this.outgoing = [];
    this.retrying = undefined;
    this.appending = false;
    for (const entry of waiting) if (this.role === 'local') this.apply(toEntry([this.cursor, [...entry.fields]]), true);
  }

  /** Without Redis: this relay reads its own upstream, as a single relay does. */
  private goLocal(why: string): void {
    this.role = 'local';
    this.context.logger.warn({ topic: this.key, why }, 'topic opened without the cluster');
    this.upstream = this.context.local.feed(this.key, { ...this.init, lastEventId: this.lastId }, this.listener);
    this.upstream.start();
  }

  private logLost(err: unknown): void {
    if (Date.now() - this.lostAt < 5000) return;
    this.lostAt = Date.now();
    this.context.logger.error({ topic: this.key, err: String(err) }, 'shared history append failed; retrying while the lease lasts');
  }
}
