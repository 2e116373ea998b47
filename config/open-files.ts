import { readFileSync } from 'node:fs';

/**
 * This process's soft limit on open files, from `/proc/self/limits` (Linux); undefined where
 * that file is missing or says "unlimited".
 */
export function openFileLimit(readLimits: () => string = () => readFileSync('/proc/self/limits', 'utf8')): number | undefined {
  let text: string;
  try {
    text = readLimits();
  } catch {
    return undefined;
  }
  const soft = /^Max open files\s+(\d+)\s/m.exec(text)?.[1];
  return soft === undefined ? undefined : Number(soft);
}

/** Descriptors kept for everything that is not a client or its upstream: listeners, logs, the REST pool (64). */
const RESERVED_FILES = 256;

/** What the socket and stream caps default to for a given open-file limit. */
export interface SocketBudget {
  /** Client sockets open at once (`server.maxConnections`). */
  readonly maxSockets: number;
  /** Open streams; kept below `maxSockets` so a client past it still gets its 503. */
  readonly maxConnections: number;
}

/**
 * Splits `limit` descriptors so the relay answers 503 long before it runs out: each client
 * socket may hold one upstream socket (an upload, a chat, a topic's stream), so clients get
 * half of what is left after the reserve, and streams nine tenths of those; the last tenth
 * is for keep-alive and REST sockets, and for refusing the rest with a 503.
 */
export function socketBudget(limit: number): SocketBudget {
  const maxSockets = Math.max(16, Math.floor((limit - RESERVED_FILES) / 2));
  return { maxSockets, maxConnections: maxSockets - Math.max(8, Math.floor(maxSockets / 10)) };
}

/** How many descriptors `maxSockets` clients, each with an upstream socket, may need. */
export function filesNeeded(maxSockets: number): number {
  return RESERVED_FILES + 2 * maxSockets;
}
