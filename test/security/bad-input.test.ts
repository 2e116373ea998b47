import { once } from 'node:events';
import { createServer } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { Readable } from 'node:stream';
import { getGlobalDispatcher, request } from 'undici';
import { SseResponse, TestBackend, multipart, sampleFile } from '../backend/harness';
import { FixtureBackend } from '../support/fixture-backend';
import { type RunningRelay, authHeader, startRelay } from '../support/relay-server';

let backend: TestBackend;
let relay: RunningRelay;

beforeEach(async () => {
  backend = await TestBackend.start();
  relay = await startRelay(backend.url, { topicLingerMs: 20 });
});

afterEach(async () => {
  await relay.close();
  await backend.close();
});

interface Answer {
  readonly path: string;
  readonly status: number;
  readonly contentType: string;
  readonly text: string;
}

/** One request as alice; `path` is sent as written (a URL would normalize `%2e%2e` away before it left). */
async function call(path: string, options: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string | Readable } = {}): Promise<Answer> {
  const res = await getGlobalDispatcher().request({
    origin: relay.url,
    path,
    method: options.method ?? 'GET',
    headers: { ...authHeader(), ...options.headers },
    body: options.body ?? null,
  });
  return { path, status: res.statusCode, contentType: String(res.headers['content-type']), text: await res.body.text() };
}

/** The contract's error answer: a 4xx (or exactly `status`) with `{"error":{code,message}}`. */
function expectJsonError(answer: Answer, status?: number): { code: string; message: string } {
  // The path leads each comparison so that a failure names the request.
  const path = answer.path.slice(0, 80);
  const is4xx = answer.status >= 400 && answer.status < 500;
  expect([path, status ?? is4xx, answer.contentType.split(';')[0]]).toEqual([path, status ?? true, 'application/json']);
  if (status !== undefined) expect([path, answer.status]).toEqual([path, status]);
  const body = JSON.parse(answer.text) as { error: { code: string; message: string } };
  expect([path, body]).toEqual([path, { error: { code: expect.any(String), message: expect.stringMatching(/.{10}/) } }]);
  return body.error;
}

/** One request written byte for byte, for what well-behaved clients refuse to send; resolves with all the server said. */
function raw(head: string): Promise<string> {
  const { port } = new URL(relay.url);
  return new Promise((resolve) => {
    let answer = '';
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(head));
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    // The server may reset a connection whose request it refused mid-write: what it said is still the answer.
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(answer));
  });
}

const rawHead = (target: string, extra = ''): string =>
  `GET ${target} HTTP/1.1\r\nHost: relay.test\r\nAuthorization: ${authHeader().authorization}\r\n${extra}Connection: close\r\n\r\n`;

/** The relay is alive and well: liveness, and a download streamed through it to its end. */
async function expectRelayServes(): Promise<void> {
  const health = await request(`${relay.url}/healthz`);
  expect(health.statusCode).toBe(200);
  expect(await health.body.json()).toEqual({ status: 'ok' });
  const created = await request(`${relay.url}/api/downloads`, { method: 'POST', headers: authHeader() });
  expect(created.statusCode).toBe(201);
  const { code } = (await created.body.json()) as { code: string };
  const res = await request(`${relay.url}/api/downloads/${code}/events`, { headers: authHeader() });
  expect(res.statusCode).toBe(200);
  const stream = new SseResponse(res.statusCode, res.headers, res.body);
  await stream.ended;
  expect(stream.data.at(-1)).toMatchObject({ status: 'COMPLETED' });
}

const ODD_IDS = ['a%2Fb', '%2e%2e', '..%2F..%2Fhealth', 'a%00b', 'x'.repeat(5000), '%C3%A9t%C3%A9', '%F0%9F%92%A5', '%E0%A4%A', '%'];

test('odd ids on the shared stream routes are a 400 JSON error and open nothing', async () => {
  for (const id of ODD_IDS) {
    for (const path of [`/api/downloads/${id}/events`, `/api/documents/upload-sse/reconnect/${id}`]) {
      const answer = await call(path);
      const { code } = expectJsonError(answer, 400);
      // A broken percent-encoding cannot be decoded at all; everything else is a well-formed but invalid id.
      // A path with two spellings (encoded slash, dot segment) is refused before routing.
      const expected = /%2F|^%2e%2e$/i.test(id) ? 'invalid_path' : id.startsWith('%E0') || id === '%' ? 'bad_request' : 'invalid_id';
      expect([path.slice(0, 60), code]).toEqual([path.slice(0, 60), expected]);
    }
  }
  expect(relay.relay.hub.topicCount).toBe(0);
  await expectRelayServes();
});

test('odd paths on proxied routes get a 4xx JSON answer', async () => {
  for (const id of ODD_IDS) {
    for (const path of [`/api/downloads/${id}/status`, `/api/sessions/${id}`, `/api/downloads/${id}/file`]) expectJsonError(await call(path));
  }
  expect(expectJsonError(await call('/api/%2e%2e/%2e%2e/etc/passwd'), 400).code).toBe('invalid_path');
  await expectRelayServes();
});

test('a path or request target naming another host goes to the backend, never to that host', async () => {
  const strays: string[] = [];
  const elsewhere = createServer((req, res) => {
    strays.push(`${String(req.headers['x-user-id'])} ${String(req.url)}`);
    res.end('elsewhere');
  });
  elsewhere.listen(0, '127.0.0.1');
  await once(elsewhere, 'listening');
  const host = `127.0.0.1:${(elsewhere.address() as AddressInfo).port}`;
  try {
    // The backend's own 404: the request stayed there. A target that is no URL at all is the relay's 400.
    const backendNotFound = /^HTTP\/1\.1 404 [^]*\{"error":\{"code":"not_found","message":"No such route\."\}\}$/;
    // Empty segments, backslashes, dot segments and encoded slashes never leave the relay.
    const invalidPath = /^HTTP\/1\.1 400 [^]*\{"error":\{"code":"invalid_path","message":"[^"]+"\}\}$/;
    for (const [target, answer] of [
      [`/api//${host}/x`, invalidPath],
      [`/api/\\${host}/x`, invalidPath],
      [`/api/.//${host}/x`, invalidPath],
      [`/api/%2F%2F${host}/x`, invalidPath],
      [`http://${host}/api/x`, backendNotFound],
      ['http://127.0.0.1:99999/api/x', /^HTTP\/1\.1 400 [^]*\{"error":\{"code":"bad_request","message":"The request target is not a valid URL\."\}\}$/],
    ] as const) {
      expect([target, await raw(rawHead(target))]).toEqual([target, expect.stringMatching(answer)]);
    }
    expect(strays).toEqual([]);
  } finally {
    elsewhere.closeAllConnections();
    elsewhere.close();
  }
  await expectRelayServes();
});

test('bytes the HTTP parser refuses (raw UTF-8 in the path) or headers past its limit (40 KB) are answered by Node; the relay lives on', async () => {
  // Written as UTF-8, unencoded: what a careless client would send.
  expect(await raw(rawHead('/api/downloads/été/events'))).toMatch(/^HTTP\/1\.1 400 /);
  expect(await raw(rawHead('/api/downloads/abc/events', `X-Padding: ${'a'.repeat(40 * 1024)}\r\n`))).toMatch(/^HTTP\/1\.1 431 /);
  await expectRelayServes();
});

test('a Last-Event-ID that is too long, or that no HTTP header can carry upstream, is a 400 JSON error at once', async () => {
  const created = await request(`${relay.url}/api/downloads`, { method: 'POST', headers: authHeader() });
  const { code } = (await created.body.json()) as { code: string };
  const path = `/api/downloads/${code}/events`;
  for (const answer of [
    await call(path, { headers: { 'last-event-id': '9'.repeat(300) } }),
    await call(path, { headers: { 'last-event-id': 'x'.repeat(10_000) } }),
    await call(`${path}?lastEventId=${'9'.repeat(5000)}`),
    await call(`${path}?lastEventId=1%0Adata:%20injected`),
    await call(`${path}?lastEventId=1%0D`),
    await call(`${path}?lastEventId=1%00`),
    await call(`${path}?lastEventId=1%01`),
    // Only the query can carry a character past U+00FF: Node reads header bytes as Latin-1.
    await call(`${path}?lastEventId=%E6%97%A5`),
    // Given twice, as the backend refuses it too: neither can be the one the client meant.
    await call(`${path}?lastEventId=1&lastEventId=2`),
  ]) {
    expect(expectJsonError(answer, 400).code).toBe('invalid_last_event_id');
  }
  expect(relay.relay.hub.topicCount).toBe(0);
  await expectRelayServes();
});

describe('JSON request bodies are capped', () => {
  /** A chat history request padded to about `bytes`, sent in 1 KB chunks without a Content-Length. */
  function chunkedJson(bytes: number): Readable {
    const json = Buffer.from(JSON.stringify({ chatbotId: 'bot', page: 1, padding: 'p'.repeat(bytes) }));
    return Readable.from(Array.from({ length: Math.ceil(json.length / 1024) }, (_, i) => json.subarray(i * 1024, (i + 1) * 1024)));
  }

  test('a 2 MiB JSON body to the chat routes is the relay’s own 413 (default cap 1 MiB)', async () => {
    const big = JSON.stringify({ chatbotId: 'bot', message: 'x'.repeat(2 * 1024 * 1024) });
    for (const path of ['/api/chat/stream', '/api/chat/history']) {
      const answer = await call(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: big });
      // The backend's own 413 would say "The request body is too large."
      expect(expectJsonError(answer, 413)).toEqual({ code: 'payload_too_large', message: 'The body is larger than 1048576 bytes.' });
    }
    await expectRelayServes();
  });

  test('a declared JSON body over the cap is refused before the backend is contacted', async () => {
    const fixture = await new FixtureBackend().start();
    const direct = await startRelay(fixture.url);
    try {
      for (const type of ['application/json', 'application/json; charset=utf-8', 'Application/JSON']) {
        const res = await request(`${direct.url}/api/chat/stream`, {
          method: 'POST',
          headers: { ...authHeader(), 'content-type': type },
          body: JSON.stringify({ message: 'x'.repeat(1024 * 1024) }),
        });
        expect([type, res.statusCode]).toEqual([type, 413]);
        await res.body.dump();
      }
      expect(fixture.requests).toEqual([]);
      const health = await request(`${direct.url}/healthz`);
      expect(health.statusCode).toBe(200);
      await health.body.dump();
    } finally {
      await fixture.close();
      await direct.close();
    }
  });

  test('a chunked JSON body is counted on its way and cut past maxJsonBodyBytes; smaller ones and uploads pass', async () => {
    await relay.close();
    relay = await startRelay(backend.url, { topicLingerMs: 20, maxJsonBodyBytes: 8192 });
    const over = await call('/api/chat/history', { method: 'POST', headers: { 'content-type': 'application/json' }, body: chunkedJson(20_000) });
    expect(expectJsonError(over, 413)).toEqual({ code: 'payload_too_large', message: 'The body is larger than 8192 bytes.' });

    const under = await call('/api/chat/history', { method: 'POST', headers: { 'content-type': 'application/json' }, body: chunkedJson(6000) });
    expect([under.status, JSON.parse(under.text)]).toEqual([200, { messages: [], hasMore: false }]);

    // The JSON cap is not the upload cap: a 20 KB multipart upload goes through.
    const form = multipart({ chunk_size: '5000', chunk_overlap: '0' }, sampleFile(20_000));
    const upload = await request(`${relay.url}/api/documents/upload-sse`, { method: 'POST', headers: { ...authHeader(), 'content-type': form.contentType }, body: form.whole });
    const stream = new SseResponse(upload.statusCode, upload.headers, upload.body);
    await stream.waitForEvent('complete');
    await expectRelayServes();
  });
});

test('malformed JSON is a 400 JSON answer', async () => {
  for (const path of ['/api/chat/history', '/api/chat/stream', '/api/downloads']) {
    const answer = await call(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"chatbotId":"bot","page":' });
    expect(expectJsonError(answer, 400).message).toMatch(/not valid JSON/);
  }
  await expectRelayServes();
});
