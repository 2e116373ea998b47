import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import jwt from 'jsonwebtoken';
import { EventSource } from 'eventsource';

import { type CreateRelayOptions, type Relay, createRelay } from '../../src/create-relay';
import { SHARED_STREAMS, type SharedStream } from '../../routes/streams';

export const TEST_SECRET = 'test-secret-that-is-long-enough-for-hs256!';

/** A signed token for `user`, valid for an hour, unless `claims` say otherwise. */
export function tokenFor(user: string, claims: jwt.SignOptions = {}): string {
  return jwt.sign({}, TEST_SECRET, { subject: user, expiresIn: '1h', ...claims });
}

export interface RunningRelay {
  readonly url: string;
  readonly relay: Relay;
  readonly server: Server;
  close(): Promise<void>;
}

/** The contract's streams, declared for a backend that cannot replay: a resume from before the relay's history gets `resync`. */
export const STREAMS_WITHOUT_REPLAY: readonly SharedStream[] = SHARED_STREAMS.map((stream) => ({ ...stream, replays: false }));

/** Limits out of the way of tests that open many streams as few users; the limit tests set their own. */
export const NO_LIMITS: Partial<CreateRelayOptions> = { maxConnectionsPerUser: 100_000, maxConnectionsPerIp: 100_000, rateLimitPerMinute: 0 };

/** The relay router in a fresh Express app on port 0. */
export async function startRelay(
  backendUrl: string,
  options: Partial<CreateRelayOptions> = {},
  { trustProxy = false }: { trustProxy?: number | false } = {},
): Promise<RunningRelay> {
  const relay = createRelay({ backendUrl, jwt: { secret: TEST_SECRET }, ...NO_LIMITS, ...options });
  const app = express();
  app.set('trust proxy', trustProxy);
  app.use(relay.router);
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    relay,
    server,
    async close() {
      await relay.close();
      server.closeAllConnections();
      server.close();
    },
  };
}

/** The Authorization header of `user`. */
export function authHeader(user = 'alice'): Record<string, string> {
  return { authorization: `Bearer ${tokenFor(user)}` };
}

/** An `eventsource` client that authenticates as `user` with a Bearer header. */
export function eventSourceAs(url: string, user: string, headers: Record<string, string> = {}): EventSource {
  const token = tokenFor(user);
  return new EventSource(url, {
    fetch: (input, init) =>
      fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), authorization: `Bearer ${token}`, ...headers } }),
  });
}

/** Collects `onmessage` events of a client until `count` arrived. */
export function collect(es: EventSource, count: number, name?: string): Promise<MessageEvent[]> {
  const got: MessageEvent[] = [];
  return new Promise((resolve, reject) => {
    const onEvent = (event: MessageEvent): void => {
      got.push(event);
      if (got.length === count) resolve(got);
    };
    if (name) es.addEventListener(name, onEvent);
    else es.onmessage = onEvent;
    es.onerror = (err) => {
      if (es.readyState === EventSource.CLOSED) reject(new Error(`stream failed after ${got.length} events: ${String((err as { message?: string }).message)}`));
    };
  });
}

