import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { SseResponse, TestBackend, multipart, sampleFile } from '../backend/harness';
import { AnswerBackend } from '../support/answer-backend';
import { type RunningRelay, authHeader, startRelay, tokenFor } from '../support/relay-server';
import { delay, until } from '../support/until';
import type { LocalOwnership } from '../../src/relay/ownership';
import { resolveReconnect } from '../../src/client/backoff';
import { streamChat } from '../../src/client/chat';
import { startUpload } from '../../src/client/upload';
import { Transport } from '../../src/client/transport';

let relay: RunningRelay | undefined;
let fixture: AnswerBackend | undefined;
let reference: TestBackend | undefined;

afterEach(async () => {
  await relay?.close();
  await fixture?.close();
  await reference?.close();
  relay = fixture = reference = undefined;
});

async function post(path: string, body: string | Readable, signal?: AbortSignal, headers: Record<string, string> = {}): Promise<SseResponse> {
  const res = await request(`${relay!.url}/api${path}`, {
    method: 'POST',
    headers: { ...authHeader(), 'content-type': 'application/json', ...headers },
    body,
    signal,
  });
  return new SseResponse(res.statusCode, res.headers, res.body);
}

async function resume(streamId: string, lastEventId: string | undefined, user = 'alice'): Promise<SseResponse> {
  const res = await request(`${relay!.url}/api/streams/${streamId}`, {
    headers: { ...authHeader(user), accept: 'text/event-stream', ...(lastEventId === undefined ? {} : { 'last-event-id': lastEventId }) },
  });
  return new SseResponse(res.statusCode, res.headers, res.body);
}

async function statusOf(method: 'GET' | 'DELETE', streamId: string, user = 'alice', lastEventId?: string): Promise<{ status: number; code?: string }> {
  const res = await request(`${relay!.url}/api/streams/${streamId}`, {
    method,
    headers: { ...authHeader(user), ...(lastEventId === undefined ? {} : { 'last-event-id': lastEventId }) },
  });
  const text = await res.body.text();
  return { status: res.statusCode, ...(text === '' ? {} : { code: (JSON.parse(text) as { error: { code: string } }).error.code }) };
}

function streamIdOf(answer: SseResponse): string {
  const id = answer.headers['x-stream-id'];
  if (typeof id !== 'string') throw new Error('no X-Stream-Id');
  return id;
}

/** Waits until `answer` has `count` events, then cuts its connection. */
async function dropAfter(answer: SseResponse, controller: AbortController, count: number): Promise<void> {
  await answer.waitFor(() => answer.events.length >= count);
  controller.abort();
  await answer.ended.catch(() => undefined);
}

describe('a chat answer survives a dropped connection', () => {
  test('with the reference backend: drop after three tokens, resume with the last id, every token once and in order, and the backend saw no abort', async () => {
    reference = await TestBackend.start({ tokenMs: 20 });
    relay = await startRelay(reference.url, { postResumeGraceMs: 5000 });
    const controller = new AbortController();
    const first = await post('/chat/stream', JSON.stringify({ chatbotId: 'bot1', message: 'tell me about resumable streams' }), controller.signal);
    expect(first.status).toBe(200);
    const streamId = streamIdOf(first);
    expect(streamId).toMatch(/^[A-Za-z0-9_-]{22,}$/);
    await dropAfter(first, controller, 3);
    const seen = first.events;
    const dropped = Date.now();
    const rest = await resume(streamId, seen.at(-1)!.id);
    expect(rest.status).toBe(200);
    await rest.waitFor(() => true);
    const latency = Date.now() - dropped;
    await rest.ended;
    const all = [...seen, ...rest.events];
    // The reference backend numbers its events: the relay keeps its ids.
    expect(all.map((e) => e.id)).toEqual(all.map((_, i) => String(i + 1)));
    expect(all.at(-1)?.event).toBe('message_stop');
    expect(all.filter((e) => e.event === 'content_block_delta').length).toBeGreaterThan(3);
    const history = await reference.call('/chat/history', { method: 'POST', json: { chatbotId: 'bot1', page: 1, pageSize: 2 } });
    expect(history.json.messages.at(-1)).toMatchObject({ role: 'assistant', status: 'complete' });
    // Drop to first resumed token, for the report.
    console.log(`resume latency: ${latency} ms`);
  });

  test('an id-less backend: the relay numbers the events 1, 2, 3 on the POST and on the resume; the finished answer\'s last id gets 204', async () => {
    fixture = await new AnswerBackend(false).start();
    relay = await startRelay(fixture.url, { postResumeGraceMs: 5000, heartbeatMs: 7000, corsOrigins: ['https://app.example'] });
    const controller = new AbortController();
    const first = await post('/chat/stream', '{}', controller.signal, { origin: 'https://app.example' });
    expect(first.headers['x-backend']).toBe('fixture');
    // What a client in another origin needs to resume it and to tell a dead stream from a quiet one.
    expect(first.headers['x-heartbeat-ms']).toBe('7000');
    expect(String(first.headers['access-control-expose-headers']).split(/,\s*/)).toEqual(expect.arrayContaining(['X-Stream-Id', 'X-Heartbeat-Ms']));
    const answer = await fixture.answer(0);
    for (const token of ['a', 'b', 'c']) answer.send(token, 'content_block_delta');
    await dropAfter(first, controller, 2);
    const seen = first.events;
    for (const token of ['d', 'e']) answer.send(token, 'content_block_delta');
    answer.send('{}', 'message_stop');
    answer.end();
    const rest = await resume(streamIdOf(first), seen.at(-1)!.id);
    expect(rest.headers['x-heartbeat-ms']).toBe('7000');
    await rest.ended;
    const all = [...seen, ...rest.events];
    expect(all.map((e) => e.data)).toEqual(['a', 'b', 'c', 'd', 'e', '{}']);
    expect(all.map((e) => e.id)).toEqual(['1', '2', '3', '4', '5', '6']);
    expect(answer.abortedAt).toBe(0);
    expect(await statusOf('GET', streamIdOf(first), 'alice', '6')).toEqual({ status: 204 });
  });

  test("a backend with its own ids: they are kept, and a resume after one gets exactly what followed", async () => {
    fixture = await new AnswerBackend(true).start();
    relay = await startRelay(fixture.url, { postResumeGraceMs: 5000 });
    const controller = new AbortController();
    const first = await post('/chat/stream', '{}', controller.signal);
    const answer = await fixture.answer(0);
    answer.send('a');
    answer.send('b');
    await dropAfter(first, controller, 2);
    answer.send('c');
    answer.end();
    const rest = await resume(streamIdOf(first), 'b1');
    await rest.ended;
    expect(rest.events.map((e) => [e.id, e.data])).toEqual([
      ['b2', 'b'],
      ['b3', 'c'],
    ]);
    expect(answer.abortedAt).toBe(0);
  });
});

describe('a drop is not a cancel', () => {
  test('with no resume the backend sees the abort after the grace period, not before', async () => {
    fixture = await new AnswerBackend().start();
    relay = await startRelay(fixture.url, { postResumeGraceMs: 400 });
    const controller = new AbortController();
    const first = await post('/chat/stream', '{}', controller.signal);
    const answer = await fixture.answer(0);
    answer.send('a');
    await dropAfter(first, controller, 1);
    const dropped = Date.now();
    await delay(200);
    expect(answer.abortedAt).toBe(0);
    await until(() => answer.abortedAt > 0, 5000, 'the backend sees the abort');
    expect(answer.abortedAt - dropped).toBeGreaterThanOrEqual(390);
    expect(await statusOf('GET', streamIdOf(first), 'alice', '1')).toEqual({ status: 404, code: 'stream_not_found' });
  });

  test('DELETE cancels at once: the backend sees the abort, a resumed client gets the end, and the id is gone', async () => {
    fixture = await new AnswerBackend().start();
    relay = await startRelay(fixture.url, { postResumeGraceMs: 60_000 });
    const first = await post('/chat/stream', '{}');
    const answer = await fixture.answer(0);
    answer.send('a');
    await first.waitFor(() => true);
    const streamId = streamIdOf(first);
    expect(await statusOf('DELETE', streamId, 'mallory')).toEqual({ status: 404, code: 'stream_not_found' });
    expect(answer.abortedAt).toBe(0);
    const asked = Date.now();
    expect(await statusOf('DELETE', streamId)).toEqual({ status: 204 });
    await until(() => answer.abortedAt > 0, 1000, 'the backend sees the abort');
    expect(answer.abortedAt - asked).toBeLessThan(1000);
    await first.ended;
    expect(await statusOf('GET', streamId, 'alice', '1')).toEqual({ status: 404, code: 'stream_not_found' });
  });

  test('POST_RESUME_GRACE_MS=0 keeps abort at once', async () => {
    fixture = await new AnswerBackend().start();
    relay = await startRelay(fixture.url, { postResumeGraceMs: 0 });
    const controller = new AbortController();
    const first = await post('/chat/stream', '{}', controller.signal);
    const answer = await fixture.answer(0);
    answer.send('a');
    await dropAfter(first, controller, 1);
    await until(() => answer.abortedAt > 0, 1000, 'the backend sees the abort');
  });

  test("an upload's body arriving keeps its answer from idling out, and the answer still gets heartbeats meanwhile", async () => {
    fixture = await new AnswerBackend().start();
    relay = await startRelay(fixture.url, { idleTimeoutMs: 300, heartbeatMs: 200 });
    const form = multipart({ chunk_size: '1000' }, Buffer.alloc(0));
    const body = new Readable({ read() {} });
    body.push(form.head);
    const first = await post('/documents/upload-sse', body, undefined, { 'content-type': form.contentType });
    const answer = await fixture.answer(0);
    // The backend says nothing while the file arrives: for 1.2 s, four idle timeouts.
    for (let i = 0; i < 24; i += 1) {
      body.push(sampleFile(512));
      await delay(50);
    }
    body.push(form.tail);
    body.push(null);
    await until(() => answer.bodyDone, 2000, 'the body sent');
    answer.send('file_saved', 'file_saved');
    await first.waitFor((e) => e.data === 'file_saved');
    // One heartbeat every half interval while quiet: a client watching for a dead stream hears it is alive.
    expect(first.comments.filter((c) => c.trim() === 'hb').length).toBeGreaterThanOrEqual(5);
    answer.end();
    await first.ended;
  });

  test('an upload whose body was still being sent is aborted at once, grace or not', async () => {
    fixture = await new AnswerBackend().start();
    relay = await startRelay(fixture.url, { postResumeGraceMs: 60_000 });
    const form = multipart({ chunk_size: '1000' }, Buffer.alloc(0));
    const body = new Readable({ read() {} });
    body.push(form.head);
    body.push(sampleFile(16 * 1024));
    const controller = new AbortController();
    const first = await post('/documents/upload-sse', body, controller.signal, { 'content-type': form.contentType });
    const answer = await fixture.answer(0);
    answer.send('start');
    await dropAfter(first, controller, 1);
    await until(() => answer.abortedAt > 0, 1000, 'the backend sees the abort');
    expect(answer.bodyDone).toBe(false);
  });
});

describe('who may resume', () => {
  test('HEAD on a kept answer answers the stream headers and ends, holding no slot and opening nothing; on another user\'s or a made-up id, 404', async () => {
    fixture = await new AnswerBackend().start();
    relay = await startRelay(fixture.url, { postResumeGraceMs: 5000 });
    const first = await post('/chat/stream', '{}');
    const answer = await fixture.answer(0);
    answer.send('a');
    await first.waitFor((e) => e.data === 'a');
    const id = streamIdOf(first);
    const headOf = async (streamId: string, user: string): Promise<string> => {
      const socket = connect(Number(new URL(relay!.url).port), '127.0.0.1');
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      // A HEAD, then a request pipelined behind it: answered at once only if the HEAD ended.
      socket.write(`HEAD /api/streams/${streamId} HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${tokenFor(user)}\r\n\r\nGET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n`);
      try {
        await until(() => text.includes('{"status":"ok"}'), 3000, `both answers, got: ${JSON.stringify(text)}`);
      } finally {
        socket.destroy();
      }
      return text;
    };
    const held = await headOf(id, 'alice');
    expect(held.match(/^HTTP\/1\.1 \d{3}/gm)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
    expect(held).toMatch(/^content-type: text\/event-stream/im);
    // Only the POST's own stream holds a slot.
    expect(relay.relay.connections.snapshot().total).toBe(1);
    expect((await headOf(id, 'mallory')).match(/^HTTP\/1\.1 \d{3}/gm)).toEqual(['HTTP/1.1 404', 'HTTP/1.1 200']);
    expect((await headOf('AAAAAAAAAAAAAAAAAAAAAAAA', 'alice')).match(/^HTTP\/1\.1 \d{3}/gm)).toEqual(['HTTP/1.1 404', 'HTTP/1.1 200']);
    answer.end();
    await first.ended;
  });

  test('another user, a made-up id and an expired id get 404 stream_not_found', async () => {
    fixture = await new AnswerBackend().start();
    relay = await startRelay(fixture.url, { postResumeGraceMs: 5000, topicLingerMs: 100 });
    const first = await post('/chat/stream', '{}');
    const answer = await fixture.answer(0);
    answer.send('a');
    await first.waitFor(() => true);
    const streamId = streamIdOf(first);
    expect(await statusOf('GET', streamId, 'mallory')).toEqual({ status: 404, code: 'stream_not_found' });
    expect(await statusOf('GET', 'AAAAAAAAAAAAAAAAAAAAAAAA')).toEqual({ status: 404, code: 'stream_not_found' });
    expect(await statusOf('GET', 'not%20an%20id')).toEqual({ status: 404, code: 'stream_not_found' });
    answer.end();
    await first.ended;
    // Kept for the linger period after the end, then expired.
    expect(await statusOf('GET', streamId, 'alice', '1')).toEqual({ status: 204 });
    // Each visit keeps a finished answer another linger period, as it does a topic: look once, after it.
    await delay(300);
    expect(await statusOf('GET', streamId, 'alice', '1')).toEqual({ status: 404, code: 'stream_not_found' });
  });

  test('an id the history no longer holds gets resync, then what it holds', async () => {
    fixture = await new AnswerBackend().start();
    relay = await startRelay(fixture.url, { postResumeGraceMs: 5000, replayBufferSize: 2 });
    const first = await post('/chat/stream', '{}');
    const answer = await fixture.answer(0);
    for (const token of ['a', 'b', 'c', 'd']) answer.send(token);
    answer.end();
    await first.ended;
    const rest = await resume(streamIdOf(first), '1');
    await rest.ended;
    expect(rest.events.map((e) => e.event ?? e.data)).toEqual(['resync', 'c', 'd']);
  });
});

test('a thousand abandoned answers within their grace period stay within the history budget', async () => {
  fixture = await new AnswerBackend().start();
  let local: LocalOwnership | undefined;
  const budget = 256 * 1024;
  relay = await startRelay(fixture.url, {
    postResumeGraceMs: 60_000,
    replayTotalBytes: budget,
    ownership: (own) => {
      local = own;
      return own;
    },
  });
  const COUNT = 1000;
  const token = 'x'.repeat(100);
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  for (let batch = 0; batch < COUNT; batch += 50) {
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const controller = new AbortController();
        const first = await post('/chat/stream', '{}', controller.signal);
        const answer = await fixture!.answer(batch + i);
        for (let n = 0; n < 5; n++) answer.send(token);
        await dropAfter(first, controller, 5);
      }),
    );
  }
  await until(() => fixture!.answers.filter((a) => a.abortedAt === 0).length === COUNT, 2000, 'all answers pending');
  global.gc?.();
  const perAnswer = (process.memoryUsage().heapUsed - heapBefore) / COUNT;
  expect(local!.budget.bytes).toBeLessThanOrEqual(budget);
  expect(fixture.answers.every((a) => a.abortedAt === 0)).toBe(true);
  console.log(`pending answers: ${COUNT}; history held ${local!.budget.bytes} bytes; heap per pending answer (relay, backend and client together): ${Math.round(perAnswer / 1024)} KiB`);
}, 60_000);

test("the browser client's chat abort cancels the kept answer at once: the backend sees the abort within the grace period", async () => {
  fixture = await new AnswerBackend().start();
  relay = await startRelay(fixture.url, { postResumeGraceMs: 60_000 });
  const tokens: string[] = [];
  const transport = new Transport({ baseUrl: relay.url, token: authHeader().authorization!.slice('Bearer '.length) });
  const reply = streamChat(transport, resolveReconnect(), { chatbotId: 'b', message: 'hi' }, {
    onToken: (token) => tokens.push(token),
  });
  const answer = await fixture.answer(0);
  answer.send(JSON.stringify({ delta: { text: 'a' } }), 'content_block_delta');
  await until(() => tokens.length === 1, 5000, 'the first token');
  reply.abort();
  expect(await reply.done).toBe('a');
  await until(() => answer.abortedAt > 0, 2000, 'the backend sees the abort');
});

describe('the browser client resumes a dropped chat answer, or says why it cannot', () => {
  const QUICK = resolveReconnect({ initialDelayMs: 50, maxDelayMs: 200, attempts: 3 });

  /**
   * A client whose first chat POST loses its connection once `count` token events came through
   * (the fetch is aborted, as a network drop would end it); every other request goes as it is.
   */
  function droppingTransport(count: number): { transport: Transport; dropped: Promise<void> } {
    let drop: () => void = () => undefined;
    const dropped = new Promise<void>((resolve) => (drop = resolve));
    let first = true;
    const transport = new Transport({
      baseUrl: relay!.url,
      token: authHeader().authorization!.slice('Bearer '.length),
      fetch: async (input, init) => {
        if (!first || init?.method !== 'POST') return fetch(input, init);
        first = false;
        const cut = new AbortController();
        init.signal?.addEventListener('abort', () => cut.abort());
        const response = await fetch(input, { ...init, signal: cut.signal });
        let seen = 0;
        const counting = new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            controller.enqueue(chunk);
            seen += (Buffer.from(chunk).toString().match(/^event: content_block_delta$/gm) ?? []).length;
            if (seen >= count) {
              cut.abort();
              drop();
            }
          },
        });
        return new Response(response.body!.pipeThrough(counting), { status: response.status, headers: response.headers });
      },
    });
    return { transport, dropped };
  }

  const delta = (text: string): string => JSON.stringify({ delta: { text } });

  test("an upload whose answer the relay did not keep resumes its session after the backend's last id: no event comes twice", async () => {
    reference = await TestBackend.start({ chunkMs: 20 });
    relay = await startRelay(reference.url);
    const reconnects: (string | null)[] = [];
    let lastPostId: string | undefined;
    let first = true;
    const transport = new Transport({
      baseUrl: relay.url,
      token: authHeader().authorization!.slice('Bearer '.length),
      fetch: async (input, init) => {
        const url = String(input);
        if (url.includes('/reconnect/')) reconnects.push(new Headers(init?.headers).get('last-event-id'));
        if (!first || init?.method !== 'POST') return fetch(input, init);
        first = false;
        const cut = new AbortController();
        init.signal?.addEventListener('abort', () => cut.abort());
        const response = await fetch(input, { ...init, signal: cut.signal });
        // As a relay that did not keep the answer (an older one, or a compressed answer): no X-Stream-Id.
        const headers = new Headers(response.headers);
        headers.delete('x-stream-id');
        let seen = 0;
        const counting = new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            const text = Buffer.from(chunk).toString();
            for (const match of text.matchAll(/^id: (.+)$/gm)) lastPostId = match[1];
            controller.enqueue(chunk);
            seen += (text.match(/^data: /gm) ?? []).length;
            if (seen >= 3) cut.abort();
          },
        });
        return new Response(response.body!.pipeThrough(counting), { status: response.status, headers });
      },
    });
    const names: string[] = [];
    const file = new File(['line of text\n'.repeat(300)], 'report.txt', { type: 'text/plain' });
    const upload = startUpload(transport, { reconnect: QUICK, concurrency: 1 }, [file], { chunk_size: '1000' }, { onEvent: (_file, record) => names.push(String(record.event)) });
    const [done] = await upload.done;
    expect(done?.outcome).toBe('complete');
    expect(lastPostId).toBeDefined();
    expect(reconnects[0]).toBe(lastPostId);
    // Every stage event once: the session's replay starts after what the POST's answer gave.
    const once = names.filter((name) => !name.endsWith('_chunk_processed'));
    expect(once).toEqual([...new Set(once)]);
  });

  test('after a drop it resumes with the last id: every token once, in order, with reconnecting then open', async () => {
    fixture = await new AnswerBackend().start();
    relay = await startRelay(fixture.url, { postResumeGraceMs: 5000 });
    const { transport, dropped } = droppingTransport(2);
    const tokens: string[] = [];
    const statuses: string[] = [];
    let resumedAt = 0;
    const onToken = (t: string): void => {
      tokens.push(t);
      if (t === 'c') resumedAt = Date.now();
    };
    const reply = streamChat(transport, QUICK, { chatbotId: 'b', message: 'hi' }, { onToken, onStatus: (s) => statuses.push(s) });
    const answer = await fixture.answer(0);
    for (const token of ['a', 'b']) answer.send(delta(token), 'content_block_delta');
    await dropped;
    const droppedAt = Date.now();
    for (const token of ['c', 'd']) answer.send(delta(token), 'content_block_delta');
    answer.send('{}', 'message_stop');
    answer.end();
    expect(await reply.done).toBe('abcd');
    console.log(`drop to the first resumed token: ${resumedAt - droppedAt} ms (the client's first backoff: 50 ms, jittered)`);
    expect(tokens).toEqual(['a', 'b', 'c', 'd']);
    expect(statuses).toEqual(['reconnecting', 'open']);
    expect(answer.abortedAt).toBe(0);
  });

  test('an answer that lost tokens while the client was away (resync) is an error, not a text with a hole', async () => {
    fixture = await new AnswerBackend().start();
    relay = await startRelay(fixture.url, { postResumeGraceMs: 5000, replayBufferSize: 2 });
    const { transport, dropped } = droppingTransport(1);
    const reply = streamChat(transport, resolveReconnect({ ...QUICK, initialDelayMs: 300, maxDelayMs: 300 }), { chatbotId: 'b', message: 'hi' }, {});
    const answer = await fixture.answer(0);
    answer.send(delta('a'), 'content_block_delta');
    await dropped;
    for (const token of ['b', 'c', 'd', 'e']) answer.send(delta(token), 'content_block_delta');
    // Given up at once, not retried until the attempts ran out.
    await expect(reply.done).rejects.toThrow(/^part of the answer was lost/);
  });

  test('an answer the relay no longer has (its grace period passed) rejects with stream_not_found, at once', async () => {
    fixture = await new AnswerBackend().start();
    relay = await startRelay(fixture.url, { postResumeGraceMs: 50 });
    const { transport, dropped } = droppingTransport(1);
    const reply = streamChat(transport, resolveReconnect({ ...QUICK, initialDelayMs: 400, maxDelayMs: 400 }), { chatbotId: 'b', message: 'hi' }, {});
    const answer = await fixture.answer(0);
    answer.send(delta('a'), 'content_block_delta');
    await dropped;
    await until(() => answer.abortedAt > 0, 2000, 'the grace period to pass');
    await expect(reply.done).rejects.toMatchObject({ name: 'RelayError', status: 404, code: 'stream_not_found' });
  });
});
