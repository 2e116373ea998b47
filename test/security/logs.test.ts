import { Writable } from 'node:stream';
import { pino } from 'pino';
import { getGlobalDispatcher } from 'undici';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, authHeader, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

let backend: FixtureBackend;
let relay: RunningRelay;
let logged: string[];

beforeEach(async () => {
  backend = await new FixtureBackend().start();
  logged = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logged.push(chunk.toString());
      callback();
    },
  });
  relay = await startRelay(backend.url, { topicLingerMs: 20, logger: pino(destination) });
});

afterEach(async () => {
  await relay.close();
  await backend.close();
});

/** One request with `path` sent as written (a URL would re-encode or normalize it); the body is dropped. */
async function send(path: string, headers: Record<string, string> = {}): Promise<number> {
  const res = await getGlobalDispatcher().request({ origin: relay.url, path, method: 'GET', headers });
  await res.body.dump();
  return res.statusCode;
}

/** Every part of a token long enough to recognise: the whole, and each segment of 8 characters or more. */
const partsOf = (token: string): string[] => [token, ...token.split('.')].filter((part) => part.length >= 8);

test('no query value and nothing token-shaped reaches a log line, wherever in the URL a client puts it', async () => {
  const token = tokenFor('alice');
  const unsigned = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"alice","exp":9999999999}').toString('base64url')}.`;
  const dotsEncoded = token.replaceAll('.', '%2E');
  const targets = [
    `/api/downloads/abc/status?${token}`,
    `/api/downloads/abc/status?access_token%3D${token}`,
    `/api/downloads/abc/status?x=1&${unsigned}`,
    `/api/downloads/abc/status?q=plain-secret-value&sig=another-secret-value`,
    `/api/${token}/status`,
    `/api/downloads/${dotsEncoded}/status`,
    `/api/downloads/xyz/status?${encodeURIComponent(token)}`,
  ];
  // Refused (no credential) and admitted requests are logged alike.
  for (const target of targets) {
    await send(target);
    await send(target, authHeader());
  }
  // A client-chosen request id that is a token is not echoed or logged: the relay makes its own.
  await send('/api/downloads/abc/status', { ...authHeader(), 'x-request-id': token });
  // The resume point of a shared stream is logged, its token-shaped content redacted.
  const controller = new AbortController();
  const stream = getGlobalDispatcher()
    .request({ origin: relay.url, path: `/api/downloads/abc/events?lastEventId=${token}`, method: 'GET', headers: authHeader(), signal: controller.signal })
    .then((res) => res.body.dump())
    .catch(() => undefined);
  await until(() => logged.some((line) => line.includes('stream opened')), 5000, 'the stream opened line');
  controller.abort();
  await stream;
  await until(() => logged.length >= targets.length * 2 + 3, 5000, 'every request line');

  const text = logged.join('');
  for (const secret of [...partsOf(token), ...partsOf(unsigned), dotsEncoded, 'plain-secret-value', 'another-secret-value']) {
    expect([secret.slice(0, 20), text.includes(secret)]).toEqual([secret.slice(0, 20), false]);
  }
  expect(text).not.toMatch(/eyJ/);
  const urls = logged.map((line) => (JSON.parse(line) as { req?: { url?: string } }).req?.url);
  // What remains is still useful: the route, and the names of ordinary parameters.
  expect(urls).toContain('/api/downloads/abc/status?q&sig');
  expect(urls).toContain('/api/downloads/abc/status?[redacted]');
  expect(urls).toContain('/api/[token]/status');
  expect(urls).toContain('/api/downloads/abc/events?lastEventId');
});
