import { once } from 'node:events';
import { type IncomingMessage, type Server, type ServerResponse, get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import express, { type Request, type Response } from 'express';
import { pino } from 'pino';
import { type Relay, createRelay } from '../../src/create-relay';
import { FixtureBackend } from '../support/fixture-backend';
import { TEST_SECRET, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

/**
 * What a held stream keeps once its headers are out: only what it still needs. Each of these
 * cuts memory per held stream (figures in docs/benchmarks.md); the tests check that nothing
 * a client or the close log line relies on went with it.
 */

const PATH = '/downloads/held/events';

let backend: FixtureBackend;
let relay: Relay;
let server: Server;
let base: string;
/** Every request the app saw, as Express handed it on: the objects a held stream keeps. */
let seen: { req: Request; res: Response }[];
let logged: Record<string, unknown>[];

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  seen = [];
  logged = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logged.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  relay = createRelay({ backendUrl: backend.url, jwt: { secret: TEST_SECRET }, rateLimitPerMinute: 100, logger: pino(destination) });
  const app = express();
  app.use((req, res, next) => {
    seen.push({ req, res });
    next();
  });
  app.use(relay.router);
  server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  await relay.close();
  server.closeAllConnections();
  server.close();
  await backend.close();
});

/** Opens the stream with raw node:http; resolves once the status line and headers arrived. */
async function openStream(requestId: string): Promise<IncomingMessage> {
  const request = get(`${base}/api${PATH}?view=1`, { headers: { authorization: `Bearer ${tokenFor('alice')}`, 'x-request-id': requestId, accept: 'text/event-stream' } });
  const [answer] = (await once(request, 'response')) as [IncomingMessage];
  return answer;
}

function heldResponse(): ServerResponse & Response {
  const held = seen.find(({ req }) => req.originalUrl.startsWith(`/api${PATH}`));
  if (held === undefined) throw new Error('the stream request was not seen');
  return held.res;
}

test('a held stream is answered with its request id and rate-limit headers, and keeps no stored copy of them', async () => {
  const answer = await openStream('held-1');
  expect(answer.statusCode).toBe(200);
  expect(answer.headers['content-type']).toMatch(/^text\/event-stream/);
  expect(answer.headers['x-request-id']).toBe('held-1');
  expect(answer.headers.ratelimit).toEqual(expect.stringContaining('r=99'));
  expect(answer.headers['ratelimit-policy']).toBeDefined();
  expect(answer.headers['x-powered-by']).toBeUndefined();

  const res = heldResponse();
  expect(res.headersSent).toBe(true);
  // Sent in the header block; the object they were stored in before `writeHead` is let go.
  expect(res.getHeaders()).toEqual({});
  answer.destroy();
});

test('an attached stream lets go of the routing state and parsed URL, and its close line still says who, why and which request', async () => {
  const answer = await openStream('held-2');
  await until(() => relay.hub.streamCount === 1 && logged.some((line) => line.msg === 'stream opened'), 5000, 'the stream to be attached');
  const res = heldResponse();
  const req = res.req as Request;
  expect(req.next).toBeUndefined();
  expect((req as { _parsedUrl?: unknown })._parsedUrl).toBeUndefined();
  expect(req.params).toEqual({});
  // Still parsed on demand for whoever asks.
  expect(req.path).toBe(`/api${PATH}`);
  expect(res.locals).toMatchObject({ requestId: 'held-2', user: 'alice' });

  // Events still flow to the held stream.
  const body: string[] = [];
  answer.setEncoding('utf8').on('data', (text: string) => body.push(text));
  backend.emit(PATH, 'data: after-shedding\n');
  await until(() => body.join('').includes('data: after-shedding'), 5000, 'the event');

  answer.destroy();
  await until(() => logged.some((line) => line.msg === 'request closed'), 5000, 'the close line');
  expect(logged.find((line) => line.msg === 'request closed')).toMatchObject({
    req: { id: 'held-2', method: 'GET', url: `/api${PATH}?view` },
    res: { statusCode: 200 },
    user: 'alice',
    reason: 'client_closed',
  });
  await until(() => relay.connections.snapshot().total === 0, 5000, 'the slot to be released');
});

test('a multiplexed stream lets go of the routing state and parsed URL too, and events and its close line still come', async () => {
  const url = `/api/events?topic=download:held`;
  const request = get(`${base}${url}`, { headers: { authorization: `Bearer ${tokenFor('alice')}`, 'x-request-id': 'held-mx', accept: 'text/event-stream' } });
  const [answer] = (await once(request, 'response')) as [IncomingMessage];
  await until(() => logged.some((line) => line.msg === 'stream opened'), 5000, 'the stream to be attached');
  const held = seen.find(({ req }) => req.originalUrl === url);
  if (held === undefined) throw new Error('the stream request was not seen');
  const req = held.req;
  expect(req.next).toBeUndefined();
  expect((req as { _parsedUrl?: unknown })._parsedUrl).toBeUndefined();
  expect(held.res.locals).toMatchObject({ requestId: 'held-mx', user: 'alice' });

  const body: string[] = [];
  answer.setEncoding('utf8').on('data', (text: string) => body.push(text));
  await until(() => backend.listeners(PATH) === 1, 5000, 'the upstream');
  backend.emit(PATH, 'data: after-shedding\n');
  await until(() => body.join('').includes('after-shedding'), 5000, 'the event');

  answer.destroy();
  await until(() => logged.some((line) => line.msg === 'request closed'), 5000, 'the close line');
  expect(logged.find((line) => line.msg === 'request closed')).toMatchObject({ req: { id: 'held-mx' }, user: 'alice', reason: 'client_closed' });
});
