import { existsSync } from 'node:fs';
import { type Browser, type Page, chromium } from 'playwright-core';
import { freePort } from '../support/free-port';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningNginx, startNginx } from '../support/nginx';
import { RelayProcess } from '../support/relay-process';
import { tokenFor } from '../support/relay-server';
import { until } from '../support/until';

/** Debian's Chromium (`.ci/run` installs it); `CHROMIUM_BIN` to use another. */
const CHROMIUM_BIN = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const PATH = '/downloads/restart/events';
const RESTARTS = 3;

let backend: FixtureBackend;
let nginx: RunningNginx;
let browser: Browser;
const relays: RelayProcess[] = [];

afterAll(async () => {
  for (const relay of relays) if (relay.child.exitCode === null) relay.child.kill('SIGKILL');
  await browser?.close();
  await nginx?.close();
  await backend?.close();
});

/** What the page's EventSource saw. */
interface PageLog {
  got: string[];
  /** When each event arrived (the page's clock, which is this machine's). */
  at: number[];
  opens: number[];
  errors: { at: number; readyState: number }[];
}

const pageLog = (page: Page): Promise<PageLog> => page.evaluate(() => (globalThis as unknown as { log: PageLog }).log);

test(`a native EventSource in Chromium behind nginx gets every event, in order, once, across ${RESTARTS} restarts of the relay`, async () => {
  if (!existsSync(CHROMIUM_BIN)) throw new Error(`Chromium not found at ${CHROMIUM_BIN}: apt-get install chromium (.ci/run does) or set CHROMIUM_BIN`);
  backend = await new FixtureBackend().start();
  const relayPort = await freePort();
  relays.push(await RelayProcess.start({ PORT: String(relayPort), BACKEND_URL: backend.url }));
  // One instance, set up as deploy/nginx.conf and docs/operations.md say: nginx never marks it down, and
  // while nothing listens (a slow restart) answers event streams itself with a `retry:`.
  nginx = await startNginx(
    (port) => `
  upstream relay { server 127.0.0.1:${relayPort} max_fails=0; keepalive 8; }
  server {
    listen 127.0.0.1:${port};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    location = / { default_type text/html; return 200 '<!doctype html><title>restart</title>'; }
    location ~ ^/api/downloads/[^/]+/events$ { proxy_pass http://relay; proxy_read_timeout 60s; error_page 502 504 = @relay_restarting; }
    location /api/ { proxy_pass http://relay; }
    location @relay_restarting { default_type text/event-stream; add_header Cache-Control no-store always; return 200 "retry: 3000\\n\\n"; }
  }`,
  );
  browser = await chromium.launch({ executablePath: CHROMIUM_BIN, args: ['--no-sandbox'] });
  const context = await browser.newContext();
  await context.addCookies([{ name: 'access_token', value: tokenFor('alice'), url: nginx.url }]);
  const page = await context.newPage();
  await page.goto(nginx.url);
  await page.evaluate((path) => {
    const log: PageLog = { got: [], at: [], opens: [], errors: [] };
    (globalThis as unknown as { log: PageLog }).log = log;
    const es = new EventSource(`/api${path}`);
    es.onmessage = (event) => {
      log.got.push(event.data as string);
      log.at.push(Date.now());
    };
    es.onopen = () => log.opens.push(Date.now());
    es.onerror = () => log.errors.push({ at: Date.now(), readyState: es.readyState });
  }, PATH);

  const expected: string[] = [];
  const emit = (): void => {
    const data = `e${expected.length + 1}`;
    expected.push(data);
    backend.emit(PATH, `data: ${data}\n`);
  };
  const allArrived = async (what: string, ms: number): Promise<void> => {
    await until(async () => (await pageLog(page)).got.length >= expected.length, ms, what).catch(async (err: unknown) => {
      console.log(JSON.stringify(await pageLog(page)), relays.at(-1)?.log.map((line) => JSON.stringify(line)).join('\n'));
      throw err;
    });
  };

  for (let i = 0; i < 3; i++) emit();
  await allArrived('the first events', 10_000);
  const figures: { stopMs: number; startMs: number; resumeMs: number }[] = [];
  for (let round = 1; round <= RESTARTS; round++) {
    const stopping = Date.now();
    const stopped = relays.at(-1)!.stop();
    emit(); // while it drains
    expect(await stopped).toBe(0);
    const exited = Date.now();
    const firstAfterExit = expected.length;
    emit(); // while nothing listens
    emit();
    relays.push(await RelayProcess.start({ PORT: String(relayPort), BACKEND_URL: backend.url }));
    const listening = Date.now();
    emit();
    await allArrived(`every event after restart ${round}`, 20_000);
    const log = await pageLog(page);
    // Resumed: the first event emitted after the old process exited reached the page (the new process's replay).
    figures.push({ stopMs: exited - stopping, startMs: listening - exited, resumeMs: (log.at[firstAfterExit] ?? NaN) - stopping });
  }
  for (let i = 0; i < 3; i++) emit();
  await allArrived('the last events', 10_000);

  const log = await pageLog(page);
  // The figures docs/operations.md quotes: stop (SIGTERM to exit), start (exit to listening), resume (SIGTERM to the arrival of the first event emitted after the exit).
  console.log(`restarts: ${JSON.stringify(figures)}; events ${log.got.length}/${expected.length}, lost ${expected.filter((e) => !log.got.includes(e)).length}`);
  expect(log.got).toEqual(expected);
  // It reconnected each time, and never gave up (readyState 2: CLOSED).
  expect(log.opens.length).toBeGreaterThanOrEqual(RESTARTS + 1);
  expect(log.errors.filter((error) => error.readyState === 2)).toEqual([]);
  // The relay exits as soon as its streams are drained, not after SHUTDOWN_TIMEOUT_MS (30 s): on
  // a loaded machine a stop took up to 5.4 s, so the bound is the timeout's half.
  for (const figure of figures) expect(figure.stopMs).toBeLessThan(15_000);
}, 120_000);
