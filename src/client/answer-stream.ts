import { type ReconnectOptions, backoffDelay, pause, retryAfterMs } from './backoff';
import { type RelayHeartbeat, SilenceWatch } from './dead-stream';
import { type StreamEvent, parseJsonData, readEventStream } from './sse-body';
import { RelayError, type Transport, errorText } from './transport';
import type { StatusInfo, StreamStatus } from './types';

/** The states a kept answer's stream reports: it broke and is being resumed, or it is open again. */
export type AnswerStatus = Extract<StreamStatus, 'reconnecting' | 'open'>;

/** How a kept answer is followed across drops. */
export interface AnswerStreamOptions {
  readonly reconnect: Readonly<ReconnectOptions>;
  /** Stops following: the request in flight is aborted and `follow` rejects. */
  readonly signal: AbortSignal;
  /** The answer's stream broke and is being resumed, or opened again. */
  readonly onStatus?: (status: AnswerStatus, info: StatusInfo) => void;
  /** The relay's heartbeat interval: a stream of the answer silent for twice it is dead, and resumed. Unset: never called dead. */
  readonly heartbeat?: RelayHeartbeat;
}

/**
 * A streaming POST's answer that the relay keeps (`X-Stream-Id`): read from the POST's response,
 * and when that breaks before the answer is complete, resumed through `GET /api/streams/:id`
 * after the last id read, with the backoff of `subscribe`. The relay replays exactly what came
 * after that id, so each event is handed on once, in order. A stream that goes silent for twice
 * the relay's heartbeat interval is taken for broken, as `subscribe` takes its stream.
 */
export class AnswerStream {
  /** The relay's name of the answer; undefined when the relay does not keep it (nothing to resume). */
  streamId: string | undefined;
  /** The id of the last event read: a resume starts after it. */
  private lastId: string | undefined;

  constructor(
    private readonly transport: Transport,
    private readonly options: AnswerStreamOptions,
    private readonly onEvent: (event: StreamEvent) => void,
  ) {}

  /**
   * Reads `response` (the POST's answer) and its resumes until the relay ends one with `complete()`
   * true, or answers `204` (the answer ended at the last id read). Rejects when the answer cannot be
   * resumed: the relay does not keep it, has lost it (`RelayError` 404 `stream_not_found`), gave up
   * on its backend (`relay_error`), or the attempts ran out.
   */
  async follow(response: Response, complete: () => boolean): Promise<void> {
    this.streamId = response.headers.get('x-stream-id') ?? undefined;
    this.learnHeartbeat(response);
    let body = response.body;
    let failures = 0;
    for (;;) {
      let reason: string;
      let read = 0;
      try {
        if (body === null) throw new Error('an answer without a body');
        await this.read(body, () => (read += 1));
        if (complete()) return;
        // A relay ends a stream that may be resumed (token expiry, lifetime) without the answer's end.
        reason = 'the stream ended before the answer did';
      } catch (err) {
        if (this.options.signal.aborted || err instanceof AnswerFailed) throw err;
        reason = errorText(err);
      }
      if (this.streamId === undefined) throw new Error(reason);
      // A stream that carried events was working: the next break starts the backoff over.
      if (read > 0) failures = 0;
      const resumed = await this.resume(reason, failures);
      if (resumed === undefined) return;
      ({ body, failures } = resumed);
    }
  }

  /** Opens the answer again after a break; undefined when the relay says it already ended (204). */
  private async resume(reason: string, failuresSoFar: number): Promise<{ body: ReadableStream<Uint8Array>; failures: number } | undefined> {
    const { reconnect, signal, onStatus } = this.options;
    let failures = failuresSoFar;
    let wait: number | undefined;
    for (;;) {
      failures += 1;
      if (failures > reconnect.attempts) throw new Error(`the answer could not be resumed after ${reconnect.attempts} attempts: ${reason}`);
      const delayMs = wait ?? backoffDelay(failures, reconnect);
      onStatus?.('reconnecting', { attempt: failures, delayMs, reason });
      await pause(delayMs, signal);
      wait = undefined;
      let response: Response;
      try {
        response = await this.transport.request(`/api/streams/${encodeURIComponent(this.streamId as string)}`, {
          headers: { accept: 'text/event-stream', ...(this.lastId === undefined ? {} : { 'last-event-id': this.lastId }) },
          signal,
        });
      } catch (err) {
        if (signal.aborted) throw err;
        reason = errorText(err);
        continue;
      }
      if (response.status === 204) return undefined;
      if (response.status === 429 || response.status === 503) {
        void response.body?.cancel();
        wait = retryAfterMs(response.headers.get('retry-after'));
        reason = `HTTP ${response.status}`;
        continue;
      }
      if (response.status >= 400 && response.status < 500) throw await RelayError.from(response);
      const type = response.headers.get('content-type') ?? '';
      if (!response.ok || response.body === null || !type.startsWith('text/event-stream')) {
        void response.body?.cancel();
        reason = response.ok ? `not an event stream (${type || 'no type'})` : `HTTP ${response.status}`;
        continue;
      }
      this.learnHeartbeat(response);
      onStatus?.('open', { streamId: this.streamId as string });
      return { body: response.body, failures };
    }
  }

  /** The relay says its heartbeat interval on an answer's streams (`X-Heartbeat-Ms`), which have no `ready` event. */
  private learnHeartbeat(response: Response): void {
    const said = response.headers.get('x-heartbeat-ms');
    if (said !== null) this.options.heartbeat?.learn(Number(said));
  }

  private async read(body: ReadableStream<Uint8Array>, counted: () => void): Promise<void> {
    const watch = new SilenceWatch();
    watch.arm(this.options.heartbeat?.ms);
    try {
      await readEventStream(body, (event) => {
        if (event.id !== undefined) this.lastId = event.id;
        if (event.event === 'relay_error') {
          const reason = (parseJsonData(event) as { reason?: unknown } | undefined)?.reason;
          // A relay following the answer lost Redis, not the answer: a resume finds it, or says it is gone.
          if (reason === 'redis_unavailable') throw new Error('the relay lost Redis');
          throw new AnswerFailed(`the relay gave up on the answer: ${typeof reason === 'string' ? reason : event.data}`);
        }
        counted();
        try {
          this.onEvent(event);
        } catch (err) {
          // The reader of the answer found it cannot be had whole (a resync): resuming cannot help.
          throw err instanceof AnswerFailed ? err : new AnswerFailed(errorText(err));
        }
      }, { watch });
    } catch (err) {
      // Thrown from an event handler, the body is still open: let its connection go.
      void body.cancel().catch(() => undefined);
      throw err;
    }
  }
}

/** The answer is gone for good: resuming cannot help. */
class AnswerFailed extends Error {}
