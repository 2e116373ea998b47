import type { EventSource } from 'eventsource';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, eventSourceAs, startRelay } from '../support/relay-server';
import { until } from '../support/until';

const PATH = '/downloads/awkward/events';

// Every framing the spec allows and a few it tolerates: BOM, CR / LF / CRLF line
// ends, multi-line data, unicode, comments, unknown fields, no space after the
// colon, an event without an id (inherits the last), a bare "data" field.
const STREAM = [
  '\uFEFFdata: first\r\nid: 1\r\n\r\n',
  'event: custom\rdata: multi\rdata: line\rid: 2\r\r',
  ': a comment\n',
  'data: ünïcødé 🎉 中文\nunknown: field\nid: 3\n\n',
  'data:no-space\ndata:  two spaces\nid: 4\n\n',
  'data\nid: 5\n\n',
  'data: inherits id 5\n\n',
  'retry: 100\ndata: x\r\nid: 7\r\n\r\n',
  'event: message\ndata: named message\nid: 8\n\n',
  'data: {"json":"with \\"quotes\\" and \\n escapes"}\nid: 9\n\n',
].join('');
const EXPECTED_EVENTS = 9;

/** A seeded generator, so a failing split can be reproduced. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

function record(es: EventSource, seen: string[], done: () => void): void {
  const onEvent = (event: MessageEvent): void => {
    seen.push(JSON.stringify([event.type, event.data, event.lastEventId]));
    if (seen.length === EXPECTED_EVENTS) done();
  };
  es.addEventListener('message', onEvent);
  es.addEventListener('custom', onEvent);
}

let backend: FixtureBackend;
let relay: RunningRelay;

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  relay = await startRelay(backend.url, { topicLingerMs: 10 });
});

afterEach(async () => {
  await relay.close();
  await backend.close();
});

test.each([1, 2, 3, 4, 5])(
  'through the relay an eventsource client sees exactly what it sees directly (random split, seed %i)',
  async (seed) => {
    const direct = eventSourceAs(`${backend.url}${PATH}`, 'alice');
    const relayed = eventSourceAs(`${relay.url}/api${PATH}`, 'alice');
    const directSeen: string[] = [];
    const relayedSeen: string[] = [];
    const both = Promise.all([
      new Promise<void>((resolve) => record(direct, directSeen, resolve)),
      new Promise<void>((resolve) => record(relayed, relayedSeen, resolve)),
    ]);
    await until(() => backend.listeners(PATH) === 2);

    // Split the bytes anywhere: mid-line, mid-character, between CR and LF.
    const bytes = Buffer.from(STREAM, 'utf8');
    const next = random(seed);
    for (let at = 0; at < bytes.length; ) {
      const size = 1 + Math.floor(next() * 12);
      backend.writeRaw(PATH, bytes.subarray(at, at + size));
      at += size;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await both;
    direct.close();
    relayed.close();

    expect(relayedSeen).toEqual(directSeen);
    expect(directSeen[0]).toBe(JSON.stringify(['message', 'first', '1']));
    expect(directSeen[1]).toBe(JSON.stringify(['custom', 'multi\nline', '2']));
    expect(directSeen[2]).toBe(JSON.stringify(['message', 'ünïcødé 🎉 中文', '3']));
    expect(directSeen[4]).toBe(JSON.stringify(['message', '', '5']));
  },
);
