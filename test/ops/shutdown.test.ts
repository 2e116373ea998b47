import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { EventSource } from 'eventsource';
import { FixtureBackend } from '../support/fixture-backend';
import { TEST_SECRET, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const SERVER = join(__dirname, '../../dist/server.js');
const PATH = '/downloads/deploy/events';

interface RelayProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly log: string[];
}

/** The standalone relay (`npm start`'s dist/server.js) as its own process. */
async function startProcess(backendUrl: string): Promise<RelayProcess> {
  const child = spawn(process.execPath, [SERVER], {
    env: { ...process.env, NODE_ENV: 'production', PORT: '0', BACKEND_URL: backendUrl, JWT_SECRET: TEST_SECRET, SHUTDOWN_TIMEOUT_MS: '1000', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const log: string[] = [];
  let buffered = '';
  const port = new Promise<number>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        log.push(line);
        const url = (JSON.parse(line) as { url?: string; msg?: string }).url;
        if (url !== undefined) resolve(Number(new URL(url).port));
      }
    });
    child.once('exit', (code) => reject(new Error(`relay exited with ${String(code)} before listening`)));
  });
  return { child, port: await port, log };
}

let backend: FixtureBackend;
const children: ChildProcess[] = [];

beforeAll(async () => {
  if (!existsSync(SERVER)) throw new Error(`${SERVER} is missing: npm test builds it first (npm run build)`);
  backend = await new FixtureBackend().start();
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await backend.close();
});

test('SIGTERM drains every stream; clients resume on a second process with Last-Event-ID and miss nothing; exit code 0', async () => {
  const first = await startProcess(backend.url);
  children.push(first.child);
  // A load balancer in miniature: clients connect to whichever relay is current.
  let target = first.port;
  const token = tokenFor('alice');
  const clients = Array.from({ length: 5 }, () => {
    const received: string[] = [];
    let drops = 0;
    const es = new EventSource(`http://relay/api${PATH}`, {
      fetch: (input, init) =>
        fetch(new URL(new URL(String(input)).pathname, `http://127.0.0.1:${target}`), {
          ...init,
          headers: { ...(init?.headers as Record<string, string>), authorization: `Bearer ${token}` },
        }),
    });
    es.onmessage = (event) => received.push(event.data as string);
    es.onerror = () => (drops += 1);
    return { es, received, drops: () => drops };
  });

  for (let i = 1; i <= 3; i++) backend.emit(PATH, `data: e${i}\n`);
  await until(() => clients.every((c) => c.received.length === 3), 5000, 'first events').catch((err: unknown) => {
    console.log(first.log.join('\n'), clients.map((c) => c.received));
    throw err;
  });

  const second = await startProcess(backend.url);
  children.push(second.child);
  target = second.port;
  // 'close', not 'exit': the process exits as soon as it stopped, and its last log lines may still be on their way.
  const exited = once(first.child, 'close') as Promise<[number | null, string | null]>;
  first.child.kill('SIGTERM');
  backend.emit(PATH, 'data: e4\n');
  const [code, signal] = await exited;
  backend.emit(PATH, 'data: e5\n');
  backend.emit(PATH, 'data: e6\n');

  await until(() => clients.every((c) => c.received.length >= 6), 10_000, 'every client on the second relay');
  for (const client of clients) client.es.close();
  expect(code).toBe(0);
  expect(signal).toBeNull();
  for (const client of clients) {
    expect(client.received).toEqual(['e1', 'e2', 'e3', 'e4', 'e5', 'e6']);
    expect(client.drops()).toBeGreaterThanOrEqual(1);
  }
  // The second relay opened the topic from where its first client had got to.
  expect(backend.requests.filter((r) => r.path === PATH).at(-1)?.lastEventId).toMatch(/^[34]$/);
  const lines = first.log.map((line) => JSON.parse(line) as { msg: string; reason?: string });
  expect(lines.filter((line) => line.reason === 'shutdown')).toHaveLength(5);
  // 'stopped' comes after every drained stream's line; a request the final closeAllConnections()
  // ends (a client back during the drain) may log its line after it.
  const stopped = lines.findIndex((line) => line.msg === 'stopped');
  expect(stopped).toBeGreaterThan(lines.findLastIndex((line) => line.reason === 'shutdown'));
  second.child.kill('SIGTERM');
  expect((await once(second.child, 'exit'))[0]).toBe(0);
}, 30_000);
