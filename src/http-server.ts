import { createServer, type RequestListener, type Server } from 'node:http';
import { enforceHeadDeadline } from './head-deadline';
import { type IntegerSetting, MINUTE, optionSource, resolveSettings } from './setting';

/**
 * How the relay's HTTP server treats sockets before and between requests, declared once
 * (see `RELAY_SETTINGS` for the format). Without these a socket that never sends a request,
 * or trickles a header line every few seconds, is held for free.
 */
export const HTTP_SERVER_SETTINGS = {
  headersTimeoutMs: {
    kind: 'ms',
    env: 'HEADERS_TIMEOUT_MS',
    default: 10_000,
    min: 1,
    max: 5 * MINUTE,
    doc: 'a client must send a whole request head this soon after connecting (or after its previous response); else 408 and the socket is closed, or, for one that sent nothing since its last response, closed without a word, as an idle keep-alive one',
  },
  keepAliveTimeoutMs: { kind: 'ms', env: 'KEEP_ALIVE_TIMEOUT_MS', default: 5000, min: 1, max: 10 * MINUTE, doc: 'an idle keep-alive connection is closed after this' },
  maxSockets: {
    kind: 'count',
    env: 'MAX_SOCKETS',
    default: 22_000,
    min: 1,
    max: 10_000_000,
    doc: 'client sockets open at once (`server.maxConnections`); more are closed as they arrive',
    defaultNote: 'from the open-file limit (see below)',
  },
} as const satisfies Record<string, IntegerSetting>;

/** Options of `createHttpServer`; each is an entry of `HTTP_SERVER_SETTINGS`. */
export type HttpServerOptions = { [K in keyof typeof HTTP_SERVER_SETTINGS]?: number };

/**
 * A Node HTTP server fit for long streams: no whole-request timeout (uploads and streams end by
 * their own rules), but a request head must arrive within `headersTimeoutMs`, idle keep-alive
 * sockets close after `keepAliveTimeoutMs`, and at most `maxSockets` are open at once.
 * Throws `TypeError` naming a bad option.
 */
export function createHttpServer(listener: RequestListener, options: HttpServerOptions = {}): Server {
  const { headersTimeoutMs, keepAliveTimeoutMs, maxSockets } = resolveSettings(HTTP_SERVER_SETTINGS, optionSource(options));
  const server = createServer(
    {
      // requestTimeout 0 would also turn headersTimeout off if it were left to its default.
      requestTimeout: 0,
      headersTimeout: headersTimeoutMs,
      keepAliveTimeout: keepAliveTimeoutMs,
      // Node enforces headersTimeout only at this interval (30 s by default), so a short one needs a short check.
      connectionsCheckingInterval: Math.min(5000, Math.max(25, Math.floor(headersTimeoutMs / 4))),
    },
    listener,
  );
  server.maxConnections = maxSockets;
  enforceHeadDeadline(server, headersTimeoutMs);
  return server;
}
