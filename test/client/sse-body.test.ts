import { type StreamEvent, parseJsonData, readEventStream } from '../../src/client/sse-body';

/** A fetch-like body that delivers `text` cut into the given byte pieces. */
function body(bytes: Uint8Array, cuts: number[]): ReadableStream<Uint8Array> {
  const pieces: Uint8Array[] = [];
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    pieces.push(bytes.subarray(start, cut));
    start = cut;
  }
  return new ReadableStream({
    pull(controller) {
      const next = pieces.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(next);
    },
  });
}

const STREAM = '\uFEFFid: 1\ndata: {"a":"é"}\n\r\nevent: content_block_delta\r\ndata: {not json\n\nid: 3\rdata: {"b":"日本"}\r\r: hb\n\ndata: {"c":1}\n\n';

test('events split anywhere (inside lines and characters), with CR, LF and CRLF, a BOM, a bad chunk skipped', async () => {
  const bytes = new TextEncoder().encode(STREAM);
  for (let cut = 1; cut < bytes.length; cut++) {
    const events: StreamEvent[] = [];
    await readEventStream(body(bytes, [cut, Math.min(bytes.length, cut + 3)]), (event) => events.push(event));
    const bad: string[] = [];
    const parsed = events.map((event) => parseJsonData(event, (e) => bad.push(e.data)));
    expect(parsed).toEqual([{ a: 'é' }, undefined, { b: '日本' }, { c: 1 }]);
    expect(bad).toEqual(['{not json']);
    expect(events.map((e) => e.id)).toEqual(['1', '1', '3', '3']);
    expect(events[1]!.event).toBe('content_block_delta');
  }
});
