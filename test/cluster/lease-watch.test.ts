import { Redis } from 'ioredis';
import { FixtureBackend } from '../support/fixture-backend';
import { RedisServer } from '../support/redis';
import { type RunningRelay, eventSourceAs, startRelay } from '../support/relay-server';
import { until } from '../support/until';

// A follower looks at its topic's lease every third of a lease. Nearly every look finds the owner
// alive, so the look is one plain PTTL; the claim's script runs only once the lease is gone.

const LEASE_MS = 300;
const redis = new RedisServer();
let backend: FixtureBackend;
const relays: RunningRelay[] = [];

beforeAll(async () => {
  await redis.start();
  backend = await new FixtureBackend().start();
});

afterAll(async () => {
  for (const relay of relays) await relay.close();
  await backend.close();
  await redis.kill();
});

async function calls(inspector: Redis): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const match of (await inspector.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) counts.set(match[1]!, Number(match[2]));
  return counts;
}

test("a follower's looks at an owner that is alive cost one PTTL each, not a script; the owner's renewals are the only scripts of an idle topic", async () => {
  for (let i = 0; i < 2; i += 1) relays.push(await startRelay(backend.url, { redisUrl: redis.url, clusterLeaseMs: LEASE_MS }));
  await until(() => relays.every((r) => r.relay.cluster!.ready), 5000, 'both relays on redis');
  const path = '/downloads/lease-watch/events';
  const clients = relays.map((relay) => eventSourceAs(`${relay.url}/api${path}`, 'alice'));
  const inspector = new Redis(redis.url);
  try {
    await until(() => clients.every((es) => es.readyState === es.OPEN), 5000, 'both streams open');
    await new Promise((resolve) => setTimeout(resolve, LEASE_MS));
    const before = await calls(inspector);
    const windowMs = 1500;
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    const after = await calls(inspector);
    const delta = (name: string): number => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    const scripts = delta('evalsha') + delta('eval');
    // The owner renews every third of a lease; the follower's looks would double that as scripts.
    const renewals = windowMs / (LEASE_MS / 3);
    expect(delta('pttl')).toBeGreaterThanOrEqual(renewals / 2);
    expect(scripts).toBeLessThanOrEqual(renewals + 5);
    expect(backend.requests.filter((request) => request.path === path)).toHaveLength(1);
  } finally {
    inspector.disconnect();
    for (const es of clients) es.close();
  }
});
