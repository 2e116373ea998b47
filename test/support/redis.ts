import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './free-port';

/** Debian's redis-server (`.ci/run` installs the `redis-server` package), or `REDIS_SERVER_BIN`. */
const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server';

/**
 * A real redis-server on a free loopback port, without persistence, so a restart loses
 * everything as a crashed cache would. `kill` and `start` again reuse the same port.
 */
export class RedisServer {
  private child: ChildProcess | undefined;
  port = 0;

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    if (!existsSync(REDIS_SERVER_BIN)) {
      throw new Error(`${REDIS_SERVER_BIN} is missing: install Debian's redis-server (.ci/run does) or set REDIS_SERVER_BIN`);
    }
    if (this.port === 0) this.port = await freePort();
    const child = spawn(REDIS_SERVER_BIN, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    this.child = child;
    const deadline = Date.now() + 5000;
    while (!(await answersPing(this.port))) {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode} on port ${this.port}`);
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${this.port} within 5 s`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this;
  }

  /** SIGKILL, as a crash: every key is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.setTimeout(500);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (chunk: Buffer) => {
      socket.destroy();
      resolve(chunk.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** Debian's redis-cli (it ships with redis-server), or `REDIS_CLI_BIN`. */
const REDIS_CLI_BIN = process.env.REDIS_CLI_BIN ?? '/usr/bin/redis-cli';

/** One redis-server of a `RedisCluster`. */
interface ClusterNode {
  readonly port: number;
  child: ChildProcess | undefined;
}

/**
 * A real Redis Cluster on loopback: `masters` redis-servers with `--cluster-enabled yes` (each
 * with `replicasPerMaster` replicas), slots spread by `redis-cli --cluster create`, no
 * persistence. `nodeTimeoutMs` is how long the others wait before calling a silent node failed
 * (and promoting its replica).
 */
export class RedisCluster {
  readonly nodes: ClusterNode[] = [];
  private dir: string | undefined;

  constructor(
    private readonly masters = 3,
    private readonly replicasPerMaster = 0,
    private readonly nodeTimeoutMs = 2000,
  ) {}

  /** The seed list as `REDIS_CLUSTER_NODES` takes it. */
  get seeds(): string {
    return this.nodes.map((node) => `127.0.0.1:${node.port}`).join(',');
  }

  async start(): Promise<this> {
    if (!existsSync(REDIS_SERVER_BIN) || !existsSync(REDIS_CLI_BIN)) {
      throw new Error(`${REDIS_SERVER_BIN} or ${REDIS_CLI_BIN} is missing: install Debian's redis-server (.ci/run does) or set REDIS_SERVER_BIN and REDIS_CLI_BIN`);
    }
    this.dir = mkdtempSync(join(tmpdir(), 'redis-cluster-'));
    const count = this.masters * (1 + this.replicasPerMaster);
    for (let i = 0; i < count; i++) this.nodes.push({ port: await freeClusterPort(), child: undefined });
    await Promise.all(this.nodes.map((node) => this.spawn(node)));
    const addresses = this.nodes.map((node) => `127.0.0.1:${node.port}`);
    const create = spawn(REDIS_CLI_BIN, ['--cluster', 'create', ...addresses, '--cluster-replicas', String(this.replicasPerMaster), '--cluster-yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    create.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    create.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const [code] = (await once(create, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`redis-cli --cluster create exited with ${code}:\n${output}`);
    await this.untilState((info) => info.includes('cluster_state:ok'), 15_000, 'cluster_state:ok on every node');
    // A replica that never synced with its master will not take its place (its data counts as too old).
    const deadline = Date.now() + 15_000;
    for (const node of this.nodes) {
      while (/role:slave/.test(String(await this.command(node.port, 'INFO', 'replication'))) && !/master_link_status:up/.test(String(await this.command(node.port, 'INFO', 'replication')))) {
        if (Date.now() > deadline) throw new Error(`the replica on port ${node.port} did not sync with its master within 15 s`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    return this;
  }

  /** `CLUSTER INFO` of every live node, waited on until `check` holds for each. */
  async untilState(check: (info: string) => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const infos = await Promise.all(this.nodes.filter((node) => node.child).map((node) => this.command(node.port, 'CLUSTER', 'INFO').catch(() => '')));
      if (infos.every((info) => check(String(info)))) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Sends one command to the node on `port` (no redirection followed). */
  async command(port: number, ...args: string[]): Promise<unknown> {
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return await client.call(args[0] as string, ...args.slice(1));
    } finally {
      client.disconnect();
    }
  }

  /** The ports of the nodes that are masters now. */
  async masterPorts(): Promise<number[]> {
    const live = this.nodes.find((node) => node.child);
    if (!live) return [];
    const lines = String(await this.command(live.port, 'CLUSTER', 'NODES')).trim().split('\n');
    return lines
      .filter((line) => / master /.test(line.replace(/myself,/, '')) && !/fail/.test(line.split(' ')[2] ?? ''))
      .map((line) => Number(/:(\d+)@/.exec(line)?.[1]));
  }

  /** How many keys matching `pattern` each master holds, by port. */
  async keysPerMaster(pattern: string): Promise<Map<number, number>> {
    const counts = new Map<number, number>();
    for (const port of await this.masterPorts()) {
      let cursor = '0';
      let count = 0;
      do {
        const [next, keys] = (await this.command(port, 'SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000')) as [string, string[]];
        cursor = next;
        count += keys.length;
      } while (cursor !== '0');
      counts.set(port, count);
    }
    return counts;
  }

  /** The port of the master serving `slot`. */
  async ownerOf(slot: number): Promise<number> {
    const live = this.nodes.find((node) => node.child) as ClusterNode;
    const ranges = (await this.command(live.port, 'CLUSTER', 'SLOTS')) as [number, number, [string, number, string]][];
    const range = ranges.find(([from, to]) => slot >= from && slot <= to);
    if (!range) throw new Error(`no node serves slot ${slot}`);
    return range[2][1];
  }

  /**
   * Moves one slot, with its keys, to the master on `toPort`, the way `redis-cli --cluster
   * reshard` does: IMPORTING/MIGRATING, MIGRATE of its keys, then the new owner told to all.
   */
  async moveSlot(slot: number, toPort: number): Promise<void> {
    const fromPort = await this.ownerOf(slot);
    if (fromPort === toPort) return;
    const fromId = String(await this.command(fromPort, 'CLUSTER', 'MYID'));
    const toId = String(await this.command(toPort, 'CLUSTER', 'MYID'));
    await this.command(toPort, 'CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', fromId);
    await this.command(fromPort, 'CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', toId);
    for (;;) {
      const keys = (await this.command(fromPort, 'CLUSTER', 'GETKEYSINSLOT', String(slot), '100')) as string[];
      if (keys.length === 0) break;
      await this.command(fromPort, 'MIGRATE', '127.0.0.1', String(toPort), '', '0', '5000', 'KEYS', ...keys);
    }
    for (const port of await this.masterPorts()) await this.command(port, 'CLUSTER', 'SETSLOT', String(slot), 'NODE', toId);
  }

  /** SIGKILL of the node on `port`, as a crash. */
  async killNode(port: number): Promise<void> {
    const node = this.nodes.find((candidate) => candidate.port === port);
    const child = node?.child;
    if (!node || !child || child.exitCode !== null) return;
    node.child = undefined;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  /** Starts a killed node again on its port, with its cluster identity and slots (its data is gone). */
  async restartNode(port: number): Promise<void> {
    const node = this.nodes.find((candidate) => candidate.port === port);
    if (!node || node.child) throw new Error(`no killed node on port ${port}`);
    await this.spawn(node);
  }

  /** Kills every node and removes their files. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => this.killNode(node.port)));
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  private async spawn(node: ClusterNode): Promise<void> {
    const dir = this.dir as string;
    const child = spawn(
      REDIS_SERVER_BIN,
      [
        '--port', String(node.port),
        '--bind', '127.0.0.1',
        '--cluster-enabled', 'yes',
        '--cluster-config-file', join(dir, `nodes-${node.port}.conf`),
        '--cluster-node-timeout', String(this.nodeTimeoutMs),
        '--dir', dir,
        '--dbfilename', `dump-${node.port}.rdb`,
        '--save', '',
        '--appendonly', 'no',
        '--loglevel', 'warning',
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    node.child = child;
    const deadline = Date.now() + 5000;
    while (!(await answersPing(node.port))) {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode} on port ${node.port}`);
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${node.port} within 5 s`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** A free port whose cluster bus port (10,000 above) is free too. */
async function freeClusterPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port + 10_000 <= 65_535 && (await isFree(port + 10_000))) return port;
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
