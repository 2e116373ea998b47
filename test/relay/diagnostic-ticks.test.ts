import { type ClientRequest, get } from 'node:http';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const HEARTBEAT_MS = 200;

let backend: FixtureBackend;
let relay: RunningRelay;
const requests: ClientRequest[] = [];

beforeAll(async () => {
  backend = await new FixtureBackend().start();
  relay = await startRelay(backend.url, { heartbeatMs: HEARTBEAT_MS });
});
afterAll(async () => {
  for (const req of requests) req.destroy();
  await relay.close();
  await backend.close();
});

/** Timers keeping this process alive (the relay runs in it). */
function pendingTimers(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
}

/** `GET /api/diagnostics/ticks?query` over plain node:http (no client-side timers); what arrived, and when. */
function ticks(query: string) {
  const got = { text: '', chunks: [] as { at: number; text: string }[], ended: false };
  const req = get(`${relay.url}/api/diagnostics/ticks?${query}`, { headers: { authorization: `Bearer ${tokenFor('alice')}` } }, (res) => {
    res.setEncoding('utf8');
    res.on('data', (text: string) => {
      got.text += text;
      got.chunks.push({ at: Date.now(), text });
    });
    res.on('end', () => (got.ended = true));
  });
  req.on('error', () => undefined);
  requests.push(req);
  return { req, got };
}

/** The `data` of every event named `name`, parsed. */
function eventsNamed<T>(text: string, name: string): T[] {
  return [...text.matchAll(new RegExp(`event: ${name}\\n(?:id: \\d+\\n)?data: (.*)\\n`, 'g'))].map((match) => JSON.parse(match[1]!) as T);
}

test('a ten-minute ticks request holds one timer, not one per tick, and closing it early leaves none pending', async () => {
  await until(() => relay.relay.connections.snapshot().total === 0, 2000, 'no stream open');
  const before = pendingTimers();
  const { req, got } = ticks('interval=600&count=1000');
  await until(() => got.text.includes('event: start'), 5000, 'the start event');
  // One for the next tick (a timer per tick would be a thousand).
  expect(pendingTimers() - before).toBeLessThanOrEqual(1);

  req.destroy();
  await until(() => relay.relay.connections.snapshot().total === 0, 5000, 'the request closed at the relay');
  await until(() => pendingTimers() <= before, 2000, 'no timer left pending');
});

test('ticks come one by one at start + seq × interval, then heartbeats through the quiet phase, then done', async () => {
  const { got } = ticks('interval=200&count=5&quiet=auto');
  await until(() => got.ended, 5000, 'the end of the check');
  const [start] = eventsNamed<{ sentAt: number; quiet: number }>(got.text, 'start');
  const sent = eventsNamed<{ seq: number; sentAt: number }>(got.text, 'tick');
  const [done] = eventsNamed<{ sentAt: number }>(got.text, 'done');
  expect(start?.quiet).toBe(2 * HEARTBEAT_MS);
  expect(sent.map((tick) => tick.seq)).toEqual([1, 2, 3, 4, 5]);
  for (const tick of sent) {
    const due = start!.sentAt + tick.seq * 200;
    // Never early; late only by what a loaded machine adds (less than a slot), and a late one does not push the next back.
    expect(tick.sentAt).toBeGreaterThanOrEqual(due);
    expect(tick.sentAt - due).toBeLessThan(200);
  }
  // Each tick in a write of its own, not held back into a burst.
  expect(got.chunks.filter((chunk) => chunk.text.includes('event: tick'))).toHaveLength(5);
  // Quiet for 400 ms after the last tick: one heartbeat at 200 ms, then done at 400.
  expect(got.text.split('event: tick').at(-1)!.match(/: hb\n\n/g)).toHaveLength(1);
  expect(done!.sentAt - start!.sentAt).toBeGreaterThanOrEqual(1400);
});
