import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { SseTail } from '../../src/sse/tail';

/** What a spec client makes of a stream that ends after `bytes`: the events dispatched and the last retry read. */
function read(bytes: string): { events: string[]; retry: number | undefined } {
  const events: string[] = [];
  let retry: number | undefined;
  const parser = createParser({ onEvent: (event: EventSourceMessage) => events.push(`${event.id ?? ''}:${event.data}`), onRetry: (ms) => (retry = ms) });
  parser.feed(bytes);
  // [spec] the end of the stream discards an event without its blank line (what eventsource does: reset without consume).
  parser.reset();
  return { events, retry };
}

const STREAMS = {
  LF: 'data: one\nid: 1\n\n: comment\n\ndata: two\ndata: lines\nid: 2\n\n',
  CRLF: 'data: one\r\nid: 1\r\n\r\ndata: two\r\nid: 2\r\n\r\n',
  CR: 'data: one\rid: 1\r\rdata: two\rid: 2\r\r',
};

test.each(Object.entries(STREAMS))(
  'a %s stream cut anywhere and ended with the retry hint keeps every whole event, gains no half one, and the client reads the hint',
  (_name, stream) => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const sent = stream.slice(0, cut);
      const tail = new SseTail();
      // Chunked at random, as a backend's writes arrive.
      for (let at = 0; at < cut; ) {
        const size = 1 + Math.floor(Math.random() * 4);
        tail.see(Buffer.from(sent.slice(at, at + size), 'latin1'));
        at += size;
      }
      const hint = tail.retry(250);
      // A CR at the cut is held by the parser until the next character says whether it is a CRLF.
      const whole = read(`${sent}:`).events;
      if (hint === undefined) {
        // Only mid-line: the last character sent is not a line end.
        expect([cut, /[\r\n]$/.test(sent)]).toEqual([cut, false]);
        continue;
      }
      expect([cut, read(sent + hint.toString('latin1'))]).toEqual([cut, { events: whole, retry: 250 }]);
    }
  },
);

test('mid-line no hint is offered; at a line start inside an event the field goes alone, after an event with its blank line', () => {
  const tail = new SseTail();
  expect(tail.retry(100)?.toString()).toBe('retry: 100\n\n');
  tail.see(Buffer.from('data: half'));
  expect(tail.retry(100)).toBeUndefined();
  tail.see(Buffer.from('\n'));
  expect(tail.retry(100)?.toString()).toBe('retry: 100\n');
  tail.see(Buffer.from('\n'));
  expect(tail.retry(100)?.toString()).toBe('retry: 100\n\n');
});
