import { createParser, type EventSourceMessage, type ParseError } from 'eventsource-parser';
import { type Dispatcher, errors as undiciErrors, request } from 'undici';
import type { RelayConfig } from '../options';

/** What the upstream tells its owner, in the order it happens. */
export interface UpstreamListener {
  /** The first 2xx event-stream response arrived. Called once. */
  onOpen(): void;
  /** One complete event; `id` is the effective id (the last one the upstream sent, per the spec). */
  onEvent(event: EventSourceMessage, effectiveId: string | undefined): void;
  /** The upstream ended its stream normally (or answered 204): no more events will come. */
  onEnd(): void;
  /** The upstream refused before the first event (4xx): nothing will come for this subscription. */
  onRefused(status: number, body: string): void;
  /** The relay stopped retrying. Called once, with a reason for `relay_error`. */
  onGiveUp(reason: string): void;
  /**
   * The events that follow (before `onOpen`) are a history kept elsewhere (a cluster's shared
   * one), which starts after `origin` and lost its oldest events when `truncated`: resumes are
   * judged against it rather than against the opening subscriber's `Last-Event-ID`.
   */
  onHistory?(origin: string | undefined, truncated: boolean): void;
  /** A connection broke and a reconnect is scheduled (for metrics and logs). */
  onRetry?(attempt: number, delayMs: number, cause: unknown): void;
}

export interface UpstreamInit {
  /** Full URL of the backend's event stream. */
  url: URL;
  /** Headers sent on every connection (the identity header among them). */
  headers: Record<string, string>;
  /** Resume point for the first connection. */
  lastEventId?: string | undefined;
}

/** Statuses that mean "try again later" rather than "no". */
const RETRYABLE_4XX = new Set([408, 425, 429]);
/** Longest refusal body kept to explain a 4xx to subscribers. */
const MAX_REFUSAL_BODY = 4096;

class UpstreamBroken extends Error {}

/**
 * One subscription to a backend event stream: connects, parses, reconnects with
 * backoff and `Last-Event-ID`, and reports whole events only.
 */
export class Upstream {
  private closed = false;
  private controller: AbortController | undefined;
  private lastId: string | undefined;
  private opened = false;
  private delivered = false;
  private deliveredOnLastConnection = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private wakeRetry: (() => void) | undefined;

  constructor(
    private readonly init: UpstreamInit,
    private readonly dispatcher: Dispatcher,
    private readonly config: RelayConfig,
    private readonly listener: UpstreamListener,
  ) {
    this.lastId = init.lastEventId;
  }

  /** The id the next connection resumes from. */
  get lastEventId(): string | undefined {
    return this.lastId;
  }

  start(): void {
    void this.run();
  }

  /** Stops the subscription at once; no listener method is called after this. */
  close(): void {
    this.closed = true;
    this.controller?.abort();
    clearTimeout(this.retryTimer);
    this.wakeRetry?.();
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.closed) {
      let cause: unknown;
      try {
        const outcome = await this.connect();
        if (this.closed) return;
        if (outcome === 'ended') return this.listener.onEnd();
        if (outcome !== 'retry') {
          if (!this.delivered) return this.listener.onRefused(outcome.status, outcome.body);
          return this.listener.onGiveUp(`upstream_status_${outcome.status}`);
        }
      } catch (err) {
        if (this.closed) return;
        cause = err;
      }
      // A connection that delivered an event was healthy: start the backoff afresh.
      if (this.deliveredOnLastConnection) attempt = 0;
      attempt += 1;
      if (attempt > this.config.reconnectMaxAttempts) return this.listener.onGiveUp('upstream_unavailable');
      // Full jitter: a uniformly random delay below an exponentially growing cap, so many
      // topics that lost the same backend do not come back in lockstep.
      const cap = Math.min(this.config.reconnectMaxDelayMs, this.config.reconnectBaseDelayMs * 2 ** (attempt - 1));
      const delayMs = Math.floor(Math.random() * cap);
      this.listener.onRetry?.(attempt, delayMs, cause);
      await this.sleep(delayMs);
    }
  }

  /** One connection: resolves with how it ended, or throws when it broke. */
  private async connect(): Promise<'ended' | 'retry' | { status: number; body: string }> {
    this.deliveredOnLastConnection = false;
    const controller = new AbortController();
    this.controller = controller;
    const headers: Record<string, string> = { ...this.init.headers, accept: 'text/event-stream' };
    if (this.lastId !== undefined) headers['last-event-id'] = this.lastId;

    const { statusCode, headers: responseHeaders, body } = await request(this.init.url, {
      method: 'GET',
      headers,
      signal: controller.signal,
      dispatcher: this.dispatcher,
      headersTimeout: this.config.upstreamHeadersTimeoutMs,
      // Quiet streams are legitimate; liveness is the watchdog's job, not a body timeout's.
      bodyTimeout: 0,
    });

    if (statusCode === 204) {
      await body.dump();
      return 'ended';
    }
    if (statusCode >= 400 && statusCode < 500 && !RETRYABLE_4XX.has(statusCode)) {
      return { status: statusCode, body: await readBounded(body, MAX_REFUSAL_BODY) };
    }
    const contentType = String(responseHeaders['content-type'] ?? '');
    if (statusCode < 200 || statusCode >= 300 || !contentType.startsWith('text/event-stream')) {
      await body.dump();
      return 'retry';
    }
    if (!this.opened) {
      this.opened = true;
      this.listener.onOpen();
    }
    await this.consume(body, controller);
    return 'ended';
  }

  /** Feeds the body to a fresh parser; resolves on a clean end, throws on a broken one. */
  private async consume(body: AsyncIterable<Buffer>, controller: AbortController): Promise<void> {
    let broken: Error | undefined;
    const parser = createParser({
      maxBufferSize: this.config.maxEventBytes,
      onEvent: (event) => {
        if (this.closed || broken) return;
        // [spec] the last event id persists across events that carry no id line.
        if (event.id !== undefined) this.lastId = event.id;
        this.delivered = true;
        this.deliveredOnLastConnection = true;
        this.listener.onEvent(event, this.lastId);
      },
      onError: (error: ParseError) => {
        if (error.type === 'max-buffer-size-exceeded') {
          broken = new UpstreamBroken(`upstream event larger than ${this.config.maxEventBytes} characters`);
          controller.abort(broken);
        }
      },
    });
    // TextDecoder strips a leading BOM and joins characters split across chunks.
    const decoder = new TextDecoder();
    const watchdog = setTimeout(() => {
      controller.abort(new UpstreamBroken(`no byte from upstream for ${this.config.upstreamIdleTimeoutMs} ms`));
    }, this.config.upstreamIdleTimeoutMs);
    try {
      for await (const chunk of body) {
        watchdog.refresh();
        parser.feed(decoder.decode(chunk, { stream: true }));
        if (broken) throw broken;
      }
      // A half-received last event is dropped with the parser ([spec] "incomplete event discarded").
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
