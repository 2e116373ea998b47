import { type Socket, connect } from 'node:net';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, startRelay, tokenFor } from '../support/relay-server';
import { delay, until } from '../support/until';

let backend: FixtureBackend;
let relay: RunningRelay;

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  relay = await startRelay(backend.url, { topicLingerMs: 0, maxConnectionsPerUser: 1 });
});

afterEach(async () => {
  await relay.close();
  await backend.close();
});

/** Sends `requests` on one connection, pipelined, and collects what comes back until `done` says so or the relay closes. */
async function pipelined(requests: string[], done: (text: string) => boolean): Promise<string> {
  const socket: Socket = connect(Number(new URL(relay.url).port), '127.0.0.1');
  socket.on('error', () => undefined);
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.write(requests.join(''));
  try {
    await until(() => done(text) || socket.destroyed, 3000, `the answers, got: ${JSON.stringify(text)}`);
  } finally {
    socket.destroy();
  }
  return text;
}

function head(path: string, user = 'alice', extra = ''): string {
  return `HEAD /api${path} HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${tokenFor(user)}\r\n${extra}\r\n`;
}

const HEALTH = 'GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n';

/** The status lines in order, and the headers of the first answer. */
function answers(text: string): { statuses: string[]; first: string } {
  return { statuses: text.match(/^HTTP\/1\.1 \d{3}/gm) ?? [], first: text.slice(0, text.indexOf('\r\n\r\n')) };
}

describe.each([
  ['a shared download stream', '/downloads/abc/events'],
  ['a shared upload-session stream', '/documents/upload-sse/reconnect/s1'],
  ['a multiplexed stream', '/events?topic=download:abc&topic=session:s1'],
  ['the diagnostic ticks', '/diagnostics/ticks?interval=10&count=1000'],
])('HEAD on %s', (_name, path) => {
  test('answers the stream headers at once and ends, and the request behind it is answered', async () => {
    const text = await pipelined([head(path), HEALTH], (got) => got.includes('{"status":"ok"}'));
    const { statuses, first } = answers(text);
    expect(statuses).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
    expect(first).toMatch(/^content-type: text\/event-stream/im);
    expect(first).toMatch(/^cache-control: no-cache, no-transform/im);
    // No body: the next answer follows the head directly.
    expect(text.slice(first.length + 4)).toMatch(/^HTTP\/1\.1 200 /);
  });

  test('is answered to a user at the stream limit, and opens nothing upstream', async () => {
    // Alice's one stream: ticks that outlast the test, which ask nothing of the backend.
    const holding = connect(Number(new URL(relay.url).port), '127.0.0.1');
    holding.write(`GET /api/diagnostics/ticks?interval=1000&count=100 HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${tokenFor('alice')}\r\n\r\n`);
    await until(() => relay.relay.connections.snapshot().total === 1, 3000, 'the held stream');
    const text = await pipelined([head(path), HEALTH], (got) => got.includes('{"status":"ok"}'));
    expect(answers(text).statuses).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
    await delay(50);
    expect(relay.relay.connections.snapshot().total).toBe(1);
    expect(relay.relay.hub.topicCount).toBe(0);
    expect(backend.requests).toEqual([]);
    holding.destroy();
  });
});

test('HEAD on a stream is refused as a GET would be: without a token, and with an id that is not one', async () => {
  const anonymous = await pipelined([`HEAD /api/downloads/abc/events HTTP/1.1\r\nHost: relay\r\n\r\n`, HEALTH], (got) => got.includes('{"status":"ok"}'));
  expect(answers(anonymous).statuses).toEqual(['HTTP/1.1 401', 'HTTP/1.1 200']);
  const badId = await pipelined([head('/downloads/a%20b/events'), HEALTH], (got) => got.includes('{"status":"ok"}'));
  expect(answers(badId).statuses).toEqual(['HTTP/1.1 400', 'HTTP/1.1 200']);
  const badTopic = await pipelined([head('/events?topic=nope'), HEALTH], (got) => got.includes('{"status":"ok"}'));
  expect(answers(badTopic).statuses).toEqual(['HTTP/1.1 400', 'HTTP/1.1 200']);
});
