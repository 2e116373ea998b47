import type { Browser, Page } from 'playwright-core';
import { type RunningNginx, startNginx } from '../support/nginx';
import { authHeader } from '../support/relay-server';
import { DemoStack, QUICK_CLIENT, clientSeen, launchChromium, openClientTab, openDemo, screenshot } from './harness';

// A real browser on a 2-core machine shared with other work: generous, the flows themselves take a few seconds.
jest.setTimeout(60_000);

let browser: Browser;
let stack: DemoStack | undefined;
let nginx: RunningNginx | undefined;
let page: Page | undefined;

const STEPS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100];

beforeAll(async () => {
  browser = await launchChromium();
}, 30_000);

afterEach(async () => {
  await page?.context().close();
  await nginx?.close();
  await stack?.close();
  page = undefined;
  nginx = undefined;
  stack = undefined;
});

afterAll(async () => {
  await browser?.close();
});

interface Seen {
  statuses: { status: string; at: number; httpStatus?: number; delayMs?: number }[];
  progress: Record<string, { via: string; status: string; progress?: number }[]>;
  ended: string[];
}

function seen(p: Page): Promise<Seen> {
  return p.evaluate('window.demo') as Promise<Seen>;
}

/** Counts the page's requests to the multiplexed stream. */
function countStreamOpens(p: Page): { count: number } {
  const opened = { count: 0 };
  p.on('request', (request) => {
    if (request.method() === 'GET' && new URL(request.url()).pathname === '/api/events') opened.count += 1;
  });
  return opened;
}

/** Waits for the connection badge to show `state`. */
async function waitForState(p: Page, state: string, timeout = 30_000): Promise<void> {
  await p.locator(`#status[data-state="${state}"]`).waitFor({ timeout });
}

async function startDownloads(p: Page, count: number): Promise<void> {
  await p.fill('#download-count', String(count));
  await p.click('#start-downloads');
  await p.locator('#download-list li').nth(count - 1).waitFor();
}

async function allDone(p: Page, count: number): Promise<void> {
  await p.locator('#download-list li a.done').nth(count - 1).waitFor({ timeout: 40_000 });
}

test('several downloads show live progress bars over one connection', async () => {
  stack = await new DemoStack({}, { tickMs: 80 }).start();
  page = await openDemo(browser, stack.url);
  const opens = countStreamOpens(page);
  await startDownloads(page, 3);
  await waitForState(page, 'open');
  // Read from what the page got, not from a bar showing exactly 50: under load a bar can pass 50 between two looks.
  await page.waitForFunction(() => Object.values((globalThis as unknown as { demo: Seen }).demo.progress).some((events) => events.some((e) => (e.progress ?? 0) >= 50)));
  await screenshot(page, 'downloads-in-progress');
  await allDone(page, 3);
  const { progress, ended } = await seen(page);
  expect(Object.keys(progress)).toHaveLength(3);
  for (const events of Object.values(progress)) {
    expect(events.every((e) => e.via === 'stream')).toBe(true);
    expect(events.filter((e) => e.status === 'IN_PROGRESS').map((e) => e.progress)).toEqual(STEPS);
    expect(events.at(-1)?.status).toBe('COMPLETED');
  }
  expect(ended).toHaveLength(3);
  expect(opens.count).toBe(1);
  await screenshot(page, 'downloads-complete');
});

test('seven downloads at once over HTTP/1.1 leave the REST calls answering', async () => {
  stack = await new DemoStack({}, { tickMs: 200 }).start();
  page = await openDemo(browser, stack.url);
  const opens = countStreamOpens(page);
  await startDownloads(page, 7);
  // All seven under way, none finished.
  await page.waitForFunction(() => {
    const values = Object.values((globalThis as unknown as { demo: Seen }).demo.progress).map((events) => events.at(-1)?.progress ?? 0);
    return values.length === 7 && values.every((value) => value >= 10 && value < 100);
  });
  // Seven streams of their own would have used all six connections a browser allows per origin.
  const took = (await page.evaluate(`(async () => {
    const started = performance.now();
    const answers = await Promise.all([1, 2, 3].map(() => fetch('/api/chat/history', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"chatbotId":"demo"}' }).then((r) => r.status)));
    return { ms: performance.now() - started, answers };
  })()`)) as { ms: number; answers: number[] };
  expect(took.answers).toEqual([200, 200, 200]);
  expect(took.ms).toBeLessThan(1500);
  await allDone(page, 7);
  expect(opens.count).toBe(1);
  await screenshot(page, 'downloads-seven');
});

test('a relay restart mid-download: the bars go on with no gap and no repeated step', async () => {
  stack = await new DemoStack({}, { tickMs: 250 }).start();
  page = await openDemo(browser, stack.url);
  await startDownloads(page, 2);
  await page.waitForFunction(() => {
    const values = Object.values((globalThis as unknown as { demo: Seen }).demo.progress).map((events) => events.at(-1)?.progress ?? 0);
    return values.length === 2 && values.every((value) => value >= 30 && value < 100);
  });
  await stack.restartRelay(500);
  await allDone(page, 2);
  const { progress, statuses } = await seen(page);
  for (const events of Object.values(progress)) {
    expect(events.filter((e) => e.status === 'IN_PROGRESS').map((e) => e.progress)).toEqual(STEPS);
    expect(events.filter((e) => e.status === 'COMPLETED')).toHaveLength(1);
  }
  const dropped = statuses.findIndex((s) => s.status === 'reconnecting');
  const reopened = statuses.findIndex((s, i) => i > dropped && s.status === 'open');
  expect(dropped).toBeGreaterThan(0);
  expect(reopened).toBeGreaterThan(dropped);
  expect(statuses.slice(dropped, reopened).some((s) => s.status === 'polling')).toBe(false);
  console.log(`relay restart: back open ${Math.round(statuses[reopened]!.at - statuses[dropped]!.at)} ms after the drop (relay down 500 ms)`);
});

test('over the per-user cap the client waits Retry-After, then connects', async () => {
  // Slow downloads: the other tab's stream must outlive the page's first attempt.
  stack = await new DemoStack({ maxConnectionsPerUser: 1 }, { tickMs: 1000 }).start();
  // Another tab of the same user holds the one slot.
  const code = ((await (await fetch(`${stack.url}/api/downloads`, { method: 'POST', headers: authHeader('alice') })).json()) as { code: string }).code;
  const holder = new AbortController();
  const held = await fetch(`${stack.url}/api/downloads/${code}/events`, { headers: authHeader('alice'), signal: holder.signal });
  expect(held.status).toBe(200);
  page = await openDemo(browser, stack.url);
  const opens = countStreamOpens(page);
  await startDownloads(page, 1);
  await page.waitForFunction(() => (globalThis as unknown as { demo: Seen }).demo.statuses.some((s) => s.httpStatus === 429));
  holder.abort();
  await waitForState(page, 'open', 20_000);
  const { statuses } = await seen(page);
  const refused = statuses.find((s) => s.httpStatus === 429)!;
  const open = statuses.find((s) => s.status === 'open')!;
  expect(refused.delayMs).toBe(10_000);
  expect(open.at - refused.at).toBeGreaterThanOrEqual(9_900);
  // One refused attempt, one that worked: no retries inside the Retry-After.
  expect(opens.count).toBe(2);
  console.log(`429: reopened ${Math.round(open.at - refused.at)} ms after the refusal (Retry-After: 10)`);
  await allDone(page, 1);
});

test('with streaming blocked by a proxy, the page polls and still completes', async () => {
  stack = await new DemoStack({}, { tickMs: 100 }).start();
  const relayPort = new URL(stack.url).port;
  nginx = await startNginx(
    (port) => `
  upstream relay { server 127.0.0.1:${relayPort}; }
  server {
    listen 127.0.0.1:${port};
    location = /api/events { return 502; }
    location ~ ^/api/(downloads/[^/]+/events|documents/upload-sse/reconnect/) { return 502; }
    location / { proxy_pass http://relay; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }`,
  );
  page = await openDemo(browser, nginx.url);
  await startDownloads(page, 2);
  await waitForState(page, 'polling');
  await screenshot(page, 'downloads-polling');
  await allDone(page, 2);
  const { progress, ended, statuses } = await seen(page);
  for (const events of Object.values(progress)) {
    expect(events.every((e) => e.via === 'poll')).toBe(true);
    expect(events.at(-1)?.status).toBe('COMPLETED');
  }
  expect(ended).toHaveLength(2);
  expect(statuses.some((s) => s.status === 'open')).toBe(false);
});

test('downloads started while the stream is open join it: their bars move, on the same connection', async () => {
  stack = await new DemoStack({}, { tickMs: 200 }).start();
  page = await openDemo(browser, stack.url);
  const opens = countStreamOpens(page);
  await startDownloads(page, 1);
  await waitForState(page, 'open');
  await page.waitForFunction(() => Object.values((globalThis as unknown as { demo: Seen }).demo.progress).some((events) => events.length >= 2));
  await page.fill('#download-count', '2');
  await page.click('#start-downloads');
  await page.locator('#download-list li').nth(2).waitFor();
  await allDone(page, 3);
  const { progress } = await seen(page);
  for (const events of Object.values(progress)) expect(events.filter((e) => e.status === 'IN_PROGRESS').map((e) => e.progress)).toEqual(STEPS);
  expect(opens.count).toBe(1);
});

test('a stream the relay refuses for good (a bad token) is closed, and the status gives the HTTP status and the relay\'s message', async () => {
  stack = await new DemoStack().start();
  // bypassCSP: the relay's CSP forbids eval, and waitForFunction evaluates a string predicate with it once it polls.
  page = await openClientTab(await browser.newContext({ bypassCSP: true }), stack.url, { ...QUICK_CLIENT, token: 'not-a-jwt' });
  await page.evaluate('window.watch(["download:abc"])');
  await page.waitForFunction('window.seen.statuses.some((s) => s.status === "closed")');
  const closed = (await clientSeen(page)).statuses.find((s) => s.status === 'closed');
  expect(closed).toMatchObject({ httpStatus: 401, reason: expect.stringMatching(/^HTTP 401: The token is not valid/) });
});
