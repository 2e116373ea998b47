import { once } from 'node:events';
import type { Server } from 'node:http';
import type { Socket} from 'node:net';
import { type AddressInfo, connect } from 'node:net';
import { type HttpServerOptions, createHttpServer } from '../../src/http-server';
import { until } from '../support/until';

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
function open(port: number): { socket: Socket; text(): string; closed: Promise<{ text: string; ms: number }> } {
  const started = Date.now();
  const socket = connect(port, '127.0.0.1');
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
  socket.on('error', () => undefined);
  const closed = once(socket, 'close').then(() => ({ text, ms: Date.now() - started }));
  return { socket, text: () => text, closed };
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

describe('the header timeout, with other traffic around', () => {
  const TIMEOUT = 300;
  /** Closed at the timeout, give or take a loaded machine's timer. */
  const expectClosedAtTimeout = (ms: number): void => {
    expect(ms).toBeGreaterThanOrEqual(TIMEOUT - 20);
    expect(ms).toBeLessThan(TIMEOUT + 400);
  };

  /** `/held` holds an event stream, `/upload` answers once its body ends, anything else says ok. */
  async function startBusy(options: HttpServerOptions): Promise<number> {
    server = createHttpServer((req, res) => {
      if (req.url === '/held') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(': held\n\n');
      } else if (req.url === '/upload') {
        req.resume();
        req.on('end', () => res.end('uploaded'));
      } else res.end('ok');
    }, options);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return (server.address() as AddressInfo).port;
  }

  test('a socket that sends nothing is closed at the timeout while others send requests, oversized heads, uploads and hold streams', async () => {
    const port = await startBusy({ headersTimeoutMs: TIMEOUT });
    const silent = open(port);
    await once(silent.socket, 'connect');
    const normal = open(port);
    normal.socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const oversized = open(port);
    // Past Node's 16 KiB for a head.
    oversized.socket.write(`GET / HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 1500 }, (_, i) => `X-Header-${i}: v\r\n`).join('')}\r\n`);
    const held = open(port);
    held.socket.write('GET /held HTTP/1.1\r\nHost: x\r\n\r\n');
    const upload = open(port);
    upload.socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
    const trickle = setInterval(() => upload.socket.write('1\r\nx\r\n'), 50);
    upload.socket.once('close', () => clearInterval(trickle));

    const { text, ms } = await silent.closed;
    expect(text).toBe('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
    expectClosedAtTimeout(ms);
    expect((await normal.closed).text).toMatch(/^HTTP\/1\.1 200 [^]*ok$/);
    expect((await oversized.closed).text).toMatch(/^HTTP\/1\.1 4\d\d /);
    // Their heads arrived: the stream and the upload run on past the timeout.
    await new Promise((resolve) => setTimeout(resolve, 2 * TIMEOUT));
    clearInterval(trickle);
    expect(held.socket.destroyed).toBe(false);
    expect(upload.socket.destroyed).toBe(false);
    upload.socket.write('0\r\n\r\n');
    await until(() => upload.text().includes('uploaded'), 2000, 'the upload to be answered');
  });

  test('a keep-alive socket that goes quiet after its response is closed at the timeout, without a 408', async () => {
    const port = await startBusy({ headersTimeoutMs: TIMEOUT, keepAliveTimeoutMs: 5000 });
    const client = open(port);
    client.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => client.text().endsWith('ok'), 2000, 'the response');
    const answered = Date.now();
    const { text } = await client.closed;
    expect(text).toMatch(/^HTTP\/1\.1 200 [^]*ok$/);
    expectClosedAtTimeout(Date.now() - answered);
  });

  test('a keep-alive socket that starts its next head and never ends it gets a 408 at the timeout', async () => {
    const port = await startBusy({ headersTimeoutMs: TIMEOUT, keepAliveTimeoutMs: 5000 });
    const client = open(port);
    client.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => client.text().endsWith('ok'), 2000, 'the response');
    const answered = Date.now();
    client.socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
    const { text } = await client.closed;
    expect(text).toMatch(/ok\r?\n?HTTP\/1\.1 408 Request Timeout\r\n/);
    expectClosedAtTimeout(Date.now() - answered);
  });

  test('a socket the app takes over for an upgrade is no longer timed', async () => {
    const port = await startBusy({ headersTimeoutMs: TIMEOUT });
    let upgraded: Socket | undefined;
    server?.on('upgrade', (_req, socket: Socket) => {
      upgraded = socket;
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n');
    });
    const client = open(port);
    client.socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n');
    await until(() => client.text().startsWith('HTTP/1.1 101 '), 2000, 'the upgrade');
    await new Promise((resolve) => setTimeout(resolve, 3 * TIMEOUT));
    expect(client.socket.destroyed).toBe(false);
    // An upgraded socket is the app's, not the server's: closeAllConnections() leaves it open.
    upgraded?.destroy();
    client.socket.destroy();
  });

  test('a stream pipelined behind a short request outlives the timeout', async () => {
    const port = await startBusy({ headersTimeoutMs: TIMEOUT });
    const client = open(port);
    client.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /held HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => client.text().includes(': held'), 2000, 'the held stream');
    await new Promise((resolve) => setTimeout(resolve, 3 * TIMEOUT));
    expect(client.socket.destroyed).toBe(false);
    expect(client.text()).not.toContain('408');
  });
});
