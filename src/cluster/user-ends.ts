import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisLink } from './redis';

/**
 * Ends a user's streams on every relay (logout, revoked access): one Redis channel that
 * every relay listens on, each ending the streams it holds itself.
 */
export class UserEnds {
  private readonly channel: string;
  private readonly listener: Redis | Cluster;
  private onEnd: (user: string) => void = () => undefined;

  constructor(
    private readonly link: RedisLink,
    logger: Logger,
  ) {
    this.channel = `${link.prefix}:end-user`;
    // A subscribed connection serves nothing else. Subscribed again on every (re)connect: with
    // no offline queue, a subscribe sent while Redis is away fails instead of waiting. On a Redis
    // Cluster this is classic pub/sub too: a message published on any node reaches every node.
    this.listener = link.subscriber('end-user');
    this.listener.on('ready', () => {
      this.listener.subscribe(this.channel).catch((err: unknown) => logger.warn({ err }, 'could not listen for ended users'));
    });
    this.listener.on('message', (channel: string, message: string) => {
      if (channel !== this.channel) return;
      let parsed: { from?: unknown; user?: unknown };
      try {
        parsed = JSON.parse(message) as typeof parsed;
      } catch {
        return logger.warn({ message: message.slice(0, 200) }, 'ignored a malformed end-user message');
      }
      // Anything on the channel is Redis's to carry, not ours to trust: a bad message must not stop the relay.
      if (typeof parsed.user === 'string' && parsed.from !== link.instanceId) this.onEnd(parsed.user);
    });
  }

  /** What this relay does when another one says a user's streams end. */
  listen(onEnd: (user: string) => void): void {
    this.onEnd = onEnd;
  }

  /** Tells every other relay to end the user's streams; rejects when Redis cannot take the message. */
  async publish(user: string): Promise<void> {
    await this.link.commands.publish(this.channel, JSON.stringify({ from: this.link.instanceId, user }));
  }
}
