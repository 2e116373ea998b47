import { request } from 'undici';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, STREAMS_WITHOUT_REPLAY, authHeader, startRelay } from '../support/relay-server';
import { until } from '../support/until';

let backend: FixtureBackend;
let relay: RunningRelay;

beforeEach(async () => {
  backend = await new FixtureBackend().start();
});

afterEach(async () => {
  await relay.close();
  await backend.close();
});

/** An event of about 1 KiB on the wire: `data: <label>:xxxx…`. */
const KIB_EVENT = (label: string): string => `data: ${label}:${'x'.repeat(1000)}\n`;

/** Opens a stream (resuming after `lastEventId` if given) and returns what it read once `done` says so. */
async function readStream(path: string, lastEventId: string | undefined, done: (text: string) => boolean): Promise<string> {
  const headers = lastEventId === undefined ? authHeader() : { ...authHeader(), 'last-event-id': lastEventId };
  const res = await request(`${relay.url}/api${path}`, { headers });
  expect(res.statusCode).toBe(200);
  let text = '';
  for await (const chunk of res.body) {
    text += String(chunk);
    if (done(text)) break;
  }
  res.body.destroy();
  return text;
}

/** The labels of the events in a stream's text, with `resync` for a resync event. */
function labels(text: string): string[] {
  return [...text.matchAll(/^(?:event: (resync)|data: ([^:\n]+):x+)$/gm)].map((m) => m[1] ?? (m[2] as string));
}

const count = (text: string): number => labels(text).length;

test('a topic keeps only its byte budget of history: a client resuming from before it gets resync, then what is held', async () => {
  // Room for three 1 KiB events, though the count limit would keep a thousand. The backend is
  // taken as one that cannot replay, so what the relay evicted shows as a resync.
  relay = await startRelay(backend.url, { replayBufferSize: 1000, replayBufferBytes: 3 * 1024 + 512, streams: STREAMS_WITHOUT_REPLAY });
  const path = '/downloads/big/events';
  const reader = readStream(path, undefined, (text) => count(text) === 10);
  await until(() => backend.listeners(path) === 1);
  for (let i = 1; i <= 10; i++) backend.emit(path, KIB_EVENT(`e${i}`));
  expect(labels(await reader)).toHaveLength(10);

  const resumed = await readStream(path, '2', (text) => count(text) === 4);
  expect(labels(resumed)).toEqual(['resync', 'e8', 'e9', 'e10']);
  // Within the budget, resume is exact.
  expect(labels(await readStream(path, '8', (text) => count(text) === 2))).toEqual(['e9', 'e10']);
  expect(relay.relay.stats.resyncs).toBe(1);
});

test("over the process's budget, a lingering topic's history goes before a live topic's, even when the live one is older", async () => {
  relay = await startRelay(backend.url, { replayBufferBytes: 1024 ** 2, replayTotalBytes: 6 * 1024 + 512, topicLingerMs: 60_000, heartbeatMs: 100, streams: STREAMS_WITHOUT_REPLAY });
  const live = '/downloads/live/events';
  const lingering = '/downloads/lingering/events';
  const readers = (key: string): number | undefined => relay.relay.hub.topic(`download:${key}`)?.size;
  const liveReader = readStream(live, undefined, (text) => count(text) === 7);
  await until(() => backend.listeners(live) === 1);
  for (let i = 1; i <= 3; i++) backend.emit(live, KIB_EVENT(`live${i}`));

  // The second topic gets its events after the live one's, then its only reader leaves.
  const lingeringReader = readStream(lingering, undefined, (text) => count(text) === 3);
  await until(() => backend.listeners(lingering) === 1);
  for (let i = 1; i <= 3; i++) backend.emit(lingering, KIB_EVENT(`gone${i}`));
  expect(labels(await lingeringReader)).toEqual(['gone1', 'gone2', 'gone3']);
  await until(() => readers('lingering') === 0, 5000, 'the lingering topic to lose its reader');

  // Seven events held, room for six: the lingering topic's oldest goes, though live1 is older.
  backend.emit(live, KIB_EVENT('live4'));
  expect(labels(await readStream(live, undefined, (text) => count(text) === 4))).toEqual(['live1', 'live2', 'live3', 'live4']);
  expect(labels(await readStream(lingering, '1', (text) => count(text) === 3))).toEqual(['resync', 'gone2', 'gone3']);
  await until(() => readers('lingering') === 0 && readers('live') === 1, 5000, 'the extra readers to leave');

  // Three more live events: the lingering topic's history empties before the live topic loses its oldest.
  for (let i = 5; i <= 7; i++) backend.emit(live, KIB_EVENT(`live${i}`));
  expect(labels(await liveReader)).toHaveLength(7);
  expect(labels(await readStream(live, undefined, (text) => count(text) === 7))).toEqual(['resync', 'live2', 'live3', 'live4', 'live5', 'live6', 'live7']);
  // Resuming the lingering topic from an evicted event: told of the gap, nothing else held (read on
  // to a heartbeat, which comes only once the stream went quiet, so anything held was written first).
  expect(labels(await readStream(lingering, '2', (text) => /event: resync/.test(text) && text.includes(': hb\n\n')))).toEqual(['resync']);
});
