import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { once } from 'node:events';
import { type AddressInfo, type Server, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { TEST_SECRET } from '../support/relay-server';

const SERVER = join(__dirname, '../../dist/server.js');

const children: ChildProcess[] = [];
const blockers: Server[] = [];

beforeAll(() => {
  if (!existsSync(SERVER)) throw new Error(`${SERVER} is missing: npm test builds it first (npm run build)`);
});

afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  for (const blocker of blockers) blocker.close();
});

/** dist/server.js (or `server`) with `env` over a clean base (no inherited relay settings). */
function run(env: Record<string, string>, server = SERVER): { child: ChildProcess; stdout: () => string; stderr: () => string } {
  const child = spawn(process.execPath, [server], {
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', PORT: '0', BACKEND_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return { child, stdout: () => stdout, stderr: () => stderr };
}

/** Runs it to its exit; resolves the exit code and what it printed on stderr. */
async function exitOf(env: Record<string, string>, server = SERVER): Promise<{ code: number | null; stderr: string }> {
  const started = run(env, server);
  const [code] = (await once(started.child, 'exit')) as [number | null];
  return { code, stderr: started.stderr() };
}

/** A port on 127.0.0.1 that something else holds. */
async function takenPort(): Promise<number> {
  const blocker = createServer();
  blockers.push(blocker);
  blocker.listen(0, '127.0.0.1');
  await once(blocker, 'listening');
  return (blocker.address() as AddressInfo).port;
}

test('in production without BACKEND_URL the relay refuses to start, with one line naming it', async () => {
  const { code, stderr } = await exitOf({ NODE_ENV: 'production', JWT_SECRET: TEST_SECRET });
  expect(code).toBe(1);
  expect(stderr).toBe(`sse-relay: BACKEND_URL: expected your backend's http(s) URL in production (or bundled, for the demo backend), got ""\n`);
});

test('a busy PORT stops the start with one line naming PORT, exit code 1', async () => {
  const port = await takenPort();
  const { code, stderr } = await exitOf({ PORT: String(port), HOST: '127.0.0.1', BACKEND_URL: 'http://127.0.0.1:1', JWT_SECRET: TEST_SECRET });
  expect(code).toBe(1);
  expect(stderr).toBe(`sse-relay: PORT: expected a free port (EADDRINUSE on 127.0.0.1), got "${port}"\n`);
});

test('a busy BACKEND_PORT for the bundled backend stops the start with one line naming BACKEND_PORT', async () => {
  const port = await takenPort();
  const { code, stderr } = await exitOf({ BACKEND_PORT: String(port), BACKEND_HOST: '127.0.0.1', JWT_SECRET: TEST_SECRET });
  expect(code).toBe(1);
  expect(stderr).toBe(`sse-relay: BACKEND_PORT: expected a free port (EADDRINUSE on 127.0.0.1), got "${port}"\n`);
});

/** Resolves the first JSON log line whose `msg` is `msg`, or undefined once the process exits or 10 s pass. */
async function logLine(started: ReturnType<typeof run>, msg: string): Promise<Record<string, unknown> | undefined> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && started.child.exitCode === null) {
    const line = started
      .stdout()
      .split('\n')
      .filter((text) => text.startsWith('{'))
      .map((text) => JSON.parse(text) as Record<string, unknown>)
      .find((entry) => entry.msg === msg);
    if (line !== undefined) return line;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return undefined;
}

test('a build without backend/ (the production image) runs against a real backend, and refuses BACKEND_URL=bundled with one line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sse-relay-no-backend-'));
  try {
    cpSync(join(__dirname, '../../dist'), join(dir, 'dist'), { recursive: true, filter: (source) => !source.endsWith(`${join('dist', 'backend')}`) });
    symlinkSync(resolve(__dirname, '../../node_modules'), join(dir, 'node_modules'), 'dir');
    const server = join(dir, 'dist', 'server.js');
    expect(existsSync(join(dir, 'dist', 'backend'))).toBe(false);

    const production = { NODE_ENV: 'production', JWT_SECRET: TEST_SECRET, HOST: '127.0.0.1' };
    const relay = run({ ...production, BACKEND_URL: 'http://127.0.0.1:9' }, server);
    expect(await logLine(relay, 'relay listening')).toMatchObject({ bundledBackend: false, backend: 'http://127.0.0.1:9/' });
    expect(relay.stderr()).toBe('');
    relay.child.kill('SIGTERM');
    await once(relay.child, 'exit');

    const { code, stderr } = await exitOf({ ...production, BACKEND_URL: 'bundled' }, server);
    expect(code).toBe(1);
    expect(stderr).toBe(`sse-relay: BACKEND_URL: expected your backend's http(s) URL: this build leaves the bundled reference backend out, got "bundled"\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a bad BACKEND_* variable of the bundled backend stops the start with one line naming it', async () => {
  const { code, stderr } = await exitOf({ BACKEND_TICK_MS: 'fast', JWT_SECRET: TEST_SECRET });
  expect(code).toBe(1);
  expect(stderr).toBe('sse-relay: BACKEND_TICK_MS: expected an integer from 0 to 3600000, got "fast"\n');
});

test('BACKEND_URL=bundled starts the demo backend in production; the relay listens on HOST, logs its caps, and closes a silent socket after HEADERS_TIMEOUT_MS', async () => {
  const relay = run({ NODE_ENV: 'production', JWT_SECRET: TEST_SECRET, BACKEND_URL: 'bundled', HOST: '127.0.0.1', HEADERS_TIMEOUT_MS: '300' });
  const deadline = Date.now() + 10_000;
  let listening: Record<string, unknown> | undefined;
  while (listening === undefined && Date.now() < deadline && relay.child.exitCode === null) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    listening = relay
      .stdout()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((line) => line.msg === 'relay listening');
  }
  expect(relay.stderr()).toBe('');
  expect(listening).toMatchObject({ bundledBackend: true, url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/) });
  expect(listening?.maxConnections).toBeLessThan(listening?.maxSockets as number);
  if (process.platform === 'linux') expect(listening?.openFileLimit).toEqual(expect.any(Number));

  const started = Date.now();
  const silent = connect(Number(new URL(String(listening?.url)).port), '127.0.0.1');
  let answer = '';
  silent.on('data', (chunk: Buffer) => (answer += chunk.toString()));
  await once(silent, 'close');
  expect(answer).toMatch(/^HTTP\/1\.1 408 /);
  expect(Date.now() - started).toBeLessThan(3000);
});
