import { once } from 'node:events';
import type { Server } from 'node:http';
import type { Socket} from 'node:net';
import { type AddressInfo, connect } from 'node:net';
import { type HttpServerOptions, createHttpServer } from '../../src/http-server';

let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  server?.close();
  server = undefined;
});

async function start(options: HttpServerOptions): Promise<number> {
  server = createHttpServer((_req, res) => res.end('ok'), options);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** A raw client socket; resolves its received text and the ms it lived once the server closes it. */
function open(port: number): { socket: Socket; closed: Promise<{ text: string; ms: number }> } {
  const started = Date.now();
  const socket = connect(port, '127.0.0.1');
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
  socket.on('error', () => undefined);
  const closed = once(socket, 'close').then(() => ({ text, ms: Date.now() - started }));
  return { socket, closed };
}

test('a socket that never sends a request is closed after the header timeout', async () => {
  const port = await start({ headersTimeoutMs: 200 });
  const { closed } = open(port);
  const { text, ms } = await closed;
  expect(text).toMatch(/^HTTP\/1\.1 408 /);
  expect(ms).toBeGreaterThanOrEqual(180);
  expect(ms).toBeLessThan(2000);
});

test('a client trickling a header line every 50 ms is closed after the header timeout', async () => {
  const port = await start({ headersTimeoutMs: 200 });
  const { socket, closed } = open(port);
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
  const trickle = setInterval(() => socket.write('X-Slow: 1\r\n'), 50);
  const { text, ms } = await closed.finally(() => clearInterval(trickle));
  expect(text).toMatch(/^HTTP\/1\.1 408 /);
  expect(ms).toBeLessThan(2000);
});

test('an idle keep-alive connection is closed after the keep-alive timeout', async () => {
  const port = await start({ keepAliveTimeoutMs: 150 });
  const { socket, closed } = open(port);
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  const { text, ms } = await closed;
  expect(text).toMatch(/^HTTP\/1\.1 200 [^]*ok$/);
  expect(ms).toBeGreaterThanOrEqual(140);
  // Node 20 adds a second to keepAliveTimeout before it closes.
  expect(ms).toBeLessThan(3000);
});

test('sockets over the cap are closed as they arrive; a freed place is taken again', async () => {
  const port = await start({ maxSockets: 2, headersTimeoutMs: 10_000 });
  const held = [open(port), open(port)];
  await Promise.all(held.map(({ socket }) => once(socket, 'connect')));
  await new Promise((resolve) => setTimeout(resolve, 50));
  const refused = open(port);
  const { text } = await refused.closed;
  expect(text).toBe('');
  held[0]?.socket.destroy();
  await held[0]?.closed;
  await new Promise((resolve) => setTimeout(resolve, 50));
  const next = open(port);
  next.socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  expect((await next.closed).text).toMatch(/^HTTP\/1\.1 200 /);
});

test('options are checked like the relay options', () => {
  expect(() => createHttpServer(() => undefined, { headersTimeoutMs: 2 ** 31 })).toThrow('headersTimeoutMs must be an integer from 1 to 300000 (milliseconds), got 2147483648');
  expect(() => createHttpServer(() => undefined, { maxSockets: 0 })).toThrow(/^maxSockets must be an integer from 1/);
});
