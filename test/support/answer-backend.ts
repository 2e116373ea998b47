import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { SseResponse } from '../backend/harness';
import { authHeader } from './relay-server';

/** One streaming POST the fixture answers: the test writes its events and sees whether it was aborted. */
export class ScriptedAnswer {
  /** When the backend saw the client (the relay) leave before the end; 0: it did not. */
  abortedAt = 0;
  /** Whether the request body had ended when the answer was aborted (or now). */
  bodyDone = false;
  private sent = 0;

  constructor(
    readonly path: string,
    private readonly res: ServerResponse,
    private readonly ownIds: boolean,
  ) {}

  /** Writes one unnamed or named event with `data`; with own ids, `id: b<n>`. */
  send(data: string, event?: string): void {
    this.sent += 1;
    this.res.write(`${event === undefined ? '' : `event: ${event}\n`}data: ${data}\n${this.ownIds ? `id: b${this.sent}\n` : ''}\n`);
  }

  end(): void {
    this.res.end();
  }
}

/**
 * A backend whose streaming POSTs (`/chat/stream`, `/documents/upload-sse`) the test drives by
 * hand: each POST is answered 200 with an event stream at once, before its body has ended.
 */
export class AnswerBackend {
  readonly server: Server;
  readonly answers: ScriptedAnswer[] = [];
  url = '';
  private waiters: (() => void)[] = [];

  constructor(private readonly ownIds = false) {
    this.server = createServer((req, res) => this.handle(req, res));
  }

  async start(): Promise<this> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** The `n`th answer (0-based), once its POST has arrived. */
  async answer(n: number): Promise<ScriptedAnswer> {
    while (this.answers[n] === undefined) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.answers[n];
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-backend': 'fixture' });
    res.flushHeaders();
    const answer = new ScriptedAnswer(req.url ?? '/', res, this.ownIds);
    req.on('end', () => (answer.bodyDone = true));
    req.resume();
    res.on('close', () => {
      if (!res.writableFinished) answer.abortedAt = Date.now();
    });
    this.answers.push(answer);
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** A chat POST through a relay: its answer as it streams, its stream id, the backend's side of it, and a cut of its connection. */
export interface PostedChat {
  readonly first: SseResponse;
  readonly streamId: string;
  readonly answer: ScriptedAnswer;
  /** Cuts the POST's connection (a drop, not a cancel) and waits for its end. */
  drop(): Promise<void>;
}

/** POSTs a chat to `relayUrl` as alice; resolves once `backend` has the request and the relay answered. */
export async function postChat(relayUrl: string, backend: AnswerBackend): Promise<PostedChat> {
  const controller = new AbortController();
  const res = await request(`${relayUrl}/api/chat/stream`, {
    method: 'POST',
    headers: { ...authHeader(), 'content-type': 'application/json' },
    body: '{}',
    signal: controller.signal,
  });
  const first = new SseResponse(res.statusCode, res.headers, res.body);
  const answer = await backend.answer(backend.answers.length - 1);
  return {
    first,
    streamId: String(first.headers['x-stream-id']),
    answer,
    drop: async () => {
      controller.abort();
      await first.ended.catch(() => undefined);
    },
  };
}
