import { request } from 'undici';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, TEST_SECRET, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

// Clients such as fetch-event-source and httpx-sse hand every `retry:`-only block to the app as
// an empty message: a hint the client already has must not be sent again, whoever sent it first.

let backend: FixtureBackend;
let relay: RunningRelay;
const aborts: AbortController[] = [];

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  // No clock tolerance: each stream ends at the second its token names, told to come back after retryHintMs.
  relay = await startRelay(backend.url, { jwt: { secret: TEST_SECRET, clockToleranceSec: 0 }, retryHintMs: 2000, idleTimeoutMs: 0 });
});

afterEach(async () => {
  for (const controller of aborts.splice(0)) controller.abort();
  await relay.close();
  await backend.close();
});

/** A GET of the relay read as raw text; `ended` resolves with all of it once the relay ends the stream. */
async function rawStream(path: string, token: string): Promise<{ text: () => string; ended: Promise<string> }> {
  const controller = new AbortController();
  aborts.push(controller);
  const res = await request(`${relay.url}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
  expect(res.statusCode).toBe(200);
  let text = '';
  const ended = (async () => {
    for await (const chunk of res.body) text += String(chunk);
    return text;
  })();
  return { text: () => text, ended };
}

test('shared, multiplexed and proxied streams send a retry: hint only when it differs from what the client was last told, the backend’s included', async () => {
  // `exp` has seconds' resolution: 1 to 2 s from now.
  const exp = Math.floor(Date.now() / 1000) + 2;
  const token = tokenFor('alice', { expiresIn: exp - Math.floor(Date.now() / 1000) });
  const paths = { sameShared: '/downloads/same/events', otherShared: '/downloads/other/events', multiplexed: '/downloads/mux/events', sameProxied: '/feeds/same', otherProxied: '/feeds/other' };
  const streams = {
    sameShared: await rawStream(`/api${paths.sameShared}`, token),
    otherShared: await rawStream(`/api${paths.otherShared}`, token),
    multiplexed: await rawStream('/api/events?topic=download:mux', token),
    sameProxied: await rawStream(`/api${paths.sameProxied}`, token),
    otherProxied: await rawStream(`/api${paths.otherProxied}`, token),
  };
  await until(() => Object.values(paths).every((path) => backend.listeners(path) === 1), 5000, 'every upstream');
  // Two backends that say what the relay says (2000), two that say otherwise.
  for (const path of [paths.sameShared, paths.multiplexed, paths.sameProxied]) backend.writeRaw(path, 'retry: 2000\n\n');
  for (const path of [paths.otherShared, paths.otherProxied]) backend.writeRaw(path, 'retry: 3000\n\n');
  for (const path of Object.values(paths)) backend.emit(path, 'data: a\n');
  await until(() => Object.values(streams).every((stream) => stream.text().includes('"data":"a"') || stream.text().includes('data: a\n')), 5000, 'the event on every stream');

  const { sameShared, otherShared, multiplexed, sameProxied, otherProxied } = streams;
  const [sameSharedText, otherSharedText, multiplexedText, sameProxiedText, otherProxiedText] = await Promise.all([sameShared.ended, otherShared.ended, multiplexed.ended, sameProxied.ended, otherProxied.ended]);
  // A shared stream: the relay's hint at the open, the backend's only when it differs, and at the
  // token's expiry the relay's again only when the backend had said otherwise.
  expect(sameSharedText).toBe('retry: 2000\n\ndata: a\nid: 1\n\n');
  expect(otherSharedText).toBe('retry: 2000\n\nretry: 3000\n\ndata: a\nid: 1\n\nretry: 2000\n\n');
  // A multiplexed stream carries no topic's hint: the relay's at the open, and nothing more at the end.
  expect(multiplexedText.match(/^retry: .*$/gm)).toEqual(['retry: 2000']);
  expect(multiplexedText).toMatch(/^retry: 2000\n\nid: [^\n]+\nevent: ready\n[^]*"data":"a"\}\n\n$/);
  // A proxied stream is the backend's bytes: the relay adds its hint at the end only when they did not say it.
  expect(sameProxiedText).toBe('retry: 2000\n\ndata: a\nid: 1\n\n');
  expect(otherProxiedText).toBe('retry: 3000\n\ndata: a\nid: 1\n\nretry: 2000\n\n');
  expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000 - 5);
}, 15_000);
