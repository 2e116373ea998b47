import { type IncomingMessage, request as httpRequest } from 'node:http';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { request } from 'undici';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, authHeader, startRelay } from '../support/relay-server';
import { delay, until } from '../support/until';
import type { CreateRelayOptions } from '../../src/create-relay';

let backend: FixtureBackend;
let relay: RunningRelay;
const cleanups: (() => void)[] = [];

async function start(options: Partial<CreateRelayOptions> = {}): Promise<void> {
  backend = await new FixtureBackend().start();
  relay = await startRelay(backend.url, { topicLingerMs: 50, ...options });
}

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  await relay.close();
  await backend.close();
});

interface OpenStream {
  readonly res: IncomingMessage;
  readonly events: EventSourceMessage[];
  readonly id: string;
}

/** Opens `GET /api/events` with `topics` and waits for its `ready` event. */
function open(topics: readonly string[], headers: Record<string, string> = {}): Promise<OpenStream> {
  const url = `${relay.url}/api/events?${topics.map((topic) => `topic=${encodeURIComponent(topic)}`).join('&')}`;
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { ...authHeader('alice'), ...headers } }, (res) => {
      cleanups.push(() => res.destroy());
      if (res.statusCode !== 200) return reject(new Error(`answered ${res.statusCode}`));
      const events: EventSourceMessage[] = [];
      const parser = createParser({ onEvent: (event) => events.push(event) });
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => parser.feed(chunk));
      res.on('error', () => undefined);
      until(() => events.length > 0, 5000, 'ready')
        .then(() => resolve({ res, events, id: (JSON.parse(events[0]!.data) as { streamId: string }).streamId }))
        .catch(reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function change(streamId: string, body: unknown): Promise<{ status: number; body: { topics?: string[]; error?: { code: string } } }> {
  const res = await request(`${relay.url}/api/events/${streamId}/topics`, {
    method: 'POST',
    headers: { ...authHeader('alice'), 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, body: (await res.body.json()) as { topics?: string[]; error?: { code: string } } };
}

const topicsOf = (prefix: string, count: number): string[] => Array.from({ length: count }, (_, i) => `download:${prefix}${i}`);

test('ten concurrent adds of 31 topics to a one-topic stream: one is applied, nine get 400 too_many_topics without the backend being asked, and no more than 32 topics or upstreams are ever held', async () => {
  await start();
  const stream = await open(['download:first']);
  await until(() => backend.listeners('/downloads/first/events') === 1);
  const checksBefore = backend.statusChecks;

  const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => change(stream.id, { add: topicsOf(`p${i}-`, 31) })));

  const applied = answers.filter((answer) => answer.status === 200);
  expect(applied).toHaveLength(1);
  expect(applied[0]!.body.topics).toHaveLength(32);
  const refused = answers.filter((answer) => answer.status !== 200);
  expect(refused.map((answer) => `${answer.status} ${answer.body.error?.code}`)).toEqual(Array(9).fill('400 too_many_topics'));
  // The adds took turns: each later one saw the 32 topics the first left, and was refused before any authorization.
  expect(backend.statusChecks - checksBefore).toBe(31);
  expect(relay.relay.multiplexer.membershipCount).toBe(32);
  await until(() => backend.requests.length >= 32, 5000, 'the applied topics upstream');
  // Every upstream the backend was ever asked for: the stream's own, and nothing past the cap.
  expect(new Set(backend.requests.map((r) => r.path)).size).toBe(32);
  expect(backend.requests).toHaveLength(32);
  expect(relay.relay.stats.upstreamsOpen).toBe(32);
});

test('a topic the backend refused still counts toward the cap: the cursor names it, and a resume with more topics than the cap would be refused', async () => {
  await start({ maxTopicsPerStream: 3 });
  backend.respond = (req, res) => {
    if (!req.url?.startsWith('/downloads/refused/')) return false;
    res.writeHead(403, { 'content-type': 'application/json' }).end('{"error":{"code":"forbidden","message":"no"}}');
    return true;
  };
  const stream = await open(['download:refused', 'download:a']);
  await until(() => stream.events.some((event) => event.event === 'relay_error'), 5000, 'relay_error');
  expect((await change(stream.id, { add: ['download:b'] })).status).toBe(200);
  expect(await change(stream.id, { add: ['download:c'] })).toMatchObject({ status: 400, body: { error: { code: 'too_many_topics' } } });
  // What EventSource does after a drop: reconnect with the last cursor, which must still be accepted.
  const cursor = stream.events.at(-1)!.id!;
  stream.res.destroy();
  backend.respond = undefined;
  const resumed = await open(['download:refused', 'download:a'], { 'last-event-id': cursor });
  const ready = JSON.parse(resumed.events[0]!.data) as { topics: string[] };
  expect(ready.topics.sort()).toEqual(['download:a', 'download:b', 'download:refused']);
  // Removing the refused topic makes room again.
  expect(await change(resumed.id, { add: ['download:c'], remove: ['download:refused'] })).toMatchObject({ status: 200, body: { topics: ['download:a', 'download:b', 'download:c'] } });
});

test('changes of one stream take turns: the next is not even authorized before the one asked first is done', async () => {
  await start();
  const stream = await open(['download:first']);
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const askedWhileHeld: string[] = [];
  let holding = true;
  // The first change's authorizations wait until released; the second's would be answered at once.
  backend.beforeStatus = (path) => {
    if (holding) askedWhileHeld.push(path);
    return path.startsWith('/downloads/x') ? held : Promise.resolve();
  };
  const first = change(stream.id, { add: topicsOf('x', 5) });
  first.catch(() => undefined);
  await until(() => askedWhileHeld.length === 5, 5000, "the first change's authorizations");
  // Sent on another connection while the first waits for the backend: it removes what the first adds.
  const second = change(stream.id, { remove: topicsOf('x', 5), add: ['download:y'] });
  second.catch(() => undefined);
  const secondEarly = await Promise.race([second.then(() => 'answered'), delay(150).then(() => 'waiting')]);
  holding = false;
  release();
  expect(secondEarly).toBe('waiting');
  expect(askedWhileHeld.sort()).toEqual(topicsOf('x', 5).map((topic) => `/downloads/${topic.slice('download:'.length)}/status`).sort());
  expect((await first).body.topics).toHaveLength(6);
  expect((await second).body.topics).toEqual(['download:first', 'download:y']);
});

test('the cap holds where topics attach: a change past it, or past the upstream budget, throws and changes nothing', async () => {
  await start({ maxUpstreams: 4 });
  const stream = await open(['download:first', 'download:second']);
  const live = relay.relay.multiplexer.find(stream.id, 'alice')!;
  const refs = ['download:a', 'download:b', 'download:c'].map((key) => ({ key, url: new URL(`/downloads/${key.slice(9)}/events`, backend.url) }));
  expect(() => live.update([], refs, 4)).toThrow(expect.objectContaining({ code: 'too_many_topics', status: 400 }));
  expect(() => live.update([], refs, 32)).toThrow(expect.objectContaining({ code: 'over_capacity', status: 503 }));
  expect(live.topics).toEqual(['download:first', 'download:second']);
  expect(live.update(['download:first'], refs.slice(0, 1), 4)).toEqual(['download:second', 'download:a']);
});
