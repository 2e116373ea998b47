import { type CursorEntry, MAX_CURSOR_ID, decodeCursor, encodeEntry, joinCursor, topicHash } from '../../src/relay/cursor';
import { decodeFrame } from '../../src/sse/decode';
import { encodeEvent } from '../../src/sse/encode';

const LIMIT = 20_000;

function cursorOf(entries: CursorEntry[]): string {
  return joinCursor(entries.map(encodeEntry));
}

/** A small deterministic generator, so a failing case can be replayed. */
function generator(seed: number): (n: number) => number {
  let state = seed;
  return (n) => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % n;
  };
}

test('a cursor gives back every topic with its last id, whatever characters the ids have', () => {
  const entries: CursorEntry[] = [
    { ref: 'hash', hash: topicHash('download:aaa'), live: true, lastId: '17' },
    { ref: 'hash', hash: topicHash('download:bbb'), live: true, lastId: undefined },
    { ref: 'hash', hash: topicHash('session:sss'), live: false, lastId: undefined },
    { ref: 'name', topic: 'download:added', live: true, lastId: 'a.b~c!d%e f:g/é😀' },
    { ref: 'name', topic: 'session:x', live: true, lastId: '' },
    { ref: 'name', topic: 'session:y', live: true, lastId: null },
  ];
  const cursor = cursorOf(entries);
  expect(cursor).toMatch(/^[A-Za-z0-9_.~*=!%-]+$/);
  expect(decodeCursor(cursor, LIMIT, 10)).toEqual(entries);
});

test('an id too long to carry, or not UTF-8, is written as unknown', () => {
  const hash = topicHash('download:aaa');
  expect(encodeEntry({ ref: 'hash', hash, live: true, lastId: 'x'.repeat(MAX_CURSOR_ID + 1) })).toBe(`*${hash}!`);
  expect(encodeEntry({ ref: 'hash', hash, live: true, lastId: 'é'.repeat(11) })).toBe(`*${hash}!`); // 66 escaped
  expect(encodeEntry({ ref: 'hash', hash, live: true, lastId: '\ud800' })).toBe(`*${hash}!`);
});

test('32 topics with integer ids make a cursor of 417 characters at most (ids up to 4 digits)', () => {
  const entries: CursorEntry[] = Array.from({ length: 32 }, (_, i) => ({ ref: 'hash', hash: topicHash(`download:code${i}`), live: true, lastId: '9999' }));
  expect(cursorOf(entries)).toHaveLength(417);
});

test('fuzzed cursors never throw: each either decodes to exactly what re-encodes to it, or is refused', () => {
  const random = generator(42);
  const alphabet = 'AB9_-.~*=!%2C3A1~*=.!%-zé\u0100😀\0\r\n ';
  const hash = topicHash('download:aaa');
  const seeds = [`1~*${hash}.12~=download%3Abbb.7~-${hash}`, '1', `1~*${hash}!`];
  let decoded = 0;
  for (let i = 0; i < 20_000; i++) {
    let value: string;
    if (i % 2 === 0) {
      value = '';
      const length = random(40);
      for (let j = 0; j < length; j++) value += [...alphabet][random([...alphabet].length)];
      if (random(2) === 0) value = `1~${value}`;
    } else {
      const seed = seeds[random(seeds.length)]!;
      const at = random(seed.length + 1);
      const char = [...alphabet][random([...alphabet].length)]!;
      value = [seed.slice(0, at) + char + seed.slice(at + 1), seed.slice(0, at) + char + seed.slice(at), seed.slice(0, at)][random(3)]!;
    }
    const entries = decodeCursor(value, LIMIT, 10);
    if (entries === undefined) continue;
    decoded += 1;
    expect(cursorOf(entries)).toBe(value);
  }
  expect(decoded).toBeGreaterThan(100);
});

test('huge, non-Latin-1 and repeated-topic cursors are refused', () => {
  const hash = topicHash('download:aaa');
  expect(decodeCursor(`1~*${hash}.${'1'.repeat(LIMIT)}`, LIMIT, 10)).toBeUndefined();
  expect(decodeCursor(`1~*${hash}.${'1'.repeat(MAX_CURSOR_ID + 1)}`, LIMIT, 10)).toBeUndefined();
  expect(decodeCursor(`1${`~*${hash}`.repeat(11)}`, LIMIT, 10)).toBeUndefined();
  expect(decodeCursor(`1~*${hash}.é`, LIMIT, 10)).toBeUndefined();
  expect(decodeCursor(`1~*${hash}.1~-${hash}`, LIMIT, 10)).toBeUndefined();
  expect(decodeCursor(`1~*${hash}.%41`, LIMIT, 10)).toBeUndefined(); // `A` has one spelling
  expect(decodeCursor(`1~*${hash}.%FF`, LIMIT, 10)).toBeUndefined(); // not UTF-8
  expect(decodeCursor('2', LIMIT, 10)).toBeUndefined();
});

test('a frame read back gives the event it was encoded from', () => {
  const random = generator(7);
  const pieces = ['', 'a', 'data: x', 'event: y', 'id: z', ':', ' lead', 'é😀', '{"k":"v"}'];
  for (let i = 0; i < 2000; i++) {
    const lines = Array.from({ length: 1 + random(4) }, () => pieces[random(pieces.length)]!);
    const event = { data: lines.join('\n'), event: random(2) === 0 ? undefined : `name${random(3)}`, id: random(2) === 0 ? undefined : String(i) };
    expect(decodeFrame(encodeEvent(event))).toEqual(event);
  }
});
