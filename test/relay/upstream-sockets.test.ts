import { Agent, request } from 'undici';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, authHeader, startRelay } from '../support/relay-server';
import { until } from '../support/until';

let backend: FixtureBackend;
let relay: RunningRelay;
let client: Agent;

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  // A backend that advertises a long keep-alive (Keep-Alive: timeout=60), as many do.
  backend.server.keepAliveTimeout = 60_000;
  relay = await startRelay(backend.url, { topicLingerMs: 5 });
  client = new Agent({ connections: null });
});

afterEach(async () => {
  await client.close();
  await relay.close();
  await backend.close();
});

/** Opens `path` through the relay until the backend streams it, then leaves. */
async function openAndLeave(path: string): Promise<void> {
  const res = await request(`${relay.url}/api${path}`, { headers: authHeader(), dispatcher: client });
  expect(res.statusCode).toBe(200);
  await until(() => backend.listeners(path) === 1, 5000, `the backend to stream ${path}`);
  res.body.destroy();
}

/** Opens `count` streams (20 at a time), each left as soon as the backend streams it. */
async function churn(count: number, path: (i: number) => string): Promise<void> {
  for (let i = 0; i < count; i += 20) await Promise.all(Array.from({ length: 20 }, (_, j) => openAndLeave(path(i + j))));
}

// One stream stays open throughout, so the relay's pool to the backend is never closed as a whole.
async function holdOne(): Promise<{ destroy(): void }> {
  const held = await request(`${relay.url}/api/downloads/held/events`, { headers: authHeader(), dispatcher: client });
  await until(() => backend.listeners('/downloads/held/events') === 1);
  return held.body;
}

test('topics that open and close leave no idle connection to the backend behind', async () => {
  const held = await holdOne();
  await churn(200, (i) => `/downloads/churn${i}/events`);
  await until(() => relay.relay.hub.topicCount === 1, 5000, 'the churned topics to close');
  // Only the held topic's connection is left, shortly after (not when the backend's keep-alive ends).
  await until(() => backend.sockets.size === 1, 3000, `the backend's idle connections to close (${backend.sockets.size} open)`);
  held.destroy();
});

test('proxied event streams that clients leave leave no idle connection to the backend behind', async () => {
  const held = await holdOne();
  await churn(100, (i) => `/feeds/churn${i}`);
  await until(() => backend.sockets.size === 1, 3000, `the backend's idle connections to close (${backend.sockets.size} open)`);
  held.destroy();
});
