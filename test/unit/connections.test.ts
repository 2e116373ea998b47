import { type Lease, MemoryConnectionCounter, type Refusal } from '../../src/limits/connections';

function leaseOf(result: Lease | Refusal): Lease {
  if (!result.ok) throw new Error(`refused by ${result.limit}`);
  return result;
}

test('a user at the per-user limit is refused while other users still get slots', async () => {
  const counter = new MemoryConnectionCounter({ total: 10, perUser: 2, perIp: 10 });
  leaseOf(await counter.acquire('alice', '10.0.0.1'));
  leaseOf(await counter.acquire('alice', '10.0.0.2'));
  expect(await counter.acquire('alice', '10.0.0.3')).toEqual({ ok: false, limit: 'perUser' });
  leaseOf(await counter.acquire('bob', '10.0.0.1'));
});

test('an IP at the per-IP limit is refused whichever user asks', async () => {
  const counter = new MemoryConnectionCounter({ total: 10, perUser: 10, perIp: 2 });
  leaseOf(await counter.acquire('alice', '10.0.0.1'));
  leaseOf(await counter.acquire('bob', '10.0.0.1'));
  expect(await counter.acquire('carol', '10.0.0.1')).toEqual({ ok: false, limit: 'perIp' });
  leaseOf(await counter.acquire('carol', '10.0.0.2'));
});

test('a full relay names the total limit even when the user and IP are also at theirs', async () => {
  const counter = new MemoryConnectionCounter({ total: 1, perUser: 1, perIp: 1 });
  leaseOf(await counter.acquire('alice', '10.0.0.1'));
  expect(await counter.acquire('alice', '10.0.0.1')).toEqual({ ok: false, limit: 'total' });
});

test('a released slot can be taken again, and a refusal holds nothing', async () => {
  const counter = new MemoryConnectionCounter({ total: 2, perUser: 1, perIp: 2 });
  const lease = leaseOf(await counter.acquire('alice', '10.0.0.1'));
  await counter.acquire('alice', '10.0.0.1');
  expect(counter.snapshot()).toEqual({ total: 1, users: 1, ips: 1 });
  lease.release();
  leaseOf(await counter.acquire('alice', '10.0.0.1'));
});

test('releasing a lease twice frees one slot, not two', async () => {
  const counter = new MemoryConnectionCounter({ total: 2, perUser: 2, perIp: 2 });
  const first = leaseOf(await counter.acquire('alice', '10.0.0.1'));
  leaseOf(await counter.acquire('alice', '10.0.0.1'));
  first.release();
  first.release();
  expect(counter.snapshot()).toEqual({ total: 1, users: 1, ips: 1 });
  leaseOf(await counter.acquire('alice', '10.0.0.1'));
  expect(await counter.acquire('alice', '10.0.0.1')).toEqual({ ok: false, limit: 'total' });
});

test('users and IPs with no open stream are forgotten, so the maps do not grow with every visitor', async () => {
  const counter = new MemoryConnectionCounter({ total: 1000, perUser: 1, perIp: 1 });
  const leases = await Promise.all(Array.from({ length: 100 }, (_, i) => counter.acquire(`user${i}`, `10.0.0.${i}`)));
  expect(counter.snapshot()).toEqual({ total: 100, users: 100, ips: 100 });
  for (const lease of leases) leaseOf(lease).release();
  expect(counter.snapshot()).toEqual({ total: 0, users: 0, ips: 0 });
});

test("a user's streams and plain calls have a per-user count each, a calls slot goes back to its own count, and the total and per-IP caps count both", async () => {
  const counter = new MemoryConnectionCounter({ total: 5, perUser: 1, perIp: 4 });
  leaseOf(await counter.acquire('alice', '10.0.0.1'));
  const call = leaseOf(await counter.acquire('alice', '10.0.0.1', 'calls'));
  expect(await counter.acquire('alice', '10.0.0.1', 'calls')).toEqual({ ok: false, limit: 'perUser' });
  // No id spelled like a pool reaches another count.
  leaseOf(await counter.acquire('calls:alice', '10.0.0.1'));
  leaseOf(await counter.acquire('calls:alice', '10.0.0.1', 'calls'));
  expect(await counter.acquire('bob', '10.0.0.1', 'calls')).toEqual({ ok: false, limit: 'perIp' });
  expect(counter.snapshot()).toEqual({ total: 4, users: 4, ips: 1 });
  call.release();
  expect(await counter.acquire('alice', '10.0.0.1')).toEqual({ ok: false, limit: 'perUser' });
  leaseOf(await counter.acquire('alice', '10.0.0.1', 'calls'));
});
