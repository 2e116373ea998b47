import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { EventSource } from 'eventsource';
import { type EventSourceMessage, createParser } from 'eventsource-parser';
import { Agent, request } from 'undici';
import { type Backend, createBackend } from '../../backend/app';
import type { BackendOptions } from '../../backend/options';

/** Timings that make every job finish in milliseconds. */
const FAST: Partial<BackendOptions> = { tickMs: 2, chunkMs: 1, tokenMs: 2, retryMs: 5, heartbeatMs: 60_000 };

export interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- test assertions read arbitrary JSON
  readonly json: any;
}

export interface CallOptions {
  method?: string;
  user?: string | null;
  json?: unknown;
  body?: string | Buffer | Readable;
  headers?: Record<string, string>;
}

/** The backend on port 0 with a real HTTP client; `close()` tears everything down. */
export class TestBackend {
  readonly errors: unknown[] = [];
  readonly backend: Backend;
  readonly agent = new Agent();
  private readonly sources = new Set<EventSource>();
  private readonly server: Server;
  url = '';

  private constructor(options: Partial<BackendOptions>) {
    this.backend = createBackend({ ...FAST, onError: (err) => this.errors.push(err), ...options });
    this.server = this.backend.app.listen(0, '127.0.0.1');
  }

  static async start(options: Partial<BackendOptions> = {}): Promise<TestBackend> {
    const running = new TestBackend(options);
    await once(running.server, 'listening');
    running.url = `http://127.0.0.1:${(running.server.address() as AddressInfo).port}`;
    return running;
  }

  /** One request as `user` (default alice; null sends no X-User-Id), body read whole. */
  async call(path: string, options: CallOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.user !== null) headers['x-user-id'] = options.user ?? 'alice';
    let body = options.body;
    if (options.json !== undefined) {
      headers['content-type'] ??= 'application/json';
      body = JSON.stringify(options.json);
    }
    const res = await request(`${this.url}${path}`, { dispatcher: this.agent, method: (options.method ?? 'GET') as 'GET', headers, body });
    const text = await res.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.statusCode, headers: res.headers, text, json };
  }

  /** An `EventSource` (the `eventsource` package) as `user`; `headers` are sent unless the client sets its own. */
  events(path: string, user = 'alice', headers: Record<string, string> = {}): EventSource {
    const es = new EventSource(`${this.url}${path}`, {
      fetch: (input, init) => {
        const merged = new Headers(init?.headers as Record<string, string>);
        merged.set('x-user-id', user);
        for (const [name, value] of Object.entries(headers)) if (!merged.has(name)) merged.set(name, value);
        return fetch(input, { ...init, headers: merged });
      },
    });
    this.sources.add(es);
    return es;
  }

  /** A streaming request whose response is read as SSE as it arrives. */
  async stream(path: string, options: CallOptions & { signal?: AbortSignal } = {}): Promise<SseResponse> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.user !== null) headers['x-user-id'] = options.user ?? 'alice';
    let body = options.body;
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.json);
    }
    const res = await request(`${this.url}${path}`, {
      dispatcher: this.agent,
      method: (options.method ?? 'POST') as 'POST',
      headers,
      body,
      signal: options.signal,
    });
    return new SseResponse(res.statusCode, res.headers, res.body);
  }

  async close(): Promise<void> {
    for (const es of this.sources) es.close();
    await this.backend.close();
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
    await this.agent.destroy();
  }
}

/** A response body read as SSE with eventsource-parser: every event, every comment, and the end. */
export class SseResponse {
  readonly events: EventSourceMessage[] = [];
  readonly comments: string[] = [];
  /** Resolves when the body ends; rejects if it breaks. */
  readonly ended: Promise<void>;
  private readonly waiters = new Set<() => void>();
  private finished = false;

  constructor(
    readonly status: number,
    readonly headers: Record<string, string | string[] | undefined>,
    body: AsyncIterable<Buffer>,
  ) {
    const parser = createParser({
      onEvent: (event) => {
        this.events.push(event);
        this.wake();
      },
      onComment: (comment) => this.comments.push(comment),
    });
    this.ended = (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of body) parser.feed(decoder.decode(chunk, { stream: true }));
      } finally {
        this.finished = true;
        this.wake();
      }
    })();
    // A test that aborts on purpose looks at `ended` itself; nobody else should see an unhandled rejection.
    this.ended.catch(() => undefined);
  }

  /** The data of each event, parsed as JSON. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- test assertions read arbitrary JSON
  get data(): any[] {
    return this.events.map((event) => JSON.parse(event.data) as unknown);
  }

  /** Resolves with the first event (seen or future) that matches; rejects if the stream ends first or after `timeoutMs`. */
  async waitFor(match: (event: EventSourceMessage) => boolean, timeoutMs = 5000): Promise<EventSourceMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(match);
      if (found) return found;
      if (this.finished) throw new Error(`stream ended after ${this.events.length} events without the awaited one`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${this.events.length} events`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.add(() => done());
      });
    }
  }

  /** Waits for the event whose JSON data has `event` equal to `name`. */
  waitForEvent(name: string, timeoutMs?: number): Promise<EventSourceMessage> {
    return this.waitFor((event) => (JSON.parse(event.data) as { event?: unknown }).event === name, timeoutMs);
  }

  private wake(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const wake of waiters) wake();
  }
}

/** Collects the `onmessage` (unnamed) events of an `EventSource` until `done` says so. */
export function collect(es: EventSource, done: (events: MessageEvent[]) => boolean, timeoutMs = 5000): Promise<MessageEvent[]> {
  const got: MessageEvent[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${got.length} events`)), timeoutMs);
    es.onmessage = (event) => {
      got.push(event);
      if (done(got)) {
        clearTimeout(timer);
        resolve(got);
      }
    };
    es.addEventListener('error', (err) => {
      if (es.readyState !== EventSource.CLOSED || done(got)) return;
      clearTimeout(timer);
      reject(new Error(`stream failed after ${got.length} events: ${String(err.code)} ${String(err.message)}`));
    });
  });
}

/** Resolves with the `error` event that closed an `EventSource` for good (a non-200 answer, or 204). */
export function failure(es: EventSource, timeoutMs = 5000): Promise<{ code?: number; message?: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the EventSource did not fail')), timeoutMs);
    es.addEventListener('error', (err) => {
      if (es.readyState !== EventSource.CLOSED) return;
      clearTimeout(timer);
      resolve({ code: err.code, message: err.message });
    });
  });
}

/** A multipart/form-data body in three pieces, so a test can send the file slowly. */
export interface Multipart {
  readonly contentType: string;
  /** The fields, then the file part's headers. */
  readonly head: Buffer;
  readonly file: Buffer;
  /** The end of the file part, fields after the file if any, and the closing boundary. */
  readonly tail: Buffer;
  readonly whole: Buffer;
}

export function multipart(fields: Record<string, string>, file: Buffer, options: { filename?: string; after?: Record<string, string>; partName?: string } = {}): Multipart {
  const boundary = `----test${Math.random().toString(16).slice(2)}`;
  const field = (name: string, value: string): string => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const head = Buffer.from(
    Object.entries(fields)
      .map(([name, value]) => field(name, value))
      .join('') +
      `--${boundary}\r\nContent-Disposition: form-data; name="${options.partName ?? 'file'}"; filename="${options.filename ?? 'document.txt'}"\r\nContent-Type: text/plain\r\n\r\n`,
  );
  const after = Object.entries(options.after ?? {})
    .map(([name, value]) => field(name, value))
    .join('');
  const tail = Buffer.from(`\r\n${after}--${boundary}--\r\n`);
  return { contentType: `multipart/form-data; boundary=${boundary}`, head, file, tail, whole: Buffer.concat([head, file, tail]) };
}

/** Deterministic bytes that are not all alike (so a chunk mix-up would change the hash). */
export function sampleFile(size: number): Buffer {
  const bytes = Buffer.alloc(size);
  let x = 2463534242;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}
