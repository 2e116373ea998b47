import type { Browser, BrowserContext, Page } from 'playwright-core';
import { type ClientSeen, DemoStack, QUICK_CLIENT, clientSeen, launchChromium, loggedInContext, openClientTab } from './harness';

// A real browser with up to five tabs on a 2-core machine shared with other work.
jest.setTimeout(90_000);

let browser: Browser;
let stack: DemoStack | undefined;
let context: BrowserContext | undefined;
let sampler: { max: number; stop(): void } | undefined;

const STEPS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100];

beforeAll(async () => {
  browser = await launchChromium();
}, 30_000);

afterEach(async () => {
  sampler?.stop();
  await context?.close();
  await stack?.close();
  context = undefined;
  stack = undefined;
});

afterAll(async () => {
  await browser?.close();
});

/** Samples the relay's open multiplexed streams until stopped; `max` is the most seen at once. */
function watchStreamCount(): { max: number; stop(): void } {
  const relay = stack!.relay;
  const sample = { max: 0, stop: () => clearInterval(timer) };
  const timer = setInterval(() => (sample.max = Math.max(sample.max, relay.multiplexer.streamCount)), 10);
  sampler = sample;
  return sample;
}

function progressOf(seen: ClientSeen, topic: string): number {
  return seen.events[topic]?.at(-1)?.progress ?? -1;
}

/** Every event of every topic exactly once, in order: each step, then one COMPLETED. */
function expectEveryEventOnce(seen: ClientSeen, topics: readonly string[]): void {
  for (const topic of topics) {
    const events = seen.events[topic] ?? [];
    expect(events.filter((e) => e.status === 'IN_PROGRESS').map((e) => e.progress)).toEqual(STEPS);
    expect(events.filter((e) => e.status === 'COMPLETED')).toHaveLength(1);
    expect(events.at(-1)?.status).toBe('COMPLETED');
  }
  expect([...seen.ended].sort()).toEqual([...topics].sort());
}

async function openTabs(count: number): Promise<Page[]> {
  context = await loggedInContext(browser, stack!.url);
  const tabs: Page[] = [];
  // One after the other: the first to ask for the lock holds the connection.
  for (let i = 0; i < count; i += 1) tabs.push(await openClientTab(context, stack!.url, QUICK_CLIENT));
  return tabs;
}

test.each([2, 5])('%i tabs watching downloads hold one connection at the relay, and closing the holding tab mid-download loses no event in the others', async (count) => {
  stack = await new DemoStack({}, { tickMs: 200 }).start();
  const tabs = await openTabs(count);
  const topics = await stack.startDownloads(3);
  const streams = watchStreamCount();
  await Promise.all(tabs.map((tab) => tab.evaluate(`window.watch(${JSON.stringify(topics)})`)));

  // Every tab sees the downloads move, over one connection that the first tab holds.
  await Promise.all(tabs.map((tab) => tab.waitForFunction(`Object.values(window.seen.events).length === 3 && Object.values(window.seen.events).every((e) => e.at(-1).progress >= 30)`)));
  expect(stack.relay.stats.streamsOpened).toBe(1);
  expect(streams.max).toBe(1);
  const [holder, ...others] = tabs;
  expect((await clientSeen(holder!)).statuses.some((s) => s.status === 'open' && s.tab === 'holder')).toBe(true);
  for (const tab of others) expect((await clientSeen(tab)).statuses.filter((s) => s.status === 'open').every((s) => s.tab === 'follower')).toBe(true);

  // The holding tab closes mid-download; another takes over from the last event the tabs saw.
  const before = await clientSeen(others[0]!);
  expect(topics.every((topic) => progressOf(before, topic) < 100)).toBe(true);
  const closedAt = Date.now();
  await holder!.close();
  await Promise.all(others.map((tab) => tab.waitForFunction('window.seen.ended.length === 3', undefined, { timeout: 40_000 })));
  streams.stop();

  const seen = await Promise.all(others.map(clientSeen));
  for (const tabSeen of seen) {
    expectEveryEventOnce(tabSeen, topics);
    expect(tabSeen.errors).toEqual([]);
  }
  // The old connection, then the new holder's: never two at once, never one per tab.
  expect(stack.relay.stats.streamsOpened).toBe(2);
  expect(streams.max).toBe(1);
  const newHolder = seen.findIndex((tabSeen) => tabSeen.statuses.some((s) => s.tab === 'holder'));
  expect(newHolder).toBeGreaterThanOrEqual(0);
  expect(seen.filter((tabSeen) => tabSeen.statuses.some((s) => s.tab === 'holder'))).toHaveLength(1);
  const reopened = seen[newHolder]!.statuses.find((s) => s.tab === 'holder' && s.status === 'open')!;
  console.log(`${count} tabs: ${stack.relay.stats.streamsOpened} streams opened at the relay in all, at most ${streams.max} open at once; the holder closed, tab ${newHolder + 2} took over and had the stream open ${reopened.at - closedAt} ms later`);
});

test('tabs that start watching downloads mid-stream each get them from their first event, in order and once, and the tabs already watching see no event twice', async () => {
  // Each topic change reaches the relay 600 ms after it was sent while the downloads step every 300 ms:
  // live events keep coming while a late tab's history is on its way, and must not overtake it.
  stack = await new DemoStack({}, { tickMs: 300 }).start();
  stack.topicChangeDelayMs = 600;
  const tabs = await openTabs(4);
  const [holder, follower, ...late] = tabs;
  const topics = await stack.startDownloads(2);
  const watch = `window.watch(${JSON.stringify(topics)})`;
  await holder!.evaluate(watch);
  await follower!.evaluate(watch);
  const reached = (progress: number): string => `Object.values(window.seen.events).length === 2 && Object.values(window.seen.events).every((e) => e.some((state) => state.progress >= ${progress}))`;
  // One tab joins early in the downloads, the other later, each while the stream already carries them.
  await follower!.waitForFunction(reached(20));
  await late[0]!.evaluate(watch);
  await follower!.waitForFunction(reached(40));
  await late[1]!.evaluate(watch);
  await Promise.all(tabs.map((tab) => tab.waitForFunction('window.seen.ended.length === 2', undefined, { timeout: 40_000 })));
  for (const tab of tabs) {
    const seen = await clientSeen(tab);
    expectEveryEventOnce(seen, topics);
    expect(seen.errors).toEqual([]);
  }
  expect(stack.relay.stats.streamsOpened).toBe(1);
});
