import jwt from 'jsonwebtoken';
import { FixtureBackend } from '../support/fixture-backend';
import { RelayProcess } from '../support/relay-process';
import { TEST_SECRET, authHeader, collect, eventSourceAs } from '../support/relay-server';
import { until } from '../support/until';

// The createRelay options the standalone server sets from variables besides the integer
// settings, each seen doing its work in a real server process, against one without it.

const PATH = '/downloads/moved/events';

let backend: FixtureBackend;
let elsewhere: FixtureBackend;
let plain: RelayProcess;
let configured: RelayProcess;

beforeAll(async () => {
  [backend, elsewhere] = await Promise.all([new FixtureBackend().start(), new FixtureBackend().start()]);
  // A backend whose health route is not the contract's /health, and whose stream moved to another origin.
  backend.healthStatus = 503;
  backend.respond = (req, res) => {
    if (req.url === '/status/live') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return true;
    }
    if (req.url !== PATH) return false;
    res.writeHead(307, { location: `${elsewhere.url}${PATH}` }).end();
    return true;
  };
  [plain, configured] = await Promise.all([
    RelayProcess.start({ BACKEND_URL: backend.url }),
    RelayProcess.start({
      BACKEND_URL: backend.url,
      UPSTREAM_REDIRECT_ORIGINS: elsewhere.url,
      BACKEND_HEALTH_PATH: '/status/live',
      JWT_CLOCK_TOLERANCE_SEC: '120',
      JWT_COOKIE_NAME: 'session',
    }),
  ]);
});

afterAll(async () => {
  await Promise.all([plain?.kill(), configured?.kill()]);
  await Promise.all([backend.close(), elsewhere.close()]);
});

test("UPSTREAM_REDIRECT_ORIGINS: a stream's redirect to another origin is followed only when that origin is listed, and without the identity", async () => {
  const refused = await fetch(`${plain.url}/api${PATH}`, { headers: authHeader('alice') });
  expect(refused.status).toBe(502);
  expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('upstream_redirect_refused');
  expect(elsewhere.requests).toHaveLength(0);

  const es = eventSourceAs(`${configured.url}/api${PATH}`, 'alice');
  try {
    const events = collect(es, 1);
    await until(() => elsewhere.listeners(PATH) === 1, 5000, 'the stream on the other origin');
    elsewhere.emit(PATH, 'data: from elsewhere\n');
    expect((await events).map((event) => event.data as string)).toEqual(['from elsewhere']);
  } finally {
    es.close();
  }
  expect(elsewhere.requests.map((request) => request.user)).toEqual([undefined]);
});

test("BACKEND_HEALTH_PATH: /readyz asks the backend's own health route", async () => {
  const readyz = async (relay: RelayProcess): Promise<unknown> => (await fetch(`${relay.url}/readyz`)).json();
  expect(await readyz(plain)).toEqual({ status: 'backend_unavailable' });
  expect(await readyz(configured)).toEqual({ status: 'ready' });
});

test('JWT_COOKIE_NAME: the token is read from the cookie of that name', async () => {
  const status = async (relay: RelayProcess, cookie: string): Promise<number> =>
    (await fetch(`${relay.url}/api/downloads/abc/status`, { headers: { cookie: `${cookie}=${jwt.sign({}, TEST_SECRET, { subject: 'alice', expiresIn: '1h' })}` } })).status;
  expect(await status(plain, 'session')).toBe(401);
  expect(await status(configured, 'session')).toBe(200);
  expect(await status(configured, 'access_token')).toBe(401);
});

test('JWT_CLOCK_TOLERANCE_SEC: a token one minute past its exp passes with two minutes of tolerance', async () => {
  const late = jwt.sign({ sub: 'alice', exp: Math.floor(Date.now() / 1000) - 60 }, TEST_SECRET);
  const status = async (relay: RelayProcess): Promise<number> => (await fetch(`${relay.url}/api/downloads/abc/status`, { headers: { authorization: `Bearer ${late}` } })).status;
  expect(await status(plain)).toBe(401);
  expect(await status(configured)).toBe(200);
});
