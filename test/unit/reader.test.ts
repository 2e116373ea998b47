import type { SseEvent } from '../../src/sse/encode';
import { EventStreamReader } from '../../src/sse/reader';

interface Seen {
  frames: [SseEvent, string | undefined][];
  retries: number[];
  overflows: number;
}

function read(chunks: readonly string[], { max = 1024, lastEventId }: { max?: number; lastEventId?: string } = {}): Seen & { reader: EventStreamReader } {
  const seen: Seen = { frames: [], retries: [], overflows: 0 };
  const reader = new EventStreamReader(
    {
      onFrame: (frame, id) => seen.frames.push([{ ...frame }, id]),
      onRetry: (ms) => seen.retries.push(ms),
      onOverflow: () => (seen.overflows += 1),
    },
    max,
    lastEventId,
  );
  for (const chunk of chunks) reader.feed(chunk);
  return { ...seen, reader };
}

const STREAM = 'event: a\r\ndata: 1\r\nid: x\r\n\r\ndata: 2\rdata: two\r\rid: y\n\nretry: 300\n: comment\ndata:3\n\n';

test('every split of a CR / LF / CRLF stream gives the same frames, ids and retry', () => {
  const whole = read([STREAM]);
  expect(whole.frames).toEqual([
    [{ id: 'x', event: 'a', data: '1' }, 'x'],
    [{ id: undefined, event: undefined, data: '2\ntwo' }, 'x'],
    [{ id: 'y' }, 'y'],
    [{ id: undefined, event: undefined, data: '3' }, 'y'],
  ]);
  expect(whole.retries).toEqual([300]);
  for (let at = 1; at < STREAM.length; at++) {
    const split = read([STREAM.slice(0, at), STREAM.slice(at)]);
    expect([at, split.frames, split.retries]).toEqual([at, whole.frames, whole.retries]);
  }
  const bytewise = read([...STREAM]);
  expect(bytewise.frames).toEqual(whole.frames);
});

test('an id line without data moves the last event id and is reported as an id-only frame', () => {
  const { frames, reader } = read(['id: 5\n\n', 'data: after\n\n'], { lastEventId: '1' });
  expect(frames).toEqual([
    [{ id: '5' }, '5'],
    [{ id: undefined, event: undefined, data: 'after' }, '5'],
  ]);
  expect(reader.lastEventId).toBe('5');
});

test('an id with NUL is ignored, and an empty id resets the last event id to empty', () => {
  expect(read(['id: a\0b\ndata: x\n\n'], { lastEventId: '1' }).reader.lastEventId).toBe('1');
  expect(read(['data: x\nid\n\n'], { lastEventId: '1' }).frames).toEqual([[{ id: '', event: undefined, data: 'x' }, '']]);
});

test('a line ending in a bare CR is complete at once, not held for the next chunk', () => {
  expect(read(['data: now\r\r']).frames).toHaveLength(1);
});

test('a line or an event past the buffer size is reported once and nothing more is read', () => {
  expect(read(['data: ', 'x'.repeat(100)], { max: 50 }).overflows).toBe(1);
  const big = read([`data: ${'x'.repeat(30)}\n`, `data: ${'x'.repeat(30)}\n`, 'data: more\n\ndata: later\n\n'], { max: 50 });
  expect(big.overflows).toBe(1);
  expect(big.frames).toEqual([]);
});
