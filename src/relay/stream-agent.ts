import { Agent } from 'undici';

/**
 * How long a connection to the backend may wait idle for its next request. undici 7 opens a new
 * connection for a request aborted while its response streams (the aborted request is still
 * queued when the old socket closes) and that connection never carries a request: it lives as
 * long as the keep-alive allows, which the backend's `Keep-Alive: timeout=…` may make minutes, and
 * a relay whose topics come and go would hold thousands of them.
 */
const IDLE_CONNECTION_MS = 1000;

/**
 * The pool for event streams and proxied requests. Each open stream pins a connection, so they
 * get a pool of their own (REST calls never queue behind them) without a cap.
 */
export function createStreamAgent(): Agent {
  return new Agent({ pipelining: 1, connections: null, keepAliveTimeout: IDLE_CONNECTION_MS, keepAliveMaxTimeout: IDLE_CONNECTION_MS });
}
