import { once } from 'node:events';
import { type Server, type ServerResponse, createServer } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { encodeEvent } from '../../src/sse/encode';
import type { CloseReason, Subscriber } from '../../src/relay/subscriber';
import { bareSubscriber, policyOf } from '../support/bare-stream';

let server: Server;

afterEach(async () => {
  server.closeAllConnections();
  server.close();
  await once(server, 'close');
});

/** Runs `script` on a Subscriber of one raw-socket request and returns every byte the client got. */
async function rawExchange(script: (subscriber: Subscriber) => void): Promise<string> {
  let closedWith: CloseReason | undefined;
  server = createServer((_req, res: ServerResponse) => {
    const subscriber = bareSubscriber(res, policyOf({ clientMaxBufferedBytes: 64 * 1024, clientBufferCeilingFactor: 8 }), (reason) => (closedWith = reason));
    subscriber.open(1000);
    script(subscriber);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  socket.write('GET /events HTTP/1.1\r\nHost: relay\r\n\r\n');
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  // A keep-alive response has ended when its last chunk arrived; give stray bytes a moment to follow.
  while (!received.includes('\r\n0\r\n\r\n')) await once(socket, 'data');
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.destroy();
  await once(socket, 'close');
  expect(closedWith).toBeDefined();
  return received;
}

const EVENT = encodeEvent({ data: 'late', id: '9' });

test.each([
  ['end', (s: Subscriber) => s.end('upstream_ended')],
  ['endWithRetry', (s: Subscriber) => s.endWithRetry('shutdown', 500)],
])('after %s, a frame sent before the close event writes nothing past the end of the response', async (_name, ending) => {
  const received = await rawExchange((subscriber) => {
    subscriber.send(encodeEvent({ data: 'first', id: '1' }));
    ending(subscriber);
    subscriber.send(EVENT);
    subscriber.heartbeat();
  });
  const body = received.slice(received.indexOf('\r\n\r\n') + 4);
  expect(body.endsWith('\r\n0\r\n\r\n')).toBe(true);
  expect(body).toContain('data: first');
  expect(body).not.toContain('late');
  expect(body).not.toContain(': hb');
});
