import { once } from 'node:events';
import { copyFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { EventSource } from 'eventsource';
import type { Browser, Page } from 'playwright-core';
import { createAdminServer } from '../../routes/admin';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, eventSourceAs, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';
import { launchChromium, screenshot } from './harness';

/** UPDATE_DOCS_SCREENSHOTS=1: a minute of traffic, and the screenshot copied to docs/ops-page.png. */
const UPDATE_DOCS = process.env.UPDATE_DOCS_SCREENSHOTS === '1';

// A real browser on a 2-core machine shared with other work (and a minute more for the docs' screenshot).
jest.setTimeout(UPDATE_DOCS ? 120_000 : 60_000);

const KEY = 'ops-page-admin-key-0123456789abcdefghij';

let browser: Browser;
let backend: FixtureBackend;
let relay: RunningRelay;
let admin: Server;
let adminUrl = '';
let page: Page | undefined;
const sources: EventSource[] = [];
const problems: string[] = [];

beforeAll(async () => {
  browser = await launchChromium();
  backend = await new FixtureBackend().start();
  relay = await startRelay(backend.url, { maxConnectionsPerUser: 3, retryHintMs: 60_000 });
  admin = createAdminServer(relay.relay, { apiKey: KEY });
  admin.listen(0, '127.0.0.1');
  await once(admin, 'listening');
  adminUrl = `http://127.0.0.1:${(admin.address() as AddressInfo).port}`;
}, 30_000);

afterAll(async () => {
  for (const es of sources) es.close();
  await page?.context().close();
  await browser?.close();
  admin?.closeAllConnections();
  admin?.close();
  await relay?.close();
  await backend?.close();
});

function subscribe(code: string, user: string): EventSource {
  const es = eventSourceAs(`${relay.url}/api/downloads/${code}/events`, user);
  sources.push(es);
  return es;
}

/** Opens the page as a browser does: asked for the key by a Basic challenge, which it answers. */
async function openPage(): Promise<Page> {
  const context = await browser.newContext({ httpCredentials: { username: 'ops', password: KEY }, viewport: { width: 1280, height: 900 } });
  const opened = await context.newPage();
  opened.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  opened.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`);
  });
  opened.on('requestfailed', (request) => {
    // The page's own feed is cut when the context closes at the end; anything else failing is a problem.
    if (!request.url().endsWith('/admin/events')) problems.push(`request failed: ${request.url()}`);
  });
  const response = await opened.goto(`${adminUrl}/admin/`);
  expect(response?.status()).toBe(200);
  expect(response?.headers()['content-security-policy']).toMatch(/^default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+'; connect-src 'self'; img-src 'self'/);
  await opened.locator('#status[data-state="live"]').waitFor();
  return opened;
}

async function eventsChart(at: Page): Promise<{ points: string; now: string; max: string }> {
  const figure = at.locator('figure[data-series="events"]');
  return {
    points: (await figure.locator('polyline').getAttribute('points')) ?? '',
    now: (await figure.locator('.now').textContent()) ?? '',
    max: (await figure.locator('.max').textContent()) ?? '',
  };
}

test('a browser without the key, or with a wrong one, is asked for it and gets no page', async () => {
  for (const httpCredentials of [undefined, { username: 'ops', password: `${KEY}x` }]) {
    const context = await browser.newContext(httpCredentials && { httpCredentials });
    const tab = await context.newPage();
    // Headless Chromium has no login box to show: without credentials the challenge ends the
    // navigation; with wrong ones it tries them and shows the 401.
    const navigation = await tab.goto(`${adminUrl}/admin/`).catch((err: unknown) => err as Error);
    if (navigation instanceof Error) expect(navigation.message).toMatch(/ERR_INVALID_AUTH_CREDENTIALS/);
    else expect(navigation?.status()).toBe(401);
    expect(await tab.locator('#status').count()).toBe(0);
    const answer = await context.request.get(`${adminUrl}/admin/`);
    expect(answer.status()).toBe(401);
    expect(answer.headers()['www-authenticate']).toMatch(/^Basic /);
    expect(await answer.text()).not.toContain('<html');
    await context.close();
  }
});

test('the ops page loads clean, shows the open topics, its chart moves as events flow, and a user ended from the API shows in the cuts', async () => {
  page = await openPage();
  expect(await page.locator('#topics tbody').textContent()).toBe('no topic open');

  // Topics with 4, 2 and 1 subscribers.
  for (const user of ['alice', 'bob', 'carol', 'dave']) subscribe('quarterly-report', user);
  for (const user of ['alice', 'erin']) subscribe('invoices-2024', user);
  subscribe('audit-log', 'frank');
  const rows = page.locator('#topics tbody tr');
  const subscribers = async (): Promise<string> => (await rows.locator('td:nth-child(2)').allTextContents()).join(' ');
  await until(async () => (await subscribers()) === '4 2 1', 10_000, 'the three topics, most subscribers first');
  expect(await rows.locator('td.name').allTextContents()).toEqual(['download:quarterly-report', 'download:invoices-2024', 'download:audit-log']);
  expect(await rows.first().locator('td').nth(2).textContent()).toBe('open');
  expect(await page.locator('#streams').textContent()).toBe('7');
  expect(await page.locator('#users').textContent()).toBe('6');

  // Events flow for a few seconds: the chart draws them.
  const before = await eventsChart(page);
  expect(before.max).toBe('max 0/s');
  let sent = 0;
  const flow = setInterval(() => {
    backend.emit('/downloads/quarterly-report/events', `data: {"progress":${sent}}\n`);
    // In bursts, as a real export's pages come.
    if (sent % 20 < 8) backend.emit('/downloads/invoices-2024/events', `data: {"page":${sent}}\n`);
    sent += 1;
  }, 100);
  try {
    await until(async () => (await eventsChart(page!)).max !== 'max 0/s', 10_000, 'the events chart to show events');
    const moving = await eventsChart(page);
    await until(async () => (await eventsChart(page!)).points !== moving.points, 5000, 'the chart to move on');
    // For the screenshot in docs/operations.md, a minute of traffic (only when asked for: tests stay short).
    if (UPDATE_DOCS) await new Promise((resolve) => setTimeout(resolve, 50_000));
  } finally {
    clearInterval(flow);
  }
  const after = await eventsChart(page);
  expect(after.points).not.toBe(before.points);
  // Some point of the line is off the baseline: the rate was drawn, not only the axis.
  const heights = after.points.split(' ').map((point) => Number(point.split(',')[1]));
  expect(Math.min(...heights)).toBeLessThan(50);
  expect(await rows.first().locator('td').nth(3).textContent()).not.toBe('–');

  // A user over the per-user limit, and a user ended from the API: both cuts are listed.
  for (let i = 0; i < 4; i += 1) subscribe(`mallory-${i}`, 'mallory');
  const ended = await fetch(`${adminUrl}/admin/users/alice/streams`, { method: 'DELETE', headers: { authorization: `Bearer ${KEY}` } });
  expect(await ended.json()).toEqual({ ended: 2 });
  const cuts = page.locator('#cuts tbody tr');
  await cuts.filter({ hasText: 'ended_by_app' }).filter({ hasText: 'alice' }).waitFor();
  await cuts.filter({ hasText: 'limit (perUser)' }).filter({ hasText: 'mallory' }).waitFor();
  expect(await cuts.filter({ hasText: 'ended_by_app' }).locator('td').nth(3).textContent()).toBe('×2');
  await until(async () => (await subscribers()) === '3 1 1 1 1 1', 10_000, "alice's streams gone from the topics, mallory's three there");

  // Nothing on the page is a token or the key; users are shown as the tokens name them.
  const text = (await page.locator('body').textContent()) ?? '';
  expect(text).not.toContain(tokenFor('alice'));
  expect(text).not.toMatch(/eyJ[\w-]{10,}/);
  expect(text).not.toContain(KEY);
  expect(problems).toEqual([]);

  if (UPDATE_DOCS) {
    // One upstream dropped and refused: the screenshot shows it reconnecting.
    backend.refuseWith = 503;
    backend.drop('/downloads/audit-log/events');
    await rows.filter({ hasText: 'download:audit-log' }).locator('td[data-upstream="reconnecting"]').waitFor();
  }
  await screenshot(page, 'ops-page');
  if (UPDATE_DOCS) copyFileSync(join(__dirname, '../../test-results/browser/ops-page.png'), join(__dirname, '../../docs/ops-page.png'));
});
