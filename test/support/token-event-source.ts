import { EventSource } from 'eventsource';

/** What a `tokenEventSource` saw: messages, the status of every (re)connect, and when each connect and error came. */
export interface EventSourceLog {
  readonly got: string[];
  readonly statuses: number[];
  readonly connects: number[];
  readonly errors: number[];
}

/**
 * An `eventsource` client that sends whatever `token()` gives at each (re)connect, as an
 * app's client library would, and logs what it saw. The caller closes it.
 */
export function tokenEventSource(url: string, token: () => string): { es: EventSource; log: EventSourceLog } {
  const log: EventSourceLog = { got: [], statuses: [], connects: [], errors: [] };
  const es = new EventSource(url, {
    fetch: async (input, init) => {
      log.connects.push(Date.now());
      const answer = await fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), authorization: `Bearer ${token()}` } });
      log.statuses.push(answer.status);
      return answer;
    },
  });
  es.onmessage = (event) => log.got.push(event.data as string);
  es.onerror = () => log.errors.push(Date.now());
  return { es, log };
}
