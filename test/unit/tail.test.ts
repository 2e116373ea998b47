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

const WITH_RETRY = {
  LF: 'retry: 250\n\ndata: one\nid: 1\n\nretry:300\ndata: two\n\nretry: 250\n: data\n\ndata: retry: 300\n\nretry: 3x0\nretry\nretry : 300\n\n',
  CRLF: 'retry: 250\r\n\r\ndata: one\r\nretry: 300\r\n\r\nretry:250\r\n\r\n',
  CR: 'retry: 250\r\rdata: one\rretry: 300\r\rretry: 250\r\r',
};

test.each(Object.entries(WITH_RETRY))(
  "a %s stream cut anywhere and chunked at random: the relay's hint is left out exactly when the backend's last retry: already says it",
  (_name, stream) => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const sent = stream.slice(0, cut);
      const tail = new SseTail();
      for (let at = 0; at < cut; ) {
        const size = 1 + Math.floor(Math.random() * 6);
        tail.see(Buffer.from(sent.slice(at, at + size), 'latin1'));
        at += size;
      }
      // The comment flushes a CR the parser would hold; mid-line it spoils the line, as the stream's end does.
      const told = read(`${sent}:`).retry;
      for (const ms of [250, 300]) expect([cut, ms, tail.retry(ms)?.length === 0]).toEqual([cut, ms, told === ms]);
    }
  },
);

test("a retry: field after a leading BOM counts; a line too long to be kept is never taken for one (the hint goes out)", () => {
  const tail = new SseTail();
  tail.see(Buffer.from([0xef, 0xbb, 0xbf, ...Buffer.from('retry: 250\n\n')]));
  expect(tail.retry(250)).toEqual(Buffer.alloc(0));
  tail.see(Buffer.from(`retry: ${'0'.repeat(40)}`));
  tail.see(Buffer.from('300\n'));
  expect(tail.retry(300)?.toString()).toBe('retry: 300\n');
});
