import { type IncomingMessage, get } from 'node:http';
import { request } from 'undici';
import { FixtureBackend } from '../support/fixture-backend';
import { RelayProcess } from '../support/relay-process';
import { authHeader, startRelay } from '../support/relay-server';
import { until } from '../support/until';

/** Low enough to run out within the documented limits, high enough for the relay's own reserve (256). */
const OPEN_FILES = 512;
/** What the relay derives from 512 descriptors: a third of what is left after its reserve. */
const BUDGET = Math.floor((OPEN_FILES - 256) / 3);

let backend: FixtureBackend;
let relay: RelayProcess;
const held: IncomingMessage[] = [];

beforeAll(async () => {
  backend = await new FixtureBackend().start();
  relay = await RelayProcess.start({ BACKEND_URL: backend.url }, { openFiles: OPEN_FILES });
});

afterAll(async () => {
  for (const res of held) res.destroy();
  await relay.kill();
  await backend.close();
});

interface Answer {
  readonly status: number;
  /** The `ready` event's stream id, on a 200. */
  readonly streamId?: string;
  readonly retryAfter: string | undefined;
  readonly code: string | undefined;
  readonly message: string | undefined;
}

/** Opens `GET /api/events` with `topics` as `user`: a 200 is kept open, anything else read whole. A reset rejects. */
function openStream(user: string, topics: readonly string[]): Promise<Answer> {
  const query = topics.map((topic) => `topic=${encodeURIComponent(topic)}`).join('&');
  return new Promise((resolve, reject) => {
    const req = get(`${relay.url}/api/events?${query}`, { headers: authHeader(user), agent: false }, (res) => {
      const retryAfter = res.headers['retry-after'] as string | undefined;
      if (res.statusCode === 200) {
        held.push(res);
        res.on('error', () => undefined);
        let text = '';
        res.setEncoding('utf8');
        const onData = (chunk: string): void => {
          text += chunk;
          const ready = /event: ready\ndata: (.*)\n/.exec(text);
          if (!ready) return;
          res.off('data', onData);
          resolve({ status: 200, streamId: (JSON.parse(ready[1]!) as { streamId: string }).streamId, retryAfter, code: undefined, message: undefined });
        };
        return void res.on('data', onData);
      }
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        const error = (JSON.parse(body) as { error: { code: string; message: string } }).error;
        resolve({ status: res.statusCode ?? 0, retryAfter, code: error.code, message: error.message });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

const fresh = (prefix: string, count: number): string[] => Array.from({ length: count }, (_, i) => `download:${prefix}${i}`);

async function change(user: string, streamId: string, add: string[]): Promise<{ status: number; retryAfter: string | undefined; body: unknown }> {
  const res = await request(`${relay.url}/api/events/${streamId}/topics`, {
    method: 'POST',
    headers: { ...authHeader(user), 'content-type': 'application/json' },
    body: JSON.stringify({ add }),
  });
  return { status: res.statusCode, retryAfter: res.headers['retry-after'] as string | undefined, body: await res.body.json() };
}

/** Stream paths the backend was ever asked for. */
const upstreamsOpened = (): number => new Set(backend.requests.map((r) => r.path)).size;

test(`under ulimit -n ${OPEN_FILES}, multiplexed streams get upstreams up to the budget, then 503 with Retry-After (never a reset); health, other clients and held topics go on`, async () => {
  expect(relay.lines('relay listening')[0]).toMatchObject({ openFileLimit: OPEN_FILES, maxUpstreams: BUDGET, maxSockets: BUDGET });

  // Two full streams and one with the rest: exactly the budget.
  expect((await openStream('alice', fresh('a', 32))).status).toBe(200);
  expect((await openStream('alice', fresh('b', 32))).status).toBe(200);
  const third = await openStream('alice', fresh('c', BUDGET - 64));
  expect(third.status).toBe(200);
  await until(() => upstreamsOpened() === BUDGET, 10_000, 'the budgeted upstreams');

  // One more topic than that is refused with a 503 that says when to come back.
  const refused = await openStream('alice', fresh('d', 1));
  expect(refused).toMatchObject({ status: 503, code: 'over_capacity', message: expect.stringContaining('upstream connections') });
  expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(5);

  // Far more upstreams than 512 descriptors hold, within the per-user limits: 20 streams of 32
  // new topics for each of three users. Every one is answered, and none gets an upstream.
  const flood = await Promise.all(
    ['bob', 'carol', 'dave'].flatMap((user) => Array.from({ length: 20 }, (_, i) => openStream(user, fresh(`${user}${i}-`, 32)))),
  );
  expect(new Set(flood.map((answer) => `${answer.status} ${answer.code}`))).toEqual(new Set(['503 over_capacity']));
  expect(upstreamsOpened()).toBe(BUDGET);

  // A topic add that needs a new upstream is refused the same way; one that needs none is not.
  const add = await change('alice', third.streamId!, ['download:new']);
  expect(add).toMatchObject({ status: 503, body: { error: { code: 'over_capacity' } } });
  expect(Number(add.retryAfter)).toBeGreaterThanOrEqual(5);
  expect(await change('alice', third.streamId!, ['download:a5'])).toMatchObject({ status: 200 });

  const metrics = await (await request(`${relay.url}/metrics`)).body.text();
  expect(metrics).toContain(`\nsse_relay_upstream_budget_used ${BUDGET}\n`);
  expect(metrics).toContain(`\nsse_relay_upstream_budget ${BUDGET}\n`);
  expect(metrics).toMatch(/\nsse_relay_rejections_total\{limit="upstreams"\} (\d+)\n/);

  // What needs no new upstream still works: a stream of held topics, a single-topic stream on a
  // held topic (which gets its events), a plain call, and the health check.
  const another = await openStream('erin', ['download:a0', 'download:b0']);
  expect(another.status).toBe(200);
  const single = await new Promise<IncomingMessage>((resolve, reject) => {
    get(`${relay.url}/api/downloads/a1/events`, { headers: authHeader('frank'), agent: false }, resolve).on('error', reject);
  });
  held.push(single);
  expect(single.statusCode).toBe(200);
  let received = '';
  single.setEncoding('utf8');
  single.on('data', (chunk: string) => (received += chunk));
  backend.emit('/downloads/a1/events', 'data: still flowing\n');
  await until(() => received.includes('data: still flowing'), 5000, 'an event on a held topic');
  const call = await request(`${relay.url}/api/downloads/a1/status`, { headers: authHeader('frank') });
  expect(call.statusCode).toBe(200);
  await call.body.dump();
  const health = await request(`${relay.url}/healthz`);
  expect(health.statusCode).toBe(200);
  await health.body.dump();
  const newSingle = await request(`${relay.url}/api/downloads/brandnew/events`, { headers: authHeader('frank') });
  expect(newSingle.statusCode).toBe(503);
  await newSingle.body.dump();

  expect(relay.lines('upstream budget reached: streams and topic adds that need a new upstream get 503')[0]).toMatchObject({ level: 40, maxUpstreams: BUDGET });
  expect(relay.log.filter((line) => /EMFILE|too many open files/i.test(JSON.stringify(line)))).toEqual([]);
  expect(relay.alive).toBe(true);
});

test('a refusal for want of an upstream is listed with the ops page\'s cuts, beside the metric', async () => {
  const running = await startRelay(backend.url, { maxUpstreams: 1 });
  try {
    const first = await request(`${running.url}/api/downloads/budget-a/events`, { headers: authHeader() });
    expect(first.statusCode).toBe(200);
    const second = await request(`${running.url}/api/downloads/budget-b/events`, { headers: authHeader() });
    expect(second.statusCode).toBe(503);
    await second.body.dump();
    expect(running.relay.ops.cuts.latest().map((cut) => [cut.reason, cut.detail])).toEqual([['limit', 'upstreams']]);
    expect(running.relay.stats.rejections.get('upstreams')).toBe(1);
    first.body.destroy();
  } finally {
    await running.close();
  }
});
