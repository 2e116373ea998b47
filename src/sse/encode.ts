/** One Server-Sent Event as the relay and the reference backend write it. */
export interface SseEvent {
  /** The event's `id:`. Opaque to the relay. */
  readonly id?: string | undefined;
  /** The event's `event:` name; absent for unnamed (`message`) events. */
  readonly event?: string | undefined;
  /**
   * The event's data; newlines become several `data:` lines. Absent: an id-only frame, which
   * dispatches nothing but moves the client's last event id (what a backend's `id:` without
   * `data:` does).
   */
  readonly data?: string | undefined;
}

// [spec] a field value ends at CR, LF or CRLF: split on all three so no data can
// start a new field or a new event.
const LINE_BREAK = /\r\n|\r|\n/;
// id and event are single-line fields; a line break in them would inject fields. [spec] an id
// with NUL is ignored by clients, so one is refused rather than silently lost; an event name may
// hold NUL (clients dispatch it as it is).
const LINE_BREAK_CHAR = /[\r\n]/;
const ID_FORBIDDEN = /[\r\n\0]/;

/** Serializes one event into the bytes of one SSE frame, ending with the blank line. */
export function encodeEvent(event: SseEvent): Buffer {
  let frame = '';
  if (event.event !== undefined && event.event !== '' && event.event !== 'message') {
    frame += `event: ${checked('event', event.event, LINE_BREAK_CHAR)}\n`;
  }
  if (event.data !== undefined) for (const line of event.data.split(LINE_BREAK)) frame += `data: ${line}\n`;
  // The id goes last so a client that sees the id has seen the whole frame.
  if (event.id !== undefined) frame += `id: ${checked('id', event.id, ID_FORBIDDEN)}\n`;
  return Buffer.from(`${frame}\n`, 'utf8');
}

/**
 * Whether a frame `encodeEvent` wrote makes a client dispatch an event: it has a `data:` line.
 * An id-only frame does not ([spec] an empty data buffer dispatches nothing); a client that
 * ignores such frames keeps resuming from before them.
 */
export function dispatches(frame: Buffer): boolean {
  // Each field is one line and no value holds a line break, so `data: ` only ever starts a line.
  return frame.indexOf('data: ') === 0 || frame.includes('\ndata: ');
}

/** A comment line, invisible to `EventSource`: used for heartbeats and padding. */
export function encodeComment(text: string): Buffer {
  return Buffer.from(`: ${text.replace(/\r\n|\r|\n/g, ' ')}\n\n`, 'utf8');
}

/** A `retry:` hint, in milliseconds, telling `EventSource` how long to wait before reconnecting. */
export function encodeRetry(ms: number): Buffer {
  return Buffer.from(`retry: ${retryValue(ms)}\n\n`, 'utf8');
}

/** The milliseconds a `retry:` field of `ms` says: what a client's reconnection time becomes. */
export function retryValue(ms: number): number {
  return Math.max(0, Math.floor(ms));
}

function checked(field: string, value: string, forbidden: RegExp): string {
  if (forbidden.test(value)) throw new TypeError(`SSE ${field} must not contain ${forbidden === ID_FORBIDDEN ? 'CR, LF or NUL' : 'CR or LF'}`);
  return value;
}

/** The response headers of every event stream, per the contract. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
  Connection: 'keep-alive',
  // What helmet would add that matters to an event stream: no sniffing it into a script or
  // style, and no reading it from another origin without CORS.
  'X-Content-Type-Options': 'nosniff',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** The same, for a stream after which the connection closes (the client asked, or the relay sends it away). */
export const SSE_HEADERS_CLOSE: Readonly<Record<string, string>> = { ...SSE_HEADERS, Connection: 'close' };
