import { type Socket, connect } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const CAP = 1000;

let backend: FixtureBackend;
let relay: RunningRelay;

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  relay = await startRelay(backend.url, { maxUploadBytes: CAP });
});

afterEach(async () => {
  await relay.close();
  await backend.close();
});

/**
 * The backend answers `POST /early` as soon as the upload's first bytes arrive, with `headers`
 * and the first part of its body, and keeps reading: an answer that starts before the upload ends.
 */
function answerEarly(headers: Record<string, string>, firstPart: string): void {
  backend.respond = (req: IncomingMessage, res: ServerResponse) => {
    if (req.url !== '/early') return false;
    req.once('data', () => {
      res.writeHead(200, headers);
      res.write(firstPart);
    });
    req.resume();
    return true;
  };
}

/** A raw client uploading to `/api/early` in chunks: what it received, and whether the relay closed it. */
function upload(): { socket: Socket; text(): string; closed: Promise<void>; send(bytes: number): void } {
  const socket = connect(Number(new URL(relay.url).port), '127.0.0.1');
  socket.on('error', () => undefined);
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(`POST /api/early HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${tokenFor('alice')}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n`);
  const send = (bytes: number): void => void socket.write(`${bytes.toString(16)}\r\n${'x'.repeat(bytes)}\r\n`);
  return { socket, text: () => text, closed, send };
}

function bodyOf(text: string): string {
  return text.slice(text.indexOf('\r\n\r\n') + 4);
}

test('an upload that passes the cap after the backend answered with a Content-Length: the declared length is never exceeded, the connection closes', async () => {
  answerEarly({ 'content-type': 'application/octet-stream', 'content-length': '20' }, '0123456789');
  const client = upload();
  client.send(100);
  await until(() => client.text().endsWith('0123456789'), 3000, 'the backend\'s first ten bytes');
  client.send(2 * CAP);
  await client.closed;
  expect(client.text()).toMatch(/^HTTP\/1\.1 200 [^]*\r\ncontent-length: 20\r\n/i);
  expect(bodyOf(client.text())).toBe('0123456789');
});

test('an upload that passes the cap after the backend answered with a body of its own type: nothing of the relay is added, the connection closes', async () => {
  answerEarly({ 'content-type': 'application/json' }, '{"progress":[');
  const client = upload();
  client.send(100);
  await until(() => client.text().includes('{"progress":['), 3000, 'the start of the backend\'s body');
  client.send(2 * CAP);
  await client.closed;
  // Chunked: the first chunk and no more, and never the last (empty) chunk that would say the body is whole.
  expect(bodyOf(client.text())).toBe('d\r\n{"progress":[\r\n');
});

test('an event stream cut inside an event by the cap is closed, not given an event inside the half-sent one', async () => {
  answerEarly({ 'content-type': 'text/event-stream' }, 'data: {"half":');
  const client = upload();
  client.send(100);
  await until(() => client.text().includes('data: {"half":'), 3000, 'the half-sent event');
  client.send(2 * CAP);
  await client.closed;
  expect(client.text()).not.toContain('relay_error');
});

test('an event stream past the cap between two events ends with relay_error, as the docs say', async () => {
  answerEarly({ 'content-type': 'text/event-stream' }, 'data: started\n\n');
  const client = upload();
  client.send(100);
  await until(() => client.text().includes('data: started'), 3000, 'the first event');
  client.send(2 * CAP);
  await until(() => client.text().includes('\r\n0\r\n\r\n'), 3000, 'the end of the stream');
  expect(client.text()).toContain('event: relay_error\ndata: {"reason":"payload_too_large"}\n\n');
  client.socket.destroy();
});

test('an event stream with an encoding of its own is closed at the cap, not given an event it would not decode', async () => {
  answerEarly({ 'content-type': 'text/event-stream', 'content-encoding': 'gzip' }, 'data: started\n\n');
  const client = upload();
  client.send(100);
  await until(() => client.text().includes('data: started'), 3000, 'the first bytes');
  client.send(2 * CAP);
  await client.closed;
  expect(client.text()).not.toContain('relay_error');
});
