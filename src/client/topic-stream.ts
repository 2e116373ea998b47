import { type ReconnectOptions, backoffDelay, retryAfterMs } from './backoff';
import { Poller } from './poller';
import { readEventStream, type StreamEvent } from './sse-body';
import { type Topic, checkTopic } from './topics';
import type { Transport } from './transport';

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
}

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

  constructor(
    private readonly transport: Transport,
    private readonly timing: StreamTiming,
  ) {
    this.poller = new Poller(transport, timing.pollIntervalMs, {
      topics: () => this.wanted(),
      onState: (topic, data) => this.dispatch(topic, (h) => h.onEvent?.({ topic, event: 'status', id: undefined, data })),
      onFinal: (topic) => this.finish(topic),
      onError: (error) => this.broadcast((h) => h.onError?.(error)),
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

  /** Every topic some subscription wants that has not ended. */
  private wanted(): Set<Topic> {
    const topics = new Set<Topic>();
    for (const subscription of this.subscriptions) for (const topic of subscription.topics) if (!this.ended.has(topic)) topics.add(topic);
    return topics;
  }

  private changed(): void {
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
          continue;
        case 'finished':
          for (const topic of this.wanted()) this.finish(topic);
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
      const reason = await errorReason(response);
      return { kind: 'fatal', httpStatus: response.status, reason };
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
    try {
      await readEventStream(
        response.body,
        (event) => {
          if (event.event === 'ready') {
            ready = true;
            clearTimeout(readyTimer);
            this.opened(event, probing);
          } else {
            this.received(event);
          }
        },
        (ms) => (this.serverRetryMs = ms),
      );
    } catch (err) {
      if ((abort.signal.aborted && abort.signal.reason !== 'ready timeout')) return { kind: 'stopped' };
      if (!ready) return { kind: 'unusable', reason: abort.signal.aborted ? 'no ready event: a proxy may buffer the stream' : errorText(err) };
      return { kind: 'dropped', reason: errorText(err) };
    } finally {
      clearTimeout(readyTimer);
      this.streamId = undefined;
      this.live = new Set();
    }
    if (!ready) return { kind: 'unusable', reason: 'the stream ended before its ready event' };
    return { kind: 'ended' };
  }

  private opened(event: StreamEvent, wasPolling: boolean): void {
    const ready = parseObject(event.data) as Partial<Ready> | undefined;
    if (typeof ready?.streamId !== 'string' || !Array.isArray(ready.topics)) {
      this.broadcast((h) => h.onError?.(new Error(`bad ready event: ${event.data.slice(0, 200)}`)));
      return;
    }
    this.streamId = ready.streamId;
    this.live = new Set(ready.topics);
    this.openedInAttempt = true;
    if (wasPolling) this.poller.stop();
    this.setStatus('open', { streamId: ready.streamId });
    // Topics wanted or dropped while this attempt was connecting.
    void this.syncTopics();
  }

  private received(event: StreamEvent): void {
    if (event.id !== undefined) this.cursor = event.id;
    const payload = parseObject(event.data) as { topic?: unknown; id?: unknown; data?: unknown } | undefined;
    if (typeof payload?.topic !== 'string') {
      this.broadcast((h) => h.onError?.(new Error(`skipped an event without a topic: ${event.data.slice(0, 200)}`)));
      return;
    }
    const topic = payload.topic;
    switch (event.event) {
      case 'resync':
        this.dispatch(topic, (h) => h.onResync?.(topic));
        return;
      case 'topic_end':
        this.live.delete(topic);
        this.finish(topic);
        return;
      default:
        this.dispatch(topic, (h) =>
          h.onEvent?.({
            topic,
            event: event.event,
            id: typeof payload.id === 'string' ? payload.id : undefined,
            data: typeof payload.data === 'string' ? payload.data : JSON.stringify(payload.data),
          }),
        );
    }
  }

  /** Makes the open stream's topics match the wanted ones, one request at a time. */
  private syncTopics(): Promise<void> {
    this.syncing ??= (async () => {
      try {
        for (;;) {
          const streamId = this.streamId;
          if (streamId === undefined) return;
          const wanted = this.wanted();
          const add = [...wanted].filter((topic) => !this.live.has(topic));
          const remove = [...this.live].filter((topic) => !wanted.has(topic));
          if (add.length === 0 && remove.length === 0) return;
          try {
            const answer = await this.transport.json<{ topics: Topic[] }>(`/api/events/${encodeURIComponent(streamId)}/topics`, { add, remove });
            if (this.streamId === streamId) this.live = new Set(answer.topics);
          } catch (err) {
            // A refused topic must not loop: drop it from every subscription and say so.
            for (const topic of add) this.refuse(topic);
            this.broadcast((h) => h.onError?.(err instanceof Error ? err : new Error(String(err))));
          }
        }
      } finally {
        this.syncing = undefined;
      }
    })();
    return this.syncing;
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

function parseObject(text: string): object | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}

async function errorReason(response: Response): Promise<string> {
  try {
    const body = (await response.json()) as { error?: { code?: string; message?: string } };
    return body.error?.message ?? body.error?.code ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
