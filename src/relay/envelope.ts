import { decodeFrame } from '../sse/decode';
import type { StoredEvent } from './replay';

const envelopes = new WeakMap<StoredEvent, Buffer>();

/**
 * The part of a multiplexed event every client of its topic shares: `event:` (the upstream
 * name) and `data: {"topic","id","data"}`, without the `id:` line and the blank line that end
 * it (the cursor, which is each client's own). Built once per event and kept as long as the
 * event is (a `WeakMap` on the stored event), so replays and live deliveries reuse it.
 */
export function envelopeOf(topic: string, event: StoredEvent): Buffer {
  let envelope = envelopes.get(event);
  if (envelope === undefined) {
    const { event: name, data } = decodeFrame(event.frame);
    // JSON.stringify writes no line break, so the data is one `data:` line.
    const json = JSON.stringify({ topic, id: event.id ?? '', data });
    envelope = Buffer.from(`${name === undefined ? '' : `event: ${name}\n`}data: ${json}\n`, 'utf8');
    envelopes.set(event, envelope);
  }
  return envelope;
}

/** A control event of the multiplexed stream (`ready`, `resync`, `topic_end`, …) without its `id:` line. */
export function controlOf(name: string, data: unknown): Buffer {
  return Buffer.from(`event: ${name}\ndata: ${JSON.stringify(data)}\n`, 'utf8');
}

/** The per-client end of every multiplexed event: the cursor as its id, and the blank line. */
export function idLine(cursor: string): Buffer {
  return Buffer.from(`id: ${cursor}\n\n`, 'latin1');
}
