import { once } from 'node:events';
import { type Server, createServer } from 'node:http';
import { type AddressInfo, type Socket, connect } from 'node:net';
import { encodeEvent } from '../../src/sse/encode';
import type { CloseReason, Subscriber } from '../../src/relay/subscriber';
import { bareSubscriber, policyOf } from '../support/bare-stream';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, collect, eventSourceAs, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const MIB = 1024 ** 2;

describe('a client that reads', () => {
  let server: Server;

  afterEach(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });

  /**
   * Sends `bursts` bursts of three times the cap, each written in one go, to a raw socket
   * that reads as fast as it can; returns the bytes it got, the bytes sent, and how the stream closed.
   */
  async function burstsToReader(settings: { clientMaxBufferedBytes: number; clientDrainGraceMs: number; clientBufferCeilingFactor: number }, bursts: number): Promise<{ received: number; sent: number; closedWith: CloseReason | undefined }> {
    let subscriber: Subscriber | undefined;
    let closedWith: CloseReason | undefined;
    server = createServer((_req, res) => {
      subscriber = bareSubscriber(res, policyOf(settings), (reason) => (closedWith = reason));
      subscriber.open(1000);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    socket.write('GET /events HTTP/1.1\r\nHost: relay\r\n\r\n');
    let received = 0;
    let headerBytes = -1;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (headerBytes < 0) headerBytes = chunk.toString('latin1').indexOf('\r\n\r\n') + 4;
    });
    await until(() => subscriber !== undefined && headerBytes > 0);
    const headers = received;
    let sent = 0;
    const perBurst = (3 * settings.clientMaxBufferedBytes) / (64 * 1024);
    for (let burst = 0; burst < bursts && closedWith === undefined; burst++) {
      for (let i = 0; i < perBurst; i++) {
        const frame = encodeEvent({ id: `${burst}-${i}`, data: 'x'.repeat(64 * 1024 - 32) });
        // Each frame goes out as one HTTP chunk: its size line, the frame, CRLF.
        sent += frame.length + frame.length.toString(16).length + 4;
        subscriber?.send(frame);
      }
      const target = headers + sent;
      await until(() => received - headers >= target - headers || closedWith !== undefined, 10_000, 'the reader to catch up');
    }
    socket.destroy();
    return { received: received - headers, sent, closedWith };
  }

  test('gets every event of bursts three times the buffer cap, written in one go', async () => {
    // Loopback takes about 4 MiB into kernel buffers before anything stays unsent (measured):
    // with a 4 MiB cap, a 12 MiB burst leaves about 8 MiB unsent even for a client reading at once.
    const result = await burstsToReader({ clientMaxBufferedBytes: 4 * MIB, clientDrainGraceMs: 1000, clientBufferCeilingFactor: 8 }, 5);
    expect(result.closedWith).toBeUndefined();
    expect(result.received).toBeGreaterThanOrEqual(result.sent);
  });
});

describe('a client that never reads', () => {
  let backend: FixtureBackend;
  let relay: RunningRelay;
  const PATH = '/downloads/stall/events';
  let stalled: Socket | undefined;

  beforeEach(async () => {
    backend = await new FixtureBackend().start();
  });

  afterEach(async () => {
    // A paused socket never sees its peer close: left open, it would keep jest from exiting.
    stalled?.destroy();
    await relay.close();
    await backend.close();
  });

  test('is cut alone once past the cap without draining for the grace period, even with no more events, and its memory freed', async () => {
    const cap = 64 * 1024;
    // The ceiling is far away: what cuts here is the stall, judged by the hub's tick.
    relay = await startRelay(backend.url, { clientMaxBufferedBytes: cap, clientBufferCeilingFactor: 1000, clientDrainGraceMs: 100, topicLingerMs: 10 });
    const sockets = new Set<Socket>();
    relay.server.on('connection', (socket) => sockets.add(socket));
    stalled = connect(Number(new URL(relay.url).port), '127.0.0.1');
    stalled.write(`GET /api${PATH} HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${tokenFor('alice')}\r\n\r\n`);
    stalled.pause();
    const stalledClosed = once(stalled, 'close');
    const reader = eventSourceAs(`${relay.url}/api${PATH}`, 'alice');
    let received = 0;
    reader.addEventListener('message', () => (received += 1));
    await until(() => relay.relay.hub.streamCount === 2 && backend.listeners(PATH) === 1);

    // Loopback absorbs several MiB before anything stays unsent: push until the stalled client holds past the cap.
    const payload = 'x'.repeat(16 * 1024);
    const mostUnsent = (): number => Math.max(...[...sockets].map((s) => s.writableLength));
    let sent = 0;
    while (mostUnsent() <= cap && sent < 4000) {
      backend.emit(PATH, `data: ${sent} ${payload}\n`);
      sent += 1;
      if (sent % 3 === 0) await until(() => received >= sent - 3, 5000, 'the reader to keep up');
    }
    expect(mostUnsent()).toBeGreaterThan(cap);
    // No more events: the tick finds it stalled.
    await until(() => relay.relay.stats.slowClientsCut === 1, 2000, 'the stalled client to be cut');
    stalled.resume();
    await stalledClosed;
    expect(relay.relay.hub.streamCount).toBe(1);
    expect([...sockets].filter((s) => !s.destroyed)).toHaveLength(1);
    expect(mostUnsent()).toBeLessThanOrEqual(cap);

    const rest = collect(reader, 10);
    for (let i = 0; i < 10; i++) backend.emit(PATH, `data: ${sent + i} ${payload}\n`);
    await rest;
    expect(received).toBe(sent + 10);
    expect(relay.relay.stats.closeReasons.get('slow_client')).toBe(1);
    reader.close();
  });
});
