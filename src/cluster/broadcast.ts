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

/** One kind of broadcast: what this relay says, and what it does when another one says it. */
export interface Broadcast {
  /** Tells every other relay; rejects when Redis cannot take the message. */
  publish(value: string): Promise<void>;
  /** What this relay does when another one says something. */
  listen(onMessage: (value: string) => void): void;
}

/**
 * Messages from one relay to every other: one Redis channel per kind, all heard on one
 * connection, each relay acting on what it holds itself.
 */
export class Broadcasts {
  private readonly listener: Redis | Cluster;
  private readonly kinds = new Map<string, { kind: BroadcastKind; onMessage: (value: string) => void }>();

  constructor(
    private readonly link: RedisLink,
    private readonly logger: Logger,
    /** Signs what this relay publishes and checks what it hears; undefined: messages are trusted. */
    private readonly signer: ClusterSigner | undefined,
    private readonly onForged: (kind: SignedKind, detail: Record<string, string>) => void,
  ) {
    // A subscribed connection serves nothing else. Subscribed again on every (re)connect: with
    // no offline queue, a subscribe sent while Redis is away fails instead of waiting. On a Redis
    // Cluster this is classic pub/sub too: a message published on any node reaches every node.
    this.listener = link.subscriber('broadcasts');
    this.listener.on('ready', () => {
      for (const channel of this.kinds.keys()) this.subscribe(channel);
    });
    this.listener.on('message', (channel: string, message: string) => this.hear(channel, message));
  }

  /** The broadcast of one kind of message. */
  of(kind: BroadcastKind): Broadcast {
    const channel = `${this.link.prefix}:${kind.channel}`;
    const entry = { kind, onMessage: (_value: string): void => undefined };
    this.kinds.set(channel, entry);
    if (this.listener.status === 'ready') this.subscribe(channel);
    return {
      publish: async (value) => {
        const from = this.link.instanceId;
        const sig = this.signer?.sign(kind.signed, [from, value]);
        await this.link.commands.publish(channel, JSON.stringify({ from, [kind.field]: value, sig }));
      },
      listen: (onMessage) => {
        entry.onMessage = onMessage;
      },
    };
  }

  private subscribe(channel: string): void {
    this.listener.subscribe(channel).catch((err: unknown) => this.logger.warn({ err, channel }, 'could not listen to the other relays'));
  }

  private hear(channel: string, message: string): void {
    const entry = this.kinds.get(channel);
    if (entry === undefined) return;
    const { kind } = entry;
    let parsed: Record<string, unknown> | null;
    try {
      parsed = JSON.parse(message) as typeof parsed;
    } catch {
      return this.logger.warn({ channel, message: message.slice(0, 200) }, 'ignored a malformed message from Redis');
    }
    // Anything on the channel is Redis's to carry, not ours to trust: a bad message must not stop the relay.
    if (typeof parsed !== 'object' || parsed === null) return;
    const { from, sig } = parsed;
    const value = parsed[kind.field];
    if (typeof value !== 'string' || from === this.link.instanceId) return;
    if (this.signer !== undefined && !(typeof from === 'string' && typeof sig === 'string' && this.signer.verify(kind.signed, [from, value], sig))) {
      return this.onForged(kind.signed, { [kind.field]: value });
    }
    entry.onMessage(value);
  }
}
