import { once } from 'node:events';
import { EventSource } from 'eventsource';
import { FixtureBackend } from '../support/fixture-backend';
import { RelayProcess } from '../support/relay-process';
import { tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const PATH = '/downloads/deploy/events';

let backend: FixtureBackend;
const relays: RelayProcess[] = [];

beforeAll(async () => {
  backend = await new FixtureBackend().start();
});

afterAll(async () => {
  for (const relay of relays) await relay.kill();
  await backend.close();
});

test('SIGTERM drains every stream; clients resume on a second process with Last-Event-ID and miss nothing; exit code 0', async () => {
  const first = await RelayProcess.start({ BACKEND_URL: backend.url, SHUTDOWN_TIMEOUT_MS: '1000' });
  relays.push(first);
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
    console.log(first.log.map((line) => JSON.stringify(line)).join('\n'), clients.map((c) => c.received));
    throw err;
  });

  const second = await RelayProcess.start({ BACKEND_URL: backend.url, SHUTDOWN_TIMEOUT_MS: '1000' });
  relays.push(second);
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
  const lines = first.log;
  expect(lines.filter((line) => line.reason === 'shutdown')).toHaveLength(5);
  // The stop ran to its end. Its line is not always last: with every stream ended at once, a
  // stream's 'request completed' line (written when its socket closes) may come after it.
  expect(lines.filter((line) => line.msg === 'stopped')).toHaveLength(1);
  expect(await second.stop()).toBe(0);
}, 30_000);
