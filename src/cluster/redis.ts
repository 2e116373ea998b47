import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** Longest wait between two reconnection attempts to Redis. */
const MAX_RECONNECT_DELAY_MS = 2000;

/**
 * The relay's connections to Redis: one for commands and scripts, and one per blocking
 * reader made with `blocking()`. Redis trouble never throws out of here: commands fail
 * fast while Redis is away (no offline queue that would hold requests), the clients
 * reconnect for ever, and each change of state is logged once.
 */
export class RedisLink {
  /** This process among the relays: its slots, leases and readers are named after it. */
  readonly instanceId = randomUUID();
  readonly commands: Redis;
  private readonly clients: Redis[] = [];
  private up = false;
  private lastError: string | undefined;

  constructor(
    readonly url: URL,
    /** Every key starts with this, so several relay clusters can share one Redis. */
    readonly prefix: string,
    private readonly logger: Logger,
  ) {
    this.commands = this.connect('commands');
    this.commands.on('ready', () => {
      if (!this.up) logger.info({ redis: redacted(url) }, 'redis connected');
      this.up = true;
      this.lastError = undefined;
    });
    this.commands.on('close', () => {
      if (this.up) logger.error({ redis: redacted(url) }, 'redis connection lost; cluster work waits for it');
      this.up = false;
    });
  }

  /** Whether the command connection is up and Redis answered its ready check. */
  get ready(): boolean {
    return this.up;
  }

  /** A new connection for a blocking reader (a blocked connection can serve nothing else). */
  blocking(name: string): Redis {
    return this.connect(name);
  }

  /** Closes every connection at once (pending commands fail). */
  close(): void {
    for (const client of this.clients) if (client.status !== 'end') client.disconnect(false);
  }

  private connect(name: string): Redis {
    const client = new Redis(this.url.href, {
      connectionName: `sse-relay:${name}:${this.instanceId.slice(0, 8)}`,
      // A command sent while Redis is away fails at once: the relay decides what to do, nobody waits.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      retryStrategy: (attempt) => Math.min(50 * attempt, MAX_RECONNECT_DELAY_MS),
      lazyConnect: false,
    });
    client.on('error', (err: Error) => {
      // ioredis reports every failed reconnect: one line per new kind of failure is enough.
      const message = err.message;
      if (message === this.lastError) return;
      this.lastError = message;
      this.logger.error({ redis: redacted(this.url), connection: name, err: message }, 'redis error');
    });
    this.clients.push(client);
    return client;
  }
}

/** The URL without its password, for logs. */
function redacted(url: URL): string {
  if (url.password === '') return url.href;
  const copy = new URL(url.href);
  copy.password = '***';
  return copy.href;
}
