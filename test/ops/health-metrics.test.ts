import { Writable } from 'node:stream';
import type { EventSource } from 'eventsource';
import { type Logger, pino } from 'pino';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, collect, eventSourceAs, startRelay, tokenFor } from '../support/relay-server';
import { until } from '../support/until';

const PATH = '/downloads/ops/events';

let backend: FixtureBackend;
let relay: RunningRelay | undefined;
const sources: EventSource[] = [];

beforeEach(async () => {
  backend = await new FixtureBackend().start();
});

afterEach(async () => {
  for (const es of sources.splice(0)) es.close();
  await relay?.close();
  relay = undefined;
  await backend.close();
});

function open(base: string, user: string, headers: Record<string, string> = {}): EventSource {
  const es = eventSourceAs(`${base}/api${PATH}`, user, headers);
  sources.push(es);
  return es;
}

/** The value of one sample line (`name` or `name{labels}`) of Prometheus text; undefined when absent. */
/** The value of each named sample (name with its labels, as exposed) in a scrape; undefined if absent. */
function samples(text: string, names: readonly string[]): Record<string, number | undefined> {
  const found = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    found.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return Object.fromEntries(names.map((name) => [name, found.get(name)]));
}

async function scrape(base: string): Promise<string> {
  const response = await fetch(`${base}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return response.text();
}

test('/metrics counts streams, subscribers, topics, upstreams, events, deliveries, closes, auth failures and limit refusals', async () => {
  relay = await startRelay(backend.url, { maxConnectionsPerUser: 2, topicLingerMs: 0 });
  const before = await scrape(relay.url);
  const counted = samples(before, ['sse_relay_open_streams', 'sse_relay_events_total', 'process_cpu_user_seconds_total']);
  expect(counted).toMatchObject({ sse_relay_open_streams: 0, sse_relay_events_total: 0 });
  expect(counted.process_cpu_user_seconds_total).toBeGreaterThan(0);

  const first = open(relay.url, 'alice');
  const second = open(relay.url, 'alice');
  const firstGot = collect(first, 3);
  const secondGot = collect(second, 3);
  await until(() => relay?.relay.hub.streamCount === 2 && backend.listeners(PATH) === 1, 5000, 'two subscribers on one upstream');
  const third = await fetch(`${relay.url}/api${PATH}`, { headers: { authorization: `Bearer ${tokenFor('alice')}` } });
  expect(third.status).toBe(429);
  const anonymous = await fetch(`${relay.url}/api${PATH}`, { headers: { authorization: 'Bearer not-a-jwt' } });
  expect(anonymous.status).toBe(401);

  for (const n of [1, 2, 3]) backend.emit(PATH, `data: e${n}\n`);
  await Promise.all([firstGot, secondGot]);
  const live = {
    sse_relay_open_streams: 2,
    sse_relay_subscribers: 2,
    sse_relay_topics: 1,
    sse_relay_upstream_connections: 1,
    sse_relay_events_total: 3,
    sse_relay_deliveries_total: 6,
    sse_relay_delivery_seconds_count: 3,
    sse_relay_streams_opened_total: 2,
    sse_relay_auth_failures_total: 1,
    'sse_relay_rejections_total{limit="perUser"}': 1,
  };
  expect(samples(await scrape(relay.url), Object.keys(live))).toEqual(live);

  // One client leaves; the other's upstream finishes.
  first.close();
  await until(() => relay?.relay.hub.streamCount === 1, 5000, 'the first stream to close');
  second.onerror = () => second.close();
  backend.end(PATH);
  await until(() => relay?.relay.hub.streamCount === 0 && relay.relay.hub.topicCount === 0, 5000, 'the second stream and its topic to close');

  const after = {
    sse_relay_open_streams: 0,
    sse_relay_subscribers: 0,
    sse_relay_topics: 0,
    sse_relay_upstream_connections: 0,
    'sse_relay_streams_closed_total{reason="client_closed"}': 1,
    'sse_relay_streams_closed_total{reason="upstream_ended"}': 1,
    sse_relay_events_total: 3,
    sse_relay_deliveries_total: 6,
  };
  expect(samples(await scrape(relay.url), Object.keys(after))).toEqual(after);
});

describe('logs', () => {
  /** A pino logger whose lines land in memory. */
  function memoryLogger(): { logger: Logger; text: () => string; lines: () => Record<string, unknown>[] } {
    const chunks: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk.toString());
        callback();
      },
    });
    const text = (): string => chunks.join('');
    return {
      logger: pino(destination),
      text,
      lines: () =>
        text()
          .split('\n')
          .filter((line) => line !== '')
          .map((line) => JSON.parse(line) as Record<string, unknown>),
    };
  }

  test('carry request ids, stream opens and closes with reason and time, and never a token or cookie', async () => {
    const log = memoryLogger();
    relay = await startRelay(backend.url, { logger: log.logger });
    const bearer = tokenFor('alice');
    const cookie = tokenFor('bob');
    const inQuery = tokenFor('carol');
    const poster = tokenFor('dave');
    const bad = 'bad.token-that-must-not-be-logged';

    // A stream with a client's request id, closed by the client.
    const es = open(relay.url, 'alice', { 'x-request-id': 'client-chosen-id' });
    const got = collect(es, 1);
    await until(() => backend.listeners(PATH) === 1, 5000, 'the stream to open');
    backend.emit(PATH, 'data: hello\n');
    await got;
    es.close();
    await until(() => relay?.relay.hub.streamCount === 0, 5000, 'the stream to close');

    const echoed = await fetch(`${relay.url}/api/downloads/ops/status`, { headers: { authorization: `Bearer ${bearer}`, 'x-request-id': 'echo-me-1' } });
    expect(echoed.headers.get('x-request-id')).toBe('echo-me-1');
    const made = await fetch(`${relay.url}/api/downloads/ops/status`, { headers: { cookie: `access_token=${cookie}` } });
    expect(made.status).toBe(200);
    const madeId = made.headers.get('x-request-id') ?? '';
    expect(madeId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await fetch(`${relay.url}/api${PATH}`, { headers: { authorization: `Bearer ${bad}` } })).status).toBe(401);
    // A token in the query string is not accepted; it must not be written down either.
    expect((await fetch(`${relay.url}/api/downloads/ops/status?access_token=${inQuery}&lastEventId=7`)).status).toBe(401);

    const chat = fetch(`${relay.url}/api/chat/stream`, {
      method: 'POST',
      headers: { authorization: `Bearer ${poster}`, 'content-type': 'application/json' },
      body: JSON.stringify({ chatbotId: 'c', message: 'hi' }),
    });
    await until(() => backend.listeners('/chat/stream') === 1, 5000, 'the chat stream to open');
    backend.emit('/chat/stream', 'event: message_stop\ndata: {}\n');
    backend.end('/chat/stream');
    expect(await (await chat).text()).toContain('message_stop');

    await until(() => log.lines().some((line) => (line.req as { url?: string } | undefined)?.url === '/api/chat/stream'), 5000, 'the chat line');
    const text = log.text();
    for (const secret of [bearer, cookie, inQuery, poster, bad]) expect(text).not.toContain(secret);

    const lines = log.lines();
    const byId = (id: string): Record<string, unknown>[] => lines.filter((line) => (line.req as { id?: string } | undefined)?.id === id);
    const opened = byId('client-chosen-id').find((line) => line.msg === 'stream opened');
    expect(opened).toMatchObject({ topic: 'download:ops' });
    const closed = byId('client-chosen-id').find((line) => line.msg !== 'stream opened');
    expect(closed).toMatchObject({ user: 'alice', reason: 'client_closed', res: { statusCode: 200 } });
    expect(typeof closed?.responseTime).toBe('number');
    expect(byId('echo-me-1')).toHaveLength(1);
    expect(byId(madeId)).toMatchObject([{ user: 'bob', req: { method: 'GET', url: '/api/downloads/ops/status' } }]);
    const queried = lines.find((line) => (line.req as { url?: string }).url?.includes('access_token'));
    expect(queried).toMatchObject({ res: { statusCode: 401 }, req: { url: '/api/downloads/ops/status?access_token&lastEventId' } });
  });

  test('a stream whose upstream ends is logged with reason upstream_ended', async () => {
    const log = memoryLogger();
    relay = await startRelay(backend.url, { logger: log.logger });
    const es = open(relay.url, 'alice');
    es.onerror = () => es.close();
    await until(() => backend.listeners(PATH) === 1, 5000, 'the stream to open');
    backend.emit(PATH, 'data: last\n');
    backend.end(PATH);
    await until(() => log.lines().some((line) => line.reason === 'upstream_ended'), 5000, 'the close line');
    expect(log.lines().find((line) => line.reason === 'upstream_ended')).toMatchObject({
      req: { method: 'GET', url: `/api${PATH}` },
      res: { statusCode: 200 },
      responseTime: expect.any(Number) as number,
    });
  });
});
