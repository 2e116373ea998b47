import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../support/free-port';
import { RedisServer } from '../support/redis';
import { delay } from '../support/until';

const ROOT = join(__dirname, '../..');
const RECIPE = join(ROOT, 'docs/cluster-recipe.md');

let redis: RedisServer;
let dir: string;
/** The recipe's process group, killed at the end whatever happened. */
let pgid: number | undefined;

beforeAll(async () => {
  if (spawnSync('curl', ['--version']).status !== 0) throw new Error('curl is missing: the recipe uses it (.ci/run installs it)');
  redis = await new RedisServer().start();
  dir = mkdtempSync(join(tmpdir(), 'cluster-recipe-'));
});

afterAll(async () => {
  if (pgid !== undefined && groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
  await redis?.kill();
  rmSync(dir, { recursive: true, force: true });
});

/** The recipe's shell block, as the page shows it. */
function recipe(): string {
  const block = /```sh\n([\s\S]*?)```/.exec(readFileSync(RECIPE, 'utf8'))?.[1];
  if (block === undefined) throw new Error(`${RECIPE}: no sh block`);
  return block;
}

/** Whether any process is left in the process group `pgid`. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

test('the cluster recipe, run as written: one backend, two relays, one Redis; both relays stream the download, the backend is read once, and everything stops', async () => {
  // The page's ports, each swapped for a free one: other suites run on this machine too.
  const ports = new Map<string, string>([['6379', String(redis.port)]]);
  for (const port of ['8080', '8081', '8090']) ports.set(port, String(await freePort()));
  const script = recipe().replace(/\b(6379|8080|8081|8090)\b/g, (port) => ports.get(port) as string);
  expect(script).not.toBe(recipe());
  const file = join(dir, 'recipe.sh');
  writeFileSync(file, script);

  // A clean environment, as a new terminal has: nothing of this test's own settings.
  const shell = spawn('bash', [file], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: whatever the recipe leaves running is found, and killed, by group.
    detached: true,
  });
  pgid = shell.pid as number;
  let printed = '';
  shell.stdout.setEncoding('utf8').on('data', (text: string) => (printed += text));
  shell.stderr.setEncoding('utf8').on('data', (text: string) => (printed += text));
  // Not 'close': a process the recipe failed to stop would hold the pipes open for ever.
  const outputEnded = once(shell.stdout, 'end');
  try {
    const [code] = (await once(shell, 'exit')) as [number | null];
    await Promise.race([outputEnded, delay(2000)]);
    const a = ports.get('8080') as string;
    const b = ports.get('8090') as string;
    const events = (port: string): string[] =>
      printed
        .split('\n')
        .filter((line) => line.startsWith(`${port} data: `))
        .map((line) => line.slice(`${port} data: `.length));
    // Every event of the download, through each relay.
    for (const port of [a, b]) {
      const got = events(port);
      expect([port, got.length]).toEqual([port, 12]);
      expect(JSON.parse(got[11] as string)).toMatchObject({ status: 'COMPLETED' });
    }
    expect(events(a)).toEqual(events(b));
    // One relay subscribed to the backend, the other followed it through Redis.
    const connects = [a, b].map((port) => new RegExp(`^${port} sse_relay_upstream_connects_total (\\d+)$`, 'm').exec(printed)?.[1]);
    expect(connects.sort()).toEqual(['0', '1']);
    expect(code).toBe(0);
    // `kill %1 %2 %3` and `wait` stopped the backend and both relays: nothing is left of the recipe.
    expect(groupAlive(pgid)).toBe(false);
  } catch (err) {
    console.log(printed);
    throw err;
  }
}, 90_000);
