import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { request } from 'undici';
import { logOutput } from '../../config/log-output';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { developmentRoutes } from '../../routes/development';
import { TEST_SECRET, startRelay, tokenFor } from '../support/relay-server';

const ROOT = resolve(__dirname, '..', '..');
const SERVER = join(ROOT, 'dist', 'server.js');
const TOKEN_CLI = join(ROOT, 'dist', 'bin', 'dev-token.js');

interface Started {
  readonly url: string;
  readonly proc: ChildProcess;
  readonly stdout: () => string;
}

/** `node dist/server.js` (npm start without the build) in `cwd`, on free ports; resolves with its URL once it listens. */
async function startServer(cwd: string, env: Record<string, string> = {}): Promise<Started> {
  if (!existsSync(SERVER)) throw new Error('dist/server.js is missing: run npm run build (npm test does)');
  const proc = spawn(process.execPath, [SERVER], {
    cwd,
    env: { PATH: process.env.PATH ?? '', PORT: '0', BACKEND_PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  proc.stdout?.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  proc.stderr?.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  const deadline = Date.now() + 15_000;
  for (;;) {
    const line = stdout.split('\n').find((l) => l.includes('"relay listening"'));
    if (line) {
      const url = (JSON.parse(line) as { url: string }).url.replace('0.0.0.0', '127.0.0.1').replace('[::]', '127.0.0.1');
      return { url, proc, stdout: () => stdout };
    }
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start: ${stdout}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stop(started: Started | undefined): Promise<void> {
  if (!started || started.proc.exitCode !== null) return;
  started.proc.kill('SIGTERM');
  await once(started.proc, 'exit');
}

let dir: string;
let server: Started | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sse-relay-dev-'));
});

afterEach(async () => {
  await stop(server);
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

test('in production there is no development login and no demo', async () => {
  server = await startServer(dir, { NODE_ENV: 'production', BACKEND_URL: 'bundled', JWT_SECRET: 'a-production-secret-of-at-least-32-chars' });
  const login = await fetch(`${server.url}/dev/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  expect(login.status).toBe(404);
  expect(login.headers.get('set-cookie')).toBeNull();
  expect((await fetch(`${server.url}/`)).status).toBe(404);
  expect((await fetch(`${server.url}/app.js`)).status).toBe(404);
  // The client itself is served in production too.
  expect((await fetch(`${server.url}/client.js`)).status).toBe(200);
});

test('outside production but with a real JWT_SECRET, there is no development login: it would mint tokens for anyone', async () => {
  server = await startServer(dir, { JWT_SECRET: 'a-real-secret-of-at-least-32-characters!' });
  const login = await fetch(`${server.url}/dev/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":"admin"}' });
  expect(login.status).toBe(404);
  expect(login.headers.get('set-cookie')).toBeNull();
});

// The login hands out tokens to anyone who asks: it is served only where they reach nothing
// but the bundled demo backend, in an explicit development set-up (NODE_ENV development or unset).
test('with no JWT key, /dev/login exists only for NODE_ENV unset or development with the bundled backend', async () => {
  // A NODE_ENV the relay does not know refuses to start without a key (test/config/config.test.ts).
  const cases = ['', 'development', 'test'].flatMap((nodeEnv) =>
    ['bundled', 'http://127.0.0.1:9'].map((backendUrl) => ({ nodeEnv, backendUrl, login: (nodeEnv === '' || nodeEnv === 'development') && backendUrl === 'bundled' })),
  );
  const dirs = cases.map(() => mkdtempSync(join(tmpdir(), 'sse-relay-dev-')));
  const servers: (Started | undefined)[] = [];
  try {
    // Five at a time: ten relays starting at once can outlast a busy machine's start deadline.
    const check = async ({ nodeEnv, backendUrl }: (typeof cases)[number], i: number) => {
      const started = await startServer(dirs[i]!, { ...(nodeEnv === '' ? {} : { NODE_ENV: nodeEnv }), BACKEND_URL: backendUrl });
      servers[i] = started;
      const login = await fetch(`${started.url}/dev/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":"admin"}' });
      const demo = await fetch(`${started.url}/`);
      const warnings = started.stdout().split('\n').filter((line) => line.includes('"level":40') && line.includes('NODE_ENV'));
      return { nodeEnv, backendUrl, login: login.status === 200 && login.headers.get('set-cookie') !== null, demo: demo.status === 200, warned: warnings.length };
    };
    const seen = [];
    for (let first = 0; first < cases.length; first += 5) {
      seen.push(...(await Promise.all(cases.slice(first, first + 5).map((one, j) => check(one, first + j)))));
    }
    expect(seen).toEqual(
      cases.map(({ nodeEnv, backendUrl, login }) => ({ nodeEnv, backendUrl, login, demo: login, warned: 0 })),
    );
  } finally {
    await Promise.all(servers.map(stop));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test('a blank JWT_SECRET stops the start with one line, instead of falling back to the development secret', async () => {
  const proc = spawn(process.execPath, [SERVER], { cwd: dir, env: { PATH: process.env.PATH ?? '', PORT: '0', BACKEND_PORT: '0', JWT_SECRET: '  ' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr?.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const [code] = (await once(proc, 'exit')) as [number | null];
  expect(code).toBe(1);
  expect(stderr).toBe('sse-relay: JWT_SECRET: expected a key, or no JWT_SECRET at all for the development secret, got "  "\n');
  expect(existsSync(join(dir, '.dev-secret'))).toBe(false);
});

test('outside production, the demo is served and /dev/login sets an HttpOnly cookie the relay accepts', async () => {
  server = await startServer(dir);
  const page = await fetch(`${server.url}/`);
  expect(page.status).toBe(200);
  expect(await page.text()).toContain('<script type="module" src="/app.js">');
  const login = await fetch(`${server.url}/dev/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":"carol"}' });
  expect(login.status).toBe(200);
  const cookie = login.headers.get('set-cookie') ?? '';
  expect(cookie).toMatch(/^access_token=[^;]+;.*HttpOnly/i);
  expect(cookie).toMatch(/SameSite=Strict/i);
  const history = await fetch(`${server.url}/api/chat/history`, {
    method: 'POST',
    headers: { cookie: cookie.split(';')[0]!, 'content-type': 'application/json' },
    body: '{"chatbotId":"demo"}',
  });
  expect(history.status).toBe(200);
  // A form post (not JSON) from another page cannot log the browser in.
  const form = await fetch(`${server.url}/dev/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'user=x' });
  expect(form.status).toBe(400);
  expect(form.headers.get('set-cookie')).toBeNull();
});

test('npm run token prints a token the running relay accepts, and it still works after a restart', async () => {
  server = await startServer(dir);
  const secretFile = join(dir, '.dev-secret');
  expect(existsSync(secretFile)).toBe(true);
  const { stdout: token } = await promisify(execFile)(process.execPath, [TOKEN_CLI, 'dave'], { cwd: dir, env: { PATH: process.env.PATH ?? '' } });
  const call = (url: string): Promise<Response> =>
    fetch(`${url}/api/chat/history`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token.trim()}`, 'content-type': 'application/json' },
      body: '{"chatbotId":"demo"}',
    });
  expect((await call(server.url)).status).toBe(200);
  const secret = readFileSync(secretFile, 'utf8');
  await stop(server);
  server = await startServer(dir);
  expect(readFileSync(secretFile, 'utf8')).toBe(secret);
  expect((await call(server.url)).status).toBe(200);
  // Its output is JSON lines when stdout is not a terminal.
  expect(server.stdout().split('\n').find((l) => l.includes('relay listening'))).toMatch(/^\{"level":30,/);
});

test('logs are pretty lines on a terminal outside production, JSON otherwise', () => {
  const sink = new PassThrough();
  let written = '';
  sink.setEncoding('utf8').on('data', (text: string) => (written += text));
  const pretty = logOutput({ production: false, isTTY: true }, sink);
  expect(pretty).toBeDefined();
  pino({}, pretty).info({ topic: 'download:a' }, 'stream opened');
  expect(written).toMatch(/INFO.*stream opened/);
  expect(written).not.toMatch(/^\{/);
  expect(logOutput({ production: true, isTTY: true }, sink)).toBeUndefined();
  expect(logOutput({ production: false, isTTY: false }, sink)).toBeUndefined();
});

test('GET /client.js is the browser client: no auth, an ES module, cacheable with a strong ETag', async () => {
  const relay = await startRelay('http://127.0.0.1:9');
  try {
    const first = await fetch(`${relay.url}/client.js`);
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(first.headers.get('cache-control')).toBe('public, max-age=300');
    const etag = first.headers.get('etag');
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
    const body = await first.text();
    expect(body).toMatch(/export\s*\{[^}]*createClient/);
    // undici's request, not fetch: fetch adds Cache-Control: no-cache to a conditional request, as the spec says.
    const again = await request(`${relay.url}/client.js`, { headers: { 'if-none-match': etag! } });
    await again.body.dump();
    expect(again.statusCode).toBe(304);
  } finally {
    await relay.close();
  }
});

test('GET /dev/login says whom the login cookie names, and answers nobody (not an error) without a valid one', async () => {
  const app = express();
  app.use(developmentRoutes({ secret: TEST_SECRET, demoDir: tmpdir() }));
  const listening = app.listen(0, '127.0.0.1');
  await once(listening, 'listening');
  const url = `http://127.0.0.1:${(listening.address() as AddressInfo).port}`;
  try {
    const login = await fetch(`${url}/dev/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":"carol"}' });
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0]!;
    const asked = await fetch(`${url}/dev/login`, { headers: { cookie } });
    expect(asked.headers.get('cache-control')).toBe('no-store');
    const { expiresAt } = (await login.json()) as { expiresAt: string };
    const answer = (await asked.json()) as { user: string; expiresAt: string };
    expect(answer.user).toBe('carol');
    // The token's exp has seconds' resolution.
    expect(Math.abs(Date.parse(answer.expiresAt) - Date.parse(expiresAt))).toBeLessThan(1000);
    expect(await (await fetch(`${url}/dev/login`)).json()).toEqual({ user: null });
    const forged = await fetch(`${url}/dev/login`, { headers: { cookie: `access_token=${tokenFor('carol').slice(0, -2)}xx` } });
    expect([forged.status, await forged.json()]).toEqual([200, { user: null }]);
  } finally {
    listening.close();
  }
});
