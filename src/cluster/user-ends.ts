import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisLink } from './redis';
import type { ClusterSigner, SignedKind } from './signer';

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
    /** Signs what this relay publishes and checks what it hears; undefined: messages are trusted. */
    private readonly signer: ClusterSigner | undefined,
    onForged: (kind: SignedKind, detail: Record<string, string>) => void,
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
      let parsed: { from?: unknown; user?: unknown; sig?: unknown } | null;
      try {
        parsed = JSON.parse(message) as typeof parsed;
      } catch {
        return logger.warn({ message: message.slice(0, 200) }, 'ignored a malformed end-user message');
      }
      // Anything on the channel is Redis's to carry, not ours to trust: a bad message must not stop the relay.
      if (typeof parsed !== 'object' || parsed === null) return;
      const { from, user, sig } = parsed;
      if (typeof user !== 'string' || from === link.instanceId) return;
      if (signer !== undefined && !(typeof from === 'string' && typeof sig === 'string' && signer.verify('end_user', [from, user], sig))) {
        return onForged('end_user', { user });
      }
      this.onEnd(user);
    });
  }

  /** What this relay does when another one says a user's streams end. */
  listen(onEnd: (user: string) => void): void {
    this.onEnd = onEnd;
  }

  /** Tells every other relay to end the user's streams; rejects when Redis cannot take the message. */
  async publish(user: string): Promise<void> {
    const from = this.link.instanceId;
    const sig = this.signer?.sign('end_user', [from, user]);
    await this.link.commands.publish(this.channel, JSON.stringify({ from, user, sig }));
  }
}
