import { type Dispatcher, errors as undiciErrors, request } from 'undici';
import type { RelayConfig } from '../options';
import type { SseEvent } from '../sse/encode';
import { EventStreamReader } from '../sse/reader';
import { RelayStats } from './stats';

/** What the upstream tells its owner, in the order it happens. */
export interface UpstreamListener {
  /**
   * A connection answered 200 with an event stream (the first one, or a reconnect).
   * `resumedFrom` is the `Last-Event-ID` it was asked with.
   */
  onOpen(resumedFrom: string | undefined): void;
  /**
   * One complete event, or an id-only frame (`data` undefined); `effectiveId` is the id a
   * client resumes from after it (the last one the upstream sent, per the spec).
   */
  onEvent(event: SseEvent, effectiveId: string | undefined): void;
  /** The backend's `retry:` hint, in milliseconds, as sent. */
  onReconnectTime?(ms: number): void;
  /**
   * A chunk of the body was read and its events reported. A promise makes the upstream wait for
   * it before reading on: a consumer that writes to one client keeps that client's pace.
   */
  onChunkRead?(): Promise<void> | undefined;
  /**
   * The stream ended cleanly, and may go on: the upstream waits for `resume()`, which
   * reconnects with `Last-Event-ID` as a spec client would.
   */
  onEnd(): void;
  /** The stream is over: the backend answered 204, or a stream declared final ended cleanly. */
  onFinish(): void;
  /**
   * The backend answered something other than an event stream that is not worth retrying
   * (a 4xx, a 200 of another type, a redirect the relay may not follow). Nothing more comes.
   */
  onRefused(refusal: UpstreamRefusal): void;
  /** The relay stopped retrying. Called once, with a reason for `relay_error` and the last failure. */
  onGiveUp(reason: string, cause: string): void;
  /** An attempt failed and a reconnect is scheduled; `cause` says why (`ECONNREFUSED 127.0.0.1:1`, `status 503`). */
  onRetry?(attempt: number, delayMs: number, cause: string): void;
  /**
   * The events that follow (before `onOpen`) are a history kept elsewhere (a cluster's shared
   * one), which starts after `origin` and lost its oldest events when `truncated`: resumes are
   * judged against it rather than against the opening subscriber's `Last-Event-ID`.
   */
  onHistory?(origin: string | undefined, truncated: boolean): void;
}

/** An answer of the backend that is not an event stream, as subscribers waiting for headers get it. */
export interface UpstreamRefusal {
  /** The status to answer with: the backend's, or 502 for a redirect the relay does not follow. */
  readonly status: number;
  /** `status`: a 4xx or 5xx; `not_event_stream`: a 200 of another type; `redirect`: a redirect not followed. */
  readonly kind: 'status' | 'not_event_stream' | 'redirect';
  /** The start of the backend's body (its JSON error, if it sent one). */
  readonly body: string;
  /** In a few words, for logs: `status 404`, `status 200 with content type application/json`. */
  readonly reason: string;
}

export interface UpstreamInit {
  /** Full URL of the backend's event stream. */
  url: URL;
  /** Headers sent on every connection (the identity header among them); never sent to another origin. */
  headers: Record<string, string>;
  /** Resume point for the first connection. */
  lastEventId?: string | undefined;
  /** A clean end means the stream is over (no reconnect to ask). Defaults to false. */
  final?: boolean | undefined;
  /** Origins besides the URL's own that a redirect may lead to. Defaults to none. */
  redirectOrigins?: ReadonlySet<string> | undefined;
}

/** Statuses worth another attempt once subscribers are streaming. */
const RETRYABLE_4XX = new Set([408, 425, 429]);
/** Statuses whose `Retry-After` is worth one wait even before anyone streams. */
const BUSY = new Set([429, 503]);
/** Redirects an `EventSource` follows (fetch's "follow" mode). */
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Fetch's own limit on redirects in a row. */
const MAX_REDIRECTS = 20;
/** Longest refusal body kept to explain a refusal to subscribers. */
const MAX_REFUSAL_BODY = 4096;
const EVENT_STREAM = /^text\/event-stream\s*(;|$)/i;

class UpstreamBroken extends Error {}

type Outcome =
  | { kind: 'ended' }
  | { kind: 'finished' }
  | { kind: 'status'; status: number; body: string; reason: string; retryAfterMs: number | undefined }
  | { kind: 'refused'; refusal: UpstreamRefusal };

/**
 * One subscription to a backend event stream, as a spec `EventSource` would hold it:
 * follows redirects, reconnects after drops with backoff and `Last-Event-ID`, stops on
 * 204, and reports whole events only. A clean end pauses it until `resume()`.
 */
export class Upstream {
  private closed = false;
  private controller: AbortController | undefined;
  private lastId: string | undefined;
  private running = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private wakeRetry: (() => void) | undefined;

  constructor(
    private readonly init: UpstreamInit,
    private readonly dispatcher: Dispatcher,
    private readonly config: RelayConfig,
    private readonly listener: UpstreamListener,
    /** Where the connections it holds open are counted. */
    private readonly stats: RelayStats = new RelayStats(),
  ) {
    this.lastId = init.lastEventId;
  }

  start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    void this.run().then((report) => {
      // Not running any more before the owner hears how it ended, so it may resume() at once.
      this.running = false;
      if (!this.closed) report?.();
    });
  }

  /** After `onEnd`: reconnects with `Last-Event-ID`; the answer is reported as to `start()`. */
  resume(): void {
    this.start();
  }

  /** Stops the subscription at once; no listener method is called after this. */
  close(): void {
    this.closed = true;
    this.controller?.abort();
    clearTimeout(this.retryTimer);
    this.wakeRetry?.();
  }

  /** Connects until the stream ends, is refused or given up; resolves with the report for the owner. */
  private async run(): Promise<(() => void) | undefined> {
    let attempt = 0;
    // Until a connection streams, nobody has headers: answers go to the waiting subscribers as they are.
    let streaming = false;
    let waitedForRetryAfter = false;
    while (!this.closed) {
      let cause: string;
      let delayMs: number | undefined;
      const connection = { startedAt: Date.now(), events: 0, opened: false };
      this.stats.upstreamsOpen += 1;
      try {
        const outcome = await this.connect(connection).finally(() => (this.stats.upstreamsOpen -= 1));
        if (this.closed) return undefined;
        if (outcome.kind === 'finished') return () => this.listener.onFinish();
        if (outcome.kind === 'ended') return () => (this.init.final === true ? this.listener.onFinish() : this.listener.onEnd());
        if (outcome.kind === 'refused') return () => this.listener.onRefused(outcome.refusal);
        const { status, retryAfterMs } = outcome;
        const refusal: UpstreamRefusal = { status, kind: 'status', body: outcome.body, reason: outcome.reason };
        cause = outcome.reason;
        if (!streaming) {
          // A busy backend that says when to come back (soon enough) is worth one wait; anything
          // else is its answer, and the waiting subscribers get it as it is.
          if (!BUSY.has(status) || retryAfterMs === undefined || retryAfterMs > this.config.reconnectMaxDelayMs || waitedForRetryAfter) {
            return () => this.listener.onRefused(refusal);
          }
          waitedForRetryAfter = true;
          delayMs = retryAfterMs;
        } else if (status < 500 && !RETRYABLE_4XX.has(status)) {
          return () => this.listener.onRefused(refusal);
        } else if (retryAfterMs !== undefined) {
          delayMs = retryAfterMs;
        }
      } catch (err) {
        if (this.closed) return undefined;
        cause = describeFailure(err);
      }
      if (connection.opened) streaming = true;
      // A connection that streamed events for a while was healthy: start the backoff afresh.
      // One that dies soon after connecting counts, even if it delivered an event, or a backend
      // that sends one event and breaks would be retried forever.
      if (connection.events > 0 && Date.now() - connection.startedAt >= this.config.reconnectMaxDelayMs) attempt = 0;
      attempt += 1;
      if (attempt > this.config.reconnectMaxAttempts) return () => this.listener.onGiveUp('upstream_unavailable', cause);
      // Full jitter: a uniformly random delay below an exponentially growing cap, so many
      // topics that lost the same backend do not come back in lockstep.
      const cap = Math.min(this.config.reconnectMaxDelayMs, this.config.reconnectBaseDelayMs * 2 ** (attempt - 1));
      delayMs = delayMs === undefined ? Math.floor(Math.random() * cap) : Math.min(delayMs, this.config.reconnectMaxDelayMs);
      this.listener.onRetry?.(attempt, delayMs, cause);
      await this.sleep(delayMs);
    }
    return undefined;
  }

  /** One connection, redirects followed: resolves with how it ended, or throws when it broke. */
  private async connect(connection: { events: number; opened: boolean }): Promise<Outcome> {
    const controller = new AbortController();
    this.controller = controller;
    const resumedFrom = this.lastId === '' ? undefined : this.lastId;
    const own: Record<string, string> = { accept: 'text/event-stream', 'cache-control': 'no-cache' };
    // [spec] the header is sent only when the last event id is not empty.
    if (resumedFrom !== undefined) own['last-event-id'] = resumedFrom;
    // [spec] every reconnect starts from the original URL, not where a redirect led.
    let url = this.init.url;
    for (let redirects = 0; ; redirects++) {
      // The identity goes to the backend's origin only, as fetch keeps Authorization to its origin.
      const headers = url.origin === this.init.url.origin ? { ...this.init.headers, ...own } : own;
      const { statusCode, headers: responseHeaders, body } = await request(url, {
        method: 'GET',
        headers,
        signal: controller.signal,
        dispatcher: this.dispatcher,
        headersTimeout: this.config.upstreamHeadersTimeoutMs,
        // Quiet streams are legitimate; liveness is the watchdog's job, not a body timeout's.
        bodyTimeout: 0,
      });
      if (REDIRECTS.has(statusCode)) {
        await body.dump();
        const next = redirectTarget(url, responseHeaders.location);
        const refusal =
          next === undefined
            ? `redirect ${statusCode} without a usable Location`
            : redirects + 1 > MAX_REDIRECTS
              ? `more than ${MAX_REDIRECTS} redirects`
              : next.origin !== this.init.url.origin && this.init.redirectOrigins?.has(next.origin) !== true
                ? `redirect ${statusCode} to ${next.origin}, which is not an allowed origin`
                : undefined;
        if (refusal !== undefined || next === undefined) {
          return { kind: 'refused', refusal: { status: 502, kind: 'redirect', body: '', reason: refusal ?? '' } };
        }
        url = next;
        continue;
      }
      if (statusCode === 204) {
        await body.dump();
        return { kind: 'finished' };
      }
      const contentType = String(responseHeaders['content-type'] ?? '');
      if (statusCode !== 200 || !EVENT_STREAM.test(contentType)) {
        const text = await readBounded(body, MAX_REFUSAL_BODY);
        const reason = statusCode === 200 ? `status 200 with content type ${contentType === '' ? '(none)' : contentType}` : `status ${statusCode}`;
        if (statusCode === 200) return { kind: 'refused', refusal: { status: 200, kind: 'not_event_stream', body: text, reason } };
        return { kind: 'status', status: statusCode, body: text, reason, retryAfterMs: retryAfterOf(responseHeaders['retry-after']) };
      }
      connection.opened = true;
      this.listener.onOpen(resumedFrom);
      await this.consume(body, controller, connection);
      return { kind: 'ended' };
    }
  }

  /** Feeds the body to a fresh reader; resolves on a clean end, throws on a broken one. */
  private async consume(body: AsyncIterable<Buffer>, controller: AbortController, connection: { events: number }): Promise<void> {
    let broken: Error | undefined;
    const reader = new EventStreamReader(
      {
        onFrame: (frame, lastEventId) => {
          if (this.closed || broken) return;
          this.lastId = lastEventId;
          connection.events += 1;
          this.listener.onEvent(frame, lastEventId);
        },
        onRetry: (ms) => {
          if (!this.closed) this.listener.onReconnectTime?.(ms);
        },
        onOverflow: () => {
          broken = new UpstreamBroken(`upstream event larger than ${this.config.maxEventBytes} characters`);
          controller.abort(broken);
        },
      },
      this.config.maxEventBytes,
      this.lastId,
    );
    // TextDecoder strips a leading BOM and joins characters split across chunks.
    const decoder = new TextDecoder();
    const watchdog = setTimeout(() => {
      controller.abort(new UpstreamBroken(`timeout: no byte from upstream for ${this.config.upstreamIdleTimeoutMs} ms`));
    }, this.config.upstreamIdleTimeoutMs);
    try {
      for await (const chunk of body) {
        watchdog.refresh();
        reader.feed(decoder.decode(chunk, { stream: true }));
        if (broken) throw broken;
        const paced = this.listener.onChunkRead?.();
        if (paced !== undefined) {
          await paced;
          // Waiting on the consumer is not the backend's silence.
          watchdog.refresh();
        }
      }
      // A half-received last event is dropped with the reader ([spec] "incomplete event discarded").
    } finally {
      clearTimeout(watchdog);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wakeRetry = resolve;
      this.retryTimer = setTimeout(resolve, ms);
    });
  }
}

/** Where a redirect leads, if its Location is an http(s) URL. */
function redirectTarget(from: URL, location: string | string[] | undefined): URL | undefined {
  if (typeof location !== 'string') return undefined;
  try {
    const next = new URL(location, from);
    return next.protocol === 'http:' || next.protocol === 'https:' ? next : undefined;
  } catch {
    return undefined;
  }
}

/** `Retry-After` in milliseconds: seconds or an HTTP date; undefined when absent or unreadable. */
function retryAfterOf(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** A failed attempt in a few words for the log: `ECONNREFUSED 127.0.0.1:1`, `timeout: ...`, `socket closed`. */
function describeFailure(err: unknown): string {
  if (err instanceof UpstreamBroken) return err.message;
  if (err instanceof undiciErrors.HeadersTimeoutError) return 'timeout: no response headers in time';
  if (err instanceof undiciErrors.ConnectTimeoutError) return 'timeout: connecting';
  const { code, address, port, message } = err as { code?: unknown; address?: unknown; port?: unknown; message?: unknown };
  if (typeof code === 'string' && typeof address === 'string') return `${code} ${address}${typeof port === 'number' ? `:${port}` : ''}`;
  if (typeof code === 'string' && typeof message === 'string') return `${code}: ${message}`;
  return typeof message === 'string' ? message : String(err);
}

async function readBounded(body: AsyncIterable<Buffer>, limit: number): Promise<string> {
  let text = '';
  try {
    // Leaving the loop early destroys the body.
    for await (const chunk of body) {
      text += chunk.toString('utf8');
      if (text.length >= limit) break;
    }
  } catch (err) {
    if (!(err instanceof undiciErrors.UndiciError)) throw err;
  }
  return text.slice(0, limit);
}
