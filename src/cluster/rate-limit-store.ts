import { createHash } from 'node:crypto';
import { RedisStore } from 'rate-limit-redis';
import type { RedisLink } from './redis';

/**
 * express-rate-limit's Redis store (rate-limit-redis) on the relay's command connection, so
 * the per-minute budget is shared by every relay. Each key is its own script call, so a Redis
 * Cluster spreads them over its shards; the scripts are loaded on every master, where they run.
 *
 * The store loads its two scripts once, in `init`, and keeps the promise: had Redis been away
 * then, every later request would fail on that rejected promise for good. So a `SCRIPT LOAD`
 * that cannot reach Redis answers the script's SHA-1 (what Redis would have answered); the
 * first `EVALSHA` after Redis is back gets NOSCRIPT, on which the store loads the script again.
 */
export function redisRateLimitStore(link: RedisLink): RedisStore {
  return new RedisStore({
    prefix: `${link.prefix}:rate:`,
    sendCommand: async (...args: string[]) => {
      const script = args[0]?.toUpperCase() === 'SCRIPT' && args[1]?.toUpperCase() === 'LOAD' ? args[2] : undefined;
      try {
        if (script !== undefined) return await link.loadScript(script);
        return (await link.commands.call(args[0] ?? '', ...args.slice(1))) as string | number;
      } catch (err) {
        if (script !== undefined) return createHash('sha1').update(script).digest('hex');
        throw err;
      }
    },
  });
}
