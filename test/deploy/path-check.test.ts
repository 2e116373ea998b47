import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { type RunningNginx, startNginx } from '../support/nginx';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, startRelay, tokenFor } from '../support/relay-server';
import { checkPath } from '../../src/diagnostics/path-check';

const CHECK = join(__dirname, '../../dist/bin/check-path.js');
const HEARTBEAT_MS = 1000;

let backend: FixtureBackend;
let relay: RunningRelay;
let nginx: RunningNginx;

beforeAll(async () => {
  backend = await new FixtureBackend().start();
  relay = await startRelay(backend.url, { heartbeatMs: HEARTBEAT_MS });
  const upstream = new URL(relay.url).host;
  nginx = await startNginx(
    (port) => `
  upstream relay { server ${upstream}; keepalive 4; }
  server {
    listen 127.0.0.1:${port};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    # Buffering left on (nginx's default): the relay's X-Accel-Buffering: no turns it off per stream.
    location /plain/ { proxy_pass http://relay/; }
    # What buffers SSE in nginx: gzip on event streams, with the relay's header ignored (buffering
    # on alone still forwards each event; gzip alone flushes each unbuffered write).
    location /gzip/ { proxy_pass http://relay/; proxy_ignore_headers X-Accel-Buffering; gzip on; gzip_types text/event-stream; gzip_min_length 0; }
    # A read timeout below the relay's heartbeat: quiet streams are cut.
    location /short/ { proxy_pass http://relay/; proxy_read_timeout 500ms; }
  }`,
  );
});
afterAll(async () => {
  await nginx?.close();
  await relay?.close();
  await backend?.close();
});

/** `npm run check-path -- <url> --token …` as a user runs it (the built script). */
async function runCheck(url: string): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [CHECK, url, '--token', tokenFor('alice'), '--interval', '100', '--count', '10', '--quiet', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (out += text));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, out };
}

test('the check reports one by one through nginx with buffering left on, and bursts through nginx that gzips event streams', async () => {
  const token = tokenFor('alice');
  const plain = await checkPath({ url: `${nginx.url}/plain`, token, interval: 100, count: 15, quiet: 0 });
  const gzip = await checkPath({ url: `${nginx.url}/gzip`, token, interval: 100, count: 15, quiet: 0 });
  expect(plain).toMatchObject({ delivery: 'one by one', ticks: 15 });
  expect(plain.heldMs.p99).toBeLessThan(100);
  expect(gzip).toMatchObject({ delivery: 'bursts', ticks: 15 });
  expect(gzip.heldMs.max).toBeGreaterThan(500);

  const good = await runCheck(`${nginx.url}/plain`);
  expect(good.out).toMatch(/^delivery: one by one \(10\/10 ticks/m);
  expect(good.out).toMatch(/^late \(arrival - sent, needs synced clocks\): p50 \d+ ms, p99 \d+ ms, max \d+ ms$/m);
  expect(good.code).toBe(0);
  const bad = await runCheck(`${nginx.url}/gzip`);
  expect(bad.out).toMatch(/^delivery: bursts/m);
  expect(bad.code).toBe(1);
}, 30_000);

test('the check reports whether a quiet stream survives past the heartbeat', async () => {
  const token = tokenFor('alice');
  const kept = await checkPath({ url: `${nginx.url}/plain`, token, interval: 100, count: 3, quiet: 'auto' });
  expect(kept).toMatchObject({ quietMs: 2 * HEARTBEAT_MS, quietSurvived: true, heartbeatMs: HEARTBEAT_MS });
  expect(kept.heartbeatsSeen).toBeGreaterThanOrEqual(1);
  const cut = await checkPath({ url: `${nginx.url}/short`, token, interval: 100, count: 3, quiet: 'auto' });
  expect(cut).toMatchObject({ ticks: 3, quietSurvived: false, heartbeatsSeen: 0 });
}, 30_000);

test('the ticks endpoint needs a token and refuses parameters out of bounds', async () => {
  const base = `${relay.url}/api/diagnostics/ticks`;
  expect((await fetch(base)).status).toBe(401);
  const auth = { authorization: `Bearer ${tokenFor('alice')}` };
  for (const query of ['interval=5', 'interval=abc', 'count=0', 'count=1001', 'quiet=-1', 'quiet=300001', 'interval=10000&count=100']) {
    const answer = await fetch(`${base}?${query}`, { headers: auth });
    expect(answer.status).toBe(400);
    expect(((await answer.json()) as { error: { code: string } }).error.code).toBe('bad_request');
  }
  expect(relay.relay.connections.snapshot().total).toBe(0);
});
