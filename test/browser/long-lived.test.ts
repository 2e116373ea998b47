import type { Browser, BrowserContext, Page } from 'playwright-core';
import { authHeader } from '../support/relay-server';
import { FreezingProxy } from './freezing-proxy';
import { type ClientSeen, DemoStack, QUICK_CLIENT, clientSeen, launchChromium, loggedInContext, openClientTab } from './harness';

jest.setTimeout(60_000);

let browser: Browser;
let stack: DemoStack | undefined;
let proxy: FreezingProxy | undefined;
let context: BrowserContext | undefined;

const STEPS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100];

beforeAll(async () => {
  browser = await launchChromium();
}, 30_000);

afterEach(async () => {
  await context?.close();
  await proxy?.close();
  await stack?.close();
  context = undefined;
  proxy = undefined;
  stack = undefined;
});

afterAll(async () => {
  await browser?.close();
});

async function startDownloads(count: number): Promise<string[]> {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const response = await fetch(`${stack!.url}/api/downloads`, { method: 'POST', headers: authHeader('alice') });
      return `download:${((await response.json()) as { code: string }).code}`;
    }),
  );
}

/** A tab of `url` watching `count` new downloads, once each of them has reached `progress`. */
async function watching(url: string, count: number, progress: number, options: object = QUICK_CLIENT): Promise<{ tab: Page; topics: string[] }> {
  context = await loggedInContext(browser, url);
  const tab = await openClientTab(context, url, options);
  // Started once the tab is ready, so that they are under way, not done, when the test acts.
  const topics = await startDownloads(count);
  await tab.evaluate(`window.watch(${JSON.stringify(topics)})`);
  await tab.waitForFunction(`Object.values(window.seen.events).length === ${topics.length} && Object.values(window.seen.events).every((e) => e.some((state) => state.progress >= ${progress}))`);
  return { tab, topics };
}

function expectEveryEventOnce(seen: ClientSeen, topics: readonly string[]): void {
  for (const topic of topics) {
    const events = seen.events[topic] ?? [];
    expect(events.filter((e) => e.status === 'IN_PROGRESS').map((e) => e.progress)).toEqual(STEPS);
    expect(events.filter((e) => e.status === 'COMPLETED')).toHaveLength(1);
  }
}

test('a stream that goes silent without closing is called dead after twice the heartbeat and reopened, with no event lost', async () => {
  stack = await new DemoStack({ heartbeatMs: 300 }, { tickMs: 400 }).start();
  proxy = await new FreezingProxy(stack.url).start();
  const { tab, topics } = await watching(proxy.url, 2, 20);

  // The socket stays open both ways; nothing more comes through it, not even a heartbeat.
  const frozenAt = Date.now();
  expect(proxy.freeze('GET /api/events')).toBe(1);
  await tab.waitForFunction('window.seen.ended.length === 2', undefined, { timeout: 30_000 });

  const seen = await clientSeen(tab);
  expectEveryEventOnce(seen, topics);
  const dead = seen.statuses.find((s) => s.at >= frozenAt && s.status === 'reconnecting' && /no byte for 600 ms/.test(s.reason ?? ''));
  expect(dead).toBeDefined();
  const reopened = seen.statuses.find((s) => s.at >= dead!.at && s.status === 'open');
  expect(reopened).toBeDefined();
  // 600 ms of silence at most, plus up to half a heartbeat that passed before the freeze.
  expect(dead!.at - frozenAt).toBeGreaterThanOrEqual(300);
  expect(dead!.at - frozenAt).toBeLessThan(1500);
  expect(stack.relay.stats.streamsOpened).toBe(2);
  console.log(`dead stream: found ${dead!.at - frozenAt} ms after the proxy froze (heartbeat 300 ms), open again ${reopened!.at - frozenAt} ms after it`);
});

test('when the browser comes back online, the stream is reopened at once, not after its backoff', async () => {
  stack = await new DemoStack({}, { tickMs: 400 }).start();
  const slow = { ...QUICK_CLIENT, reconnect: { ...QUICK_CLIENT.reconnect, initialDelayMs: 8000, maxDelayMs: 8000 } };
  const { tab, topics } = await watching(stack.url, 1, 10, slow);
  await context!.setOffline(true);
  await tab.waitForTimeout(200);
  const onlineAt = Date.now();
  await context!.setOffline(false);
  await tab.waitForFunction(`window.seen.statuses.filter((s) => s.status === 'open').length >= 2`, undefined, { timeout: 5000 });
  const seen = await clientSeen(tab);
  const reopened = seen.statuses.filter((s) => s.status === 'open')[1]!;
  expect(reopened.at - onlineAt).toBeLessThan(2000);
  expect(stack.relay.stats.streamsOpened).toBe(2);
  await tab.waitForFunction('window.seen.ended.length === 1', undefined, { timeout: 30_000 });
  expectEveryEventOnce(await clientSeen(tab), topics);
  console.log(`online: stream open again ${reopened.at - onlineAt} ms after the browser came back online`);
});

test('a page shown again from the back/forward cache reopens its stream at once, with no event lost', async () => {
  stack = await new DemoStack({}, { tickMs: 400 }).start();
  const { tab, topics } = await watching(stack.url, 1, 10);
  const shownAt = Date.now();
  await tab.evaluate(`dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true }))`);
  await tab.waitForFunction(`window.seen.statuses.filter((s) => s.status === 'open').length >= 2`, undefined, { timeout: 5000 });
  expect(stack.relay.stats.streamsOpened).toBe(2);
  const reopened = (await clientSeen(tab)).statuses.filter((s) => s.status === 'open')[1]!;
  expect(reopened.at - shownAt).toBeLessThan(2000);
  await tab.waitForFunction('window.seen.ended.length === 1', undefined, { timeout: 30_000 });
  expectEveryEventOnce(await clientSeen(tab), topics);
});
