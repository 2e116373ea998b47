import { EventSource } from 'eventsource';
import type { RelayProcess } from './relay-process';
import { tokenFor } from './relay-server';

/** A browser's stream as the cluster tests watch it: the ids it got (`resync` for a resync event) and its opens. */
export interface ClusterSubscriber {
  readonly es: EventSource;
  readonly ids: string[];
  opened(): boolean;
  opens(): number;
}

/**
 * A browser behind a load balancer: connects to `relay`, and when that relay is dead, to the
 * next live one of `pool`, resuming with Last-Event-ID as EventSource does. Close its `es` when done.
 */
export function clusterSubscriber(path: string, relay: RelayProcess, pool: readonly RelayProcess[], user = 'alice', lastEventId?: string): ClusterSubscriber {
  const ids: string[] = [];
  let target = relay;
  let opens = 0;
  const token = tokenFor(user);
  const es = new EventSource(`http://relay${path}`, {
    fetch: (input, init) => {
      if (!target.alive) target = pool.find((candidate) => candidate.alive) ?? target;
      const headers: Record<string, string> = { ...(init?.headers as Record<string, string>), authorization: `Bearer ${token}` };
      if (lastEventId !== undefined && headers['Last-Event-ID'] === undefined && headers['last-event-id'] === undefined) headers['last-event-id'] = lastEventId;
      return fetch(new URL(new URL(String(input)).pathname, target.url), { ...init, headers });
    },
  });
  es.onopen = () => (opens += 1);
  es.onmessage = (event) => ids.push(event.lastEventId);
  es.addEventListener('resync', () => ids.push('resync'));
  return { es, ids, opened: () => opens > 0, opens: () => opens };
}

/** The ids from..to as strings, what a subscriber of events from..to should have. */
export function idRange(from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => String(from + i));
}
