import express, { type Express } from 'express';
import { type CreateRelayOptions, type Relay, createRelay } from '../../index';
import { NO_LIMITS, TEST_SECRET } from './relay-server';

export interface RelayApp {
  /** The relay's router in a fresh Express app: supertest listens on a port of its own for each request. */
  readonly app: Express;
  readonly relay: Relay;
}

/** The relay as a library user mounts it, for in-process tests of its JSON answers; `relay.close()` when done. */
export function relayApp(backendUrl: string, options: Partial<CreateRelayOptions> = {}): RelayApp {
  const relay = createRelay({ backendUrl, jwt: { secret: TEST_SECRET }, ...NO_LIMITS, ...options });
  const app = express();
  app.use(relay.router);
  return { app, relay };
}
