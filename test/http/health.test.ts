import request from 'supertest';
import { FixtureBackend } from '../support/fixture-backend';
import { freePort } from '../support/free-port';
import { type RelayApp, relayApp } from '../support/relay-app';

let backend: FixtureBackend;
let running: RelayApp | undefined;

beforeEach(async () => {
  backend = await new FixtureBackend().start();
});

afterEach(async () => {
  await running?.relay.close();
  running = undefined;
  await backend.close();
});

function start(backendUrl = backend.url, options: Parameters<typeof relayApp>[1] = {}): RelayApp {
  running = relayApp(backendUrl, options);
  return running;
}

test('/healthz is 200 {"status":"ok"} with the security headers, without asking the backend', async () => {
  const { app } = start();
  const answer = await request(app).get('/healthz').expect(200).expect('Content-Type', /^application\/json/);
  expect(answer.body).toEqual({ status: 'ok' });
  expect(answer.headers['content-security-policy']).toBeDefined();
  expect(answer.headers['x-content-type-options']).toBe('nosniff');
  expect(answer.headers['x-powered-by']).toBeUndefined();
  expect(backend.healthChecks).toBe(0);
});

describe('/readyz', () => {
  test('is 200 ready while the backend answers its health check, and two quick calls cost one check', async () => {
    const { app } = start();
    for (let i = 0; i < 2; i++) {
      const answer = await request(app).get('/readyz').expect(200).expect('Cache-Control', 'no-store');
      expect(answer.body).toEqual({ status: 'ready' });
    }
    expect(backend.healthChecks).toBe(1);

    // The answer is kept for about a second, then asked again.
    const later = Date.now() + 1100;
    const clock = jest.spyOn(Date, 'now').mockImplementation(() => later);
    try {
      backend.healthStatus = 500;
      expect((await request(app).get('/readyz').expect(503)).body).toEqual({ status: 'backend_unavailable' });
      expect(backend.healthChecks).toBe(2);
    } finally {
      clock.mockRestore();
    }
  });

  test('is 503 backend_unavailable when nothing listens at the backend URL, while /healthz stays 200', async () => {
    const { app } = start(`http://127.0.0.1:${await freePort()}`);
    const answer = await request(app).get('/readyz').expect(503).expect('Cache-Control', 'no-store');
    expect(answer.body).toEqual({ status: 'backend_unavailable' });
    // Liveness is the relay's own.
    await request(app).get('/healthz').expect(200);
  });

  test('asks the backend path set by healthPath', async () => {
    const { app } = start(backend.url, { healthPath: '/elsewhere' });
    // The fixture answers every other path as a stream: a 2xx with headers is enough to be ready.
    backend.respond = (req, res) => {
      if (req.url !== '/elsewhere') return false;
      res.writeHead(204).end();
      return true;
    };
    expect((await request(app).get('/readyz').expect(200)).body).toEqual({ status: 'ready' });
    expect(backend.requests.map((r) => r.path)).toEqual(['/elsewhere']);
    expect(backend.healthChecks).toBe(0);
  });

  test('is 503 shutting_down once drain starts (new streams are told to come back: test/ops/drain.test.ts)', async () => {
    const { app, relay } = start();
    await request(app).get('/readyz').expect(200);
    await relay.drain(0);
    expect((await request(app).get('/readyz').expect(503)).body).toEqual({ status: 'shutting_down' });
  });
});

describe('/metrics', () => {
  test('is Prometheus text with the relay gauges and counters and Node process metrics', async () => {
    const { app } = start();
    const answer = await request(app).get('/metrics').expect(200).expect('Content-Type', /^text\/plain; version=0\.0\.4/);
    expect(answer.text).toMatch(/^# HELP sse_relay_open_streams /m);
    expect(answer.text).toMatch(/^sse_relay_open_streams 0$/m);
    expect(answer.text).toMatch(/^sse_relay_events_total 0$/m);
    expect(answer.text).toMatch(/^process_cpu_user_seconds_total \d/m);
  });

  test('counts refused tokens and limit refusals answered as JSON', async () => {
    const { app } = start(backend.url, { rateLimitPerMinute: 2 });
    // Requests without a valid token are counted by IP before they are refused: 401, 401, then 429.
    for (const status of [401, 401, 429]) await request(app).get('/api/downloads/x/status').set('Authorization', 'Bearer guess').expect(status);
    const text = (await request(app).get('/metrics').expect(200)).text;
    expect(text).toMatch(/^sse_relay_auth_failures_total 2$/m);
    expect(text).toMatch(/^sse_relay_rejections_total\{limit="rate"\} 1$/m);
  });

  test('with metrics: false is not served: the path goes on to the app, not to the relay', async () => {
    const { app } = start(backend.url, { metrics: false });
    await request(app).get('/metrics').expect(404);
  });
});
