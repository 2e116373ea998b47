import { decodeFrame } from '../sse/decode';
import type { StoredEvent } from './replay';

const envelopes = new WeakMap<StoredEvent, Buffer>();

/**
 * The part of a multiplexed event every client of its topic shares: `event:` (the upstream
 * name), `data: {"topic","id","data"}` and the blank line; the `id:` line (the cursor, each
 * client's own) goes before it. Built once per event and kept as long as the event is (a
 * `WeakMap` on the stored event), so replays and live deliveries reuse it.
 */
export function envelopeOf(topic: string, event: StoredEvent): Buffer {
  let envelope = envelopes.get(event);
  if (envelope === undefined) {
    const { event: name, data } = decodeFrame(event.frame);
    // JSON.stringify writes no line break, so the data is one `data:` line.
    const json = JSON.stringify({ topic, id: event.id ?? '', data });
    envelope = Buffer.from(`${name === undefined ? '' : `event: ${name}\n`}data: ${json}\n\n`, 'utf8');
    envelopes.set(event, envelope);
  }
  return envelope;
}

/** A control event of the multiplexed stream (`ready`, `resync`, `topic_end`, …), after its `id:` line. */
export function controlOf(name: string, data: unknown): Buffer {
  return Buffer.from(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`, 'utf8');
}

/**
 * The per-client start of every multiplexed event: the cursor as its id. First, not last as
 * in a single-topic frame, so the shared part can end the event and be written as it is.
 */
export function idLine(cursor: string): string {
  return `id: ${cursor}\n`;
}
