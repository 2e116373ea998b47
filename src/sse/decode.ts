import type { SseEvent } from './encode';

/**
 * Reads back a frame that `encodeEvent` wrote: the inverse of it, not an SSE parser (upstream
 * bytes go through eventsource-parser once; this only ever sees the relay's own frames, whose
 * fields are one per line, `data` lines in order, and no comments or `retry:`).
 */
export function decodeFrame(frame: Buffer): SseEvent {
  let event: string | undefined;
  let id: string | undefined;
  const data: string[] = [];
  for (const line of frame.toString('utf8').split('\n')) {
    if (line.startsWith('data: ')) data.push(line.slice(6));
    else if (line.startsWith('event: ')) event = line.slice(7);
    else if (line.startsWith('id: ')) id = line.slice(4);
  }
  return { event, id, data: data.join('\n') };
}
