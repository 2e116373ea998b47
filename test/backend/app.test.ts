import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createBackend } from '../../backend/app';
import { ConfigError, loadBackendConfig } from '../../backend/config';
import { TestBackend, multipart, sampleFile } from './harness';
import { until } from '../support/until';

let api: TestBackend | undefined;

afterEach(async () => {
  await api?.close();
  expect(api?.errors ?? []).toEqual([]);
  api = undefined;
});

test('GET /health answers 200 {"status":"ok"} without a user', async () => {
  api = await TestBackend.start();
  const res = await api.call('/health', { user: null });
  expect(res.status).toBe(200);
  expect(res.json).toEqual({ status: 'ok' });
});

test('a request without X-User-Id is 401, a malformed one 400, an unknown route 404, all as JSON errors', async () => {
  api = await TestBackend.start();
  for (const path of ['/downloads/abc/status', '/sessions/abc', '/nowhere']) {
    const res = await api.call(path, { user: null });
    expect(res.status).toBe(401);
    expect(res.json).toEqual({ error: { code: 'missing_user', message: expect.stringContaining('X-User-Id') } });
  }
  expect((await api.call('/downloads', { method: 'POST', user: null })).status).toBe(401);
  const spaced = await api.call('/downloads/abc/status', { user: 'alice smith' });
  expect(spaced.status).toBe(400);
  expect(spaced.json.error.code).toBe('invalid_user');
  const unknown = await api.call('/nowhere');
  expect(unknown.status).toBe(404);
  expect(unknown.json.error.code).toBe('not_found');
});

test('close() cancels running work, ends every open stream, removes its files and refuses new requests', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'backend-close-test-'));
  try {
    api = await TestBackend.start({ uploadDir: dir, tickMs: 60_000, chunkMs: 60_000, tokenMs: 60_000 });
    const code = (await api.call('/downloads', { method: 'POST' })).json.code as string;
    const download = await api.stream(`/downloads/${code}/events`, { method: 'GET' });
    const chat = await api.stream('/chat/stream', { json: { chatbotId: 'bot', message: 'hello' } });
    const form = multipart({}, sampleFile(3000));
    const upload = await api.stream('/documents/upload-sse', { body: form.whole, headers: { 'content-type': form.contentType } });
    await upload.waitForEvent('ocr_start');
    const body = new PassThrough();
    const receivingForm = multipart({}, sampleFile(3000));
    body.write(Buffer.concat([receivingForm.head, receivingForm.file.subarray(0, 100)]));
    const receiving = await api.stream('/documents/upload-sse', { body, headers: { 'content-type': receivingForm.contentType } });
    await receiving.waitForEvent('file_saving');
    await until(async () => (await readdir(dir)).length === 2, 1000, 'both files stored');

    await api.backend.close();
    await Promise.all([download.ended, chat.ended, upload.ended, receiving.ended]);
    expect(upload.data.at(-1)).toMatchObject({ event: 'cancelled', reason: 'the backend is shutting down', stage: 'ocr' });
    expect(receiving.data.at(-1)).toMatchObject({ event: 'cancelled', stage: 'receiving' });
    expect(download.events).toHaveLength(1);
    expect(await readdir(dir)).toEqual([]);
    const late = await api.call('/health');
    expect(late.status).toBe(503);
    expect(late.json.error.code).toBe('shutting_down');
    body.destroy();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('options are validated: a bad value throws a TypeError naming the option', () => {
  expect(() => createBackend({ tickMs: -1 })).toThrow(/tickMs must be an integer from 0/);
  expect(() => createBackend({ heartbeatMs: 0 })).toThrow(TypeError);
  expect(() => createBackend({ chunkMs: 1.5 })).toThrow(/chunkMs/);
  expect(() => createBackend({ reconnectGraceMs: 2 ** 31 })).toThrow(/reconnectGraceMs/);
  expect(() => createBackend({ uploadDir: ' ' })).toThrow(/uploadDir/);
});

test('the default upload dir is the backend’s own, under the OS temp dir, and close() removes it', async () => {
  api = await TestBackend.start();
  const dir = api.backend.config.uploadDir;
  expect(dir.startsWith(tmpdir())).toBe(true);
  const form = multipart({}, sampleFile(2000));
  await (await api.stream('/documents/upload-sse', { body: form.whole, headers: { 'content-type': form.contentType } })).ended;
  expect(await readdir(dir)).toHaveLength(1);
  await api.backend.close();
  await expect(readdir(dir)).rejects.toMatchObject({ code: 'ENOENT' });
});

describe('loadBackendConfig', () => {
  test('unset variables leave the backend defaults; set ones are read', async () => {
    expect(loadBackendConfig({})).toMatchObject({ port: 8081, host: '127.0.0.1' });
    const backend = createBackend(loadBackendConfig({}).options);
    await backend.close();
    expect(backend.config).toMatchObject({ tickMs: 500, chunkMs: 40, tokenMs: 40, heartbeatMs: 15_000, reconnectGraceMs: 10_000 });

    const config = loadBackendConfig({
      BACKEND_PORT: '9001',
      BACKEND_TICK_MS: '5',
      BACKEND_CHUNK_MS: '0',
      BACKEND_TOKEN_MS: '7',
      BACKEND_HEARTBEAT_MS: '1000',
      BACKEND_RECONNECT_GRACE_MS: '250',
      BACKEND_UPLOAD_DIR: '/tmp/uploads-here',
    });
    expect(config.port).toBe(9001);
    expect(config.options).toMatchObject({ tickMs: 5, chunkMs: 0, tokenMs: 7, heartbeatMs: 1000, reconnectGraceMs: 250, uploadDir: '/tmp/uploads-here' });
  });

  test('a bad value stops with a ConfigError naming the variable', () => {
    expect(() => loadBackendConfig({ BACKEND_PORT: '70000' })).toThrow(ConfigError);
    expect(() => loadBackendConfig({ BACKEND_TICK_MS: 'fast' })).toThrow(/BACKEND_TICK_MS: expected an integer/);
    expect(() => loadBackendConfig({ BACKEND_HEARTBEAT_MS: '0' })).toThrow(/BACKEND_HEARTBEAT_MS/);
  });
});

test('the reference backend imports nothing of the relay: it can be read, replaced or published on its own', () => {
  const dir = join(__dirname, '../../backend');
  const outside = readdirSync(dir)
    .filter((file) => file.endsWith('.ts'))
    .flatMap((file) => [...readFileSync(join(dir, file), 'utf8').matchAll(/from '(\.\.\/[^']*)'|import\('(\.\.\/[^']*)'\)/g)].map((m) => `${file}: ${m[1] ?? m[2]}`));
  expect(outside).toEqual([]);
});
