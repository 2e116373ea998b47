import { createHmac, timingSafeEqual } from 'node:crypto';
import { MIN_SECRET_LENGTH } from '../jwt';

/**
 * What a signature vouches for: one entry of a topic's shared history, one ended-user or
 * cancelled-answer message, or one relay's membership; or a user's digest in an answer's keys
 * (`answer_user`: keyed, so that reading Redis does not tell whose answers they are).
 */
export type SignedKind = 'entry' | 'end_user' | 'cancel_answer' | 'member' | 'answer_user';

/**
 * HMAC-SHA256 with a secret every relay of a cluster shares, over what one relay writes to Redis
 * for the others to act on. Redis holds no secret: whoever can write to it can still delete, stall
 * or replay what is there, but cannot make a relay relay an event, end, finish or ended user that
 * no relay wrote.
 */
export class ClusterSigner {
  private readonly secret: Buffer;

  constructor(secret: string) {
    if (secret.trim().length < MIN_SECRET_LENGTH) {
      throw new TypeError(`redisSigningSecret must be at least ${MIN_SECRET_LENGTH} characters (not counting surrounding spaces)`);
    }
    this.secret = Buffer.from(secret, 'utf8');
  }

  /** The signature of `parts` (for `kind`), base64url. */
  sign(kind: SignedKind, parts: readonly string[]): string {
    const hmac = createHmac('sha256', this.secret);
    // Each part with its byte length before it: no two lists of parts read as the same bytes.
    for (const part of [kind, ...parts]) hmac.update(`${Buffer.byteLength(part, 'utf8')}:`).update(part, 'utf8');
    return hmac.digest('base64url');
  }

  /** Whether `signature` is the signature of `parts` (for `kind`). */
  verify(kind: SignedKind, parts: readonly string[], signature: string | undefined): boolean {
    if (signature === undefined) return false;
    const expected = Buffer.from(this.sign(kind, parts), 'latin1');
    const given = Buffer.from(signature, 'latin1');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}
