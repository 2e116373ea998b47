/**
 * The Redis the bench's relays share, as the scenarios measure it: one redis-server, or a
 * three-master Redis Cluster made by the tests' helper (test/support/redis.ts), on the subject CPU.
 */
import { execFileSync } from 'node:child_process';
import { Redis } from 'ioredis';
import type { Lab } from './lab';
import { freePort } from '../test/support/free-port';
import { RedisCluster } from '../test/support/redis';

const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server';

/** A Redis the relays share, as the bench measures it. */
export interface BenchRedis {
  /** What the relays are given to find it. */
  readonly env: NodeJS.ProcessEnv;
  /** Calls and CPU so far, summed over every master. */
  stats(): Promise<RedisStats>;
  stop(): Promise<void>;
}

export interface RedisStats {
  calls: Map<string, number>;
  cpuS: number;
}

/** A redis-server without persistence on a free loopback port, on `core`. */
export async function startRedis(lab: Lab, core: number | undefined): Promise<BenchRedis> {
  const port = await freePort();
  const proc = lab.spawn('redis', REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], core);
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.ping();
      return {
        env: { REDIS_URL: url },
        stats: () => redisStats([client]),
        async stop() {
          client.disconnect();
          await proc.stop();
        },
      };
    } catch (err) {
      client.disconnect();
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** A three-master Redis Cluster (the tests' helper), every node moved onto `core`. */
export async function startRedisCluster(core: number | undefined): Promise<BenchRedis> {
  const cluster = await new RedisCluster(3, 0).start();
  if (core !== undefined) for (const node of cluster.nodes) if (node.child?.pid !== undefined) execFileSync('taskset', ['-pc', String(core), String(node.child.pid)], { stdio: 'ignore' });
  const clients = (await cluster.masterPorts()).map((port) => new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0 }));
  return {
    env: { REDIS_CLUSTER_NODES: cluster.seeds },
    stats: () => redisStats(clients),
    async stop() {
      for (const client of clients) client.disconnect();
      await cluster.stop();
    },
  };
}

async function redisStats(clients: readonly Redis[]): Promise<RedisStats> {
  const calls = new Map<string, number>();
  let cpuS = 0;
  for (const client of clients) {
    for (const match of (await client.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
      const name = match[1] as string;
      calls.set(name, (calls.get(name) ?? 0) + Number(match[2]));
    }
    const cpu = await client.info('cpu');
    const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? NaN);
    cpuS += field('used_cpu_user') + field('used_cpu_sys');
  }
  return { calls, cpuS };
}
