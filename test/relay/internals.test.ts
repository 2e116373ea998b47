import { once } from 'node:events';
import { IncomingMessage, type Server, ServerResponse, createServer, get } from 'node:http';
import { type AddressInfo, Socket } from 'node:net';
import { Writable } from 'node:stream';
import express, { type Request, type Response } from 'express';
import { pino } from 'pino';
import { NodeInternals } from '../../src/internals';
import { type Relay, createRelay } from '../../src/create-relay';
import { FixtureBackend } from '../support/fixture-backend';
import { TEST_SECRET, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

/**
 * The relay's tricks past Node's and Express's public API are checked before use and can be
 * turned off: a host app that wraps `res.write` still sees every byte, and `nodeInternals: 0`
 * leaves every response as Node and Express made it.
 */

describe('in a host app whose middleware wraps res.write', () => {
  let backend: FixtureBackend;
  let relay: Relay;
  let server: Server;
  let base: string;
  /** What went through the host app's wrapper, per request path. */
  let wrapped: Map<string, string>;
  let seen: { req: Request; res: Response }[];
  let logged: { level: number; msg: string }[];
  const answers: IncomingMessage[] = [];

  async function start(nodeInternals: number): Promise<void> {
    backend = await new FixtureBackend().start();
    wrapped = new Map();
    seen = [];
    logged = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        for (const line of chunk.toString().split('\n')) if (line !== '') logged.push(JSON.parse(line) as { level: number; msg: string });
        callback();
      },
    });
    relay = createRelay({ backendUrl: backend.url, jwt: { secret: TEST_SECRET }, rateLimitPerMinute: 0, logger: pino(destination), nodeInternals });
    const app = express();
    // As a logging or compression middleware does: every body byte goes through its own write.
    app.use((req, res, next) => {
      seen.push({ req, res });
      const write = res.write;
      res.write = function (this: Response, chunk: unknown, ...rest: unknown[]) {
        wrapped.set(req.originalUrl, (wrapped.get(req.originalUrl) ?? '') + String(chunk));
        return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
      } as Response['write'];
      next();
    });
    app.use(relay.router);
    server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  afterEach(async () => {
    for (const answer of answers.splice(0)) answer.destroy();
    await relay.close();
    server.closeAllConnections();
    server.close();
    await backend.close();
  });

  /** Opens `path` and collects its body text; resolves once the headers are in. */
  async function stream(path: string): Promise<{ text: () => string }> {
    const request = get(`${base}${path}`, { agent: false, headers: { authorization: `Bearer ${tokenFor('alice')}`, accept: 'text/event-stream' } });
    const [answer] = (await once(request, 'response')) as [IncomingMessage];
    expect(answer.statusCode).toBe(200);
    answers.push(answer);
    let body = '';
    answer.setEncoding('utf8').on('data', (text: string) => (body += text));
    return { text: () => body };
  }

  const warnings = (): string[] => logged.filter((line) => line.level === 40 && line.msg.startsWith('node internals:')).map((line) => line.msg);

  test('relayed and multiplexed events reach the client through the wrapper, with one warning line for all streams', async () => {
    await start(1);
    const relayed = await stream('/api/downloads/wrapped/events');
    const other = await stream('/api/downloads/wrapped/events?second');
    const multiplexed = await stream('/api/events?topic=download:wrapped');
    await until(() => relay.hub.streamCount === 3 && backend.listeners('/downloads/wrapped/events') === 1, 5000, 'the streams to attach');
    backend.emit('/downloads/wrapped/events', 'data: through-the-wrapper\n');
    await until(() => [relayed, other, multiplexed].every((s) => s.text().includes('through-the-wrapper')), 5000, 'the event on every stream');

    for (const path of ['/api/downloads/wrapped/events', '/api/downloads/wrapped/events?second', '/api/events?topic=download:wrapped']) {
      expect(wrapped.get(path)).toContain('through-the-wrapper');
    }
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toContain('res.write or res.end is wrapped by the host app');
    // The tricks that do not go around res.write still apply.
    const held = seen.find(({ req }) => req.originalUrl === '/api/downloads/wrapped/events');
    expect(held?.res.getHeaders()).toEqual({});
    expect(held?.req.next).toBeUndefined();
  });

  test('with nodeInternals 0, events go through res.write, responses keep what Node and Express keep, and nothing is warned', async () => {
    await start(0);
    const relayed = await stream('/api/downloads/plain/events');
    const multiplexed = await stream('/api/events?topic=download:plain');
    await until(() => relay.hub.streamCount === 2 && logged.filter((line) => line.msg === 'stream opened').length === 2, 5000, 'the streams to attach');
    backend.emit('/downloads/plain/events', 'data: public-api-only\n');
    await until(() => relayed.text().includes('public-api-only') && multiplexed.text().includes('public-api-only'), 5000, 'the event on both streams');

    expect(wrapped.get('/api/downloads/plain/events')).toContain('public-api-only');
    expect(wrapped.get('/api/events?topic=download:plain')).toContain('public-api-only');
    expect(warnings()).toEqual([]);
    const held = seen.find(({ req }) => req.originalUrl === '/api/downloads/plain/events');
    expect(held?.res.getHeaders()['x-request-id']).toBeDefined();
    expect(typeof held?.req.next).toBe('function');
    // Public API, kept with the switch off too: the route's params let go.
    expect(held?.req.params).toEqual({});
  });
});

describe('NodeInternals on this Node', () => {
  let server: Server;

  afterEach(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });

  /** A response to a real request, its headers sent, handed to `use`; resolves once `use` ran. */
  async function withSentResponse(use: (res: ServerResponse) => void): Promise<void> {
    let done!: (failure?: unknown) => void;
    const ran = new Promise<void>((resolve, reject) => (done = (failure) => (failure === undefined ? resolve() : reject(failure))));
    server = createServer((_req, res) => {
      res.setHeader('X-Request-Id', 'probe');
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('retry: 1000\n\n');
      try {
        use(res);
        done();
      } catch (failure) {
        done(failure);
      }
      res.end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    get(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, (answer) => answer.resume());
    await ran;
  }

  test('finds every trick it relies on, and warns of none', async () => {
    const lines: string[] = [];
    const internals = new NodeInternals({ enabled: true, warn: (line) => lines.push(line) });
    await withSentResponse((res) => {
      internals.settleHeaders(res);
      expect(res.getHeaders()).toEqual({});
      expect(internals.directSocket(res)).toBe(res.socket);
      expect(internals.chunkedBody(res)).toBe(true);
    });
    expect(lines).toEqual([]);
  });

  test('a Node whose stored-headers symbol is not found: one warning line at start, and the stored headers are left alone', async () => {
    const lines: string[] = [];
    // What a renamed symbol looks like from outside: a response on which no symbol has that description.
    const renamed = new Proxy(probeResponse(), {
      ownKeys: (target) => Reflect.ownKeys(target).filter((key) => typeof key !== 'symbol' || key.description !== 'kOutHeaders'),
    });
    const internals = new NodeInternals({ enabled: true, warn: (line) => lines.push(line), probe: renamed });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^node internals: .*kOutHeaders/);
    expect(lines[0]).not.toContain('_header');
    await withSentResponse((res) => {
      internals.settleHeaders(res);
      expect(res.getHeaders()).toEqual({ 'x-request-id': 'probe', 'content-type': 'text/event-stream' });
      // The tricks that did check out still apply.
      expect(internals.directSocket(res)).toBe(res.socket);
    });
    expect(lines).toHaveLength(1);
  });

  test('turned off, it checks nothing, warns of nothing and uses none', async () => {
    const lines: string[] = [];
    const internals = new NodeInternals({ enabled: false, warn: (line) => lines.push(line), probe: new ServerResponse(new IncomingMessage(new Socket())) });
    await withSentResponse((res) => {
      internals.settleHeaders(res);
      expect(res.getHeaders()['x-request-id']).toBe('probe');
      expect(internals.directSocket(res)).toBeUndefined();
      expect(internals.chunkedBody(res)).toBe(false);
    });
    expect(lines).toEqual([]);
  });
});

/** A response to an HTTP/1.1 GET that was never on a socket, as the relay probes one. */
function probeResponse(): ServerResponse {
  const req = new IncomingMessage(new Socket());
  req.method = 'GET';
  req.httpVersionMajor = 1;
  req.httpVersionMinor = 1;
  return new ServerResponse(req);
}
