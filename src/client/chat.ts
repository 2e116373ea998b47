import { type AnswerStatus, AnswerStream } from './answer-stream';
import type { ReconnectOptions } from './backoff';
import type { RelayHeartbeat } from './dead-stream';
import { parseJsonData } from './sse-body';
import { RelayError, type Transport } from './transport';
import type { StatusInfo } from './types';

/** The request of a chat answer. */
export interface ChatRequest {
  readonly chatbotId: string;
  readonly message: string;
}

/** Callbacks of `chat`. */
export interface ChatHandlers {
  /** One more piece of the answer; `text` is the answer so far. */
  onToken?(token: string, text: string): void;
  /** A chunk that could not be read was skipped. */
  onError?(error: Error): void;
  /** The answer's connection broke and is being resumed (`reconnecting`, with the wait), or is open again (`open`). */
  onStatus?(status: AnswerStatus, info: StatusInfo): void;
}

/** An answer being streamed. */
export interface ChatReply {
  /**
   * Stops the answer: `done` resolves with the text so far, and the relay is told to cancel it
   * (`DELETE /api/streams/:id`), so the backend stops at once. Before the POST's response headers
   * came, the request is kept until they do (a few seconds at most), for the answer's id.
   */
  abort(): void;
  /**
   * The whole answer, once `message_stop` came (or the text so far after `abort()`). A dropped
   * connection is resumed where it broke; `done` rejects only when the answer cannot be had whole.
   */
  readonly done: Promise<string>;
}

/**
 * How long an abort waits for the POST's response headers, whose `X-Stream-Id` it needs to cancel
 * the answer. Until the relay has the backend's answer it sends no headers, and a request dropped
 * then is a cancel already; once it has, the headers are one trip away. Past this the request is
 * dropped: a cancel if the relay was still waiting on the backend, else the answer is kept for
 * the grace period.
 */
const CANCEL_WAIT_MS = 3000;

/** Streams `POST /api/chat/stream`, token by token, resuming the answer the relay keeps when the connection drops. */
export function streamChat(
  transport: Transport,
  reconnect: Readonly<ReconnectOptions>,
  body: ChatRequest,
  handlers: ChatHandlers,
  heartbeat?: RelayHeartbeat,
): ChatReply {
  // Stops reading the answer and resuming it.
  const stop = new AbortController();
  // The POST itself: an abort while its headers are on their way keeps it until they come.
  const post = new AbortController();
  let phase: 'preparing' | 'sent' | 'answered' = 'preparing';
  let streamId: string | undefined;
  let giveUp: ReturnType<typeof setTimeout> | undefined;
  let text = '';
  let stopped = false;
  const answer = new AnswerStream(
    transport,
    { reconnect, signal: stop.signal, ...(handlers.onStatus ? { onStatus: handlers.onStatus } : {}), ...(heartbeat ? { heartbeat } : {}) },
    (event) => {
      // An abort from a handler: the rest of the chunk being read is not handed on.
      if (stop.signal.aborted) return;
      if (event.event === 'message_stop') stopped = true;
      // A resume after an id the relay no longer holds: tokens are missing, the text cannot be whole.
      if (event.event === 'resync') throw new Error('part of the answer was lost while the connection was down');
      if (event.event !== 'content_block_delta') return;
      const data = parseJsonData(event, (_bad, error) => handlers.onError?.(new Error(`skipped a bad chat chunk: ${error.message}`)));
      const token = (data as { delta?: { text?: unknown } } | undefined)?.delta?.text;
      if (typeof token !== 'string') return;
      text += token;
      handlers.onToken?.(token, text);
    },
  );
  // A dropped connection is not a cancel to the relay: say it.
  const cancel = (): void => {
    if (streamId !== undefined) void transport.request(`/api/streams/${encodeURIComponent(streamId)}`, { method: 'DELETE' }).catch(() => undefined);
  };
  const reading = (async () => {
    let response: Response;
    try {
      response = await transport.request(
        '/api/chat/stream',
        { method: 'POST', headers: { accept: 'text/event-stream', 'content-type': 'application/json' }, body: JSON.stringify(body), signal: post.signal },
        () => (phase = 'sent'),
      );
    } catch (err) {
      if (stop.signal.aborted) return text;
      throw err;
    }
    phase = 'answered';
    streamId = response.headers.get('x-stream-id') ?? undefined;
    if (stop.signal.aborted) {
      // Aborted while the headers were on their way: now the answer has a name to cancel.
      clearTimeout(giveUp);
      cancel();
      void response.body?.cancel().catch(() => undefined);
      return text;
    }
    try {
      if (!response.ok || response.body === null) throw await RelayError.from(response);
      await answer.follow(response, () => stopped);
      if (!stopped && !stop.signal.aborted) throw new Error('the answer ended before message_stop');
    } catch (err) {
      if (!stop.signal.aborted) throw err;
    }
    return text;
  })();
  let aborted: (text: string) => void = () => undefined;
  const abortedWith = new Promise<string>((resolve) => (aborted = resolve));
  return {
    abort: () => {
      if (stop.signal.aborted) return;
      stop.abort();
      aborted(text);
      if (phase !== 'sent') {
        // Not sent yet: it never will be. Answered: the relay keeps the answer when its request drops.
        post.abort();
        cancel();
        return;
      }
      giveUp = setTimeout(() => post.abort(), CANCEL_WAIT_MS);
    },
    done: Promise.race([reading, abortedWith]),
  };
}

/** One message of a conversation's history. */
export interface ChatMessage {
  readonly role: string;
  readonly text?: string;
  readonly [field: string]: unknown;
}

/** One page of history, oldest first. */
export interface HistoryPage {
  readonly messages: readonly ChatMessage[];
  readonly hasMore: boolean;
}

/** Loads a conversation backwards, one page at a time: the newest page first. */
export interface HistoryPager {
  /** The next (older) page; an empty page once there is no more. */
  next(): Promise<HistoryPage>;
  /** False once the oldest page was loaded. */
  readonly hasMore: boolean;
}

/** A pager over `POST /api/chat/history`. */
export function chatHistory(transport: Transport, chatbotId: string, pageSize: number): HistoryPager {
  let page = 0;
  let hasMore = true;
  return {
    get hasMore() {
      return hasMore;
    },
    async next() {
      if (!hasMore) return { messages: [], hasMore: false };
      const answer = await transport.json<HistoryPage>('/api/chat/history', { chatbotId, page: page + 1, pageSize });
      page += 1;
      hasMore = answer.hasMore;
      return answer;
    },
  };
}
