import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { EventSourceMessage } from 'eventsource-parser';
import { type Multipart, type SseResponse, TestBackend, collect, multipart, sampleFile } from './harness';
import type { BackendOptions } from '../../backend/options';
import { delay, until } from '../support/until';

const UPLOAD = '/documents/upload-sse';
const STAGES = [
  ['ocr_start', 'ocr_chunk_processed', 'ocr_complete'],
  ['llm_metadata_start', 'llm_chunk_processed', 'llm_metadata_complete'],
  ['embedding_start', 'embedding_chunk_processed', 'embedding_complete'],
] as const;

let api: TestBackend;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backend-uploads-test-'));
});

afterEach(async () => {
  await api.close();
  expect(api.errors).toEqual([]);
  await rm(dir, { recursive: true, force: true });
});

function start(options: Partial<BackendOptions> = {}): Promise<TestBackend> {
  return TestBackend.start({ uploadDir: dir, ...options });
}

function upload(form: Multipart, options: { user?: string; signal?: AbortSignal; body?: PassThrough } = {}): Promise<SseResponse> {
  return api.stream(UPLOAD, { body: options.body ?? form.whole, headers: { 'content-type': form.contentType }, user: options.user, signal: options.signal });
}

function names(stream: SseResponse): string[] {
  return stream.data.map((d: { event: string }) => d.event);
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function state(id: string, user = 'alice') {
  return (await api.call(`/sessions/${id}`, { user })).json;
}

/** The body of a streaming upload, written by the test piece by piece. */
function slowBody(): PassThrough {
  return new PassThrough();
}

/** Uploads `file`, reads up to an event (by name or test), then leaves: the stream so far and the session id. */
async function uploadThenLeave(
  file: Buffer,
  leaveAfter: string | ((event: EventSourceMessage) => boolean),
  fields: Record<string, string> = {},
): Promise<{ stream: SseResponse; id: string }> {
  const controller = new AbortController();
  const stream = await upload(multipart(fields, file), { signal: controller.signal });
  await (typeof leaveAfter === 'string' ? stream.waitForEvent(leaveAfter) : stream.waitFor(leaveAfter));
  controller.abort();
  await stream.ended.catch(() => undefined);
  return { stream, id: stream.data[0].session_id as string };
}

test('an upload streams every stage: chunk events add up to total_chunks, and the stored copy is byte-equal', async () => {
  api = await start({ savingEventBytes: 64 * 1024 });
  const file = sampleFile(300 * 1024 + 123);
  const stream = await upload(multipart({ collection_name: 'manuals', chunk_size: '4096', chunk_overlap: '512' }, file, { filename: 'guide.pdf' }));
  await stream.ended;

  expect(stream.status).toBe(200);
  expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
  expect(stream.events.map((e) => e.id)).toEqual(stream.events.map((_, i) => String(i + 1)));
  const data = stream.data;
  const sessionId = data[0].session_id as string;
  expect(sessionId).toMatch(/^[A-Za-z0-9_-]{16,128}$/);
  for (const d of data) expect(d.session_id).toBe(sessionId);

  // 307323 bytes in chunks of 4096 that start every 4096 - 512 = 3584 bytes: 1 + ceil(303227 / 3584) = 86.
  const total = 86;
  const saving = data.filter((d) => d.event === 'file_saving');
  expect(saving[0]).toMatchObject({ bytes_received: 0, file_name: 'guide.pdf' });
  expect(saving.length).toBeGreaterThanOrEqual(3);
  const received = saving.map((d) => d.bytes_received as number);
  expect([...received].sort((a, b) => a - b)).toEqual(received);
  expect(received.at(-1)).toBeLessThanOrEqual(file.length);
  expect(names(stream)).toEqual([
    'start',
    ...saving.map(() => 'file_saving'),
    'file_saved',
    'processing_start',
    'total_chunks',
    ...STAGES.flatMap(([begin, chunk, end]) => [begin, ...Array<string>(total).fill(chunk), end]),
    'complete',
  ]);
  expect(data.find((d) => d.event === 'start')).toMatchObject({ collection_name: 'manuals', file_name: 'guide.pdf' });
  expect(data.find((d) => d.event === 'file_saved')).toMatchObject({ bytes: file.length, sha256: sha256(file) });
  expect(data.find((d) => d.event === 'processing_start')).toMatchObject({ chunk_size: 4096, chunk_overlap: 512 });
  expect(data.find((d) => d.event === 'total_chunks')).toMatchObject({ total_chunks: total });
  for (const [, chunk] of STAGES) {
    const chunks = data.filter((d) => d.event === chunk);
    expect(chunks.map((d) => d.chunk_index)).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(chunks.map((d) => d.processed)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(new Set(chunks.map((d) => d.total_chunks))).toEqual(new Set([total]));
    expect(chunks[1]).toMatchObject({ byte_start: 3584, byte_end: 3584 + 4096 });
    expect(chunks.at(-1)).toMatchObject({ byte_end: file.length });
  }
  expect(data.at(-1)).toMatchObject({ event: 'complete', total_chunks: total, bytes: file.length, sha256: sha256(file) });

  expect(await state(sessionId)).toMatchObject({
    session_id: sessionId,
    stage: 'complete',
    done: true,
    cancelled: false,
    error: null,
    bytes: file.length,
    sha256: sha256(file),
    total_chunks: total,
    processed: { ocr: total, llm_metadata: total, embedding: total },
    last_event_id: String(stream.events.length),
  });
  const stored = await readdir(dir);
  expect(stored).toHaveLength(1);
  expect((await readFile(join(dir, stored[0]!))).equals(file)).toBe(true);
});

test('the event stream starts before the request body is complete', async () => {
  api = await start();
  const file = sampleFile(20_000);
  const form = multipart({ chunk_size: '1000', chunk_overlap: '0' }, file);
  const body = slowBody();
  body.write(Buffer.concat([form.head, file.subarray(0, 5000)]));
  const stream = await upload(form, { body });

  const started = JSON.parse((await stream.waitForEvent('start')).data) as { session_id: string };
  await stream.waitForEvent('file_saving');
  await until(async () => (await state(started.session_id)).bytes === 5000, 2000, 'the first 5000 bytes stored');
  expect(await state(started.session_id)).toMatchObject({ stage: 'receiving', done: false, sha256: null });
  expect(names(stream)).toEqual(['start', 'file_saving']);

  body.end(Buffer.concat([file.subarray(5000), form.tail]));
  await stream.ended;
  expect(stream.data.at(-1)).toMatchObject({ event: 'complete', total_chunks: 20, sha256: sha256(file) });
});

test('a client that disconnects mid-body cancels the session at once and its partial file is removed', async () => {
  api = await start();
  const file = sampleFile(50_000);
  const form = multipart({}, file);
  const body = slowBody();
  body.write(Buffer.concat([form.head, file.subarray(0, 10_000)]));
  const controller = new AbortController();
  const stream = await upload(form, { body, signal: controller.signal });
  const id = (JSON.parse((await stream.waitForEvent('start')).data) as { session_id: string }).session_id;
  await until(async () => (await state(id)).bytes === 10_000, 2000, 'the first bytes stored');
  expect(await readdir(dir)).toHaveLength(1);

  controller.abort();
  body.destroy();
  await expect(stream.ended).rejects.toThrow();
  await until(async () => (await state(id)).stage === 'cancelled', 1000, 'cancelled');
  expect(await state(id)).toMatchObject({ done: true, cancelled: true, cancel_reason: expect.stringContaining('closed before the file was complete') });
  await until(async () => (await readdir(dir)).length === 0, 1000, 'the partial file removed');

  // The history says what happened, for anyone who reconnects.
  const replay = await api.stream(`/documents/upload-sse/reconnect/${id}`, { method: 'GET' });
  await replay.ended;
  expect(replay.data.at(-1)).toMatchObject({ event: 'cancelled', session_id: id, stage: 'receiving' });
});

test('cancel mid-processing ends the stream with cancelled, and the counters stop', async () => {
  api = await start({ chunkMs: 3 });
  const stream = await upload(multipart({ chunk_size: '1000', chunk_overlap: '200' }, sampleFile(40_000)));
  const id = (JSON.parse((await stream.waitForEvent('start')).data) as { session_id: string }).session_id;
  await stream.waitFor((e) => (JSON.parse(e.data) as { event: string; processed?: number }).event === 'ocr_chunk_processed');

  const cancel = await api.call(`/sessions/${id}/cancel`, { method: 'POST' });
  expect(cancel.status).toBe(202);
  expect(cancel.json).toMatchObject({ session_id: id, stage: 'cancelled', done: true, cancelled: true });
  await stream.ended;
  expect(stream.data.at(-1)).toEqual({ event: 'cancelled', session_id: id, reason: 'cancelled by the user', stage: 'ocr' });

  const frozen = (await state(id)).processed;
  expect(frozen.ocr).toBeGreaterThan(0);
  expect(frozen.ocr).toBeLessThan(50);
  expect(frozen.llm_metadata).toBe(0);
  await delay(30);
  expect((await state(id)).processed).toEqual(frozen);

  // Cancelling again is not an error; the stream's end is final (204 for its last id).
  expect((await api.call(`/sessions/${id}/cancel`, { method: 'POST' })).status).toBe(200);
  const reconnect = await api.call(`/documents/upload-sse/reconnect/${id}`, { headers: { 'last-event-id': stream.events.at(-1)!.id! } });
  expect(reconnect.status).toBe(204);
});

test('DELETE forgets a finished session and its file, and refuses one that is running; cancel refuses a completed one', async () => {
  api = await start({ chunkMs: 20 });
  const running = await upload(multipart({}, sampleFile(5000)));
  const id = (JSON.parse((await running.waitForEvent('ocr_start')).data) as { session_id: string }).session_id;
  const refused = await api.call(`/sessions/${id}`, { method: 'DELETE' });
  expect(refused.status).toBe(409);
  expect(refused.json.error.code).toBe('session_running');
  expect((await api.call(`/sessions/${id}/cancel`, { method: 'POST' })).status).toBe(202);
  expect(await readdir(dir)).toHaveLength(1);
  expect((await api.call(`/sessions/${id}`, { method: 'DELETE' })).status).toBe(204);
  expect(await readdir(dir)).toEqual([]);
  expect((await api.call(`/sessions/${id}`)).status).toBe(404);
  expect((await api.call(`/sessions/${id}`, { method: 'DELETE' })).status).toBe(404);

  await api.close();
  api = await start({ chunkMs: 0 });
  const finished = await upload(multipart({}, sampleFile(3000)));
  await finished.ended;
  const doneId = finished.data[0].session_id as string;
  const late = await api.call(`/sessions/${doneId}/cancel`, { method: 'POST' });
  expect(late.status).toBe(409);
  expect(late.json.error.code).toBe('session_finished');
  expect((await api.call(`/sessions/${doneId}`, { method: 'DELETE' })).status).toBe(204);
  expect(await readdir(dir)).toEqual([]);
});

test('a broken stream resumes through the reconnect route with Last-Event-ID: no event twice, none missing', async () => {
  api = await start({ chunkMs: 2, reconnectGraceMs: 5000 });
  const { stream, id } = await uploadThenLeave(sampleFile(30_000), (e) => Number(e.id) >= 20, { chunk_size: '1000', chunk_overlap: '200' });
  const seen = stream.events.length;
  expect((await state(id)).done).toBe(false);

  const resumed = api.events(`/documents/upload-sse/reconnect/${id}`, 'alice', { 'last-event-id': String(seen) });
  const rest = await collect(resumed, (events) => (JSON.parse(events.at(-1)!.data as string) as { event: string }).event === 'complete');
  resumed.close();

  expect(rest.map((e) => e.lastEventId)).toEqual(rest.map((_, i) => String(seen + 1 + i)));
  const all = [...stream.data, ...rest.map((e) => JSON.parse(e.data as string) as { event: string; session_id: string })];
  const total = 1 + Math.ceil((30_000 - 1000) / 800);
  for (const [, chunk] of STAGES) expect(all.filter((d) => d.event === chunk)).toHaveLength(total);
  expect(all.filter((d) => d.event === 'start')).toHaveLength(1);
  expect(new Set(all.map((d) => d.session_id))).toEqual(new Set([id]));
  expect(await state(id)).toMatchObject({ stage: 'complete', processed: { ocr: total, llm_metadata: total, embedding: total } });
});

test('a client that leaves mid-processing and does not reconnect within the grace period cancels the session', async () => {
  api = await start({ chunkMs: 5, reconnectGraceMs: 30 });
  const { id } = await uploadThenLeave(sampleFile(40_000), 'ocr_chunk_processed');

  await until(async () => (await state(id)).cancelled === true, 2000, 'cancelled after the grace period');
  const after = await state(id);
  expect(after.cancel_reason).toMatch(/no client reconnected within 30 ms/);
  expect(after.processed.embedding).toBe(0);
  await delay(30);
  expect((await state(id)).processed).toEqual(after.processed);

  const replay = await api.stream(`/documents/upload-sse/reconnect/${id}`, { method: 'GET' });
  await replay.ended;
  expect(replay.data[0]).toMatchObject({ event: 'start', session_id: id });
  expect(replay.data.at(-1)).toMatchObject({ event: 'cancelled', reason: after.cancel_reason });
});

test('a reconnect within the grace period keeps the session running', async () => {
  api = await start({ chunkMs: 3, reconnectGraceMs: 60 });
  const { stream, id } = await uploadThenLeave(sampleFile(20_000), 'ocr_chunk_processed');

  const resumed = await api.stream(`/documents/upload-sse/reconnect/${id}`, { method: 'GET', headers: { 'last-event-id': String(stream.events.length) } });
  await resumed.ended;
  expect(resumed.data.at(-1)).toMatchObject({ event: 'complete' });
  expect((await state(id)).stage).toBe('complete');
});

test('a session that completes after its reader left clears its grace timer', async () => {
  const GRACE_MS = 61_234;
  const set = jest.spyOn(global, 'setTimeout');
  const clear = jest.spyOn(global, 'clearTimeout');
  try {
    api = await start({ chunkMs: 1, reconnectGraceMs: GRACE_MS });
    const { id } = await uploadThenLeave(sampleFile(20_000), 'ocr_chunk_processed');
    await until(async () => (await state(id)).stage === 'complete', 5000, 'completion');
    const started = set.mock.calls.findIndex(([, ms]) => ms === GRACE_MS);
    expect(started).toBeGreaterThanOrEqual(0);
    // Left running, the grace clock of a session that is over would hold the process for a minute.
    expect(clear).toHaveBeenCalledWith(set.mock.results[started]?.value);
  } finally {
    set.mockRestore();
    clear.mockRestore();
  }
});

test("another user's session is 404 on every route", async () => {
  api = await start();
  const stream = await upload(multipart({}, sampleFile(2000)));
  await stream.ended;
  const id = stream.data[0].session_id as string;
  for (const [method, path] of [
    ['GET', `/sessions/${id}`],
    ['POST', `/sessions/${id}/cancel`],
    ['DELETE', `/sessions/${id}`],
    ['GET', `/documents/upload-sse/reconnect/${id}`],
  ] as const) {
    const res = await api.call(path, { method, user: 'mallory' });
    expect({ method, path, status: res.status, code: res.json?.error?.code }).toEqual({ method, path, status: 404, code: 'not_found' });
  }
  expect((await state(id)).stage).toBe('complete');
});

test('bad fields before the file are a 400 JSON answer, and no session starts', async () => {
  api = await start();
  const file = sampleFile(1000);
  const cases: [Record<string, string>, RegExp][] = [
    [{ chunk_size: '500', chunk_overlap: '500' }, /chunk_overlap \(500\) must be less than chunk_size \(500\)/],
    [{ chunk_overlap: '1000' }, /less than chunk_size/],
    [{ chunk_size: 'big' }, /chunk_size must be an integer/],
    [{ chunk_size: '0' }, /chunk_size must be an integer/],
    [{ chunk_overlap: '-1' }, /chunk_overlap must be an integer/],
    [{ collection_name: '../../etc' }, /collection_name/],
  ];
  for (const [fields, message] of cases) {
    const form = multipart(fields, file);
    const res = await api.call(UPLOAD, { method: 'POST', body: form.whole, headers: { 'content-type': form.contentType } });
    expect({ fields, status: res.status, code: res.json?.error?.code }).toEqual({ fields, status: 400, code: 'bad_request' });
    expect(res.json.error.message).toMatch(message);
  }

  const noFile = multipart({ chunk_size: '100' }, Buffer.alloc(0), { partName: 'attachment' });
  const wrongPart = await api.call(UPLOAD, { method: 'POST', body: noFile.whole, headers: { 'content-type': noFile.contentType } });
  expect(wrongPart.status).toBe(400);
  expect(wrongPart.json.error.message).toMatch(/named "file"/);

  const notMultipart = await api.call(UPLOAD, { method: 'POST', json: { file: 'x' } });
  expect(notMultipart.status).toBe(415);
  expect(notMultipart.json.error.code).toBe('unsupported_media_type');

  const noBoundary = await api.call(UPLOAD, { method: 'POST', body: 'x', headers: { 'content-type': 'multipart/form-data' } });
  expect(noBoundary.status).toBe(400);

  const anonymous = multipart({}, file);
  const noUser = await api.call(UPLOAD, { method: 'POST', user: null, body: anonymous.whole, headers: { 'content-type': anonymous.contentType } });
  expect(noUser.status).toBe(401);
  expect(noUser.json.error.code).toBe('missing_user');

  expect(await readdir(dir)).toEqual([]);
});

test('fields after the file still count; a bad one ends the stream with an error event', async () => {
  api = await start();
  const good = await upload(multipart({}, sampleFile(3000), { after: { chunk_size: '1500', chunk_overlap: '0' } }));
  await good.ended;
  expect(good.data.find((d) => d.event === 'total_chunks')).toMatchObject({ total_chunks: 2 });
  expect(good.data.at(-1)).toMatchObject({ event: 'complete' });

  const bad = await upload(multipart({}, sampleFile(3000), { after: { chunk_size: 'huge' } }));
  await bad.ended;
  expect(bad.status).toBe(200);
  expect(bad.data.at(-1)).toMatchObject({ event: 'error', code: 'bad_request', message: expect.stringMatching(/chunk_size/) });
  expect(names(bad)).not.toContain('processing_start');
});

test('an empty file and a file with too many chunks end with an error event', async () => {
  api = await start({ maxChunks: 10 });
  const empty = await upload(multipart({}, Buffer.alloc(0)));
  await empty.ended;
  expect(empty.data.at(-1)).toMatchObject({ event: 'error', code: 'empty_file' });

  const big = await upload(multipart({ chunk_size: '100', chunk_overlap: '0' }, sampleFile(5000)));
  await big.ended;
  expect(big.data.at(-1)).toMatchObject({ event: 'error', code: 'too_many_chunks', message: expect.stringMatching(/larger chunk_size/) });
  const id = big.data[0].session_id as string;
  expect(await state(id)).toMatchObject({ stage: 'error', done: true, error: { code: 'too_many_chunks' } });
  await until(async () => (await readdir(dir)).length === 0, 1000, 'the refused files removed');
});

test('a file over maxUploadBytes ends with an error event and is not kept', async () => {
  api = await start({ maxUploadBytes: 10_000 });
  const stream = await upload(multipart({}, sampleFile(30_000)));
  await stream.ended;
  expect(stream.data.at(-1)).toMatchObject({ event: 'error', code: 'payload_too_large' });
  await until(async () => (await readdir(dir)).length === 0, 1000, 'the partial file removed');
});
