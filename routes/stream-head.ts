import type { Response } from 'express';
import { SSE_HEADERS, SSE_HEADERS_CLOSE } from '../src/sse/encode';

/**
 * Answers a HEAD on an event-stream route with the headers its GET would start with, and ends it.
 * Node drops whatever is written to a HEAD answer and sends its headers only when it ends: opened
 * as a stream, a HEAD would hold a slot and an upstream until the stream ends, answer nothing
 * meanwhile, and leave any request pipelined behind it waiting as long. Call it after the GET's
 * checks of the request (token, ids, query), in place of its guards and its attach.
 */
export function answerHead(res: Response): void {
  res.writeHead(200, res.req.headers.connection?.toLowerCase() === 'close' ? SSE_HEADERS_CLOSE : SSE_HEADERS).end();
}
