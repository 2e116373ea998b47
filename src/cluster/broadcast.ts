import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisLink } from './redis';
import type { ClusterSigner, SignedKind } from './signer';

/** What a broadcast says: one kind of message, one named value in it. */
export interface BroadcastKind {
  /** The channel, after the relay's key prefix. */
  readonly channel: string;
  /** The message's field that carries the value (kept as it was first written: relays of two versions meet in a rolling deploy). */
  readonly field: string;
  /** What the signature of its messages vouches for. */
  readonly signed: SignedKind;
}

/** A user whose streams end on every relay (logout, revoked access). */
export const END_USER: BroadcastKind = { channel: 'end-user', field: 'user', signed: 'end_user' };

/** A POST answer cancelled on one relay, for the relay that reads it and those that follow it. */
export const CANCEL_ANSWER: BroadcastKind = { channel: 'cancel-answer', field: 'topic', signed: 'cancel_answer' };

/**
 * Tells every other relay of the cluster one thing: one Redis channel that every relay listens
 * on, each acting on what it holds itself.
 */
export class Broadcast {
  private readonly channel: string;
  private readonly listener: Redis | Cluster;
  private onMessage: (value: string) => void = () => undefined;

  constructor(
    private readonly link: RedisLink,
    private readonly kind: BroadcastKind,
    logger: Logger,
    /** Signs what this relay publishes and checks what it hears; undefined: messages are trusted. */
    private readonly signer: ClusterSigner | undefined,
    onForged: (kind: SignedKind, detail: Record<string, string>) => void,
  ) {
    this.channel = `${link.prefix}:${kind.channel}`;
    // A subscribed connection serves nothing else. Subscribed again on every (re)connect: with
    // no offline queue, a subscribe sent while Redis is away fails instead of waiting. On a Redis
    // Cluster this is classic pub/sub too: a message published on any node reaches every node.
    this.listener = link.subscriber(kind.channel);
    this.listener.on('ready', () => {
      this.listener.subscribe(this.channel).catch((err: unknown) => logger.warn({ err, channel: kind.channel }, 'could not listen to the other relays'));
    });
    this.listener.on('message', (channel: string, message: string) => {
      if (channel !== this.channel) return;
      let parsed: Record<string, unknown> | null;
      try {
        parsed = JSON.parse(message) as typeof parsed;
      } catch {
        return logger.warn({ channel: kind.channel, message: message.slice(0, 200) }, 'ignored a malformed message from Redis');
      }
      // Anything on the channel is Redis's to carry, not ours to trust: a bad message must not stop the relay.
      if (typeof parsed !== 'object' || parsed === null) return;
      const { from, sig } = parsed;
      const value = parsed[kind.field];
      if (typeof value !== 'string' || from === link.instanceId) return;
      if (signer !== undefined && !(typeof from === 'string' && typeof sig === 'string' && signer.verify(kind.signed, [from, value], sig))) {
        return onForged(kind.signed, { [kind.field]: value });
      }
      this.onMessage(value);
    });
  }

  /** What this relay does when another one says something. */
  listen(onMessage: (value: string) => void): void {
    this.onMessage = onMessage;
  }

  /** Tells every other relay; rejects when Redis cannot take the message. */
  async publish(value: string): Promise<void> {
    const from = this.link.instanceId;
    const sig = this.signer?.sign(this.kind.signed, [from, value]);
    await this.link.commands.publish(this.channel, JSON.stringify({ from, [this.kind.field]: value, sig }));
  }
}
