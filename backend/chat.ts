import express, { type Response, type Router } from 'express';
import { composeAnswer, tokenize } from './answer';
import { BackendError } from './errors';
import { ID_PATTERN } from './ids';
import { userOf } from './identity';
import type { BackendConfig } from './options';
import { EventLog, type StreamSet } from './sse-stream';

/** One message of a conversation, as the history route answers it. */
interface ChatMessage {
  /** Increasing per conversation. */
  readonly id: number;
  readonly role: 'user' | 'assistant';
  text: string;
  /** When the message was sent or the answer started (ISO 8601). */
  readonly at: string;
  /** Assistant answers only: `streaming` while tokens arrive, `complete`, or `stopped` when the client left early. */
  status?: 'streaming' | 'complete' | 'stopped';
}

/** One page of history: oldest first within the page; `hasMore` says older messages exist. */
export interface HistoryPage {
  readonly messages: ChatMessage[];
  readonly hasMore: boolean;
}

const MAX_PAGE_SIZE = 100;
const DEFAULT_PAGE_SIZE = 20;

class Conversation {
  readonly messages: ChatMessage[] = [];
  private nextId = 1;

  constructor(private readonly maxMessages: number) {}

  add(role: ChatMessage['role'], text: string): ChatMessage {
    const message: ChatMessage = { id: this.nextId++, role, text, at: new Date().toISOString() };
    if (role === 'assistant') message.status = 'streaming';
    this.messages.push(message);
    if (this.messages.length > this.maxMessages) this.messages.splice(0, this.messages.length - this.maxMessages);
    return message;
  }
}

/**
 * Every user's conversations with every chatbot, and the answers being streamed.
 * An answer is stored as it is generated, so the history shows what the user saw,
 * including an answer cut short because the client left.
 */
export class Chats {
  private readonly conversations = new Map<string, Conversation>();
  private readonly generating = new Set<() => void>();

  constructor(
    private readonly config: BackendConfig,
    private readonly streams: StreamSet,
  ) {}

  /**
   * Stores the user's message and streams the answer to `res`, one
   * `content_block_delta` per token every `tokenMs`, then `message_stop`.
   * A client that leaves stops the generation at once.
   */
  answer(owner: string, chatbotId: string, message: string, res: Response): void {
    const conversation = this.conversation(owner, chatbotId);
    conversation.add('user', message);
    const reply = conversation.add('assistant', '');
    const tokens = tokenize(composeAnswer(message));
    let next = 0;
    let timer: NodeJS.Timeout | undefined;
    const stop = (status: 'complete' | 'stopped'): void => {
      clearTimeout(timer);
      this.generating.delete(halt);
      if (reply.status === 'streaming') reply.status = status;
    };
    const halt = (): void => stop('stopped');
    const log = new EventLog(halt);
    const step = (): void => {
      const token = tokens[next++];
      if (token === undefined) {
        log.append({}, 'message_stop');
        stop('complete');
        log.finish();
        return;
      }
      reply.text += token;
      log.append({ delta: { text: token } }, 'content_block_delta');
      timer = setTimeout(step, this.config.tokenMs);
    };
    this.generating.add(halt);
    timer = setTimeout(step, this.config.tokenMs);
    // After the timer is set: a client already gone halts it right here.
    this.streams.start(res);
    log.attach(res, 0);
  }

  /**
   * Page `page` (1-based) of a conversation, newest page first, as a chat UI
   * loads it: page 1 is the newest `pageSize` messages, page 2 the ones before,
   * and so on; each page is ordered oldest first, and `hasMore` is true while
   * older messages exist.
   */
  history(owner: string, chatbotId: string, page: number, pageSize: number): HistoryPage {
    const messages = this.conversations.get(key(owner, chatbotId))?.messages ?? [];
    const end = messages.length - (page - 1) * pageSize;
    if (end <= 0) return { messages: [], hasMore: false };
    const start = Math.max(0, end - pageSize);
    return { messages: messages.slice(start, end).map((m) => ({ ...m })), hasMore: start > 0 };
  }

  /** Stops every answer being generated. */
  close(): void {
    for (const halt of [...this.generating]) halt();
  }

  private conversation(owner: string, chatbotId: string): Conversation {
    let conversation = this.conversations.get(key(owner, chatbotId));
    if (!conversation) {
      conversation = new Conversation(this.config.maxChatMessages);
      this.conversations.set(key(owner, chatbotId), conversation);
    }
    return conversation;
  }
}

/** `POST /chat/stream` and `POST /chat/history`. */
export function chatRoutes(chats: Chats, config: BackendConfig): Router {
  const router = express.Router();
  const json = express.json({ limit: `${Math.max(16, Math.ceil((config.maxMessageChars * 4) / 1024) + 4)}kb` });

  router.post('/chat/stream', json, (req, res) => {
    const body = objectBody(req.body, '{"chatbotId":"support","message":"Hello"}');
    const chatbotId = readChatbotId(body.chatbotId);
    const message = body.message;
    if (typeof message !== 'string' || message.trim() === '') throw new BackendError('bad_request', 'message must be a non-empty string.');
    if ([...message].length > config.maxMessageChars) {
      throw new BackendError('bad_request', `message must be at most ${config.maxMessageChars} characters.`);
    }
    chats.answer(userOf(res), chatbotId, message, res);
  });

  router.post('/chat/history', json, (req, res) => {
    const body = objectBody(req.body, '{"chatbotId":"support","page":1,"pageSize":20}');
    const chatbotId = readChatbotId(body.chatbotId);
    const page = readInteger(body.page, 'page', 1, 1, 1_000_000);
    const pageSize = readInteger(body.pageSize, 'pageSize', DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE);
    res.set('Cache-Control', 'no-store').json(chats.history(userOf(res), chatbotId, page, pageSize));
  });

  return router;
}

function key(owner: string, chatbotId: string): string {
  return `${owner}\n${chatbotId}`;
}

function objectBody(body: unknown, example: string): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BackendError('bad_request', `Send a JSON object like ${example} with Content-Type: application/json.`);
  }
  return body as Record<string, unknown>;
}

function readChatbotId(value: unknown): string {
  if (typeof value !== 'string' || !ID_PATTERN.test(value)) {
    throw new BackendError('bad_request', 'chatbotId must be 1-128 characters of A-Z, a-z, 0-9, "_" or "-".');
  }
  return value;
}

function readInteger(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined || value === null) return fallback;
  if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
    throw new BackendError('bad_request', `${name} must be an integer from ${min} to ${max}.`);
  }
  return value as number;
}
