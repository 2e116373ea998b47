import type { ServerResponse } from 'node:http';
import { SSE_HEADERS_CLOSE, encodeRetry } from '../sse/encode';

/** The largest share of a `retry:` hint added as jitter. */
const RETRY_JITTER = 0.5;

/**
 * `retryMs` plus up to half as much again, at random: streams told to come back at the same
 * moment (a drain, tokens issued together) spread their reconnects instead of arriving at once.
 */
export function jitteredRetry(retryMs: number): number {
  return retryMs + Math.floor(Math.random() * retryMs * RETRY_JITTER);
}


/**
 * Answers an event-stream request that cannot be served now (the relay is draining) with a
 * 200 event stream that only says when to come back, then ends. Never an error status: a
 * native `EventSource` gives up for good on any non-200 answer, but reconnects after a 200
 * stream that ends, waiting `retry:`. The connection closes, so a proxy's keep-alive does
 * not stay pinned to a relay that is going away.
 */
export function comeBackLater(res: ServerResponse, retryMs: number): void {
  res.writeHead(200, SSE_HEADERS_CLOSE);
  res.end(encodeRetry(retryMs));
}
