import { type ReconnectOptions, backoffDelay, retryAfterMs } from './backoff';
import { Poller } from './poller';
import { readEventStream, type StreamEvent } from './sse-body';
import { type Topic, checkTopic } from './topics';
import { RelayError, type Transport } from './transport';
import { browser } from './browser';
import { type Delivery, type TabMessage, TabLink } from './tab-link';

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

/** Timing of the stream and of the polling fallback. */
export interface StreamTiming {
  readonly reconnect: Readonly<ReconnectOptions>;
  /** How often each topic's status is polled while streaming does not work. */
  readonly pollIntervalMs: number;
  /** How long an answered stream may take to send its `ready` event before the client decides something buffers it and polls. */
  readonly readyTimeoutMs: number;
  /** The relay's heartbeat interval when its `ready` event does not say it; undefined: such a stream is never called dead. */
  readonly heartbeatMs: number | undefined;
}

/** Ids remembered per topic to drop an event seen twice (a takeover resumes from the cursor the tabs last heard; a replay for a new tab). Above the relay's default history of 1000. */
const SEEN_IDS = 2048;

/** How one stream attempt ended. */
type Outcome =
  | { kind: 'ended' } // the relay ended an open stream (idle, lifetime, drain, no live topic left)
  | { kind: 'dropped'; reason: string } // network failure, before or after the stream opened
  | { kind: 'refused'; httpStatus: number; retryAfterMs: number | undefined } // 429, 503
  | { kind: 'unusable'; httpStatus?: number; reason: string } // a proxy's error page, a buffered stream
  | { kind: 'fatal'; httpStatus: number; reason: string } // 4xx: retrying cannot help
  | { kind: 'finished' } // 204: every topic has finished
  | { kind: 'stopped' };

interface Ready {
  readonly streamId: string;
  readonly topics: readonly Topic[];
  /** The longest the relay leaves the stream silent (relays before this field: absent). */
  readonly heartbeatMs?: number;
}

/**
 * The client's one multiplexed stream: the union of its subscriptions' topics on one
 * connection, resumed with the cursor, with backoff, and polling when streaming fails.
 */
export class TopicStream {
  private readonly subscriptions = new Set<SubscriptionState>();
  private readonly ended = new Set<Topic>();
  /** Topics the relay has on the open stream. */
  private live = new Set<Topic>();
  private cursor: string | undefined;
  private streamId: string | undefined;
  private serverRetryMs: number | undefined;
  private status: StreamStatus = 'closed';
  private statusInfo: StatusInfo = {};
  /** Bumped by every start and stop: a loop that sees another number has been replaced. */
  private generation = 0;
  private running = false;
  private openedInAttempt = false;
  private attempt: AbortController | undefined;
  private wakeUp: (() => void) | undefined;
  private syncing: Promise<void> | undefined;
  private readonly poller: Poller;
  private readonly seen = new Map<Topic, Set<string>>();
  /** Holding the shared stream: the topics whose history a newly watching tab needs. */
  private readonly replay = new Set<Topic>();
  /** Holding the shared stream: the topics each topic change sent adds, oldest first, until its `topics` event shows on the stream. */
  private readonly markers: Topic[][] = [];
  /** Sharing with the other tabs: this tab's topics when it last looked, and those it started to watch whose history has not started over yet. */
  private own = new Set<Topic>();
  private readonly awaiting = new Set<Topic>();
  /** Sharing with the other tabs: the link once its name is known; undefined while pending, or when this tab streams alone. */
  private link: TabLink | undefined;
  /** The tab link's name is being worked out: no stream until it is. */
  private linking: Promise<void> | undefined;

  /** `shareName`: resolves with the name of the lock and channel the tabs share, or undefined to stream alone. */
  constructor(
    private readonly transport: Transport,
    private readonly timing: StreamTiming,
    private shareName?: () => Promise<string | undefined>,
  ) {
    this.poller = new Poller(transport, timing.pollIntervalMs, {
      topics: () => this.wanted(),
      onState: (topic, data) => this.deliver({ type: 'event', cursor: undefined, event: { topic, event: 'status', id: undefined, data } }),
      onFinal: (topic) => this.deliver({ type: 'end', cursor: undefined, topic }),
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
    const state = new SubscriptionState(handlers, () => this.changed());
    for (const topic of topics) state.topics.add(checkTopic(topic));
    this.subscriptions.add(state);
    state.close = () => {
      this.subscriptions.delete(state);
      this.changed();
    };
    // A late subscriber learns where the stream is.
    if (this.status !== 'closed') handlers.onStatus?.(this.status, this.statusInfo);
    this.changed();
    return state.handle(this.ended);
  }

  /** Every topic some subscription (of this tab, or of another when this tab holds the connection) wants that has not ended. */
  private wanted(): Set<Topic> {
    const topics = this.link?.holding ? this.link.otherTopics() : new Set<Topic>();
    for (const subscription of this.subscriptions) for (const topic of subscription.topics) topics.add(topic);
    for (const topic of this.ended) topics.delete(topic);
    return topics;
  }

  /** This tab's own topics that have not ended. */
  private ownTopics(): Topic[] {
    const topics = new Set<Topic>();
    for (const subscription of this.subscriptions) for (const topic of subscription.topics) if (!this.ended.has(topic)) topics.add(topic);
    return [...topics].sort();
  }

  private changed(): void {
    if (this.shareName !== undefined) {
      this.linking ??= this.shareName().then(
        (name) => this.linked(name),
        () => this.linked(undefined),
      );
      return;
    }
    if (this.link) {
      const own = this.ownTopics();
      this.noticeOwnTopics(own);
      this.link.announce(own, [...this.awaiting].sort());
      if (!this.link.holding) return;
      this.requestReplays(this.link);
    }
    if (this.wanted().size === 0) {
      this.stop();
      return;
    }
    if (!this.running) {
      this.running = true;
      void this.run();
    }
    else if (this.streamId !== undefined) void this.syncTopics();
  }

  /**
   * A topic this tab starts to watch while the tabs share a stream may already be on it: the events
   * that go by now are dropped, and the topic is delivered from the start of the history the holder
   * gets replayed for it (`historyStarts`). Kept, a live event would come first and the history after.
   */
  private noticeOwnTopics(own: readonly Topic[]): void {
    const now = new Set(own);
    for (const topic of now) if (!this.own.has(topic)) this.awaiting.add(topic);
    for (const topic of this.awaiting) if (!now.has(topic)) this.awaiting.delete(topic);
    this.own = now;
  }

  /**
   * A tab that starts watching a topic the shared stream already carries would get only what
   * comes next, where a stream of its own would have replayed the topic's history: the holder
   * asks the relay for that history again (each tab drops the ids it has already seen), unless a
   * topic change under way replays it already. One that waits for a topic already ended is told so.
   */
  private requestReplays(link: TabLink): void {
    const awaited = link.awaited();
    for (const topic of this.awaiting) awaited.add(topic);
    for (const topic of awaited) {
      if (this.ended.has(topic)) {
        link.post({ type: 'end', cursor: undefined, topic });
        link.served([topic]);
      } else if (!this.markers.some((topics) => topics.includes(topic))) {
        this.replay.add(topic);
      }
    }
  }

  /** The stream carries these topics' whole history from here on: the tabs that waited for it take their events again. */
  private historyStarts(topics: readonly Topic[]): void {
    if (this.link?.holding) {
      this.link.post({ type: 'replay', topics });
      this.link.served(topics);
    }
    for (const topic of topics) this.awaiting.delete(topic);
  }

  /** The name the tabs share is known (undefined: this tab streams alone). */
  private linked(name: string | undefined): void {
    this.shareName = undefined;
    if (name !== undefined) {
      this.link = new TabLink(name, {
        // The stream goes on from the cursor this tab last heard from the previous holder.
        becameHolder: () => this.changed(),
        othersChanged: () => {
          this.changed();
          // A tab that just came learns where the stream is.
          if (this.status !== 'closed') this.link?.post({ type: 'status', status: this.status, info: this.statusInfo });
        },
        fromHolder: (message) => this.fromHolder(message),
        announce: () => this.changed(),
      });
    }
    this.changed();
  }

  private fromHolder(message: TabMessage): void {
    switch (message.type) {
      case 'event':
      case 'resync':
      case 'end':
        this.deliver(message, true);
        return;
      case 'replay':
        for (const topic of message.topics) this.awaiting.delete(topic);
        return;
      case 'status':
        this.setStatus(message.status, { ...message.info, tab: 'follower' });
        return;
      case 'error': {
        const refused = message.refused;
        if (refused !== undefined) {
          this.refuse(refused);
          this.changed();
        }
        this.broadcast((h) => h.onError?.(new Error(message.message)));
        return;
      }
      default:
    }
  }

  /** Starts the stream over at once (the network came back, the page came back from the back/forward cache). */
  private reconnectNow(): void {
    if (!this.running || this.status === 'closed') return;
    // An open stream is aborted: the loop takes that as stopped and connects again with no delay.
    if (this.streamId !== undefined) this.attempt?.abort('reconnect now');
    else this.wakeUp?.();
  }

  private stop(): void {
    this.running = false;
    this.generation += 1;
    this.attempt?.abort();
    this.poller.stop();
    this.wakeUp?.();
    if (this.status !== 'closed') this.setStatus('closed', { reason: 'no topics' });
  }

  /** Connects, reconnects and falls back, until no topic is wanted or the relay refuses for good. */
  private async run(): Promise<void> {
    const generation = ++this.generation;
    const current = (): boolean => this.generation === generation;
    let failures = 0;
    let polling = false;
    while (current() && this.wanted().size > 0) {
      if (!polling) this.setStatus(failures === 0 ? 'connecting' : 'reconnecting', { attempt: failures });
      const attempt = await this.connect(polling);
      if (!current()) return;
      const outcome = attempt.outcome;
      if (attempt.opened) {
        failures = 0;
        polling = false;
      }
      let delay: number;
      switch (outcome.kind) {
        case 'stopped':
          // An attempt aborted to start over (online, pageshow). Chromium, asked for the same URL in
          // the task that aborted it, was seen to send the new request twice and keep both open.
          await this.sleep(RESTART_PAUSE_MS);
          continue;
        case 'finished':
          for (const topic of this.wanted()) this.deliver({ type: 'end', cursor: undefined, topic });
          continue;
        case 'fatal':
          this.generation += 1;
          this.running = false;
          this.poller.stop();
          this.setStatus('closed', { httpStatus: outcome.httpStatus, reason: outcome.reason });
          return;
        case 'ended':
          // The relay ended a stream that worked (idle, lifetime, a drain): come back when it asked.
          failures += 1;
          delay = this.serverRetryMs ?? backoffDelay(failures, this.timing.reconnect);
          break;
        case 'refused':
          // A native EventSource gives up on 429 and 503; the relay says how long to wait.
          failures += 1;
          delay = outcome.retryAfterMs ?? backoffDelay(failures, this.timing.reconnect);
          break;
        case 'dropped':
          failures += 1;
          delay = backoffDelay(failures, this.timing.reconnect);
          break;
        case 'unusable':
          // Something between here and the relay does not pass streams: poll now, keep probing.
          failures += 1;
          polling = true;
          delay = backoffDelay(failures, this.timing.reconnect);
          break;
      }
      if (failures > this.timing.reconnect.attempts) polling = true;
      const info: StatusInfo = {
        attempt: failures,
        delayMs: delay,
        ...('httpStatus' in outcome && outcome.httpStatus !== undefined ? { httpStatus: outcome.httpStatus } : {}),
        ...('reason' in outcome ? { reason: outcome.reason } : {}),
      };
      if (polling) {
        this.poller.start();
        this.setStatus('polling', info);
      } else {
        this.setStatus('reconnecting', info);
      }
      await this.sleep(delay);
    }
    if (current()) this.stop();
  }

  /** One stream attempt; resolves with how it ended. `probing`: the client is polling, and stays so unless this works. */
  private async connect(probing: boolean): Promise<{ outcome: Outcome; opened: boolean }> {
    const outcome = await this.attemptStream(probing);
    return { outcome, opened: this.openedInAttempt };
  }

  private async attemptStream(probing: boolean): Promise<Outcome> {
    this.openedInAttempt = false;
    const topics = [...this.wanted()];
    if (topics.length === 0) return { kind: 'stopped' };
    const abort = new AbortController();
    this.attempt = abort;
    const query = topics.map((topic) => `topic=${encodeURIComponent(topic)}`).join('&');
    // Without a cursor the relay starts every topic with its whole history.
    const fromStart = this.cursor === undefined;
    let response: Response;
    try {
      response = await this.transport.request(`/api/events?${query}`, {
        headers: { accept: 'text/event-stream', ...(this.cursor === undefined ? {} : { 'last-event-id': this.cursor }) },
        signal: abort.signal,
      });
    } catch (err) {
      return abort.signal.aborted ? { kind: 'stopped' } : { kind: 'dropped', reason: errorText(err) };
    }
    if (response.status === 204) return { kind: 'finished' };
    if (response.status === 429 || response.status === 503) {
      void response.body?.cancel();
      return { kind: 'refused', httpStatus: response.status, retryAfterMs: retryAfterMs(response.headers.get('retry-after')) };
    }
    if (response.status >= 400 && response.status < 500) {
      return { kind: 'fatal', httpStatus: response.status, reason: (await RelayError.from(response)).message };
    }
    const type = response.headers.get('content-type') ?? '';
    if (!response.ok || !type.startsWith('text/event-stream') || response.body === null) {
      void response.body?.cancel();
      return { kind: 'unusable', httpStatus: response.status, reason: response.ok ? `not an event stream (${type || 'no type'})` : `HTTP ${response.status}` };
    }

    let ready = false;
    const readyTimer = setTimeout(() => {
      if (!ready) abort.abort('ready timeout');
    }, this.timing.readyTimeoutMs);
    // No byte, not even a heartbeat, for twice the relay's heartbeat interval: the socket is dead
    // without having said so (a phone changed networks, a laptop slept). Armed once `ready` says the interval.
    let silentLimitMs: number | undefined;
    let silentTimer: ReturnType<typeof setTimeout> | undefined;
    const heard = (): void => {
      if (silentLimitMs === undefined) return;
      clearTimeout(silentTimer);
      silentTimer = setTimeout(() => abort.abort(DEAD), silentLimitMs);
    };
    try {
      await readEventStream(
        response.body,
        (event) => {
          if (event.event === 'ready') {
            ready = true;
            clearTimeout(readyTimer);
            const heartbeatMs = this.opened(event, probing, fromStart);
            if (heartbeatMs !== undefined) silentLimitMs = 2 * heartbeatMs;
            heard();
          } else {
            this.received(event);
          }
        },
        { onRetry: (ms) => (this.serverRetryMs = ms), onBytes: heard },
      );
    } catch (err) {
      if (abort.signal.aborted && abort.signal.reason === DEAD) return { kind: 'dropped', reason: `no byte for ${silentLimitMs} ms: the connection is dead` };
      if (abort.signal.aborted && abort.signal.reason !== 'ready timeout') return { kind: 'stopped' };
      if (!ready) return { kind: 'unusable', reason: abort.signal.aborted ? 'no ready event: a proxy may buffer the stream' : errorText(err) };
      return { kind: 'dropped', reason: errorText(err) };
    } finally {
      clearTimeout(readyTimer);
      clearTimeout(silentTimer);
      this.streamId = undefined;
      this.live = new Set();
      // Changes whose `topics` event did not come: the next stream's holder asks again for what a tab still waits for.
      this.markers.length = 0;
    }
    if (!ready) return { kind: 'unusable', reason: 'the stream ended before its ready event' };
    return { kind: 'ended' };
  }

  /** Takes the `ready` event; returns the heartbeat interval to watch the stream with. */
  private opened(event: StreamEvent, wasPolling: boolean, fromStart: boolean): number | undefined {
    const ready = parseObject(event.data) as Partial<Ready> | undefined;
    if (typeof ready?.streamId !== 'string' || !Array.isArray(ready.topics)) {
      this.report(new Error(`bad ready event: ${event.data.slice(0, 200)}`));
      return undefined;
    }
    if (event.id !== undefined) this.cursor = event.id;
    this.streamId = ready.streamId;
    this.live = new Set(ready.topics);
    this.openedInAttempt = true;
    if (wasPolling) this.poller.stop();
    this.setStatus('open', { streamId: ready.streamId });
    if (fromStart) {
      for (const topic of this.live) this.replay.delete(topic);
      this.historyStarts([...this.live]);
    }
    // A resumed stream replays only what was missed: a tab that waits for a topic's whole history needs it asked for.
    if (this.link?.holding) this.requestReplays(this.link);
    // Topics wanted or dropped while this attempt was connecting.
    void this.syncTopics();
    const heartbeatMs = ready.heartbeatMs;
    return typeof heartbeatMs === 'number' && heartbeatMs > 0 ? heartbeatMs : this.timing.heartbeatMs;
  }

  private received(event: StreamEvent): void {
    if (event.id !== undefined) this.cursor = event.id;
    const payload = parseObject(event.data) as { topic?: unknown; id?: unknown; data?: unknown; topics?: unknown } | undefined;
    if (event.event === 'topics' && Array.isArray(payload?.topics)) {
      // Where a topic change took effect: the POST's answer says the topics, the stream says that the added ones' history follows.
      const added = this.markers.shift();
      if (added !== undefined && added.length > 0) this.historyStarts(added);
      return;
    }
    if (typeof payload?.topic !== 'string') {
      this.report(new Error(`skipped an event without a topic: ${event.data.slice(0, 200)}`));
      return;
    }
    const topic = payload.topic;
    const cursor = this.cursor;
    switch (event.event) {
      case 'resync':
        this.deliver({ type: 'resync', cursor, topic });
        return;
      case 'topic_end':
        this.live.delete(topic);
        this.deliver({ type: 'end', cursor, topic });
        return;
      default:
        this.deliver({
          type: 'event',
          cursor,
          event: {
            topic,
            event: event.event,
            id: typeof payload.id === 'string' ? payload.id : undefined,
            data: typeof payload.data === 'string' ? payload.data : JSON.stringify(payload.data),
          },
        });
    }
  }

  /**
   * Hands an event to this tab's subscriptions, and to the other tabs when this one holds the
   * connection. An event id seen before for its topic is dropped: after a takeover the new
   * holder may resume from a cursor a little behind what the tabs already got.
   */
  private deliver(delivery: Delivery, fromHolder = false): void {
    if (fromHolder && delivery.cursor !== undefined) this.cursor = delivery.cursor;
    // Every event goes to the other tabs, a repeat too: a replay is for a tab that has not seen it.
    if (this.link?.holding && !fromHolder) this.link.post(delivery);
    // Nothing is remembered of a topic this tab does not watch: it may start to, and then needs the replay.
    if (delivery.type === 'event' && !this.watches(delivery.event.topic)) return;
    // A topic that has ended may be replayed for a tab that asked while it ended: this tab has had all of it.
    if (delivery.type !== 'end' && this.ended.has(delivery.type === 'event' ? delivery.event.topic : delivery.topic)) return;
    // A topic this tab started to watch mid-stream is delivered from its replayed history, not from what happened to go by first.
    if (delivery.type !== 'end' && delivery.cursor !== undefined && this.awaiting.has(delivery.type === 'event' ? delivery.event.topic : delivery.topic)) return;
    if (delivery.type === 'event' && delivery.event.id !== undefined) {
      const ids = this.seen.get(delivery.event.topic) ?? new Set<string>();
      if (ids.has(delivery.event.id)) return;
      ids.add(delivery.event.id);
      if (ids.size > SEEN_IDS) ids.delete(ids.values().next().value as string);
      this.seen.set(delivery.event.topic, ids);
    }
    switch (delivery.type) {
      case 'event': {
        const event = delivery.event;
        this.dispatch(event.topic, (h) => h.onEvent?.(event));
        return;
      }
      case 'resync':
        this.dispatch(delivery.topic, (h) => h.onResync?.(delivery.topic));
        return;
      case 'end':
        this.awaiting.delete(delivery.topic);
        this.seen.delete(delivery.topic);
        this.finish(delivery.topic);
        return;
    }
  }

  private watches(topic: Topic): boolean {
    for (const subscription of this.subscriptions) if (subscription.topics.has(topic)) return true;
    return false;
  }

  /** An error for every subscription (of every tab, when this one holds the connection). */
  private report(error: Error, refused?: Topic): void {
    if (this.link?.holding) this.link.post({ type: 'error', message: error.message, ...(refused === undefined ? {} : { refused }) });
    this.broadcast((h) => h.onError?.(error));
  }

  /** Makes the open stream's topics match the wanted ones, one request at a time. */
  private syncTopics(): Promise<void> {
    // `finally` as a callback, not inside the async function: a loop with nothing to do returns
    // before `??=` has stored its promise, and would leave `syncing` set for good.
    this.syncing ??= this.syncLoop().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async syncLoop(): Promise<void> {
    for (;;) {
      const streamId = this.streamId;
      if (streamId === undefined) return;
      const wanted = this.wanted();
      const again = [...this.replay].filter((topic) => this.live.has(topic) && wanted.has(topic));
      this.replay.clear();
      const added = [...wanted].filter((topic) => !this.live.has(topic));
      const removed = [...this.live].filter((topic) => !wanted.has(topic));
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
        if (this.streamId === streamId) this.live = new Set(answer.topics);
      } catch (err) {
        // A refused change leaves the stream as it was: no `topics` event comes for it.
        const at = this.markers.indexOf(add);
        if (at >= 0) this.markers.splice(at, 1);
        // A refused topic must not loop: drop it from every subscription (of every tab) and say so.
        const error = err instanceof Error ? err : new Error(String(err));
        for (const topic of added) {
          this.refuse(topic);
          this.link?.forget(topic);
          this.report(error, topic);
        }
        if (added.length === 0) this.report(error);
      }
    }
  }

  private refuse(topic: Topic): void {
    for (const subscription of this.subscriptions) subscription.topics.delete(topic);
  }

  private finish(topic: Topic): void {
    if (this.ended.has(topic)) return;
    this.ended.add(topic);
    this.dispatch(topic, (h) => h.onEnd?.(topic));
    if (this.wanted().size === 0) this.stop();
  }

  private dispatch(topic: Topic, call: (handlers: SubscribeHandlers) => void): void {
    for (const subscription of [...this.subscriptions]) if (subscription.topics.has(topic)) call(subscription.handlers);
  }

  private broadcast(call: (handlers: SubscribeHandlers) => void): void {
    for (const subscription of [...this.subscriptions]) call(subscription.handlers);
  }

  private setStatus(status: StreamStatus, info: StatusInfo): void {
    if (this.link?.holding) {
      info = { ...info, tab: 'holder' };
      this.link.post({ type: 'status', status, info });
    }
    this.status = status;
    this.statusInfo = info;
    this.broadcast((h) => h.onStatus?.(status, info));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
    });
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

/** The pause between an attempt aborted to start over and the next one. */
const RESTART_PAUSE_MS = 50;

/** The abort reason of a stream found silent for too long. */
const DEAD = 'dead';

function parseObject(text: string): object | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
