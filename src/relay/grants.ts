/** Most patterns a token's topics claim may list: a token travels in every request's header or cookie. */
export const MAX_GRANTS = 100;
/** Longest pattern: a topic's kind, its colon and an id of at most 128 characters. */
const MAX_GRANT_LENGTH = 160;

// Printable ASCII without spaces, as topic names are; `*` only as a pattern's last character.
const EXACT = /^[\x21-\x29\x2b-\x7e]+$/;

/**
 * The topics a verified token admits its user to without asking the backend: each pattern is a
 * topic (`download:abc`) or a prefix ending in `*` (`download:*`, `download:tenant7-*`). A prefix
 * must name a kind (it contains the `:`): `*` alone, or `down*`, would admit to every topic of
 * kinds the issuer may never have meant, including ones added later.
 */
export class TopicGrants {
  private constructor(
    private readonly exact: ReadonlySet<string>,
    private readonly prefixes: readonly string[],
  ) {}

  /**
   * The grants of a claim's value, or why it grants nothing: it must be an array of at most
   * `MAX_GRANTS` patterns, each valid. One bad pattern voids the whole claim, so a mistake in the
   * issuer can only ever take access away (back to asking the backend), never widen it.
   */
  static parse(claim: unknown): TopicGrants | string {
    if (!Array.isArray(claim)) return 'it is not an array';
    if (claim.length > MAX_GRANTS) return `it lists ${claim.length} patterns, more than ${MAX_GRANTS}`;
    const exact = new Set<string>();
    const prefixes: string[] = [];
    for (const pattern of claim as unknown[]) {
      if (typeof pattern !== 'string') return 'an entry is not a string';
      if (pattern.length === 0 || pattern.length > MAX_GRANT_LENGTH) return `an entry is empty or longer than ${MAX_GRANT_LENGTH} characters`;
      if (!pattern.endsWith('*')) {
        if (!EXACT.test(pattern)) return 'an entry has a character topics do not (a space, a control character, one past U+007E, or a * before its end)';
        exact.add(pattern);
        continue;
      }
      const prefix = pattern.slice(0, -1);
      if (prefix.length > 0 && !EXACT.test(prefix)) return 'an entry has a character topics do not (a space, a control character, one past U+007E, or a * before its end)';
      if (!prefix.includes(':')) return `the prefix "${pattern}" names no kind of topic (write "download:*", not "*" or "down*")`;
      prefixes.push(prefix);
    }
    return new TopicGrants(exact, prefixes);
  }

  /** Whether `topic` matches one of the patterns. */
  admits(topic: string): boolean {
    if (this.exact.has(topic)) return true;
    for (const prefix of this.prefixes) if (topic.startsWith(prefix)) return true;
    return false;
  }
}
