import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { type AddressInfo, type Server, connect, createServer } from 'node:net';
import { join } from 'node:path';
import { FixtureBackend } from '../support/fixture-backend';
import { freePort } from '../support/free-port';
import { RelayProcess } from '../support/relay-process';
import { TEST_SECRET, tokenFor } from '../support/relay-server';

const SERVER = join(__dirname, '../../dist/server.js');
const KEY = 'an-admin-key-of-forty-characters-0123456';

let backend: FixtureBackend;
const relays: RelayProcess[] = [];
const children: ChildProcess[] = [];
const blockers: Server[] = [];

beforeAll(async () => {
  backend = await new FixtureBackend().start();
});

afterAll(async () => {
  for (const relay of relays) await relay.kill();
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  for (const blocker of blockers) blocker.close();
  await backend.close();
});

async function startRelay(env: Record<string, string>): Promise<{ relay: RelayProcess; adminUrl: string | undefined }> {
  const relay = await RelayProcess.start({ BACKEND_URL: backend.url, ...env });
  relays.push(relay);
  const admin = relay.lines('relay listening')[0]?.admin;
  return { relay, adminUrl: typeof admin === 'string' ? admin.replace(/\/admin\/$/, '') : undefined };
}

/** Runs dist/server.js to its exit; resolves the exit code and what it printed on stderr. */
async function exitOf(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  if (!existsSync(SERVER)) throw new Error(`${SERVER} is missing: npm test builds it first (npm run build)`);
  const child = spawn(process.execPath, [SERVER], {
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', JWT_SECRET: TEST_SECRET, BACKEND_URL: backend.url, PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stderr };
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

test('an ADMIN_API_KEY shorter than 32 characters stops the start with one line naming it, and never the key', async () => {
  const { code, stderr } = await exitOf({ ADMIN_API_KEY: 'too-short-a-key' });
  expect(code).toBe(1);
  expect(stderr).toBe('sse-relay: ADMIN_API_KEY: expected at least 32 characters, got "(15 characters)"\n');
});

test('a busy ADMIN_PORT stops the start with one line naming it', async () => {
  const blocker = createServer();
  blockers.push(blocker);
  blocker.listen(0, '127.0.0.1');
  await once(blocker, 'listening');
  const port = (blocker.address() as AddressInfo).port;
  const { code, stderr } = await exitOf({ ADMIN_API_KEY: KEY, ADMIN_PORT: String(port) });
  expect(code).toBe(1);
  expect(stderr).toBe(`sse-relay: ADMIN_PORT: expected a free port (EADDRINUSE on 127.0.0.1), got "${port}"\n`);
});

test('without ADMIN_API_KEY nothing listens on ADMIN_PORT, and the public port has no admin route', async () => {
  const port = await freePort();
  const { relay, adminUrl } = await startRelay({ ADMIN_PORT: String(port) });
  expect(adminUrl).toBeUndefined();
  expect(await refused(port)).toBe(true);
  const answer = await fetch(`${relay.url}/admin/overview`, { headers: { authorization: `Bearer ${KEY}` } });
  expect(answer.status).toBe(404);
  expect(await answer.json()).toEqual({ error: { code: 'not_found', message: 'No such route.' } });
});

test('with ADMIN_API_KEY the admin API answers on its own loopback port only: the public port answers 404 to every admin path, key or not', async () => {
  const { relay, adminUrl } = await startRelay({ ADMIN_API_KEY: KEY, ADMIN_PORT: '0' });
  expect(adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  expect(adminUrl).not.toBe(relay.url);
  const overview = await fetch(`${adminUrl}/admin/overview`, { headers: { authorization: `Bearer ${KEY}` } });
  expect(overview.status).toBe(200);
  expect(await overview.json()).toMatchObject({ relay: { id: null }, streams: { shared: 0 }, ready: 'ready', cluster: null });

  for (const path of ['/admin/', '/admin/overview', '/admin/topics', '/admin/events', '/admin/users/alice']) {
    const attempts: Record<string, string>[] = [{}, { authorization: `Bearer ${KEY}` }, { authorization: `Bearer ${tokenFor('alice')}` }];
    for (const headers of attempts) {
      const answer = await fetch(`${relay.url}${path}`, { headers });
      expect({ path, status: answer.status }).toEqual({ path, status: 404 });
      await answer.body?.cancel();
    }
  }
  const ending = await fetch(`${relay.url}/admin/users/alice/streams`, { method: 'DELETE', headers: { authorization: `Bearer ${KEY}` } });
  expect(ending.status).toBe(404);
  // The key is not in any log line.
  expect(JSON.stringify(relay.log)).not.toContain(KEY);

  // An ops page left open does not hold a stop up.
  const page = await fetch(`${adminUrl}/admin/events`, { headers: { authorization: `Bearer ${KEY}` } });
  expect(page.status).toBe(200);
  const started = Date.now();
  expect(await relay.stop()).toBe(0);
  expect(Date.now() - started).toBeLessThan(5000);
  await page.body?.cancel().catch(() => undefined);
});
