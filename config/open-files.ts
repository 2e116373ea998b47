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

/**
 * Descriptors kept for everything that is not a client, a proxied request's upstream or a
 * topic's upstream: listeners, stdio, logs, the event loop's own, Redis, and the pool that asks
 * the backend's status routes (at most 64 sockets).
 */
const RESERVED_FILES = 256;

/** The caps that bound the relay's descriptors, as `descriptorBudget` derives them from the limit. */
export interface DescriptorCaps {
  /** Client sockets open at once (`server.maxConnections`). */
  readonly maxSockets: number;
  /** Open streams and proxied requests; kept below `maxSockets` so a client past it still gets its 503. */
  readonly maxConnections: number;
  /** Topic upstreams held at once. */
  readonly maxUpstreams: number;
}

/**
 * Splits `limit` descriptors so the relay answers 503 before it runs out. Three kinds of socket
 * grow with load, and each gets a third of what is left after the reserve:
 *  - client sockets (`maxSockets`);
 *  - the upstream socket of each proxied request (upload, chat, REST call): every one holds a
 *    connection slot, so there are at most `maxConnections` of them, nine tenths of the client
 *    sockets (the last tenth is for keep-alive sockets and for answering the rest with a 503);
 *  - the topics' upstreams (`maxUpstreams`): one per topic, however many clients follow it,
 *    but up to `maxTopicsPerStream` for one multiplexed client socket.
 * The third of the second kind that `maxConnections` leaves unused is spare.
 */
export function descriptorBudget(limit: number): DescriptorCaps {
  const share = Math.max(16, Math.floor((limit - RESERVED_FILES) / 3));
  return { maxSockets: share, maxConnections: share - Math.max(8, Math.floor(share / 10)), maxUpstreams: share };
}

/** How many descriptors the relay may need with these caps, each kind of socket at its cap. */
export function filesNeeded({ maxSockets, maxConnections, maxUpstreams }: DescriptorCaps): number {
  return RESERVED_FILES + maxSockets + maxConnections + maxUpstreams;
}
