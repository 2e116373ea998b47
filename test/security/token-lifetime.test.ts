import { EventSource } from 'eventsource';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, TEST_SECRET, startRelay, tokenFor } from '../support/relay-server';
import { tokenEventSource } from '../support/token-event-source';
import { until } from '../support/until';

const PATH = '/downloads/lifetime/events';
const TOLERANCE_SEC = 1;

let backend: FixtureBackend;
let relay: RunningRelay;

beforeAll(async () => {
  backend = await new FixtureBackend().start();
});
afterAll(() => backend.close());
const clients: EventSource[] = [];
afterEach(async () => {
  for (const es of clients.splice(0)) es.close();
  await relay.close();
});

/** A `tokenEventSource` closed after each test. */
function client(url: string, token: () => string) {
  const made = tokenEventSource(url, token);
  clients.push(made.es);
  return made;
}

/** A token whose `exp` is `inSec` seconds from now (rounded down to the second, as `exp` is). */
function tokenExpiringIn(user: string, inSec: number): { token: string; exp: number } {
  const exp = Math.floor(Date.now() / 1000) + inSec;
  return { token: tokenFor(user, { expiresIn: exp - Math.floor(Date.now() / 1000) }), exp };
}

function startLifetimeRelay(): Promise<RunningRelay> {
  return startRelay(backend.url, { jwt: { secret: TEST_SECRET, clockToleranceSec: TOLERANCE_SEC }, retryHintMs: 100 });
}

test("a stream ends at its token's exp plus the clock tolerance; a fresh token resumes it without a gap, the expired one gets 401", async () => {
  relay = await startLifetimeRelay();
  backend.emit(PATH, 'data: e1\n');
  const short = tokenExpiringIn('alice', 2);
  let current = short.token;
  const fresh = client(`${relay.url}/api${PATH}`, () => current);
  const stale = client(`${relay.url}/api${PATH}`, () => short.token);
  await until(() => fresh.log.got.length === 1 && stale.log.got.length === 1, 5000, 'e1 on both');
  const endsAt = short.exp * 1000 + TOLERANCE_SEC * 1000;

  await until(() => fresh.log.errors.length > 0, 6000, 'the end of the stream at expiry');
  const endedAt = fresh.log.errors[0]!;
  expect(endedAt).toBeGreaterThanOrEqual(endsAt - 5);
  expect(endedAt - endsAt).toBeLessThan(1000);
  // Emitted while the first token's stream is gone: the fresh token must get it on resume.
  backend.emit(PATH, 'data: e2\n');
  current = tokenFor('alice');
  backend.emit(PATH, 'data: e3\n');
  await until(() => fresh.log.got.length === 3, 5000, 'the resumed stream');
  expect(fresh.log.got).toEqual(['e1', 'e2', 'e3']);
  expect(fresh.log.statuses).toEqual([200, 200]);

  // The client that kept its expired token: 401 on the reconnect, never an anonymous stream.
  await until(() => stale.es.readyState === EventSource.CLOSED, 5000, 'the stale client refused');
  expect(stale.log.statuses).toEqual([200, 401]);
  expect(stale.log.got).toEqual(['e1']);
  expect(relay.relay.stats.closeReasons.get('token_expired')).toBe(2);
}, 20_000);

test('relay.endUserStreams(user) ends that user’s streams at once, not anyone else’s; a fresh credential resumes without a gap, a revoked user gets 404', async () => {
  relay = await startLifetimeRelay();
  backend.own(PATH, 'alice', 'bob', 'carol');
  try {
    const url = `${relay.url}/api${PATH}`;
    const alice = client(url, () => tokenFor('alice'));
    const bob = client(url, () => tokenFor('bob'));
    const carol = client(url, () => tokenFor('carol'));
    backend.emit(PATH, 'data: f1\n');
    const all = [alice, bob, carol];
    await until(() => all.every((c) => c.log.got.at(-1) === 'f1'), 5000, 'f1 everywhere');
    const before = all.map((c) => c.log.got.length);

    // Bob's access is revoked: the backend says no from now on, and the app ends his streams.
    backend.own(PATH, 'alice', 'carol');
    expect(await relay.relay.endUserStreams('bob')).toBe(1);
    // Alice's session is rotated: her streams end and come back with her new credential.
    expect(await relay.relay.endUserStreams('alice')).toBe(1);
    expect(await relay.relay.endUserStreams('nobody')).toBe(0);
    backend.emit(PATH, 'data: f2\n');
    await until(() => alice.log.got.at(-1) === 'f2' && carol.log.got.at(-1) === 'f2', 5000, 'f2 to alice and carol');
    await until(() => bob.es.readyState === EventSource.CLOSED, 5000, 'bob refused');

    expect(alice.log.got.slice(before[0])).toEqual(['f2']);
    expect(alice.log.errors).toHaveLength(1);
    expect(carol.log.errors).toHaveLength(0);
    // Bob's yes was cached for 5 s; it was forgotten, so his reconnect asked the backend.
    expect(bob.log.statuses).toEqual([200, 404]);
    expect(bob.log.got).not.toContain('f2');
    expect(relay.relay.stats.closeReasons.get('ended_by_app')).toBe(2);
  } finally {
    backend.owners.delete(PATH);
  }
}, 20_000);

test('a multiplexed stream ends at its token’s exp and on endUserStreams too, and resumes with a fresh token without a gap', async () => {
  relay = await startLifetimeRelay();
  const path = '/downloads/lifetime-mx/events';
  backend.emit(path, 'data: m1\n');
  const short = tokenExpiringIn('frank', 2);
  let current = short.token;
  const mx = client(`${relay.url}/api/events?topic=download:lifetime-mx`, () => current);
  const data = (): string[] => mx.log.got.map((raw) => (JSON.parse(raw) as { data: string }).data);
  await until(() => data().length === 1, 5000, 'm1');

  await until(() => mx.log.errors.length === 1, 6000, 'the end at expiry');
  expect(mx.log.errors[0]! - (short.exp * 1000 + TOLERANCE_SEC * 1000)).toBeLessThan(1000);
  backend.emit(path, 'data: m2\n');
  current = tokenFor('frank');
  await until(() => data().length === 2, 5000, 'm2 after the resume');

  expect(await relay.relay.endUserStreams('frank')).toBe(1);
  backend.emit(path, 'data: m3\n');
  await until(() => data().length === 3, 5000, 'm3 after the app ended the stream');
  expect(data()).toEqual(['m1', 'm2', 'm3']);
  expect(mx.log.errors).toHaveLength(2);
  expect(mx.log.statuses).toEqual([200, 200, 200]);
}, 20_000);
