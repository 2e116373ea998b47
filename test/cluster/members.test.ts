import { Redis } from 'ioredis';
import { pino } from 'pino';
import { ClusterMembers } from '../../src/cluster/members';
import { RedisLink } from '../../src/cluster/redis';
import { ClusterSigner, type SignedKind } from '../../src/cluster/signer';
import { RedisServer } from '../support/redis';
import { until } from '../support/until';

const SECRET = 'the-cluster-signing-secret-0123456789';
const redis = new RedisServer();
const links: RedisLink[] = [];
const members: ClusterMembers[] = [];

function link(prefix: string): RedisLink {
  const made = new RedisLink({ url: new URL(redis.url) }, prefix, pino({ level: 'silent' }));
  links.push(made);
  return made;
}

function member(of: RedisLink, ttlMs: number, signer?: ClusterSigner, onForged?: (kind: SignedKind, detail: Record<string, string>) => void): ClusterMembers {
  const made = new ClusterMembers(of, ttlMs, signer, onForged);
  members.push(made);
  return made;
}

beforeAll(async () => {
  await redis.start();
});

afterAll(async () => {
  for (const made of members) await made.close();
  for (const made of links) made.close();
  await redis.kill();
});

test('relays on one Redis list each other; one that leaves is gone at once, one that stops beating within the TTL', async () => {
  const [a, b, c] = [link('members'), link('members'), link('members')];
  await until(() => a.ready && b.ready && c.ready, 5000, 'redis connected');
  const first = member(a, 600);
  const second = member(b, 600);
  const third = member(c, 600);
  const ids = async (): Promise<string[]> => (await first.list()).map((m) => m.id).sort();
  await until(async () => (await ids()).length === 3, 5000, 'three members');
  expect(await ids()).toEqual([a.instanceId, b.instanceId, c.instanceId].sort());
  expect((await second.list()).find((m) => m.id === a.instanceId)).toEqual(first.self);
  expect(first.self).toEqual({ id: a.instanceId, hostname: expect.any(String) as string, pid: process.pid, startedAt: expect.any(String) as string });

  await second.close();
  expect(await ids()).toEqual([a.instanceId, c.instanceId].sort());

  // The third relay is cut off from Redis without a goodbye: its membership lapses.
  c.close();
  await until(async () => (await ids()).length === 1, 3000, 'the silent relay gone');
  expect(await ids()).toEqual([a.instanceId]);
  await third.close();
});

test('with a signing secret, a description written without it is not listed, and is reported as forged', async () => {
  const [a, b] = [link('signed'), link('signed')];
  await until(() => a.ready && b.ready, 5000, 'redis connected');
  const forged: string[] = [];
  const signed = member(a, 5000, new ClusterSigner(SECRET), (kind, detail) => forged.push(`${kind} ${detail.id ?? ''}`));
  // A relay with another secret, and one without any.
  member(b, 5000, new ClusterSigner(`${SECRET}-other`));
  const writer = new Redis(redis.url);
  const lapsesAt = Date.now() + 60_000;
  await writer.zadd('{signed:members}:live', lapsesAt, 'intruder');
  await writer.hset('{signed:members}:info', 'intruder', JSON.stringify({ id: 'intruder', hostname: 'evil', pid: 1, startedAt: new Date().toISOString() }));
  await writer.zadd('{signed:members}:live', lapsesAt, 'garbage');
  await writer.hset('{signed:members}:info', 'garbage', 'not json');
  writer.disconnect();

  await until(async () => (await signed.list()).length === 1 && forged.includes(`member ${b.instanceId}`), 5000, 'the beats of both relays');
  expect((await signed.list()).map((m) => m.id)).toEqual([a.instanceId]);
  expect(forged).toContain('member intruder');
  // Without a secret, Redis is trusted: the intruder is listed, the garbage is not.
  const plain = link('signed');
  await until(() => plain.ready, 5000, 'redis connected');
  const trusting = member(plain, 5000);
  expect((await trusting.list()).map((m) => m.id).sort()).toEqual([a.instanceId, b.instanceId, 'intruder'].sort());
});
