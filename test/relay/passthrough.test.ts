import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, request as httpRequest } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { SseResponse, TestBackend, multipart, sampleFile } from '../backend/harness';
import { type RunningRelay, authHeader, startRelay } from '../support/relay-server';
import { until } from '../support/until';

let backend: TestBackend;
let relay: RunningRelay;

async function postStream(path: string, body: Readable | string, headers: Record<string, string>, signal?: AbortSignal): Promise<SseResponse> {
  const res = await request(`${relay.url}/api${path}`, { method: 'POST', headers: { ...authHeader(), ...headers }, body, signal });
  return new SseResponse(res.statusCode, res.headers, res.body);
}

afterEach(async () => {
  await relay.close();
  await backend.close();
});

describe('with the reference backend', () => {
  beforeEach(async () => {
    backend = await TestBackend.start({ reconnectGraceMs: 2000 });
    relay = await startRelay(backend.url, { topicLingerMs: 20 });
  });

  test('a 100 MB upload streams through: stages arrive before the body ends, memory stays flat, the copy is byte-equal', async () => {
    const SIZE = 100 * 1024 * 1024;
    const piece = sampleFile(1024 * 1024);
    const form = multipart({ collection_name: 'docs', chunk_size: String(1024 * 1024), chunk_overlap: '0' }, Buffer.alloc(0));
    const hash = createHash('sha256');
    let bodyDone = 0;
    let firstEvent = 0;
    let heapPeak = 0;
    const heapBase = process.memoryUsage().heapUsed;
    async function* body(): AsyncGenerator<Buffer> {
      yield form.head;
      for (let sent = 0; sent < SIZE; sent += piece.length) {
        hash.update(piece);
        heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
        yield piece;
      }
      yield form.tail;
      bodyDone = Date.now();
    }
    const stream = await postStream('/documents/upload-sse', Readable.from(body()), { 'content-type': form.contentType });
    expect(stream.status).toBe(200);
    expect(stream.headers['content-type']).toMatch(/^text\/event-stream/);
    await stream.waitForEvent('start');
    firstEvent = Date.now();
    await stream.waitForEvent('complete', 60_000);
    await stream.ended;

    expect(firstEvent).toBeLessThan(bodyDone);
    const kinds = stream.data.map((d: { event: string }) => d.event);
    for (const stage of ['ocr_chunk_processed', 'llm_chunk_processed', 'embedding_chunk_processed']) {
      expect(kinds.filter((k: string) => k === stage)).toHaveLength(100);
    }
    const totals = stream.data.find((d: { event: string }) => d.event === 'total_chunks');
    expect(totals.total_chunks).toBe(100);
    const session = await backend.call(`/sessions/${totals.session_id as string}`);
    expect(session.json.sha256).toBe(hash.digest('hex'));
    // Relay and backend share this process: together they held far less than the 100 MB that passed.
    expect(heapPeak - heapBase).toBeLessThan(24 * 1024 * 1024);
  }, 60_000);

  test('a client that aborts mid-body cancels the session at the backend', async () => {
    const form = multipart({ chunk_size: '1000' }, Buffer.alloc(0));
    const controller = new AbortController();
    const body = new Readable({ read() {} });
    body.push(form.head);
    body.push(sampleFile(64 * 1024));
    const stream = await postStream('/documents/upload-sse', body, { 'content-type': form.contentType }, controller.signal);
    const start = JSON.parse((await stream.waitForEvent('start')).data) as { session_id: string };
    controller.abort();
    await until(async () => (await backend.call(`/sessions/${start.session_id}`)).json?.cancelled === true, 5000, 'session cancelled');
    expect((await backend.call(`/sessions/${start.session_id}`)).json).toMatchObject({ stage: 'cancelled', done: true });
  });

  test('POST /api/sessions/:id/cancel ends the live upload stream with cancelled', async () => {
    const form = multipart({ chunk_size: '1000', chunk_overlap: '0' }, sampleFile(200_000));
    const stream = await postStream('/documents/upload-sse', Readable.from([form.whole]), { 'content-type': form.contentType });
    const chunk = JSON.parse((await stream.waitForEvent('ocr_chunk_processed')).data) as { session_id: string };
    const cancel = await request(`${relay.url}/api/sessions/${chunk.session_id}/cancel`, { method: 'POST', headers: authHeader() });
    expect(cancel.statusCode).toBe(202);
    await cancel.body.dump();
    await stream.ended;
    expect(stream.data.at(-1)).toMatchObject({ event: 'cancelled', session_id: chunk.session_id, reason: 'cancelled by the user' });
    expect(stream.data.some((d: { event: string }) => d.event === 'complete')).toBe(false);
  });

  test('a broken upload stream resumes on the reconnect route: per-stage counters add up exactly', async () => {
    const form = multipart({ chunk_size: '1000', chunk_overlap: '0' }, sampleFile(40_000));
    const controller = new AbortController();
    const first = await postStream('/documents/upload-sse', Readable.from([form.whole]), { 'content-type': form.contentType }, controller.signal);
    await first.waitFor((e) => (JSON.parse(e.data) as { event: string }).event === 'ocr_chunk_processed');
    controller.abort();
    await first.ended.catch(() => undefined);
    const seen = first.events;
    const sessionId = (JSON.parse(seen[0]!.data) as { session_id: string }).session_id;
    const lastId = seen[seen.length - 1]!.id!;

    const res = await request(`${relay.url}/api/documents/upload-sse/reconnect/${sessionId}`, {
      headers: { ...authHeader(), 'last-event-id': lastId },
    });
    expect(res.statusCode).toBe(200);
    const rest = new SseResponse(res.statusCode, res.headers, res.body);
    await rest.ended;
    const all = [...seen, ...rest.events];
    const ids = all.map((e) => Number(e.id));
    expect(ids).toEqual(Array.from({ length: ids.length }, (_, i) => i + 1));
    const kinds = all.map((e) => (JSON.parse(e.data) as { event: string }).event);
    for (const stage of ['ocr_chunk_processed', 'llm_chunk_processed', 'embedding_chunk_processed']) {
      expect(kinds.filter((k) => k === stage)).toHaveLength(40);
    }
    expect(kinds[kinds.length - 1]).toBe('complete');
  });

  test('another user cannot reach a session, by the stream or the REST routes', async () => {
    const form = multipart({ chunk_size: '1000' }, sampleFile(5000));
    const stream = await postStream('/documents/upload-sse', Readable.from([form.whole]), { 'content-type': form.contentType });
    const sessionId = (JSON.parse((await stream.waitForEvent('start')).data) as { session_id: string }).session_id;
    for (const [method, path] of [
      ['GET', `/documents/upload-sse/reconnect/${sessionId}`],
      ['GET', `/sessions/${sessionId}`],
      ['POST', `/sessions/${sessionId}/cancel`],
      ['DELETE', `/sessions/${sessionId}`],
    ] as const) {
      const res = await request(`${relay.url}/api${path}`, { method, headers: { ...authHeader('mallory'), 'x-user-id': 'alice' } });
      expect([method, path, res.statusCode]).toEqual([method, path, 404]);
      await res.body.dump();
    }
    await stream.ended;
  });

  test('chat tokens arrive as they are made; a client that leaves stops the generation; history pages', async () => {
    await relay.close();
    await backend.close();
    backend = await TestBackend.start({ tokenMs: 15 });
    // No grace for a resume: a client that leaves is a cancel, as before resumable answers.
    relay = await startRelay(backend.url, { postResumeGraceMs: 0 });
    const chat = await postStream('/chat/stream', JSON.stringify({ chatbotId: 'bot1', message: 'tell me about streams' }), { 'content-type': 'application/json' });
    expect(chat.status).toBe(200);
    await chat.waitFor((e) => e.event === 'content_block_delta');
    // The first token is here while the backend is still generating.
    expect(chat.events.some((e) => e.event === 'message_stop')).toBe(false);
    await chat.waitFor((e) => e.event === 'message_stop', 10_000);
    expect(chat.events.filter((e) => e.event === 'content_block_delta').length).toBeGreaterThan(5);

    const controller = new AbortController();
    const left = await postStream('/chat/stream', JSON.stringify({ chatbotId: 'bot1', message: 'second question' }), { 'content-type': 'application/json' }, controller.signal);
    await left.waitFor((e) => e.event === 'content_block_delta');
    controller.abort();
    const history = async (page: number, pageSize: number): Promise<{ messages: { role: string; status?: string }[]; hasMore: boolean }> => {
      const res = await request(`${relay.url}/api/chat/history`, {
        method: 'POST',
        headers: { ...authHeader(), 'content-type': 'application/json' },
        body: JSON.stringify({ chatbotId: 'bot1', page, pageSize }),
      });
      expect(res.statusCode).toBe(200);
      return (await res.body.json()) as { messages: { role: string; status?: string }[]; hasMore: boolean };
    };
    await until(async () => (await history(1, 20)).messages.at(-1)?.status === 'stopped', 5000, 'generation stopped');
    const newest = await history(1, 2);
    expect(newest.hasMore).toBe(true);
    expect(newest.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
    const oldest = await history(2, 2);
    expect(oldest.hasMore).toBe(false);
    expect(oldest.messages[1]?.status).toBe('complete');
  });

  test('an upload sent the way curl sends one over 1 MiB (Expect: 100-continue, body after the 100) goes through', async () => {
    const form = multipart({ collection_name: 'docs', chunk_size: String(1024 * 1024), chunk_overlap: '0' }, sampleFile(3 * 1024 * 1024));
    const { port } = new URL(relay.url);
    const head = [
      'POST /api/documents/upload-sse HTTP/1.1',
      'Host: relay.test',
      `Authorization: ${authHeader().authorization}`,
      `Content-Type: ${form.contentType}`,
      `Content-Length: ${form.whole.length}`,
      'Expect: 100-continue',
      'Connection: close',
      '',
      '',
    ].join('\r\n');
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(head));
    let answer = '';
    let sentBody = false;
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      // curl holds the body until the interim answer (or a 1 s timeout, which this test never takes).
      if (!sentBody && answer.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
        sentBody = true;
        socket.write(form.whole);
      }
    });
    await once(socket, 'close');
    expect(sentBody).toBe(true);
    const final = answer.slice('HTTP/1.1 100 Continue\r\n\r\n'.length);
    expect(final).toMatch(/^HTTP\/1\.1 200 /);
    expect(final).toMatch(/content-type: text\/event-stream/i);
    expect(final).toMatch(/"event":"file_saved","session_id":"[^"]+","file_name":"document.txt","bytes":3145728,/);
    expect(final).toMatch(/"event":"total_chunks","session_id":"[^"]+","total_chunks":3\}/);
    expect(final).toContain('"event":"complete"');
  });

  test('an upload declared over the size cap is answered 413 at once', async () => {
    await relay.close();
    relay = await startRelay(backend.url, { maxUploadBytes: 100_000 });
    const form = multipart({ chunk_size: '1000' }, sampleFile(500_000));
    const declared = await request(`${relay.url}/api/documents/upload-sse`, {
      method: 'POST',
      headers: { ...authHeader(), 'content-type': form.contentType },
      body: form.whole,
    });
    expect(declared.statusCode).toBe(413);
    expect(((await declared.body.json()) as { error: { code: string } }).error.code).toBe('payload_too_large');
  });

  test('an upload that passes the cap mid-stream ends with a relay_error event, and the backend cancels it', async () => {
    await relay.close();
    relay = await startRelay(backend.url, { maxUploadBytes: 100_000 });
    const form = multipart({ chunk_size: '1000' }, Buffer.alloc(0));
    const body = new Readable({ read() {} });
    body.push(form.head);
    body.push(sampleFile(10_000));
    // Chunked: nothing declared, so the relay counts on the way; the backend has answered by then.
    const stream = await postStream('/documents/upload-sse', body, { 'content-type': form.contentType });
    expect(stream.status).toBe(200);
    const start = JSON.parse((await stream.waitForEvent('start')).data) as { session_id: string };
    body.push(sampleFile(200_000));
    const error = await stream.waitFor((e) => e.event === 'relay_error');
    expect(JSON.parse(error.data)).toEqual({ reason: 'payload_too_large' });
    await until(async () => (await backend.call(`/sessions/${start.session_id}`)).json?.cancelled === true, 5000, 'upstream aborted');
  });
});

describe('with a backend whose reconnect grace is short', () => {
  beforeEach(async () => {
    backend = await TestBackend.start({ chunkMs: 5, reconnectGraceMs: 50 });
    // No grace for a resume of the POST's answer: a client that leaves is a cancel.
    relay = await startRelay(backend.url, { postResumeGraceMs: 0 });
  });

  test('a client that leaves mid-processing aborts the upstream at once, and the session ends cancelled', async () => {
    // 40 chunks x 3 stages x 5 ms: the session would complete in ~600 ms if the backend never saw the client go.
    const form = multipart({ chunk_size: '1000', chunk_overlap: '0' }, sampleFile(40_000));
    const controller = new AbortController();
    const stream = await postStream('/documents/upload-sse', Readable.from([form.whole]), { 'content-type': form.contentType }, controller.signal);
    const chunk = JSON.parse((await stream.waitForEvent('ocr_chunk_processed')).data) as { session_id: string };
    controller.abort();
    await stream.ended.catch(() => undefined);

    await until(async () => (await backend.call(`/sessions/${chunk.session_id}`)).json?.cancelled === true, 2000, 'session cancelled');
    const session = (await backend.call(`/sessions/${chunk.session_id}`)).json as { stage: string; cancel_reason: string; processed: { embedding: number } };
    expect(session).toMatchObject({ stage: 'cancelled', cancel_reason: expect.stringMatching(/no client reconnected within 50 ms/) });
    expect(session.processed.embedding).toBeLessThan(40);

    // The reconnect route still tells the whole story, ending with the cancellation.
    const replay = await request(`${relay.url}/api/documents/upload-sse/reconnect/${chunk.session_id}`, { headers: authHeader() });
    const rest = new SseResponse(replay.statusCode, replay.headers, replay.body);
    await rest.ended;
    expect(rest.data.at(-1)).toMatchObject({ event: 'cancelled', session_id: chunk.session_id });
  });
});

describe('with a backend that echoes what it receives', () => {
  test('the proxy drops hop-by-hop headers both ways (and those Connection names), and sets X-Forwarded-* and X-User-Id', async () => {
    backend = await TestBackend.start();
    const echo = createServer((req, res) => {
      res.writeHead(201, {
        'content-type': 'application/json',
        connection: 'keep-alive, x-resp-hop',
        'x-resp-hop': 'backend-private',
        'keep-alive': 'timeout=77',
        'proxy-authenticate': 'Basic',
        'x-backend': 'kept',
      });
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers }));
    }).listen(0, '127.0.0.1');
    await once(echo, 'listening');
    relay = await startRelay(`http://127.0.0.1:${(echo.address() as AddressInfo).port}`);
    try {
      const { status, headers, body } = await new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
        const req = httpRequest(`${relay.url}/api/things/7?sort=desc&q=a%20b`, {
          method: 'PATCH',
          headers: {
            ...authHeader('alice'),
            'content-type': 'application/json',
            connection: 'keep-alive, x-req-hop',
            'x-req-hop': 'client-private',
            'proxy-authorization': 'Basic c2VjcmV0',
            te: 'trailers',
            'x-forwarded-for': '203.0.113.9',
            'x-user-id': 'bob',
            'x-custom': 'kept',
          },
        });
        req.on('response', (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk)).on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
        });
        req.on('error', reject);
        req.end(JSON.stringify({ n: 1 }));
      });
      expect(status).toBe(201);
      const seen = JSON.parse(body) as { method: string; url: string; headers: Record<string, string> };
      expect(seen.method).toBe('PATCH');
      expect(seen.url).toBe('/things/7?sort=desc&q=a%20b');
      expect(seen.headers).toMatchObject({ 'x-custom': 'kept', 'x-user-id': 'alice', 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'http' });
      for (const name of ['x-req-hop', 'proxy-authorization', 'te', 'authorization']) expect([name, seen.headers[name]]).toEqual([name, undefined]);
      expect(headers['x-backend']).toBe('kept');
      for (const name of ['x-resp-hop', 'proxy-authenticate']) expect([name, headers[name]]).toEqual([name, undefined]);
      // The relay's own server may announce its keep-alive; the backend's is not passed on.
      expect(headers['keep-alive']).not.toBe('timeout=77');
    } finally {
      echo.closeAllConnections();
      echo.close();
    }
  });
});

describe('with a backend that is down or slow', () => {
  test('a client that leaves before the backend answered aborts the upstream request', async () => {
    backend = await TestBackend.start();
    let upstreamSeen = false;
    let upstreamClosed = false;
    const silent = createServer((req) => {
      upstreamSeen = true;
      req.socket.once('close', () => (upstreamClosed = true));
    }).listen(0, '127.0.0.1');
    await once(silent, 'listening');
    relay = await startRelay(`http://127.0.0.1:${(silent.address() as AddressInfo).port}`, { upstreamHeadersTimeoutMs: 60_000 });
    try {
      const controller = new AbortController();
      const pending = request(`${relay.url}/api/chat/stream`, {
        method: 'POST',
        headers: { ...authHeader(), 'content-type': 'application/json' },
        body: JSON.stringify({ chatbotId: 'bot1', message: 'hello?' }),
        signal: controller.signal,
      }).catch(() => undefined);
      await until(() => upstreamSeen, 5000, 'the upstream request');
      controller.abort();
      await pending;
      await until(() => upstreamClosed, 5000, 'the upstream request to close');
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });
});
