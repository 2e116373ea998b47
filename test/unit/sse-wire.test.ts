import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { SseWire } from '../../bench/sse-wire';

/** The raw bytes a real node:http server sends for `write`s of these frames, then its end. */
async function rawResponse(status: number, frames: readonly string[]): Promise<Buffer> {
  const server = createServer((_req, res) => {
    res.writeHead(status, { 'Content-Type': 'text/event-stream' });
    for (const frame of frames) res.write(frame);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const parts: Buffer[] = [];
      const socket = connect({ host: '127.0.0.1', port }, () => socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      socket.on('data', (b: Buffer) => parts.push(b));
      socket.on('end', () => resolve(Buffer.concat(parts)));
      socket.on('error', reject);
    });
  } finally {
    server.close();
  }
}

interface Seen {
  status?: number;
  events: [string | undefined, string][];
  ended: boolean;
  errors: string[];
  retries?: number[];
}

function read(bytes: Buffer, cuts: readonly number[], retries?: number[]): Seen {
  const seen: Seen = { events: [], ended: false, errors: [], ...(retries && { retries }) };
  const wire = new SseWire({
    onHead: (status) => (seen.status = status),
    onEvent: (name, data) => seen.events.push([name, data]),
    ...(retries && { onRetry: (ms: number) => retries.push(ms) }),
    onEnd: () => (seen.ended = true),
    onError: (message) => seen.errors.push(message),
  });
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    wire.push(bytes.subarray(from, cut));
    from = cut;
  }
  return seen;
}

const FRAMES = [
  'retry: 2000\n\n',
  'data: {"t":1733030000123.456,"seq":0}\nid: 1\n\n',
  ': hb\n\n',
  'event: resync\ndata: {"reason":"history_gap"}\n\n',
  'data: {"t":1.5,"seq":1}\r\nid: 2\r\n\r\n',
  'data: a\ndata:b\n\n',
  'data: é€\n\n',
];
const EXPECTED: [string | undefined, string][] = [
  [undefined, '{"t":1733030000123.456,"seq":0}'],
  ['resync', '{"reason":"history_gap"}'],
  [undefined, '{"t":1.5,"seq":1}'],
  [undefined, 'a\nb'],
  [undefined, 'é€'],
];

describe('the load client reads SSE off a raw socket', () => {
  it('gets every event of a chunked response, whole or cut at any byte', async () => {
    const bytes = await rawResponse(200, FRAMES);
    expect(read(bytes, [])).toEqual({ status: 200, events: EXPECTED, ended: true, errors: [] });
    for (let cut = 1; cut < bytes.length; cut++) {
      expect(read(bytes, [cut])).toEqual({ status: 200, events: EXPECTED, ended: true, errors: [] });
    }
    // Every byte its own read: chunk sizes, CRLFs and lines all split.
    const everyByte = Array.from({ length: bytes.length - 1 }, (_, i) => i + 1);
    expect(read(bytes, everyByte)).toEqual({ status: 200, events: EXPECTED, ended: true, errors: [] });
  });

  it('reports retry: fields to a client that reconnects, whole or cut at any byte', async () => {
    const bytes = await rawResponse(200, [...FRAMES, 'retry: 3500\n\n', 'retry: soon\n\n']);
    for (let cut = 1; cut < bytes.length; cut += 7) {
      expect(read(bytes, [cut], []).retries).toEqual([2000, 3500]);
    }
  });

  it('reports a refused stream by its status', async () => {
    const bytes = await rawResponse(404, []);
    expect(read(bytes, [5])).toMatchObject({ status: 404, ended: true });
  });

  it('reads a body without chunking up to the socket close', () => {
    const bytes = Buffer.from(`HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n${FRAMES.join('')}`);
    expect(read(bytes, [30, 90])).toEqual({ status: 200, events: EXPECTED, ended: false, errors: [] });
  });

  it('says so when the bytes are not an HTTP response', () => {
    expect(read(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n'), []).errors).toEqual(['not an HTTP response: "SSH-2.0-OpenSSH"']);
  });
});
