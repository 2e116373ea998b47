/**
 * The browser client of sse-relay: served by the relay at `/client.js` and exported as
 * `sse-relay/client`. One multiplexed stream per client, with resume, backoff and a polling
 * fallback; helpers for the streaming upload and chat POSTs.
 */
export { type Client, type ClientOptions, createClient } from './client';
export type { AnswerStatus } from './answer-stream';
export type { ReconnectOptions } from './backoff';
export type { ChatHandlers, ChatMessage, ChatReply, ChatRequest, HistoryPage, HistoryPager } from './chat';
export type { StatusInfo, StreamStatus, SubscribeHandlers, Subscription, TopicEvent } from './types';
export { type PathReport, describeReport } from '../diagnostics/path-report';
export type { PathCheckOptions } from './path-check';
export type { Topic } from './topics';
export { RelayError } from './transport';
export type { ChunkStage, FileProgress, Upload, UploadedFile, UploadFields, UploadHandlers } from './upload';
