import { request } from 'node:http';
import { createParser } from 'eventsource-parser';
import { freePort } from '../support/free-port';
import { FixtureBackend } from '../support/fixture-backend';
import { RelayProcess } from '../support/relay-process';
import { tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const PATH = '/downloads/restart/events';

let backend: FixtureBackend;
const relays: RelayProcess[] = [];

afterAll(async () => {
  for (const relay of relays) await relay.kill();
  await backend?.close();
});

/**
 * One client across connections, as an `EventSource` is: each connection resumes after the last
 * id it got. `got` keeps every event's data (and `resync`) in the order it came.
 */
class Client {
  readonly got: string[] = [];
  lastId: string | undefined;
  private close: (() => void) | undefined;
  private ended: Promise<void> = Promise.resolve();

  constructor(readonly user: string) {}

  /** Connects (resuming after `lastId`); resolves with the status once the headers are in. */
  connect(port: number): Promise<number> {
    const headers: Record<string, string> = { authorization: `Bearer ${tokenFor(this.user)}`, accept: 'text/event-stream' };
    if (this.lastId !== undefined) headers['last-event-id'] = this.lastId;
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: `/api${PATH}`, headers, agent: false }, (res) => {
        const parser = createParser({
          onEvent: (event) => {
            if (event.event === 'resync') return void this.got.push('resync');
            this.got.push(event.data);
            if (event.id !== undefined) this.lastId = event.id;
          },
        });
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => parser.feed(chunk));
        res.on('error', () => undefined);
        this.ended = new Promise((done) => res.once('close', done));
        this.close = () => res.destroy();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
  }

  /** Waits until the relay ended this connection (it drained). */
  whenEnded(): Promise<void> {
    return this.ended;
  }

  leave(): void {
    this.close?.();
  }
}

const labels = (from: number, to: number): string[] => Array.from({ length: to - from + 1 }, (_, i) => `e${from + i}`);

test('across a restart, clients that resume at different points get every event once, in order, and none gets resync, whoever comes back first', async () => {
  backend = await new FixtureBackend().start();
  const port = await freePort();
  const env = { PORT: String(port), BACKEND_URL: backend.url, DRAIN_RETRY_MS: '100' };
  relays.push(await RelayProcess.start(env));
  let emitted = 0;
  const emit = (): void => {
    emitted += 1;
    backend.emit(PATH, `data: e${emitted}\n`);
  };

  // Three clients for each last id from 1 to 5: each group leaves right after its event.
  const clients = Array.from({ length: 15 }, (_, i) => new Client(`user${i}`));
  const groups = [0, 1, 2, 3, 4].map((g) => clients.slice(g * 3, g * 3 + 3));
  for (const client of clients) expect(await client.connect(port)).toBe(200);
  await until(() => backend.listeners(PATH) === 1, 5000, 'the upstream');
  for (const [g, group] of groups.entries()) {
    emit();
    const connected = groups.slice(g).flat();
    await until(() => connected.every((client) => client.got.length === emitted), 5000, `e${emitted}`);
    if (g < groups.length - 1) for (const client of group) client.leave();
  }

  // The process manager stops the relay: the last group is drained (told to come back), and the
  // backend goes on while nothing listens.
  expect(await relays[0]!.stop()).toBe(0);
  await Promise.all(groups[4]!.map((client) => client.whenEnded()));
  for (let i = 6; i <= 8; i++) emit();
  relays.push(await RelayProcess.start(env));

  // The newest comes back first: the new relay's topic starts after id 5, and holds 6 to 8.
  const [first, ...rest] = [...groups[4]!, ...groups[3]!, ...groups[2]!, ...groups[1]!, ...groups[0]!];
  expect(await first!.connect(port)).toBe(200);
  await until(() => first!.got.length === 8, 5000, 'the first back to get 6 to 8');
  // Everyone else at once, from 1 to 5.
  expect(await Promise.all(rest.map((client) => client.connect(port)))).toEqual(rest.map(() => 200));
  await until(() => clients.every((client) => client.lastId === '8'), 10_000, 'every client at e8');
  emit();
  await until(() => clients.every((client) => client.lastId === '9'), 5000, 'every client at e9');

  for (const client of clients) expect(client.got).toEqual(labels(1, 9));
  // One upstream for the topic, and one catch-up request for each client older than id 5.
  const requests = backend.requests.filter((r) => r.path === PATH);
  expect(requests.filter((r) => r.lastEventId === '5' && r.user === first!.user)).toHaveLength(1);
  expect(requests.filter((r) => r.lastEventId !== undefined && r.lastEventId !== '5').map((r) => r.lastEventId).sort()).toEqual(['1', '1', '1', '2', '2', '2', '3', '3', '3', '4', '4', '4']);
  for (const client of clients) client.leave();
  expect(await relays[1]!.stop()).toBe(0);
}, 60_000);
