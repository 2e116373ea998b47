import type { TopicGrants } from '../src/relay/grants';

/** What a verified token said that the relay uses: the user, when the token stops being valid, and the topics it grants. */
export interface VerifiedToken {
  readonly user: string;
  /** The token's `exp`, in epoch milliseconds. */
  readonly expiresAtMs: number;
  readonly grants?: TopicGrants | undefined;
}

/**
 * Tokens already verified, keyed by the raw token string, each kept only until its own `exp`
 * and at most `max` of them (the least recently used go first). A browser's `EventSource`
 * reconnects, and a page's REST calls, carry the same token again and again: its signature
 * need not be checked each time. Only tokens that passed every check go in; a refused one is
 * verified again on each request, so an answer can never change from no to yes by caching.
 */
export class TokenCache {
  private readonly entries = new Map<string, VerifiedToken>();

  constructor(private readonly max: number) {}

  /** The verified token, if it was seen, is still before its `exp`, and was not pushed out. */
  get(token: string, now = Date.now()): VerifiedToken | undefined {
    const entry = this.entries.get(token);
    if (entry === undefined) return undefined;
    this.entries.delete(token);
    if (now >= entry.expiresAtMs) return undefined;
    // Map iteration is insertion order: moving a hit to the end keeps the oldest first.
    this.entries.set(token, entry);
    return entry;
  }

  /** Remembers a token that passed verification; one already expired is not kept. */
  set(token: string, verified: VerifiedToken, now = Date.now()): void {
    if (this.max === 0 || now >= verified.expiresAtMs) return;
    this.entries.delete(token);
    this.entries.set(token, verified);
    if (this.entries.size > this.max) {
      const oldest = this.entries.keys().next();
      if (oldest.done !== true) this.entries.delete(oldest.value);
    }
  }

  get size(): number {
    return this.entries.size;
  }
}
