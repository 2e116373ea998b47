import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, startRelay, tokenFor } from '../support/relay-server';

const ROOT = join(__dirname, '../..');

let backend: FixtureBackend;
let relay: RunningRelay;
let dir: string;

beforeAll(async () => {
  backend = await new FixtureBackend().start();
  relay = await startRelay(backend.url, { heartbeatMs: 1000 });
  dir = mkdtempSync(join(tmpdir(), 'check-path-token-'));
});

afterAll(async () => {
  await relay.close();
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
});

/** `npm run check-path -- <args>` as a user types it; resolves with its exit code and all it printed (npm's own lines too). */
async function npmRunCheckPath(args: string[], { env = {}, stdin }: { env?: Record<string, string>; stdin?: string } = {}): Promise<{ code: number | null; printed: string }> {
  const child = spawn('npm', ['run', 'check-path', '--', relay.url, '--interval', '50', '--count', '3', '--quiet', '0', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let printed = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (printed += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (printed += text));
  child.stdin.end(stdin);
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, printed };
}

test('the token given in SSE_RELAY_TOKEN or --token-file (a file, or - for standard input) is printed nowhere, npm run included', async () => {
  const token = tokenFor('alice');
  const file = join(dir, 'token');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  const runs = [
    await npmRunCheckPath([], { env: { SSE_RELAY_TOKEN: token } }),
    await npmRunCheckPath(['--token-file', file]),
    await npmRunCheckPath(['--token-file', '-'], { stdin: `${token}\n` }),
  ];
  for (const { code, printed } of runs) {
    expect(printed).toMatch(/^delivery: one by one \(3\/3 ticks/m);
    expect(printed).not.toContain(token);
    // Nor any recognisable part of it: its signature is the secret-derived piece.
    expect(printed).not.toContain(token.split('.')[2]);
    expect(code).toBe(0);
  }
}, 60_000);

test('a token on the command line still works, with a warning that says where it shows and what to use instead', async () => {
  const token = tokenFor('alice');
  const { code, printed } = await npmRunCheckPath(['--token', token]);
  expect(printed).toContain('check-path: --token shows the token to whoever sees the command (npm run prints it back, shell history and ps keep it): prefer SSE_RELAY_TOKEN or --token-file');
  expect(code).toBe(0);
}, 30_000);

test('an empty or missing token file stops the check with one line saying so, exit 2', async () => {
  const empty = join(dir, 'empty');
  writeFileSync(empty, '\n');
  const emptied = await npmRunCheckPath(['--token-file', empty]);
  expect(emptied.printed).toContain(`check-path: the token file ${empty} is empty`);
  expect(emptied.code).toBe(2);
  const missing = await npmRunCheckPath(['--token-file', join(dir, 'nope')]);
  expect(missing.printed).toContain(`check-path: cannot read the token file ${join(dir, 'nope')}: ENOENT`);
  expect(missing.code).toBe(2);
}, 30_000);
