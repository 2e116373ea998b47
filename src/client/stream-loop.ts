import { type ReconnectOptions, backoffDelay, retryAfterMs } from './backoff';
import { DeadStreamError, type RelayHeartbeat, SilenceWatch } from './dead-stream';
import { Poller } from './poller';
import { readEventStream, type StreamEvent } from './sse-body';
import type { Topic } from './topics';
import { RelayError, type Transport, errorText } from './transport';
import type { Delivery, StatusInfo, StreamStatus } from './types';

/** Timing of the stream and of the polling fallback. */
export interface StreamTiming {
  readonly reconnect: Readonly<ReconnectOptions>;
  /** How often each topic's status is polled while streaming does not work. */
  readonly pollIntervalMs: number;
  /** How long an answered stream may take to send its `ready` event before the client decides something buffers it and polls. */
  readonly readyTimeoutMs: number;
  /** The relay's heartbeat interval: learnt from each `ready` event, else as given. */
  readonly heartbeat: RelayHeartbeat;
}

/** What the loop asks and tells. */
export interface StreamLoopHooks {
  /** The topics the stream should carry now. */
  topics(): ReadonlySet<Topic>;
  /** The stream changed state. */
  status(status: StreamStatus, info: StatusInfo): void;
  /** An event, a resync or an end, read from the stream or polled. */
  deliver(delivery: Delivery): void;
  /** Something skipped: a bad event, a failed poll. */
  onError(error: Error): void;
  /** A stream opened with these topics; `fromStart`: it carries their whole history. */
  opened(topics: readonly Topic[], fromStart: boolean): void;
  /** The stream's `topics` event: the oldest topic change sent took effect. */
  changeApplied(): void;
  /** An attempt's stream ended or failed, opened or not. */
  closed(): void;
  /** The loop stopped: no topic is wanted, or `stop` was called. */
  stopped(): void;
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
  /** The longest the relay leaves the stream silent (relays before this field: absent). */
  readonly heartbeatMs?: number;
}

/**
 * The client's one multiplexed stream, attempt after attempt: resumed with the cursor, with
 * backoff, polling when streaming fails, and reopened when it goes silent.
 */
export class StreamLoop {
  /** The id of the last event heard (on this tab's stream, or from the holding tab): the next stream resumes from it. */
  cursor: string | undefined;
  private openId: string | undefined;
  /** Topics the relay has on the open stream. */
  private live = new Set<Topic>();
  private serverRetryMs: number | undefined;
  /** Bumped by every start and stop: a loop that sees another number has been replaced. */
  private generation = 0;
  private active = false;
  private openedInAttempt = false;
  private attempt: AbortController | undefined;
  private wakeUp: (() => void) | undefined;
  private readonly poller: Poller;

  constructor(
    private readonly transport: Transport,
    private readonly timing: StreamTiming,
    private readonly hooks: StreamLoopHooks,
  ) {
    this.poller = new Poller(transport, timing.pollIntervalMs, {
      topics: () => hooks.topics(),
      onState: (topic, data) => hooks.deliver({ type: 'event', cursor: undefined, event: { topic, event: 'status', id: undefined, data } }),
      onFinal: (topic) => hooks.deliver({ type: 'end', cursor: undefined, topic }),
      onError: (error) => hooks.onError(error),
    });
  }

  /** The loop is running (from `start` until it stops or the relay refuses for good). */
  get running(): boolean {
    return this.active;
  }

  /** The relay's id of the open stream; undefined between streams. */
  get streamId(): string | undefined {
    return this.openId;
  }

  /** The topics the relay has on the open stream. */
  get liveTopics(): ReadonlySet<Topic> {
    return this.live;
  }

  /** The relay answered a topic change of stream `streamId` with its topics now (ignored once that stream has closed). */
  answered(streamId: string, topics: readonly Topic[]): void {
    if (this.openId === streamId) this.live = new Set(topics);
  }

  start(): void {
    this.active = true;
    void this.run();
  }

  stop(): void {
    this.active = false;
    this.generation += 1;
    this.attempt?.abort();
    this.poller.stop();
    this.wakeUp?.();
    this.hooks.stopped();
  }

  /** Starts the stream over at once, when the loop runs. */
  reconnectNow(): void {
    if (!this.active) return;
    // An open stream is aborted: the loop takes that as stopped and connects again with no delay.
    if (this.openId !== undefined) this.attempt?.abort('reconnect now');
    else this.wakeUp?.();
  }

  /** Connects, reconnects and falls back, until no topic is wanted or the relay refuses for good. */
  private async run(): Promise<void> {
    const generation = ++this.generation;
    const current = (): boolean => this.generation === generation;
    let failures = 0;
    let polling = false;
    while (current() && this.hooks.topics().size > 0) {
      if (!polling) this.hooks.status(failures === 0 ? 'connecting' : 'reconnecting', { attempt: failures });
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
          for (const topic of this.hooks.topics()) this.hooks.deliver({ type: 'end', cursor: undefined, topic });
          continue;
        case 'fatal':
          this.generation += 1;
          this.active = false;
          this.poller.stop();
          this.hooks.status('closed', { httpStatus: outcome.httpStatus, reason: outcome.reason });
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
        this.hooks.status('polling', info);
      } else {
        this.hooks.status('reconnecting', info);
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
    const topics = [...this.hooks.topics()];
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
    // Armed once `ready` says the relay's heartbeat interval.
    const watch = new SilenceWatch();
    try {
      await readEventStream(
        response.body,
        (event) => {
          if (event.event === 'ready') {
            ready = true;
            clearTimeout(readyTimer);
            watch.arm(this.opened(event, probing, fromStart));
          } else {
            this.received(event);
          }
        },
        { onRetry: (ms) => (this.serverRetryMs = ms), watch },
      );
    } catch (err) {
      if (err instanceof DeadStreamError) return { kind: 'dropped', reason: err.message };
      if (abort.signal.aborted && abort.signal.reason !== 'ready timeout') return { kind: 'stopped' };
      if (!ready) return { kind: 'unusable', reason: abort.signal.aborted ? 'no ready event: a proxy may buffer the stream' : errorText(err) };
      return { kind: 'dropped', reason: errorText(err) };
    } finally {
      clearTimeout(readyTimer);
      this.openId = undefined;
      this.live = new Set();
      this.hooks.closed();
    }
    if (!ready) return { kind: 'unusable', reason: 'the stream ended before its ready event' };
    return { kind: 'ended' };
  }

  /** Takes the `ready` event; returns the heartbeat interval to watch the stream with. */
  private opened(event: StreamEvent, wasPolling: boolean, fromStart: boolean): number | undefined {
    const ready = parseObject(event.data) as Partial<Ready> | undefined;
    if (typeof ready?.streamId !== 'string' || !Array.isArray(ready.topics)) {
      this.hooks.onError(new Error(`bad ready event: ${event.data.slice(0, 200)}`));
      return undefined;
    }
    if (event.id !== undefined) this.cursor = event.id;
    this.openId = ready.streamId;
    this.live = new Set(ready.topics);
    this.openedInAttempt = true;
    if (wasPolling) this.poller.stop();
    this.hooks.status('open', { streamId: ready.streamId });
    this.hooks.opened([...this.live], fromStart);
    return this.timing.heartbeat.learn(ready.heartbeatMs);
  }

  private received(event: StreamEvent): void {
    if (event.id !== undefined) this.cursor = event.id;
    const payload = parseObject(event.data) as { topic?: unknown; id?: unknown; data?: unknown; topics?: unknown } | undefined;
    if (event.event === 'topics' && Array.isArray(payload?.topics)) {
      this.hooks.changeApplied();
      return;
    }
    if (typeof payload?.topic !== 'string') {
      this.hooks.onError(new Error(`skipped an event without a topic: ${event.data.slice(0, 200)}`));
      return;
    }
    const topic = payload.topic;
    const cursor = this.cursor;
    switch (event.event) {
      case 'resync':
        this.hooks.deliver({ type: 'resync', cursor, topic });
        return;
      case 'topic_end':
        this.live.delete(topic);
        this.hooks.deliver({ type: 'end', cursor, topic });
        return;
      default:
        this.hooks.deliver({
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

/** The pause between an attempt aborted to start over and the next one. */
const RESTART_PAUSE_MS = 50;

function parseObject(text: string): object | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}
