import type { Browser, Page } from 'playwright-core';
import { authHeader } from '../support/relay-server';
import { until } from '../support/until';
import { DemoStack, launchChromium, openDemo, screenshot } from './harness';

// A real browser on a 2-core machine shared with other work: generous, the flows themselves take a few seconds.
jest.setTimeout(60_000);

let browser: Browser;
let stack: DemoStack;
let page: Page;

beforeAll(async () => {
  browser = await launchChromium();
  stack = await new DemoStack().start();
}, 30_000);

afterEach(async () => {
  await page?.context().close();
});

afterAll(async () => {
  await stack?.close();
  await browser?.close();
});

/** `count` text files of a few KiB each, so every stage has several chunks. */
function textFiles(count: number, bytes = 2400): { name: string; mimeType: string; buffer: Buffer }[] {
  return Array.from({ length: count }, (_, i) => ({ name: `report-${i + 1}.txt`, mimeType: 'text/plain', buffer: Buffer.from(`line ${i}\n`.repeat(bytes / 7)) }));
}

test('uploaded files show their OCR, LLM and embedding counts until each completes, their stage in words', async () => {
  page = await openDemo(browser, stack.url);
  // Every text a file's status line shows, as it changes.
  await page.evaluate(`(() => {
    window.stageTexts = [];
    const list = document.getElementById('upload-list');
    new MutationObserver(() => {
      for (const span of list.querySelectorAll('.line span:nth-child(2)')) if (!window.stageTexts.includes(span.textContent)) window.stageTexts.push(span.textContent);
    }).observe(list, { subtree: true, childList: true, characterData: true });
  })()`);
  await page.setInputFiles('#files', textFiles(3));
  await page.click('#start-upload');
  const rows = page.locator('#upload-list li');
  await expectCount(rows, 3);
  // Mid-way: some chunk counted while the file is still processing.
  await page.locator('#upload-list li .stages span', { hasText: /^[1-9]\d* \/ \d+$/ }).first().waitFor();
  for (let i = 0; i < 3; i++) await rows.nth(i).and(page.locator('[data-outcome="complete"]')).waitFor();
  const counts = await page.locator('#upload-list li .stages span:nth-child(3n)').allTextContents();
  // Every stage of every file counted every chunk: "n / n".
  expect(counts).toHaveLength(9);
  for (const count of counts) expect(count).toMatch(/^(\d+) \/ \1$/);
  // Stages read as words, never as the backend's event names (ocr_chunk_processed).
  const stageTexts = (await page.evaluate('window.stageTexts')) as string[];
  expect(stageTexts).toEqual(expect.arrayContaining(['OCR', 'LLM', 'Embedding', 'done']));
  expect(stageTexts.filter((text) => /_/.test(text))).toEqual([]);
  await screenshot(page, 'uploads-complete');
});

test('cancelling one file stops its backend session; cancel-all stops the rest', async () => {
  await stack.close();
  stack = await new DemoStack({}, { chunkMs: 60 }).start();
  page = await openDemo(browser, stack.url);
  await page.setInputFiles('#files', textFiles(3, 6000));
  await page.click('#start-upload');
  const rows = page.locator('#upload-list li');
  await expectCount(rows, 3);
  // Each file is processing (its session is known) before it is cancelled.
  for (let i = 0; i < 3; i++) await rows.nth(i).and(page.locator('[data-stage^="ocr"]')).waitFor();
  await rows.nth(0).locator('button', { hasText: 'Cancel' }).click();
  await rows.nth(0).and(page.locator('[data-outcome="cancelled"]')).waitFor();
  await page.waitForTimeout(200);
  expect(await rows.nth(1).getAttribute('data-outcome')).toBe('');
  await page.click('#cancel-all');
  for (let i = 1; i < 3; i++) await rows.nth(i).and(page.locator('[data-outcome="cancelled"]')).waitFor();
  await screenshot(page, 'uploads-cancelled');
  // The backend's own sessions say cancelled: the cancel reached it, not only the page.
  const ids = await rows.evaluateAll((items) => items.map((item) => item.getAttribute('data-session')));
  for (const id of ids) {
    const response = await fetch(`${stack.url}/api/sessions/${id}`, { headers: authHeader('alice') });
    expect(await response.json()).toMatchObject({ stage: 'cancelled', cancelled: true, done: true });
  }
});

test('a chat answer types itself token by token, and history pages back 20 at a time', async () => {
  page = await openDemo(browser, stack.url);
  await page.fill('#question', 'How does the relay resume a stream?');
  await page.click('#send');
  const answer = page.locator('#messages li.assistant').last();
  // Seen part-way: some text, not yet done.
  // Seen part-way: some text, not yet done.
  await answer.and(page.locator(':not([data-done])')).filter({ hasText: /\S/ }).waitFor();
  await answer.and(page.locator('[data-done="true"]')).waitFor();
  expect((await answer.textContent())!.length).toBeGreaterThan(20);
  await screenshot(page, 'chat');

  // 16 more exchanges (34 messages in all), then a fresh page: the newest 20, then the 14 older.
  for (let i = 0; i < 16; i++) {
    await fetch(`${stack.url}/api/chat/stream`, {
      method: 'POST',
      headers: { ...authHeader('alice'), 'content-type': 'application/json' },
      body: JSON.stringify({ chatbotId: 'demo', message: `question ${i}` }),
    }).then((response) => response.text());
  }
  await page.reload();
  await page.locator('#messages li').nth(19).waitFor();
  expect(await page.locator('#messages li').count()).toBe(20);
  expect(await page.locator('#older').isDisabled()).toBe(false);
  await page.click('#older');
  await page.locator('#messages li').nth(33).waitFor();
  expect(await page.locator('#messages li').count()).toBe(34);
  expect(await page.locator('#older').isDisabled()).toBe(true);
  expect(await page.locator('#messages li').first().textContent()).toBe('How does the relay resume a stream?');
});

test('a chat answer keeps typing across a network drop, and the badge shows it resumed', async () => {
  // Tokens slow enough that the answer is still typing when the network drops.
  await stack.close();
  stack = await new DemoStack({}, { tokenMs: 40 }).start();
  page = await openDemo(browser, stack.url);
  await page.fill('#question', 'Does the answer survive a network drop?');
  await page.click('#send');
  const answer = page.locator('#messages li.assistant').last();
  await answer.and(page.locator(':not([data-done])')).filter({ hasText: /\S{3}/ }).waitFor();
  const before = (await answer.textContent())!;
  // Chromium's offline mode fails new requests but leaves a streaming response open: the relay side cuts it.
  await page.context().setOffline(true);
  expect(stack.cutAnswers('/api/chat/stream')).toBe(1);
  await page.locator('#status[data-state="reconnecting"]', { hasText: 'chat answer' }).waitFor();
  await screenshot(page, 'chat-reconnecting');
  await page.waitForTimeout(300);
  await page.context().setOffline(false);
  await page.locator('#status[data-state="open"]', { hasText: 'chat answer' }).waitFor({ timeout: 10_000 });
  await answer.and(page.locator('[data-done="true"]')).waitFor({ timeout: 20_000 });
  const text = (await answer.textContent())!;
  expect(text.startsWith(before)).toBe(true);
  // What the backend generated, whole, for a client it never saw leave: no token lost or repeated.
  const history = await fetch(`${stack.url}/api/chat/history`, {
    method: 'POST',
    headers: { ...authHeader('alice'), 'content-type': 'application/json' },
    body: JSON.stringify({ chatbotId: 'demo', page: 1, pageSize: 1 }),
  });
  expect(((await history.json()) as { messages: unknown[] }).messages.at(-1)).toMatchObject({ role: 'assistant', status: 'complete', text });
  const statuses = (await page.evaluate('window.demo.chatStatuses.map((s) => s.status)')) as string[];
  expect(statuses[0]).toBe('reconnecting');
  expect(statuses.at(-1)).toBe('open');
  // The answer done, the badge is the multiplexed stream's again (idle: no download was started).
  await page.locator('#status[data-state="idle"]').waitFor();
  await screenshot(page, 'chat-resumed');
});

test('the path check panel shows ticks reaching the page one by one', async () => {
  page = await openDemo(browser, stack.url);
  await page.click('#check-quick');
  const report = page.locator('#path-report');
  await report.and(page.locator('[data-state="good"]')).waitFor({ timeout: 20_000 });
  const lines = await report.locator('li').allTextContents();
  expect(lines[0]).toMatch(/^delivery: one by one \(20\/20 ticks/);
  expect(lines.some((line) => line.startsWith('held (beyond the fastest tick): p50 '))).toBe(true);
  await screenshot(page, 'path-check');
});

test('before anything is open the badge says idle; the header names who is signed in, after a reload too; log numbers fit', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  await page.goto(stack.url);
  expect(await page.locator('#status').textContent()).toBe('idle');
  expect(await page.locator('#status').getAttribute('data-state')).toBe('idle');
  expect(await page.locator('#whoami').textContent()).toBe('not signed in');
  await screenshot(page, 'header-before-login');

  await page.fill('#user', 'erin.example');
  await page.click('#login button');
  await page.locator('#whoami', { hasText: 'signed in as erin.example' }).waitFor();
  await page.reload();
  // The cookie is HttpOnly: the page learns whom it names from the relay, not from what it typed.
  await page.locator('#whoami', { hasText: 'signed in as erin.example' }).waitFor();
  expect(await page.locator('#user').inputValue()).toBe('erin.example');
  expect(await page.locator('#status').textContent()).toBe('idle');

  // Downloads open the stream and, once all are done, it is idle again, not an error.
  await page.fill('#download-count', '2');
  await page.click('#start-downloads');
  // Polled from here: the demo's CSP forbids the eval that waitForFunction's polling of a string predicate needs.
  const seen = page;
  await until(async () => (await seen.evaluate('window.demo.ended.length')) === 2, 20_000, 'both downloads finished');
  expect(await page.evaluate('window.demo.statuses.map((s) => s.status)')).toContain('open');
  await page.locator('#status[data-state="idle"]').waitFor();
  expect(await page.locator('#status').textContent()).toBe('idle');
  // Lines numbered past 10 (each login logs one): the widest number still fits the list's margin.
  for (let i = 0; i < 12; i++) await page.click('#login button');
  await page.locator('#log li').nth(14).waitFor();
  const fit = (await page.evaluate(`(() => {
    const log = document.getElementById('log');
    const widest = Math.max(...[...log.children].map((item) => item.value));
    const probe = document.createElement('span');
    probe.style.font = getComputedStyle(log).font;
    probe.style.whiteSpace = 'pre';
    // What the list's marker shows: the number, a period and a space.
    probe.textContent = widest + '. ';
    document.body.append(probe);
    const width = probe.getBoundingClientRect().width;
    probe.remove();
    return { widest, width, margin: parseFloat(getComputedStyle(log).paddingLeft) };
  })()`)) as { widest: number; width: number; margin: number };
  expect(fit.widest).toBeGreaterThanOrEqual(15);
  expect(fit.width).toBeLessThanOrEqual(fit.margin);
  await screenshot(page, 'header-and-log');
});

async function expectCount(locator: ReturnType<Page['locator']>, count: number): Promise<void> {
  await locator.nth(count - 1).waitFor();
  expect(await locator.count()).toBe(count);
}
