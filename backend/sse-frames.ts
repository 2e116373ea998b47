/**
 * The bytes of an event stream as this backend writes them. Its events are its own (numeric
 * ids, fixed names, JSON data), so the only input that could break a frame is a line break in
 * the data, and JSON has none outside strings, where it escapes them.
 */

/** The response headers of every event stream. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
  Connection: 'keep-alive',
  'X-Content-Type-Options': 'nosniff',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** One event: its name (absent for `message`), its JSON data and its id, which goes last. */
export function eventFrame(id: number, event: string | undefined, json: string): Buffer {
  const name = event === undefined ? '' : `event: ${event}\n`;
  return Buffer.from(`${name}data: ${json}\nid: ${id}\n\n`, 'utf8');
}

/** A comment line, which `EventSource` ignores: the heartbeat. */
export function commentFrame(text: string): Buffer {
  return Buffer.from(`: ${text}\n\n`, 'utf8');
}

/** The reconnect hint, in milliseconds. */
export function retryFrame(ms: number): Buffer {
  return Buffer.from(`retry: ${ms}\n\n`, 'utf8');
}
