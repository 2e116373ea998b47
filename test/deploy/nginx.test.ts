import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type IncomingMessage, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { createParser } from 'eventsource-parser';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningNginx, requireNginx, startNginx } from '../support/nginx';
import { type RunningRelay, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const PATH = '/downloads/abc/events';
const EVENTS = 20;
const SPACING_MS = 100;
// Well under the spacing, so a layer that holds events back and sends them in
// bursts fails; loose enough for a 2-core machine under load (before the warm-up
// event was added, a first event took 46 ms with four busy processes beside the test).
const MAX_DELAY_MS = 60;
// The relay's slow-client cap in this file, and how much a stalled client may be
// sent before the test decides something in between is soaking it up. About 8 MB
// fit in the loopback sockets between relay, nginx and client.
const CLIENT_CAP = 64 * 1024;
const SPOOL_LIMIT = 32 * 1024 * 1024;

let backend: FixtureBackend | undefined;
let relay: RunningRelay | undefined;
let nginx: RunningNginx | undefined;

beforeAll(async () => {
  requireNginx();
  backend = await new FixtureBackend().start();
  relay = await startRelay(backend.url, { clientMaxBufferedBytes: CLIENT_CAP });
  const relayPort = new URL(relay.url).port;
  // What deploy/nginx.conf sets for every route, without its `proxy_buffering off`:
  // buffering stays at nginx's default (on), so only the relay's X-Accel-Buffering header turns it off.
  nginx = await startNginx(
    (port) => `
  upstream relay { server 127.0.0.1:${relayPort}; keepalive 8; }
  server {
    listen 127.0.0.1:${port};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Host $host;
    location / { proxy_pass http://relay; }
  }`,
  );
});

afterAll(async () => {
  await nginx?.close();
  await relay?.close();
  await backend?.close();
});

interface Arrival {
  readonly seq: number;
  /** Milliseconds from the backend writing the event to the client parsing it. */
  readonly delay: number;
  readonly arrivedAt: number;
  /** Which socket read (data chunk) completed the event. */
  readonly read: number;
}

/** A raw HTTP client on the stream, recording when each event arrives; `response` resolves with the headers. */
function subscribe(url: string): { response: Promise<IncomingMessage>; arrivals: Arrival[]; close(): void } {
  const arrivals: Arrival[] = [];
  let reads = 0;
  let now = 0;
  const parser = createParser({
    maxBufferSize: 64 * 1024,
    onEvent(event) {
      const { seq, t } = JSON.parse(event.data) as { seq: number; t: number };
      arrivals.push({ seq, delay: now - t, arrivedAt: now, read: reads });
    },
  });
  const decoder = new TextDecoder();
  const req = request(url, { agent: false, headers: { authorization: `Bearer ${tokenFor('alice')}`, accept: 'text/event-stream' } });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (res) => {
      res.on('data', (chunk: Buffer) => {
        now = performance.now();
        reads += 1;
        parser.feed(decoder.decode(chunk, { stream: true }));
      });
      resolve(res);
    });
  });
  req.end();
  return { response, arrivals, close: () => req.destroy() };
}

// nginx's buffering does not hold back a client that keeps up: it forwards what it
// reads from the relay at once, header or not. This test shows that the relay and
// nginx together add no delay and no batching; the next one shows what the header is for.
test('behind stock nginx with buffering on, every event arrives within milliseconds of the backend writing it', async () => {
  const client = subscribe(`${nginx!.url}/api${PATH}`);
  try {
    const res = await client.response;
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    await until(() => backend!.listeners(PATH) === 1, 5000, 'the relay subscribed upstream');
    // Not measured: the first event through warms up the code on its path.
    backend!.emit(PATH, `data: ${JSON.stringify({ seq: -1, t: performance.now() })}\n`);
    await until(() => client.arrivals.length === 1, 5000, 'the warm-up event');
    client.arrivals.length = 0;

    // Each write waits the full spacing after the previous one, even when the loop runs late.
    for (let seq = 0; seq < EVENTS; seq++) {
      await sleep(SPACING_MS);
      backend!.emit(PATH, `data: ${JSON.stringify({ seq, t: performance.now() })}\n`);
    }
    const deadline = performance.now() + 2000;
    while (client.arrivals.length < EVENTS && performance.now() < deadline) await sleep(10);

    const { arrivals } = client;
    // The summary rides along in both sides so a failure shows every delay.
    const summary = arrivals.map((a) => `#${a.seq} ${a.delay.toFixed(1)} ms`).join(', ');
    expect({ arrived: arrivals.map((a) => a.seq), summary }).toEqual({ arrived: [...Array(EVENTS).keys()], summary });
    expect({ late: arrivals.filter((a) => a.delay >= MAX_DELAY_MS).map((a) => a.seq), summary }).toEqual({ late: [], summary });
    // Spread out as written: every event completed in a socket read of its own, not in a burst.
    expect(new Set(arrivals.map((a) => a.read)).size).toBe(EVENTS);
    expect(arrivals.at(-1)!.arrivedAt - arrivals[0]!.arrivedAt).toBeGreaterThan((EVENTS - 1) * SPACING_MS - MAX_DELAY_MS);
  } finally {
    client.close();
  }
});

// What X-Accel-Buffering changes: with buffering on, nginx reads a stream ahead of a
// client that stalls, into memory and then a temp file (up to 1 GB by default), so the
// relay never sees the client fall behind and its slow-client cap never applies. With
// the header nginx stops reading from the relay when the client stops reading.
test('behind stock nginx with buffering on, a client that stops reading is still cut off by the relay, not spooled by nginx', async () => {
  const path = '/downloads/stalled/events';
  const { hostname, port } = new URL(nginx!.url);
  // A client that sends its request and never reads: its socket fills, then nginx's.
  const socket = connect(Number(port), hostname);
  socket.pause();
  socket.on('error', () => undefined);
  socket.write(`GET /api${path} HTTP/1.1\r\nHost: ${hostname}\r\nAuthorization: Bearer ${tokenFor('alice')}\r\n\r\n`);
  try {
    await until(() => backend!.listeners(path) === 1, 5000, 'the relay subscribed upstream');
    const frame = `data: ${'x'.repeat(1000)}\n`;
    let written = 0;
    while (relay!.relay.stats.slowClientsCut === 0 && written < SPOOL_LIMIT) {
      for (let i = 0; i < 64; i++) backend!.emit(path, frame);
      written += 64 * frame.length;
      await sleep(2);
    }
    expect(nginx!.stderr()).not.toContain('buffered to a temporary file');
    expect(relay!.relay.stats.closeReasons.get('slow_client')).toBe(1);
  } finally {
    socket.destroy();
  }
});

test('deploy/nginx.conf is a configuration nginx accepts', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nginx-deploy-'));
  try {
    const conf = join(dir, 'nginx.conf');
    const example = resolve(__dirname, '../../deploy/nginx.conf');
    writeFileSync(
      conf,
      `pid ${dir}/nginx.pid;
error_log stderr;
events {}
http {
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  access_log off;
  include ${example};
}
`,
    );
    // -t parses and checks the configuration without binding its ports.
    const { stderr } = await promisify(execFile)(requireNginx(), ['-t', '-p', dir, '-c', conf, '-e', 'stderr']);
    expect(stderr).toContain('test is successful');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('behind nginx with TRUST_PROXY=1, the per-IP limit counts the real client addresses, not nginx and not a forged header', async () => {
  const limited = await startRelay((backend as FixtureBackend).url, { maxConnectionsPerIp: 1 }, { trustProxy: 1 });
  const front = await startNginx(
    (port) => `
  server {
    listen 127.0.0.1:${port};
    proxy_http_version 1.1;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    location / { proxy_pass ${limited.url}; }
  }`,
  );
  // Clients from two loopback addresses; each forges an X-Forwarded-For that nginx appends to.
  const open = (from: string): Promise<IncomingMessage> =>
    new Promise((resolveResponse, reject) => {
      const req = request(`${front.url}/api${PATH}`, {
        localAddress: from,
        headers: { authorization: `Bearer ${tokenFor(`user-${from}`)}`, 'x-forwarded-for': '198.51.100.7' },
      });
      req.once('response', resolveResponse).once('error', reject).end();
    });
  try {
    const first = await open('127.0.0.2');
    const second = await open('127.0.0.3');
    const third = await open('127.0.0.2');
    expect([first.statusCode, second.statusCode, third.statusCode]).toEqual([200, 200, 429]);
    for (const response of [first, second, third]) response.destroy();
  } finally {
    await front.close();
    await limited.close();
  }
});
