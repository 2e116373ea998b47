import { TestBackend } from './harness';
import { delay, until } from '../support/until';

let api: TestBackend;

afterEach(async () => {
  await api.close();
  expect(api.errors).toEqual([]);
});

async function ask(message: string, chatbotId = 'support', user = 'alice') {
  const stream = await api.stream('/chat/stream', { json: { chatbotId, message }, user });
  await stream.ended;
  return stream;
}

async function history(body: Record<string, unknown>, user = 'alice') {
  return api.call('/chat/history', { method: 'POST', json: body, user });
}

test('an answer streams as content_block_delta tokens with ids, then message_stop ends the stream', async () => {
  api = await TestBackend.start();
  const stream = await ask('How do I resume a stream?');

  expect(stream.status).toBe(200);
  expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
  const deltas = stream.events.slice(0, -1);
  expect(deltas.length).toBeGreaterThanOrEqual(24);
  for (const event of deltas) expect(event.event).toBe('content_block_delta');
  expect(stream.events.at(-1)).toMatchObject({ event: 'message_stop', data: '{}' });
  expect(stream.events.map((e) => e.id)).toEqual(stream.events.map((_, i) => String(i + 1)));

  const text = deltas.map((e) => (JSON.parse(e.data) as { delta: { text: string } }).delta.text).join('');
  expect(text).toContain('“How do I resume a stream?”');
  // Multi-byte characters arrive whole: no token splits a character, so nothing decodes to U+FFFD.
  expect(Buffer.byteLength(text)).toBeGreaterThan(text.length);
  expect(text).not.toContain('\ufffd');

  // The same message gets the same answer; another message, another answer.
  const again = await ask('How do I resume a stream?');
  expect(again.events.map((e) => e.data)).toEqual(stream.events.map((e) => e.data));
  const other = await ask('What is backpressure?');
  expect(other.events.map((e) => e.data)).not.toEqual(stream.events.map((e) => e.data));

  const page = await history({ chatbotId: 'support' });
  expect(page.json.messages.slice(0, 2)).toEqual([
    { id: 1, role: 'user', text: 'How do I resume a stream?', at: expect.any(String) },
    { id: 2, role: 'assistant', text, at: expect.any(String), status: 'complete' },
  ]);
});

test('a client that leaves stops the generation: the history keeps the partial answer, which no longer grows', async () => {
  api = await TestBackend.start({ tokenMs: 5 });
  const full = await ask('Tell me everything', 'other-bot');
  const fullText = (await history({ chatbotId: 'other-bot' })).json.messages[1].text as string;
  expect(full.events.length).toBeGreaterThan(10);

  const controller = new AbortController();
  const stream = await api.stream('/chat/stream', { json: { chatbotId: 'support', message: 'Tell me everything' }, signal: controller.signal });
  await stream.waitFor((e) => e.id === '3');
  controller.abort();
  await stream.ended.catch(() => undefined);

  await until(async () => (await history({ chatbotId: 'support' })).json.messages[1]?.status === 'stopped', 1000, 'the answer marked stopped');
  const partial = (await history({ chatbotId: 'support' })).json.messages[1];
  expect(fullText.startsWith(partial.text)).toBe(true);
  expect(partial.text.length).toBeGreaterThan(0);
  expect(partial.text.length).toBeLessThan(fullText.length);
  await delay(40);
  expect((await history({ chatbotId: 'support' })).json.messages[1]).toEqual(partial);
});

test('history pages newest first, each page oldest first, with hasMore while older messages exist', async () => {
  api = await TestBackend.start({ tokenMs: 0 });
  for (const n of [1, 2, 3]) await ask(`question ${n}`);
  await ask('question for another bot', 'sales');
  await ask('question from bob', 'support', 'bob');

  const texts = (messages: { role: string; text: string }[]): string[] => messages.map((m) => (m.role === 'user' ? m.text : 'answer'));
  const first = await history({ chatbotId: 'support', page: 1, pageSize: 4 });
  expect(first.status).toBe(200);
  expect(texts(first.json.messages)).toEqual(['question 2', 'answer', 'question 3', 'answer']);
  expect(first.json.hasMore).toBe(true);
  const second = await history({ chatbotId: 'support', page: 2, pageSize: 4 });
  expect(texts(second.json.messages)).toEqual(['question 1', 'answer']);
  expect(second.json.hasMore).toBe(false);
  expect((await history({ chatbotId: 'support', page: 3, pageSize: 4 })).json).toEqual({ messages: [], hasMore: false });

  const ids = [...second.json.messages, ...first.json.messages].map((m: { id: number }) => m.id);
  expect(ids).toEqual([1, 2, 3, 4, 5, 6]);
  const whole = await history({ chatbotId: 'support' });
  expect(whole.json.messages).toHaveLength(6);
  expect(whole.json.hasMore).toBe(false);

  expect(texts((await history({ chatbotId: 'support' }, 'bob')).json.messages)).toEqual(['question from bob', 'answer']);
  expect(texts((await history({ chatbotId: 'sales' })).json.messages)).toEqual(['question for another bot', 'answer']);
  expect((await history({ chatbotId: 'never-used' })).json).toEqual({ messages: [], hasMore: false });
});

test('bad chat input is a 400 JSON answer, and no message is stored', async () => {
  api = await TestBackend.start({ maxMessageChars: 50 });
  const bad: [string, unknown][] = [
    ['/chat/stream', { message: 'hi' }],
    ['/chat/stream', { chatbotId: 'bot/1', message: 'hi' }],
    ['/chat/stream', { chatbotId: 'bot', message: '   ' }],
    ['/chat/stream', { chatbotId: 'bot', message: 42 }],
    ['/chat/stream', { chatbotId: 'bot', message: 'x'.repeat(51) }],
    ['/chat/stream', ['bot', 'hi']],
    ['/chat/history', { chatbotId: 'bot', page: 0 }],
    ['/chat/history', { chatbotId: 'bot', pageSize: 101 }],
    ['/chat/history', { chatbotId: 'bot', pageSize: 2.5 }],
    ['/chat/history', { page: 1 }],
  ];
  for (const [path, json] of bad) {
    const res = await api.call(path, { method: 'POST', json });
    expect({ path, json, status: res.status, code: res.json?.error?.code }).toEqual({ path, json, status: 400, code: 'bad_request' });
  }
  const notJson = await api.call('/chat/stream', { method: 'POST', body: '{"chatbotId":', headers: { 'content-type': 'application/json' } });
  expect(notJson.status).toBe(400);
  expect(notJson.json.error.message).toMatch(/not valid JSON/);
  const noBody = await api.call('/chat/stream', { method: 'POST', body: 'chatbotId=bot', headers: { 'content-type': 'text/plain' } });
  expect(noBody.status).toBe(400);
  expect((await history({ chatbotId: 'bot' })).json).toEqual({ messages: [], hasMore: false });
  expect((await api.call('/chat/stream', { method: 'POST', user: null, json: { chatbotId: 'bot', message: 'hi' } })).status).toBe(401);
});
