import { type ReconnectOptions, resolveReconnect } from './backoff';
import { type ChatHandlers, type ChatReply, type ChatRequest, type HistoryPager, chatHistory, streamChat } from './chat';
import { browser } from './browser';
import { RelayHeartbeat } from './dead-stream';
import type { PathReport } from '../diagnostics/path-report';
import { type PathCheckOptions, checkPath } from './path-check';
import { canShareAcrossTabs } from './tab-link';
import { TopicStream } from './topic-stream';
import type { SubscribeHandlers, Subscription } from './types';
import type { Topic } from './topics';
import { Transport, type TransportOptions } from './transport';
import { type Upload, type UploadFields, type UploadHandlers, startUpload } from './upload';

/** Options of `createClient`. Every field is optional. */
export interface ClientOptions extends TransportOptions {
  /** Backoff between stream attempts (`initialDelayMs` 3000, `factor` 1.5, `maxDelayMs` 60000, `jitter` 0.25, `attempts` 5). */
  reconnect?: Partial<ReconnectOptions>;
  /** How often each topic's status route is polled while streaming does not work. Defaults to 2000 ms. */
  pollIntervalMs?: number;
  /** How long an answered stream may take to send its first (`ready`) event before the client polls instead. Defaults to 10000 ms. */
  readyTimeoutMs?: number;
  /**
   * The relay's heartbeat interval, for relays whose `ready` event does not say it and for the
   * answers of `chat` and `upload` before a `ready` event said it: a stream that delivers no byte
   * for twice this is taken for dead and reopened or resumed. Defaults to the relay's
   * `ready.heartbeatMs`; with neither, a silent stream is never called dead.
   */
  heartbeatMs?: number;
  /**
   * The tabs of one origin, for one relay and one user, share one stream: one tab holds it (a
   * Web Lock) and hands the events to the others (a BroadcastChannel); when it closes another
   * takes over from the last event the tabs saw. Defaults to true where both APIs exist.
   */
  shareAcrossTabs?: boolean;
  /** Files of one upload sent at once. Defaults to 3. */
  uploadConcurrency?: number;
  /** Messages per page of chat history. Defaults to 20. */
  historyPageSize?: number;
}

/** A client of one relay, for one user. */
export interface Client {
  /** Watches topics (`download:CODE`, `session:ID`) over the client's one multiplexed stream. */
  subscribe(topics: readonly Topic[], handlers?: SubscribeHandlers): Subscription;
  /** Uploads files, each to its own backend session, with progress by stage, per-file cancel and cancel-all. */
  upload(files: readonly File[], fields?: UploadFields, handlers?: UploadHandlers): Upload;
  /** Streams a chat answer token by token. */
  chat(body: ChatRequest, handlers?: ChatHandlers): ChatReply;
  /** Pages through a conversation's history, newest page first. */
  history(chatbotId: string): HistoryPager;
  /** `fetch` of a relay path with the client's credentials, for the REST calls around the streams. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** Reads the relay's diagnostic ticks as this page receives them: one by one or in bursts, how late, and whether a quiet stream survives. */
  checkPath(options?: PathCheckOptions): Promise<PathReport>;
}

/** Makes a client. Nothing connects until the first `subscribe`. */
export function createClient(options: ClientOptions = {}): Client {
  const transport = new Transport(options);
  const reconnect = resolveReconnect(options.reconnect);
  const pollIntervalMs = positive('pollIntervalMs', options.pollIntervalMs, 2000);
  const readyTimeoutMs = positive('readyTimeoutMs', options.readyTimeoutMs, 10_000);
  const uploadConcurrency = positive('uploadConcurrency', options.uploadConcurrency, 3);
  const historyPageSize = positive('historyPageSize', options.historyPageSize, 20);
  const heartbeat = new RelayHeartbeat(options.heartbeatMs === undefined ? undefined : positive('heartbeatMs', options.heartbeatMs, 0));
  const share = (options.shareAcrossTabs ?? true) && canShareAcrossTabs();
  // One lock and channel per relay (its absolute URL) and user.
  const shareName = async (): Promise<string | undefined> => {
    const who = await transport.credentialKey();
    return who === undefined ? undefined : `sse-relay ${new URL(transport.url('/'), browser.location?.href).href} ${who}`;
  };
  let stream: TopicStream | undefined;
  return {
    subscribe(topics, handlers = {}) {
      stream ??= new TopicStream(transport, { reconnect, pollIntervalMs, readyTimeoutMs, heartbeat }, share ? shareName : undefined);
      return stream.subscribe(topics, handlers);
    },
    upload(files, fields = {}, handlers = {}) {
      return startUpload(transport, { reconnect, concurrency: uploadConcurrency, heartbeat }, files, fields, handlers);
    },
    chat(body, handlers = {}) {
      return streamChat(transport, reconnect, body, handlers, heartbeat);
    },
    history(chatbotId) {
      return chatHistory(transport, chatbotId, historyPageSize);
    },
    fetch(path, init) {
      return transport.request(path, init);
    },
    checkPath(options) {
      return checkPath(transport, options);
    },
  };
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new TypeError(`${name} must be a positive number, got ${String(value)}`);
  return value;
}
