import { once } from 'node:events';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { errorHandler } from '../../middleware/errors';
import { HttpError } from '../../src/errors';
import { bareSubscriber, policyOf } from '../support/bare-stream';

let server: Server;

afterEach(async () => {
  server.closeAllConnections();
  server.close();
  await once(server, 'close');
});

/** Status, the headers a client acts on, and the body of one answer of `server`. */
async function answer(): Promise<{ status: number; headers: Record<string, string | null>; body: unknown }> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/events`);
  const headers = Object.fromEntries(['content-type', 'cache-control', 'x-content-type-options', 'retry-after'].map((name) => [name, res.headers.get(name)]));
  return { status: res.status, headers, body: await res.json() };
}

test('a stream the core refuses before its headers gets the same answer the error middleware gives', async () => {
  const error = () => new HttpError('shutting_down', undefined, undefined, { 'Retry-After': '1' });

  const app = express();
  app.get('/events', () => {
    throw error();
  });
  app.use(errorHandler());
  server = createServer(app);
  const fromMiddleware = await answer();
  server.close();

  server = createServer((_req, res) => bareSubscriber(res, policyOf({ clientMaxBufferedBytes: 1024, clientBufferCeilingFactor: 4 })).reject(error()));
  const fromCore = await answer();

  expect(fromCore).toEqual(fromMiddleware);
  expect(fromCore.status).toBe(503);
  expect(fromCore.body).toEqual({ error: { code: 'shutting_down', message: 'The relay is shutting down; retry.' } });
});
