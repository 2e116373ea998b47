import { createHash } from 'node:crypto';

/**
 * The `id:` of every event on a multiplexed stream: the last id of each of its topics, so that
 * the browser's own `Last-Event-ID` resumes all of them at once. Opaque to clients.
 *
 * ```
 * cursor = "1" *( "~" entry )
 * entry  = ( "*" hash / "-" hash / "=" topic ) [ "." id / "!" ]
 * ```
 *
 * - `*hash`: a topic of the request's URL, live, named by 6 base64url characters of the SHA-256
 *   of its name (the URL has the name; the cursor only has to tell which one it is).
 * - `-hash`: a topic of the URL that was removed or ended: not resumed, though the URL asks.
 * - `=topic`: a topic added live (not in the URL), named in full.
 * - `.id`: the last id relayed; absent: nothing relayed yet (a resume gets the whole history);
 *   `!`: the id was too long to carry (a resume gets `resync`, then the whole history).
 *
 * Names and ids are escaped: any character outside `[A-Za-z0-9_-]` is `%XX` per UTF-8 byte.
 * So a cursor is ASCII from `[A-Za-z0-9_.~*=!%-]` only: safe in a header and in a query.
 * 32 URL topics with ids up to 4 digits: 1 + 32 × 13 = 417 characters.
 */
const CURSOR_VERSION = '1';

/** Longest escaped id carried; a longer one is written as `!` (unknown). */
export const MAX_CURSOR_ID = 64;

/** What a cursor says about one topic. */
export type CursorEntry =
  | { readonly ref: 'hash'; readonly hash: string; readonly live: boolean; readonly lastId: CursorId }
  | { readonly ref: 'name'; readonly topic: string; readonly live: true; readonly lastId: CursorId };

/** `undefined`: nothing relayed yet; `null`: relayed, but the id is unknown (too long to carry). */
export type CursorId = string | undefined | null;

const HASH = /^[A-Za-z0-9_-]{6}$/;
const CURSOR_CHARS = /^[A-Za-z0-9_.~*=!%-]*$/;
// Per code point (`u`), so a surrogate pair is escaped as one character.
const UNESCAPED = /[^A-Za-z0-9_-]/gu;
const PLAIN = /^[A-Za-z0-9_-]*$/;

/** The 6-character reference of a topic of the request's URL. */
export function topicHash(topic: string): string {
  return createHash('sha256').update(topic).digest('base64url').slice(0, 6);
}

/** One entry as the cursor writes it. */
export function encodeEntry(entry: CursorEntry): string {
  const ref = entry.ref === 'hash' ? `${entry.live ? '*' : '-'}${entry.hash}` : `=${escape(entry.topic) ?? ''}`;
  if (entry.lastId === undefined) return ref;
  if (entry.lastId === null) return `${ref}!`;
  const id = escape(entry.lastId);
  return id === undefined || id.length > MAX_CURSOR_ID ? `${ref}!` : `${ref}.${id}`;
}

/** A cursor of already encoded entries. */
export function joinCursor(entries: readonly string[]): string {
  // `join` makes one flat string; `+=` per entry would make a rope that every write of the
  // cursor (once per event per client) flattens again.
  return entries.length === 0 ? CURSOR_VERSION : `${CURSOR_VERSION}~${entries.join('~')}`;
}

/** The longest cursor a stream of `maxTopics` topics can produce (names are at most `maxTopicLength`). */
export function maxCursorLength(maxTopics: number, maxTopicLength: number): number {
  // Escaping may triple a name; ids are capped once escaped.
  return CURSOR_VERSION.length + maxTopics * (2 + 3 * maxTopicLength + 1 + MAX_CURSOR_ID);
}

/**
 * Decodes a cursor; `undefined` for anything that is not one a relay could have written
 * (wrong version, stray characters, bad escapes, repeated topics, too long or too many).
 */
export function decodeCursor(value: string, maxLength: number, maxEntries: number): CursorEntry[] | undefined {
  if (value.length > maxLength || !CURSOR_CHARS.test(value)) return undefined;
  const parts = value.split('~');
  if (parts[0] !== CURSOR_VERSION || parts.length - 1 > maxEntries) return undefined;
  const entries: CursorEntry[] = [];
  const seen = new Set<string>();
  for (const part of parts.slice(1)) {
    const entry = decodeEntry(part);
    if (!entry) return undefined;
    const identity = entry.ref === 'hash' ? `#${entry.hash}` : `=${entry.topic}`;
    if (seen.has(identity)) return undefined;
    seen.add(identity);
    entries.push(entry);
  }
  return entries;
}

function decodeEntry(part: string): CursorEntry | undefined {
  let body = part;
  let lastId: CursorId;
  if (body.endsWith('!')) {
    lastId = null;
    body = body.slice(0, -1);
  } else {
    const dot = body.indexOf('.');
    if (dot >= 0) {
      const escaped = body.slice(dot + 1);
      // Longer ids are never written (`!` instead): one is not a cursor of ours.
      const id = escaped.length > MAX_CURSOR_ID ? undefined : unescape(escaped);
      if (id === undefined) return undefined;
      lastId = id;
      body = body.slice(0, dot);
    }
  }
  const mark = body[0];
  const rest = body.slice(1);
  if (mark === '*' || mark === '-') return HASH.test(rest) ? { ref: 'hash', hash: rest, live: mark === '*', lastId } : undefined;
  if (mark !== '=') return undefined;
  const topic = unescape(rest);
  return topic === undefined || topic === '' ? undefined : { ref: 'name', topic, live: true, lastId };
}

/** `%XX` per UTF-8 byte of each character outside `[A-Za-z0-9_-]`; undefined for a lone surrogate (not UTF-8). */
function escape(value: string): string | undefined {
  // Integer ids, the common case, need no escaping: this runs for every relayed event.
  if (PLAIN.test(value)) return value;
  try {
    return value.replace(UNESCAPED, (char) => encodeURIComponent(char).replace(/[!'()*~.]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`));
  } catch {
    return undefined;
  }
}

/** The inverse of `escape`, or undefined when `value` has anything `escape` would not write. */
function unescape(value: string): string | undefined {
  if (!/^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})*$/.test(value)) return undefined;
  try {
    const decoded = decodeURIComponent(value);
    // One spelling per value: `%41` for `A` would make two cursors mean the same thing.
    return escape(decoded) === value ? decoded : undefined;
  } catch {
    return undefined; // not UTF-8
  }
}
