/*
 * The browser APIs the client uses beyond what Node's types declare (the project type-checks
 * without the DOM library): Web Locks, BroadcastChannel and window events, each possibly absent.
 */

/** The part of `navigator.locks` the client uses. */
export interface Locks {
  request(name: string, options: { signal?: AbortSignal }, callback: () => Promise<void>): Promise<unknown>;
  query(): Promise<{ held?: { name?: string }[] }>;
}

/** The part of a `BroadcastChannel` the client uses. */
export interface Channel {
  postMessage(message: unknown): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  close(): void;
}

interface BrowserGlobals {
  navigator?: { locks?: Locks };
  BroadcastChannel?: new (name: string) => Channel;
  location?: { href: string };
  addEventListener?: (type: string, listener: (event: { persisted?: boolean }) => void) => void;
  removeEventListener?: (type: string, listener: (event: { persisted?: boolean }) => void) => void;
}

/** What this global scope offers; every field may be missing (Node, a worker, an old browser). */
export const browser = globalThis as unknown as BrowserGlobals;
