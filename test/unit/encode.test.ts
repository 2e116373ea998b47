import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { dispatches, encodeComment, encodeEvent, encodeRetry } from '../../src/sse/encode';

/** What a spec parser makes of the bytes: the events it dispatches. */
function parse(bytes: Buffer): EventSourceMessage[] {
  const events: EventSourceMessage[] = [];
  createParser({ onEvent: (event) => events.push(event) }).feed(bytes.toString('utf8'));
  return events;
}

test('an event is written as event, data and id lines, id last, ending with a blank line', () => {
  expect(encodeEvent({ id: '7', event: 'progress', data: '{"p":1}' }).toString()).toBe('event: progress\ndata: {"p":1}\nid: 7\n\n');
});

test('an unnamed event and one named "message" are written without an event line', () => {
  expect(encodeEvent({ data: 'x' }).toString()).toBe('data: x\n\n');
  expect(encodeEvent({ event: '', data: 'x' }).toString()).toBe('data: x\n\n');
  expect(encodeEvent({ event: 'message', data: 'x' }).toString()).toBe('data: x\n\n');
});

test.each([
  ['LF', 'a\nb\nc'],
  ['CR', 'a\rb\rc'],
  ['CRLF', 'a\r\nb\r\nc'],
])('data with %s line breaks becomes one data line per line, so it cannot start a field or an event', (_name, data) => {
  const bytes = encodeEvent({ id: '1', data: `${data}\n\nid: 99\nevent: injected` });
  expect(bytes.toString()).toBe('data: a\ndata: b\ndata: c\ndata: \ndata: id: 99\ndata: event: injected\nid: 1\n\n');
  expect(parse(bytes)).toEqual([{ id: '1', event: undefined, data: 'a\nb\nc\n\nid: 99\nevent: injected' }]);
});

test('empty data is one empty data line, which clients still dispatch', () => {
  expect(encodeEvent({ data: '' }).toString()).toBe('data: \n\n');
  expect(parse(encodeEvent({ data: '' }))).toEqual([{ id: undefined, event: undefined, data: '' }]);
});

test('an event without data is an id-only frame: it moves the last event id and dispatches nothing', () => {
  expect(encodeEvent({ id: '42' }).toString()).toBe('id: 42\n\n');
  expect(parse(encodeEvent({ id: '42' }))).toEqual([]);
});

test('an empty id is written as an empty id line (it resets the client\'s last event id)', () => {
  expect(encodeEvent({ id: '', data: 'x' }).toString()).toBe('data: x\nid: \n\n');
});

test('multi-byte characters and leading spaces survive byte for byte', () => {
  const data = '  ünïcødé 🎉 中文';
  const bytes = encodeEvent({ id: 'é', event: 'ñ', data });
  expect(bytes.equals(Buffer.from(`event: ñ\ndata: ${data}\nid: é\n\n`, 'utf8'))).toBe(true);
  expect(parse(bytes)).toEqual([{ id: 'é', event: 'ñ', data }]);
});

test('an event name may hold NUL, as the spec allows, and parses back unchanged', () => {
  const bytes = encodeEvent({ event: 'a\0b', data: 'x' });
  expect(parse(bytes)).toEqual([{ id: undefined, event: 'a\0b', data: 'x' }]);
});

test.each([
  ['event', { event: 'a\nb', data: 'x' }],
  ['event', { event: 'a\rb', data: 'x' }],
  ['id', { id: '1\n', data: 'x' }],
  ['id', { id: '1\r2', data: 'x' }],
  ['id', { id: '1\u00002', data: 'x' }],
])('a line break in the %s (or NUL in an id) is refused, never written', (field, event) => {
  expect(() => encodeEvent(event)).toThrow(new RegExp(`SSE ${field} must not contain`));
});

test('a comment is one line whatever its text, invisible to a parser', () => {
  expect(encodeComment('hb').toString()).toBe(': hb\n\n');
  expect(encodeComment('a\nb\r\nc\rd').toString()).toBe(': a b c d\n\n');
  expect(parse(encodeComment('a\ndata: x'))).toEqual([]);
});

test('a retry hint is a whole number of milliseconds, never negative', () => {
  expect(encodeRetry(2500).toString()).toBe('retry: 2500\n\n');
  expect(encodeRetry(12.9).toString()).toBe('retry: 12\n\n');
  expect(encodeRetry(-5).toString()).toBe('retry: 0\n\n');
});

test('a frame dispatches an event when a spec parser dispatches one: with a data line, empty data included; not id-only or name-only', () => {
  const frames = [{ data: 'a', id: '1' }, { event: 'status', data: '' }, { data: 'x\ndata: y' }, { id: '2' }, { event: 'data: no', id: 'data: no' }].map(encodeEvent);
  expect(frames.map(dispatches)).toEqual([true, true, true, false, false]);
  for (const frame of frames) expect(dispatches(frame)).toBe(parse(frame).length > 0);
});
