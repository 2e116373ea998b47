import { TestBackend } from '../backend/harness';
import { type RunningRelay, authHeader, collect, eventSourceAs, startRelay } from '../support/relay-server';

let backend: TestBackend;
let relay: RunningRelay;

beforeEach(async () => {
  backend = await TestBackend.start();
  relay = await startRelay(backend.url);
});

afterEach(async () => {
  await relay.close();
  await backend.close();
});

test("the file URL in a download's COMPLETED event, fetched through the relay, gives the file", async () => {
  // A client's own X-Forwarded-Prefix must not reach the backend: the relay says where it serves the backend.
  const created = await fetch(`${relay.url}/api/downloads`, { method: 'POST', headers: { ...authHeader(), 'x-forwarded-prefix': '/elsewhere' } });
  expect(created.status).toBe(201);
  const { code } = (await created.json()) as { code: string };
  expect(created.headers.get('location')).toBe(`/api/downloads/${code}/status`);

  const es = eventSourceAs(`${relay.url}/api/downloads/${code}/events`, 'alice');
  const events = await collect(es, 12);
  es.close();
  const last = JSON.parse(events.at(-1)!.data as string) as { status: string; url: string };
  expect(last.status).toBe('COMPLETED');
  expect(last.url).toBe(`/api/downloads/${code}/file`);

  const file = await fetch(`${relay.url}${last.url}`, { headers: authHeader() });
  expect(file.status).toBe(200);
  expect(file.headers.get('content-type')).toMatch(/^text\/csv/);
  const body = Buffer.from(await file.arrayBuffer());
  expect(body.length).toBe(Number(file.headers.get('content-length')));
  expect(body.toString('utf8')).toMatch(/^row,order_id,/);

  const status = (await (await fetch(`${relay.url}/api/downloads/${code}/status`, { headers: authHeader() })).json()) as { url: string };
  expect(status.url).toBe(last.url);
});
