import { EXPORT_HEADER } from '../../backend/export-file';
import { TestBackend, collect, failure } from './harness';
import { until } from '../support/until';

let api: TestBackend;

afterEach(async () => {
  await api.close();
  expect(api.errors).toEqual([]);
});

async function startDownload(body?: unknown, user = 'alice'): Promise<string> {
  const res = await api.call('/downloads', { method: 'POST', user, ...(body === undefined ? {} : { json: body }) });
  expect(res.status).toBe(201);
  expect(res.json.code).toMatch(/^[A-Za-z0-9_-]{16,}$/);
  return res.json.code as string;
}

const isFinal = (events: MessageEvent[]): boolean => (JSON.parse(events.at(-1)!.data as string) as { status: string }).status !== 'IN_PROGRESS';

test('a download streams progress 0..100 with ids 1..12, then COMPLETED with its url, and its file downloads', async () => {
  api = await TestBackend.start({ downloadRows: 1234 });
  const code = await startDownload({ name: 'orders' });
  const events = await collect(api.events(`/downloads/${code}/events`), isFinal);

  expect(events.map((e) => e.lastEventId)).toEqual(Array.from({ length: 12 }, (_, i) => String(i + 1)));
  expect(events.map((e) => JSON.parse(e.data as string))).toEqual([
    ...Array.from({ length: 11 }, (_, i) => ({ status: 'IN_PROGRESS', progress: i * 10 })),
    { status: 'COMPLETED', url: `/downloads/${code}/file` },
  ]);

  const file = await api.call(`/downloads/${code}/file`);
  expect(file.status).toBe(200);
  expect(file.headers['content-type']).toBe('text/csv; charset=utf-8');
  expect(file.headers['content-disposition']).toMatch(/^attachment; filename="?orders\.csv"?$/);
  expect(Number(file.headers['content-length'])).toBe(Buffer.byteLength(file.text));
  const lines = file.text.split('\n');
  expect(lines[0]).toBe(EXPORT_HEADER.trim());
  expect(lines).toHaveLength(1 + 1234 + 1);
  expect(lines[1234]).toMatch(/^1234,ORD-\d{6},SKU-\d+,".+",\d,\d+\.\d\d,\d+\.\d\d,\d{4}-\d\d-\d\dT/);
  // Generated from the code: the second download is byte-identical.
  expect((await api.call(`/downloads/${code}/file`)).text).toBe(file.text);
});

test('failAt makes the job FAIL at that progress, and its file is 409', async () => {
  api = await TestBackend.start();
  const code = await startDownload({ failAt: 50 });
  const events = await collect(api.events(`/downloads/${code}/events`), isFinal);
  const data = events.map((e) => JSON.parse(e.data as string) as { status: string; progress?: number; message?: string });
  expect(data.slice(0, -1)).toEqual([0, 10, 20, 30, 40].map((progress) => ({ status: 'IN_PROGRESS', progress })));
  expect(data.at(-1)).toEqual({ status: 'FAILED', message: expect.stringContaining('50%') });

  const file = await api.call(`/downloads/${code}/file`);
  expect(file.status).toBe(409);
  expect(file.json.error.code).toBe('export_failed');
  expect((await api.call(`/downloads/${code}/status`)).json).toMatchObject({ status: 'FAILED', progress: 40, lastEventId: '6' });
});

test('the status route tells a polling client the same state as the stream', async () => {
  api = await TestBackend.start({ tickMs: 30, downloadRows: 100 });
  const code = await startDownload();
  const first = await api.call(`/downloads/${code}/status`);
  expect(first.json).toMatchObject({ code, status: 'IN_PROGRESS', progress: 0, lastEventId: '1', rows: 100 });
  expect(first.json.url).toBeUndefined();
  expect((await api.call(`/downloads/${code}/file`)).json.error.code).toBe('not_ready');

  await until(async () => (await api.call(`/downloads/${code}/status`)).json.status === 'COMPLETED', 5000, 'completion');
  const done = await api.call(`/downloads/${code}/status`);
  expect(done.json).toMatchObject({ status: 'COMPLETED', progress: 100, url: `/downloads/${code}/file`, lastEventId: '12' });
  const file = await api.call(`/downloads/${code}/file`);
  expect(done.json.bytes).toBe(Buffer.byteLength(file.text));
});

test('a client that resumes with Last-Event-ID gets exactly the events it missed, by header or by query', async () => {
  api = await TestBackend.start({ tickMs: 15 });
  const code = await startDownload();
  const first = api.events(`/downloads/${code}/events`);
  const seen = await collect(first, (events) => events.length === 4);
  first.close();
  expect(seen.map((e) => e.lastEventId)).toEqual(['1', '2', '3', '4']);

  const byHeader = await collect(api.events(`/downloads/${code}/events`, 'alice', { 'last-event-id': '4' }), isFinal);
  expect(byHeader.map((e) => e.lastEventId)).toEqual(['5', '6', '7', '8', '9', '10', '11', '12']);
  expect(JSON.parse(byHeader[0]!.data as string)).toEqual({ status: 'IN_PROGRESS', progress: 40 });

  const byQuery = await collect(api.events(`/downloads/${code}/events?lastEventId=9`), isFinal);
  expect(byQuery.map((e) => e.lastEventId)).toEqual(['10', '11', '12']);
});

test('after the last event, EventSource reconnects with its id and gets 204, which stops it', async () => {
  api = await TestBackend.start();
  const code = await startDownload();
  const es = api.events(`/downloads/${code}/events`);
  const stopped = failure(es);
  const events = await collect(es, isFinal);
  expect(events).toHaveLength(12);
  // The stream ended; the client's own reconnect (retry: 5 ms) carries Last-Event-ID 12.
  expect(await stopped).toMatchObject({ code: 204 });

  const direct = await api.call(`/downloads/${code}/events`, { headers: { 'last-event-id': '12' } });
  expect(direct.status).toBe(204);
  expect(direct.text).toBe('');
  const oneMissed = await api.call(`/downloads/${code}/events`, { headers: { 'last-event-id': '11' } });
  expect(oneMissed.status).toBe(200);
  expect(oneMissed.text).toBe(`retry: 5\n\ndata: {"status":"COMPLETED","url":"/downloads/${code}/file"}\nid: 12\n\n`);
  // An id it never sent would hide events up to it: refused, not answered with silence.
  const fromTheFuture = await api.call(`/downloads/${code}/events`, { headers: { 'last-event-id': '13' } });
  expect(fromTheFuture.status).toBe(400);
  expect(fromTheFuture.json).toMatchObject({ error: { code: 'invalid_last_event_id' } });
});

test('the job runs with nobody listening, and a late subscriber gets its whole history', async () => {
  api = await TestBackend.start();
  const code = await startDownload();
  await until(async () => (await api.call(`/downloads/${code}/status`)).json.status === 'COMPLETED', 5000, 'completion');
  const events = await collect(api.events(`/downloads/${code}/events`), isFinal);
  expect(events.map((e) => e.lastEventId)).toEqual(Array.from({ length: 12 }, (_, i) => String(i + 1)));
});

test("another user's code is 404 on events, status and file, like an unknown one", async () => {
  api = await TestBackend.start();
  const code = await startDownload(undefined, 'alice');
  await until(async () => (await api.call(`/downloads/${code}/status`)).json.status === 'COMPLETED', 5000, 'completion');

  for (const path of [`/downloads/${code}/status`, `/downloads/${code}/file`, `/downloads/${code}/events`, '/downloads/unknownCode123/status']) {
    const res = await api.call(path, { user: 'mallory' });
    expect(res.status).toBe(404);
    expect(res.json).toEqual({ error: { code: 'not_found', message: expect.any(String) } });
  }
  expect(await failure(api.events(`/downloads/${code}/events`, 'mallory'))).toMatchObject({ code: 404 });
});

test('heartbeats are comment lines on a quiet stream', async () => {
  api = await TestBackend.start({ tickMs: 10_000, heartbeatMs: 5 });
  const code = await startDownload();
  const stream = await api.stream(`/downloads/${code}/events`, { method: 'GET' });
  expect(stream.status).toBe(200);
  expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
  expect(stream.headers['cache-control']).toBe('no-cache, no-transform');
  expect(stream.headers['x-accel-buffering']).toBe('no');
  await until(() => stream.comments.length >= 3, 2000, 'three heartbeats');
  expect(new Set(stream.comments)).toEqual(new Set(['hb']));
  expect(stream.events.map((e) => e.id)).toEqual(['1']);
});

test('bad input is a 400 with a JSON error, never a crash', async () => {
  api = await TestBackend.start();
  const code = await startDownload();
  const bad: [string, Parameters<TestBackend['call']>[1], string][] = [
    ['/downloads', { method: 'POST', json: { failAt: 101 } }, 'bad_request'],
    ['/downloads', { method: 'POST', json: { failAt: '50' } }, 'bad_request'],
    ['/downloads', { method: 'POST', json: { name: '../etc/passwd' } }, 'bad_request'],
    ['/downloads', { method: 'POST', json: [1, 2] }, 'bad_request'],
    ['/downloads', { method: 'POST', body: '{"failAt":', headers: { 'content-type': 'application/json' } }, 'bad_request'],
    ['/downloads/bad!code/status', {}, 'invalid_id'],
    [`/downloads/${'x'.repeat(129)}/events`, {}, 'invalid_id'],
    [`/downloads/${code}/events`, { headers: { 'last-event-id': 'abc' } }, 'invalid_last_event_id'],
    [`/downloads/${code}/events?lastEventId=-1`, {}, 'invalid_last_event_id'],
    [`/downloads/${code}/events?lastEventId=1&lastEventId=2`, {}, 'invalid_last_event_id'],
  ];
  for (const [path, options, errorCode] of bad) {
    const res = await api.call(path, options);
    expect({ path, status: res.status, code: res.json?.error?.code }).toEqual({ path, status: 400, code: errorCode });
  }
  expect((await api.call('/health')).status).toBe(200);
});

test('a user can have maxActivePerUser running downloads; one more is 429 until one finishes', async () => {
  api = await TestBackend.start({ maxActivePerUser: 2, tickMs: 20 });
  await startDownload();
  const second = await startDownload();
  const third = await api.call('/downloads', { method: 'POST' });
  expect(third.status).toBe(429);
  expect(third.json.error.code).toBe('too_many_jobs');
  expect((await api.call('/downloads', { method: 'POST', user: 'bob' })).status).toBe(201);
  await until(async () => (await api.call(`/downloads/${second}/status`)).json.status === 'COMPLETED', 5000, 'completion');
  expect((await api.call('/downloads', { method: 'POST' })).status).toBe(201);
});
