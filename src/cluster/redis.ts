import { randomUUID } from 'node:crypto';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { keySlot } from './key-slot';

/** Longest wait between two reconnection attempts to Redis. */
const MAX_RECONNECT_DELAY_MS = 2000;
/** How often a Redis Cluster's state is asked (`CLUSTER INFO` on each master) for readiness. */
const CLUSTER_PROBE_MS = 1000;

/** One seed node of a Redis Cluster. */
export interface ClusterSeed {
  readonly host: string;
  readonly port: number;
}

/** Where the relays meet: one Redis server, or a Redis Cluster known by some of its nodes. */
export type RedisTarget = { readonly url: URL } | { readonly clusterNodes: readonly ClusterSeed[] };

/** The node key of a single Redis server (a cluster's nodes are keyed `host:port`). */
const SINGLE_NODE = 'single';

/**
 * `host:port` seed nodes as given (`REDIS_CLUSTER_NODES`, `redisClusterNodes`); throws a
 * TypeError naming the first bad entry. IPv6 hosts go in brackets: `[::1]:7000`.
 */
export function parseClusterSeeds(entries: readonly string[]): ClusterSeed[] {
  if (entries.length === 0) throw new TypeError('expected at least one host:port seed node');
  return entries.map((entry) => {
    const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:/[\]]+)):(\d{1,5})$/.exec(entry.trim());
    const port = Number(match?.[3]);
    if (!match || port < 1 || port > 65_535) throw new TypeError(`expected host:port, got "${entry}"`);
    return { host: (match[1] ?? match[2]) as string, port };
  });
}

/**
 * The relay's connections to Redis: one client for commands and scripts (a `Cluster` on a Redis
 * Cluster, which follows MOVED and ASK and learns the slots again after a resharding or a
 * failover), plus the subscriber connections made with `subscriber()` and `nodeConnection()`.
 * Redis trouble never throws out of here: commands fail fast while Redis is away (no offline
 * queue that would hold requests), the clients reconnect for ever, and each change of state is
 * logged once.
 */
export class RedisLink {
  /** This process among the relays: its slots, leases and readers are named after it. */
  readonly instanceId = randomUUID();
  readonly commands: Redis | Cluster;
  /** On a Redis Cluster: appends are announced on shard channels (`SPUBLISH`), heard node by node. */
  readonly sharded: boolean;
  private readonly cluster: Cluster | undefined;
  private readonly clients: (Redis | Cluster)[] = [];
  private readonly refreshListeners: (() => void)[] = [];
  private readonly readyListeners: (() => void)[] = [];
  /** Resolves the first time Redis is ready. */
  private readonly firstReady: Promise<void>;
  private readonly probe: NodeJS.Timeout | undefined;
  private connected = false;
  /** A cluster's state as its masters last said (a single server has none: true). */
  private stateOk: boolean;
  private up = false;
  private readies = 0;
  private lastError: string | undefined;
  private readonly where: string;

  constructor(
    private readonly target: RedisTarget,
    /** Every key starts with this, so several relay clusters can share one Redis. */
    readonly prefix: string,
    private readonly logger: Logger,
  ) {
    let reached: () => void = () => undefined;
    this.firstReady = new Promise((resolve) => (reached = resolve));
    this.readyListeners.push(() => reached());
    this.sharded = 'clusterNodes' in target;
    this.stateOk = !this.sharded;
    this.where = 'url' in target ? redacted(target.url) : target.clusterNodes.map((seed) => `${seed.host}:${seed.port}`).join(',');
    this.commands = this.connect('commands');
    this.commands.on('ready', () => {
      this.connected = true;
      if (this.cluster) void this.probeState();
      this.update();
    });
    this.commands.on('close', () => {
      this.connected = false;
      this.update();
    });
    if (this.commands instanceof Cluster) {
      this.cluster = this.commands;
      this.cluster.on('refresh', () => {
        for (const listener of this.refreshListeners) listener();
      });
      this.probe = setInterval(() => void this.probeState(), CLUSTER_PROBE_MS);
      this.probe.unref();
    }
  }

  /** Whether Redis answers commands now (on a cluster: and every master that answers says `cluster_state:ok`). */
  get ready(): boolean {
    return this.up;
  }

  /** How many times Redis became ready for this relay: a change means it was away in between. */
  get readyCount(): number {
    return this.readies;
  }

  /**
   * Whether Redis is ready, waiting up to `ms` for it when this relay has not reached it yet (it is
   * starting); one that reached it before and lost it is not waited for.
   */
  async readyWithin(ms: number): Promise<boolean> {
    if (this.up || this.readies > 0) return this.up;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
      timer.unref();
    });
    try {
      return await Promise.race([this.firstReady.then(() => this.up), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Calls `listener` each time Redis becomes ready again (at start too): state kept in Redis may need writing back. */
  onReady(listener: () => void): void {
    this.readyListeners.push(listener);
  }

  /** A new connection for classic pub/sub (a subscribed connection serves nothing else). */
  subscriber(name: string): Redis | Cluster {
    return this.connect(name);
  }

  /**
   * Which node serves `key` now, as a name for `nodeConnection`: on a Redis Cluster the master
   * of its slot (undefined while the slots are not known), else the one server.
   */
  nodeOf(key: string): string | undefined {
    if (!this.cluster) return SINGLE_NODE;
    return this.cluster.slots[keySlot(key)]?.[0];
  }

  /**
   * A new connection to one node (as `nodeOf` names it), for a subscriber of that node's shard
   * channels. It does not reconnect: once it closes, whoever used it must assume it missed messages.
   */
  nodeConnection(node: string, name: string): Redis {
    const options: RedisOptions = {
      ...this.options(name),
      // Subscribing waits for the connection, and fails once it could not be made.
      enableOfflineQueue: true,
      autoResubscribe: false,
      retryStrategy: () => null,
    };
    let client: Redis;
    if ('url' in this.target) {
      client = new Redis(this.target.url.href, options);
    } else {
      const colon = node.lastIndexOf(':');
      client = new Redis({ ...options, host: node.slice(0, colon), port: Number(node.slice(colon + 1)) });
    }
    return this.watch(client, name);
  }

  /** Asks a Redis Cluster for its slots again (a slot moved); `onSlotsRefreshed` listeners hear when it answered. */
  refreshSlots(): void {
    this.cluster?.refreshSlotsCache();
  }

  /** Calls `listener` each time a Redis Cluster's slots were read again (every few seconds, and after a MOVED). */
  onSlotsRefreshed(listener: () => void): void {
    this.refreshListeners.push(listener);
  }

  /**
   * Runs `SCRIPT LOAD` where scripts run: on every master of a Redis Cluster (a script is
   * cached per node), else on the one server. Resolves with the script's SHA-1.
   */
  async loadScript(script: string): Promise<string> {
    if (!this.cluster) return (await this.commands.call('SCRIPT', 'LOAD', script)) as string;
    const shas = await Promise.all(this.cluster.nodes('master').map((node) => node.call('SCRIPT', 'LOAD', script) as Promise<string>));
    const sha = shas[0];
    if (sha === undefined) throw new Error('no Redis Cluster master known');
    return sha;
  }

  /** Closes every connection at once (pending commands fail). */
  close(): void {
    clearInterval(this.probe);
    for (const client of this.clients) if (client.status !== 'end') client.disconnect(false);
  }

  private update(): void {
    const up = this.connected && this.stateOk;
    const was = this.up;
    this.up = up;
    if (up) this.lastError = undefined;
    if (!up && was) this.logger.error({ redis: this.where }, 'redis connection lost; cluster work waits for it');
    if (up && !was) {
      this.readies += 1;
      this.logger.info({ redis: this.where }, 'redis connected');
      for (const listener of this.readyListeners) listener();
    }
  }

  /**
   * A Redis Cluster is usable when its masters say `cluster_state:ok`. One that does not answer is
   * left out (its slots fail over, or the others soon say `fail`); none answering is not ok.
   */
  private async probeState(): Promise<void> {
    const cluster = this.cluster;
    if (!cluster) return;
    let ok = false;
    if (cluster.status === 'ready') {
      const answers = await Promise.all(
        cluster.nodes('master').map((node) =>
          (node.call('CLUSTER', 'INFO') as Promise<string>).then(
            (info) => /^cluster_state:ok\b/m.test(info),
            () => undefined,
          ),
        ),
      );
      const heard = answers.filter((answer) => answer !== undefined);
      ok = heard.length > 0 && heard.every(Boolean);
    }
    this.stateOk = ok;
    this.update();
  }

  private options(name: string): RedisOptions {
    return {
      connectionName: `sse-relay:${name}:${this.instanceId.slice(0, 8)}`,
      // A command sent while Redis is away fails at once: the relay decides what to do, nobody waits.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      retryStrategy: (attempt) => Math.min(50 * attempt, MAX_RECONNECT_DELAY_MS),
      lazyConnect: false,
    };
  }

  private connect(name: string): Redis | Cluster {
    if ('url' in this.target) return this.watch(new Redis(this.target.url.href, this.options(name)), name);
    const { enableOfflineQueue, retryStrategy, lazyConnect, ...nodeOptions } = this.options(name);
    const cluster = new Cluster(
      this.target.clusterNodes.map((seed) => ({ host: seed.host, port: seed.port })),
      {
        enableOfflineQueue,
        lazyConnect,
        clusterRetryStrategy: (attempt) => retryStrategy?.(attempt) ?? MAX_RECONNECT_DELAY_MS,
        // Each node's connection: no retry of its own; the cluster client learns the slots again instead.
        redisOptions: nodeOptions,
        slotsRefreshTimeout: 2000,
      },
    );
    cluster.on('node error', (err: Error, node: string) => this.logError(name, `${node}: ${err.message}`));
    return this.watch(cluster, name);
  }

  private watch<T extends Redis | Cluster>(client: T, name: string): T {
    client.on('error', (err: Error) => this.logError(name, err.message));
    this.clients.push(client);
    // A connection that gave up for good (a node's subscriber) is forgotten, so shard moves do not pile them up.
    client.once('end', () => {
      const index = this.clients.indexOf(client);
      if (index >= 0) this.clients.splice(index, 1);
    });
    return client;
  }

  /** ioredis reports every failed reconnect: one line per new kind of failure is enough. */
  private logError(connection: string, message: string): void {
    if (message === this.lastError) return;
    this.lastError = message;
    this.logger.error({ redis: this.where, connection, err: message }, 'redis error');
  }
}

/** The URL without its password, for logs. */
function redacted(url: URL): string {
  if (url.password === '') return url.href;
  const copy = new URL(url.href);
  copy.password = '***';
  return copy.href;
}
