/** One Server-Sent Event as the relay and the reference backend write it. */
export interface SseEvent {
  /** The event's `id:`. Opaque to the relay. */
  readonly id?: string | undefined;
  /** The event's `event:` name; absent for unnamed (`message`) events. */
  readonly event?: string | undefined;
  /** The event's data; newlines become several `data:` lines. */
  readonly data: string;
}

// [spec] a field value ends at CR, LF or CRLF: split on all three so no data can
// start a new field or a new event.
const LINE_BREAK = /\r\n|\r|\n/;
// id and event are single-line fields; a line break in them would inject fields.
const SINGLE_LINE = /[\r\n\0]/;

/** Serializes one event into the bytes of one SSE frame, ending with the blank line. */
export function encodeEvent(event: SseEvent): Buffer {
  let frame = '';
  if (event.event !== undefined && event.event !== '' && event.event !== 'message') {
    frame += `event: ${singleLine('event', event.event)}\n`;
  }
  for (const line of event.data.split(LINE_BREAK)) frame += `data: ${line}\n`;
  // The id goes last so a client that sees the id has seen the whole frame.
  if (event.id !== undefined) frame += `id: ${singleLine('id', event.id)}\n`;
  return Buffer.from(`${frame}\n`, 'utf8');
}

/** A comment line, invisible to `EventSource`: used for heartbeats and padding. */
export function encodeComment(text: string): Buffer {
  return Buffer.from(`: ${text.replace(/\r\n|\r|\n/g, ' ')}\n\n`, 'utf8');
}

/** A `retry:` hint, in milliseconds, telling `EventSource` how long to wait before reconnecting. */
export function encodeRetry(ms: number): Buffer {
  return Buffer.from(`retry: ${Math.max(0, Math.floor(ms))}\n\n`, 'utf8');
}

function singleLine(field: string, value: string): string {
  if (SINGLE_LINE.test(value)) throw new TypeError(`SSE ${field} must not contain CR, LF or NUL`);
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
