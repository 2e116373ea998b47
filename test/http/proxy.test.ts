import { once } from 'node:events';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import request from 'supertest';
import { TestBackend } from '../backend/harness';
import { FixtureBackend } from '../support/fixture-backend';
import { type RelayApp, relayApp } from '../support/relay-app';
import { authHeader } from '../support/relay-server';

let running: RelayApp | undefined;

afterEach(async () => {
  await running?.relay.close();
  running = undefined;
});

describe('with the reference backend', () => {
  let backend: TestBackend;
  let app: Express;

  beforeEach(async () => {
    backend = await TestBackend.start();
    running = relayApp(backend.url);
    app = running.app;
  });

  afterEach(async () => {
    await backend.close();
  });

  test('a download is created, and its status read, as the token’s user: a spoofed X-User-Id is dropped', async () => {
    const created = await request(app)
      .post('/api/downloads?origin=test')
      .set(authHeader('alice'))
      .set('X-User-Id', 'bob')
      .send({ name: 'report' })
      .expect(201)
      .expect('Content-Type', /^application\/json/);
    const { code } = created.body as { code: string };
    expect(code).toMatch(/^[A-Za-z0-9_-]+$/);
    // The backend builds its Location from the prefix the relay forwards.
    expect(created.headers.location).toBe(`/api/downloads/${code}/status`);
    expect((await backend.call(`/downloads/${code}/status`, { user: 'alice' })).status).toBe(200);
    expect((await backend.call(`/downloads/${code}/status`, { user: 'bob' })).status).toBe(404);

    const status = await request(app).get(`/api/downloads/${code}/status`).set(authHeader('alice')).expect(200).expect('Cache-Control', 'no-store');
    expect((status.body as { status: string }).status).toMatch(/^(IN_PROGRESS|COMPLETED)$/);
    // Another user's code looks like an unknown one.
    await request(app).get(`/api/downloads/${code}/status`).set(authHeader('bob')).expect(404);
  });

  test('a chat history page is a POST with a JSON body, answered as JSON', async () => {
    const page = await request(app)
      .post('/api/chat/history')
      .set(authHeader('alice'))
      .send({ chatbotId: 'support', page: 1, pageSize: 5 })
      .expect(200)
      .expect('Content-Type', /^application\/json/);
    expect(page.body).toMatchObject({ messages: [], hasMore: false });
  });

  test('the backend’s own error answers pass through with their status and JSON body', async () => {
    const missing = await request(app).get('/api/downloads/nope/status').set(authHeader('alice')).expect(404);
    expect(missing.body).toEqual({ error: { code: 'not_found', message: expect.any(String) as string } });
    const malformed = await request(app).post('/api/chat/history').set(authHeader('alice')).set('Content-Type', 'application/json').send('{"page":').expect(400);
    expect(malformed.body).toEqual({ error: { code: 'bad_request', message: expect.stringMatching(/JSON/) as string } });
    const gone = await request(app).delete('/api/sessions/nope').set(authHeader('alice')).expect(404);
    expect((gone.body as { error: { code: string } }).error.code).toBe('not_found');
  });
});

describe('with a backend that echoes each request', () => {
  let backend: FixtureBackend;
  let app: Express;

  beforeEach(async () => {
    backend = await new FixtureBackend().start();
    backend.respond = (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const status = Number(req.headers['x-answer-status'] ?? 200);
        res.writeHead(status, { 'content-type': 'application/json', 'x-backend': 'kept' });
        res.end(JSON.stringify({ method: req.method, url: req.url, user: req.headers['x-user-id'], body: Buffer.concat(chunks).toString() }));
      });
      return true;
    };
    running = relayApp(backend.url);
    app = running.app;
  });

  afterEach(async () => {
    await backend.close();
  });

  test.each(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const)('%s passes with its path, query string and body, and the answer with its status and headers', async (method) => {
    const withBody = method !== 'GET';
    const verb = method.toLowerCase() as 'get' | 'post' | 'put' | 'patch' | 'delete';
    let call = request(app)[verb]('/api/things/7?sort=desc&q=a%20b').set(authHeader('alice')).set('X-Answer-Status', '207');
    if (withBody) call = call.send({ n: 1 });
    const answer = await call.expect(207).expect('X-Backend', 'kept');
    expect(answer.body).toEqual({ method, url: '/things/7?sort=desc&q=a%20b', user: 'alice', body: withBody ? '{"n":1}' : '' });
  });
});

describe('with a backend that is down or slow', () => {
  let silent: Server;

  beforeEach(async () => {
    silent = createServer(() => undefined).listen(0, '127.0.0.1');
    await once(silent, 'listening');
  });

  afterEach(() => {
    silent.closeAllConnections();
    if (silent.listening) silent.close();
  });

  test('a backend that sends no headers is 504 soon after upstreamHeadersTimeoutMs, and one that is gone 502 at once', async () => {
    running = relayApp(`http://127.0.0.1:${(silent.address() as AddressInfo).port}`, { upstreamHeadersTimeoutMs: 100 });
    const started = Date.now();
    const slow = await request(running.app).get('/api/anything').set(authHeader('alice')).expect(504);
    expect((slow.body as { error: { code: string } }).error.code).toBe('gateway_timeout');
    expect(Date.now() - started).toBeLessThan(2000);

    silent.closeAllConnections();
    silent.close();
    await once(silent, 'close');
    const down = await request(running.app).get('/api/anything').set(authHeader('alice')).expect(502);
    expect((down.body as { error: { code: string } }).error.code).toBe('bad_gateway');
  });
});
