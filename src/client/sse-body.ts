import { createParser } from 'eventsource-parser';
import type { SilenceWatch } from './dead-stream';

/** One event read from a stream: `event` is undefined for unnamed events; `id` is the last id seen on the stream (the spec keeps it across events). */
export interface StreamEvent {
  readonly event: string | undefined;
  readonly id: string | undefined;
  readonly data: string;
}

/** Largest event the client holds while it arrives; a bigger one fails the stream rather than growing without bound. */
const MAX_EVENT_CHARS = 1024 * 1024;

/** What else a reader of an event stream may want to hear besides its events. */
export interface StreamListeners {
  /** A server's `retry:`, in ms. */
  readonly onRetry?: (ms: number) => void;
  /** Bytes arrived (a heartbeat comment included), before they are parsed. */
  readonly onBytes?: () => void;
  /** A comment line (a heartbeat), without its colon. */
  readonly onComment?: (comment: string) => void;
  /** Watches the stream for silence: once it calls the stream dead, the body is cancelled and the read rejects with its `DeadStreamError`. */
  readonly watch?: SilenceWatch;
}

/**
 * Reads a `fetch` body as an event stream until it ends, calling `onEvent` per event and the
 * listeners for the rest. Chunks may split lines, events and characters anywhere.
 * Rejects when the body fails (a dropped connection), when the signal aborts it, or when `watch`
 * calls it dead.
 */
export async function readEventStream(
  body: ReadableStream<Uint8Array>,
  onEvent: (event: StreamEvent) => void,
  { onRetry, onBytes, onComment, watch }: StreamListeners = {},
): Promise<void> {
  let lastId: string | undefined;
  const parser = createParser({
    maxBufferSize: MAX_EVENT_CHARS,
    onEvent(message) {
      if (message.id !== undefined) lastId = message.id;
      onEvent({ event: message.event, id: lastId, data: message.data });
    },
    onRetry,
    onComment,
  });
  // TextDecoder with { stream: true } joins characters split across chunks and drops a leading BOM,
  // which eventsource-parser only recognises as raw bytes.
  const decoder = new TextDecoder();
  const reader = body.getReader();
  // Cancelling lets the connection go (a fetch body's cancel aborts its request) and ends the pending read.
  watch?.bind(() => void reader.cancel().catch(() => undefined));
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (watch?.error) throw watch.error;
      if (done) break;
      watch?.heard();
      onBytes?.();
      parser.feed(decoder.decode(value, { stream: true }));
    }
  } finally {
    watch?.release();
    reader.releaseLock();
  }
}

/**
 * The data of an event as JSON, or undefined (after telling `onBadEvent`) when it is not:
 * one bad chunk is skipped, the stream goes on.
 */
export function parseJsonData(event: StreamEvent, onBadEvent?: (event: StreamEvent, error: Error) => void): unknown {
  try {
    return JSON.parse(event.data) as unknown;
  } catch (err) {
    onBadEvent?.(event, err instanceof Error ? err : new Error(String(err)));
    return undefined;
  }
}
