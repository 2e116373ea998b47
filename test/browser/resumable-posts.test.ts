import type { Browser, BrowserContext, Page } from 'playwright-core';
import { authHeader } from '../support/relay-server';
import { until } from '../support/until';
import { FreezingProxy } from './freezing-proxy';
import { DemoStack, QUICK_CLIENT, launchChromium, loggedInContext } from './harness';

// A real browser on a 2-core machine shared with other work.
jest.setTimeout(60_000);

let browser: Browser;
let stack: DemoStack | undefined;
let proxy: FreezingProxy | undefined;
let context: BrowserContext | undefined;

beforeAll(async () => {
  browser = await launchChromium();
}, 30_000);

afterEach(async () => {
  await context?.close();
  await proxy?.close();
  await stack?.close();
  context = undefined;
  proxy = undefined;
  stack = undefined;
});

afterAll(async () => {
  await browser?.close();
});

/** What the page's `chat()` saw: each token, each status with its `Date.now()`, and how it ended. */
interface ChatSeen {
  tokens: string[];
  statuses: { status: string; at: number; reason?: string }[];
  result?: string;
  error?: string;
}

/**
 * A tab of the relay's origin that asks one question through the client's `chat()`, recording
 * into `window.chatSeen`; with `topics`, once the client's multiplexed stream watching them opened.
 */
async function askInTab(url: string, question: string, topics: readonly string[] = []): Promise<Page> {
  context = await loggedInContext(browser, url);
  const page = await context.newPage();
  await page.goto(`${url}/healthz`);
  await page.evaluate(`(async (options, question, topics) => {
    const { createClient } = await import('/client.js');
    const seen = { tokens: [], statuses: [] };
    window.chatSeen = seen;
    const client = createClient(options);
    if (topics.length > 0) await new Promise((open) => client.subscribe(topics, { onStatus: (status) => status === 'open' && open() }));
    const reply = client.chat({ chatbotId: 'resume', message: question }, {
      onToken(token) { seen.tokens.push(token); },
      onStatus(status, info) { seen.statuses.push({ status, at: Date.now(), ...info }); },
    });
    window.chatReply = reply;
    reply.done.then((text) => (seen.result = text), (err) => (seen.error = String(err && err.message)));
  })(${JSON.stringify(QUICK_CLIENT)}, ${JSON.stringify(question)}, ${JSON.stringify(topics)})`);
  return page;
}

function chatSeen(page: Page): Promise<ChatSeen> {
  return page.evaluate('window.chatSeen') as Promise<ChatSeen>;
}

/** The newest message of alice's conversation as the reference backend stored it. */
async function storedAnswer(url: string): Promise<{ text: string; status: string }> {
  const response = await fetch(`${url}/api/chat/history`, {
    method: 'POST',
    headers: { ...authHeader('alice'), 'content-type': 'application/json' },
    body: JSON.stringify({ chatbotId: 'resume', page: 1, pageSize: 1 }),
  });
  const page = (await response.json()) as { messages: { text: string; status: string }[] };
  return page.messages.at(-1)!;
}

test('chat() resumes a dropped answer by itself, across an offline spell: every token once and in order, and the backend never saw the client leave', async () => {
  stack = await new DemoStack({}, { tokenMs: 40 }).start();
  const page = await askInTab(stack.url, 'How does the relay keep an answer across a network drop?');
  const resumes: string[] = [];
  page.on('request', (request) => {
    if (request.method() === 'GET' && new URL(request.url()).pathname.startsWith('/api/streams/')) resumes.push(request.headers()['last-event-id'] ?? '');
  });
  await page.waitForFunction('window.chatSeen.tokens.length >= 5');
  // Chromium's offline mode fails new requests but leaves a streaming response open: the relay cuts it.
  await context!.setOffline(true);
  const offlineAt = Date.now();
  expect(stack.cutAnswers('/api/chat/stream')).toBe(1);
  await page.waitForTimeout(400);
  await context!.setOffline(false);
  await page.waitForFunction('window.chatSeen.result !== undefined || window.chatSeen.error !== undefined', undefined, { timeout: 30_000 });
  const seen = await chatSeen(page);
  expect(seen.error).toBeUndefined();
  const stored = await storedAnswer(stack.url);
  // The backend generated the whole answer for a client that stayed: it was never aborted.
  expect(stored.status).toBe('complete');
  expect(seen.result).toBe(stored.text);
  expect(seen.tokens.join('')).toBe(stored.text);
  // The break was seen and resumed, not replayed from the start.
  const broke = seen.statuses.findIndex((s) => s.status === 'reconnecting');
  expect(broke).toBeGreaterThanOrEqual(0);
  expect(seen.statuses.slice(broke).some((s) => s.status === 'open')).toBe(true);
  expect(resumes.length).toBeGreaterThanOrEqual(1);
  expect(Number(resumes.at(-1))).toBeGreaterThanOrEqual(5);
  const reopened = seen.statuses.find((s) => s.status === 'open')!;
  console.log(`chat resume: offline at +0, open again at +${reopened.at - offlineAt} ms (offline for 400 ms); ${seen.tokens.length} tokens, ${resumes.length} resume request(s)`);
});

test("chat()'s abort stops the backend at once, not after the relay's grace period", async () => {
  stack = await new DemoStack({ postResumeGraceMs: 60_000 }, { tokenMs: 40 }).start();
  const page = await askInTab(stack.url, 'A question whose answer is cut short');
  await page.waitForFunction('window.chatSeen.tokens.length >= 3');
  await page.evaluate('window.chatReply.abort()');
  const abortedAt = Date.now();
  await until(async () => (await storedAnswer(stack!.url)).status === 'stopped', 2000, 'the backend sees the abort');
  expect(Date.now() - abortedAt).toBeLessThan(2000);
  await page.waitForFunction('window.chatSeen.result !== undefined');
  const seen = await chatSeen(page);
  expect(seen.result).toBe(seen.tokens.join(''));
  expect((await storedAnswer(stack.url)).text.startsWith(seen.result!)).toBe(true);
});

/** The status of the newest message of alice's conversation; undefined before there is one. */
async function storedStatus(url: string): Promise<string | undefined> {
  const response = await fetch(`${url}/api/chat/history`, {
    method: 'POST',
    headers: { ...authHeader('alice'), 'content-type': 'application/json' },
    body: JSON.stringify({ chatbotId: 'resume', page: 1, pageSize: 1 }),
  });
  return ((await response.json()) as { messages: { status?: string }[] }).messages.at(-1)?.status;
}

test("chat()'s abort before the answer's headers came still cancels it: the backend stops at once, not after the grace period", async () => {
  stack = await new DemoStack({ postResumeGraceMs: 60_000 }, { tokenMs: 100 }).start();
  proxy = await new FreezingProxy(stack.url).start();
  // A slow network: the relay has the backend's answer, and its headers take a second to reach the browser.
  proxy.delay('POST /api/chat/stream', 1000);
  const page = await askInTab(proxy.url, 'A question cancelled before any of its answer shows');
  await until(async () => (await storedStatus(stack!.url)) === 'streaming', 5000, 'the backend generating the answer');
  expect((await chatSeen(page)).tokens).toEqual([]);
  await page.evaluate('window.chatReply.abort()');
  const abortedAt = Date.now();
  await page.waitForFunction('window.chatSeen.result !== undefined');
  // done resolves at once, with nothing, and nothing more is handed on.
  expect(Date.now() - abortedAt).toBeLessThan(500);
  await until(async () => (await storedStatus(stack!.url)) === 'stopped', 5000, 'the backend sees the abort');
  const cancelledAfter = Date.now() - abortedAt;
  const seen = await chatSeen(page);
  expect(seen.result).toBe('');
  expect(seen.tokens).toEqual([]);
  console.log(`abort before the headers: the backend stopped ${cancelledAfter} ms after abort() (headers delayed 1000 ms, grace period 60 s)`);
});

test('a chat answer whose connection goes silent is resumed after twice the heartbeat, the POST and a resume alike: every token once, in order', async () => {
  stack = await new DemoStack({ heartbeatMs: 300, postResumeGraceMs: 60_000 }, { tokenMs: 80 }).start();
  proxy = await new FreezingProxy(stack.url).start();
  // The answer has no `ready` event, and the client no other stream and no heartbeatMs option: it
  // goes by the interval the relay says on the answer (X-Heartbeat-Ms).
  const page = await askInTab(proxy.url, 'How does the client tell a dead answer from a slow one?');
  await page.waitForFunction('window.chatSeen.tokens.length >= 5');
  // The sockets stay open both ways; nothing more comes through, not even a heartbeat.
  const frozenAt = Date.now();
  expect(proxy.freeze('POST /api/chat/stream')).toBe(1);
  await page.waitForFunction(`window.chatSeen.statuses.some((s) => s.status === 'open')`, undefined, { timeout: 10_000 });
  const resumedWith = (await chatSeen(page)).tokens.length;
  await page.waitForFunction(`window.chatSeen.tokens.length >= ${resumedWith + 3}`);
  const frozenAgainAt = Date.now();
  expect(proxy.freeze('GET /api/streams/')).toBe(1);
  await page.waitForFunction('window.chatSeen.result !== undefined || window.chatSeen.error !== undefined', undefined, { timeout: 30_000 });
  const seen = await chatSeen(page);
  expect(seen.error).toBeUndefined();
  const stored = await storedAnswer(stack.url);
  expect(stored.status).toBe('complete');
  expect(seen.result).toBe(stored.text);
  expect(seen.tokens.join('')).toBe(stored.text);
  const dead = seen.statuses.filter((s) => s.status === 'reconnecting' && /no byte for 600 ms/.test(s.reason ?? ''));
  expect(dead).toHaveLength(2);
  // 600 ms of silence, plus up to half a heartbeat that passed before the freeze.
  for (const [found, frozen] of [[dead[0]!.at, frozenAt], [dead[1]!.at, frozenAgainAt]] as const) {
    expect(found - frozen).toBeGreaterThanOrEqual(300);
    expect(found - frozen).toBeLessThan(1500);
  }
  expect(seen.statuses.filter((s) => s.status === 'open')).toHaveLength(2);
  console.log(`dead chat answer: found ${dead[0]!.at - frozenAt} ms (the POST) and ${dead[1]!.at - frozenAgainAt} ms (a resume) after the proxy froze (heartbeat 300 ms)`);
});

test('upload() resumes a dropped processing stream through the kept answer: the file completes with every chunk counted, and its session was never cancelled', async () => {
  stack = await new DemoStack({}, { chunkMs: 40 }).start();
  context = await loggedInContext(browser, stack.url);
  const page = await context.newPage();
  const routes: string[] = [];
  page.on('request', (request) => {
    const path = new URL(request.url()).pathname;
    if (request.method() === 'GET' && path.startsWith('/api/')) routes.push(path.replace(/[^/]+$/, ':id'));
  });
  await page.goto(`${stack.url}/healthz`);
  await page.evaluate(`(async (options) => {
    const { createClient } = await import('/client.js');
    const file = new File(['line of text\\n'.repeat(1500)], 'report.txt', { type: 'text/plain' });
    const upload = createClient(options).upload([file], { chunk_size: 1000 });
    window.uploaded = upload.files[0];
    upload.done.then((all) => (window.uploadDone = all[0]));
  })(${JSON.stringify(QUICK_CLIENT)})`);
  // Processing: the body has been sent and the backend named its session.
  await page.waitForFunction('window.uploaded.progress.processed.ocr >= 1');
  expect(stack.cutAnswers('/api/documents/upload-sse')).toBe(1);
  await page.waitForFunction('window.uploadDone !== undefined', undefined, { timeout: 30_000 });
  const done = (await page.evaluate('window.uploadDone')) as { outcome: string; reconnects: number; sessionId: string; totalChunks: number; processed: Record<string, number> };
  expect(done.outcome).toBe('complete');
  expect(done.reconnects).toBeGreaterThanOrEqual(1);
  expect(Object.values(done.processed)).toEqual([done.totalChunks, done.totalChunks, done.totalChunks]);
  expect(routes).toContain('/api/streams/:id');
  expect(routes.filter((route) => route.startsWith('/api/documents/'))).toEqual([]);
  const session = await fetch(`${stack.url}/api/sessions/${done.sessionId}`, { headers: authHeader('alice') });
  expect(await session.json()).toMatchObject({ stage: 'complete', cancelled: false, done: true });
});

test('an upload whose processing stream goes silent is resumed after twice the heartbeat, and completes with every chunk counted', async () => {
  stack = await new DemoStack({ heartbeatMs: 300 }, { chunkMs: 40 }).start();
  proxy = await new FreezingProxy(stack.url).start();
  context = await loggedInContext(browser, proxy.url);
  const page = await context.newPage();
  // Which route the resume took: the kept answer's, not the session's fallback.
  const routes: string[] = [];
  page.on('request', (request) => {
    const path = new URL(request.url()).pathname;
    if (request.method() === 'GET' && path.startsWith('/api/')) routes.push(path.replace(/[^/]+$/, ':id'));
  });
  await page.goto(`${proxy.url}/healthz`);
  await page.evaluate(`(async (options) => {
    const { createClient } = await import('/client.js');
    const file = new File(['line of text\\n'.repeat(1500)], 'report.txt', { type: 'text/plain' });
    const upload = createClient(options).upload([file], { chunk_size: 1000 });
    window.uploaded = upload.files[0];
    upload.done.then((all) => (window.uploadDone = all[0]));
  })(${JSON.stringify({ ...QUICK_CLIENT, heartbeatMs: 300 })})`);
  await page.waitForFunction('window.uploaded.progress.processed.ocr >= 1');
  expect(proxy.freeze('POST /api/documents/upload-sse')).toBe(1);
  await page.waitForFunction('window.uploadDone !== undefined', undefined, { timeout: 30_000 });
  const done = (await page.evaluate('window.uploadDone')) as { outcome: string; reconnects: number; sessionId: string; totalChunks: number; processed: Record<string, number> };
  expect(done.outcome).toBe('complete');
  expect(done.reconnects).toBe(1);
  expect(routes).toContain('/api/streams/:id');
  expect(routes.filter((route) => route.startsWith('/api/documents/'))).toEqual([]);
  expect(Object.values(done.processed)).toEqual([done.totalChunks, done.totalChunks, done.totalChunks]);
  const session = await fetch(`${stack.url}/api/sessions/${done.sessionId}`, { headers: authHeader('alice') });
  expect(await session.json()).toMatchObject({ stage: 'complete', cancelled: false, done: true });
});

test('an upload whose body is still on its way is not taken for dead while its stream is silent', async () => {
  // No `file_saving` event but the first: nothing comes down while the file goes up.
  stack = await new DemoStack({ heartbeatMs: 300 }, { chunkMs: 15, savingEventBytes: 64 * 1024 * 1024 }).start();
  proxy = await new FreezingProxy(stack.url).start();
  // The browser hands over its body at once; the relay gets it over about three seconds, and counts
  // its arrival as the stream's activity: no heartbeat either.
  proxy.slowUpload('POST /api/documents/upload-sse', 100_000);
  context = await loggedInContext(browser, proxy.url);
  const page = await context.newPage();
  await page.goto(`${proxy.url}/healthz`);
  await page.evaluate(`(async (options) => {
    const { createClient } = await import('/client.js');
    const file = new File(['x'.repeat(300_000)], 'large.txt', { type: 'text/plain' });
    const events = [];
    window.uploadEvents = events;
    const upload = createClient(options).upload([file], { chunk_size: 30000, chunk_overlap: 0 }, {
      onProgress(file) { events.push({ stage: file.progress.stage, at: Date.now() }); },
    });
    upload.done.then((all) => (window.uploadDone = all[0]));
  })(${JSON.stringify({ ...QUICK_CLIENT, heartbeatMs: 300 })})`);
  await page.waitForFunction('window.uploadDone !== undefined', undefined, { timeout: 30_000 });
  const done = (await page.evaluate('window.uploadDone')) as { outcome: string; error?: string; reconnects: number };
  expect(done).toMatchObject({ outcome: 'complete', reconnects: 0 });
  const events = (await page.evaluate('window.uploadEvents')) as { stage: string; at: number }[];
  const saving = events.find((e) => e.stage === 'file_saving')!;
  const saved = events.find((e) => e.stage === 'file_saved')!;
  // Silent for well past twice the heartbeat.
  expect(saved.at - saving.at).toBeGreaterThan(1500);
});
