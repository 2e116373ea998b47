import { once } from 'node:events';
import { Transform, type TransformCallback } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import type { Request, RequestHandler, Response } from 'express';
import { type Dispatcher, errors, request } from 'undici';
import { HttpError, errorBody } from '../src/errors';
import { encodeEvent } from '../src/sse/encode';
import { userOf } from '../middleware/authenticate';

/** Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus what the relay owns. */
const DROPPED_REQUEST_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'authorization',
  'cookie',
  'x-user-id',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-prefix',
]);
const DROPPED_RESPONSE_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'trailer', 'upgrade', 'proxy-authenticate', 'set-cookie']);

export interface ProxyOptions {
  readonly backendUrl: URL;
  readonly dispatcher: Dispatcher;
  /** How long to wait for the backend's response headers before answering 504. */
  readonly headersTimeoutMs: number;
  /** Largest request body; past it: 413 and the upstream request is aborted. */
  readonly maxBodyBytes: number;
  /** Largest `application/json` request body; past it: 413 and the upstream request is aborted. */
  readonly maxJsonBodyBytes: number;
}

const JSON_TYPE = /^application\/json\s*(;|$)/i;

/**
 * Streams a request to the backend (`/api/x` → `/x`) and its answer back, both ways
 * at once: an upload goes up as it arrives while its events come down as they are
 * made. A client that leaves aborts the upstream request.
 */
export function proxy(options: ProxyOptions): RequestHandler {
  return async (req, res) => {
    const user = userOf(res);
    const url = upstreamUrl(req.url, options.backendUrl);
    // JSON is read whole by whoever parses it: it gets a cap of its own, far below an upload's.
    const json = JSON_TYPE.test(req.headers['content-type'] ?? '');
    const maxBytes = json ? Math.min(options.maxJsonBodyBytes, options.maxBodyBytes) : options.maxBodyBytes;
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > maxBytes) throw new HttpError('payload_too_large', `The body is larger than ${maxBytes} bytes.`);

    const controller = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) controller.abort();
    });
    // Past the cap its error aborts the upstream request (undici ends a request whose body fails).
    const limit = new BodyLimit(maxBytes);
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD' && (declared > 0 || req.headers['transfer-encoding'] !== undefined);

    let upstream: Dispatcher.ResponseData;
    try {
      upstream = await request(url, {
        method: req.method as Dispatcher.HttpMethod,
        headers: forwardedHeaders(req, user),
        body: hasBody ? req.pipe(limit) : null,
        signal: controller.signal,
        dispatcher: options.dispatcher,
        headersTimeout: options.headersTimeoutMs,
        // Streamed answers (SSE) may be quiet for long; the client's leaving ends them.
        bodyTimeout: 0,
      });
    } catch (err) {
      if (limit.exceeded) throw new HttpError('payload_too_large', `The body is larger than ${maxBytes} bytes.`);
      if (res.destroyed) return;
      throw upstreamError(err);
    }
    res.status(upstream.statusCode);
    const hopByHop = connectionNamed(upstream.headers.connection);
    for (const [name, value] of Object.entries(upstream.headers)) {
      if (value !== undefined && !DROPPED_RESPONSE_HEADERS.has(name) && !hopByHop.has(name)) res.setHeader(name, value);
    }
    const streaming = String(upstream.headers['content-type'] ?? '').startsWith('text/event-stream');
    if (streaming) {
      res.setHeader('Cache-Control', 'no-cache, no-transform');
      res.setHeader('X-Accel-Buffering', 'no');
      res.socket?.setNoDelay(true);
    }
    res.flushHeaders();
    try {
      // Not pipeline(): it would destroy `res` when the upstream is aborted for an oversized
      // body, and the client would get a reset instead of the error below.
      for await (const chunk of upstream.body) {
        if (!res.write(chunk)) await once(res, 'drain', { signal: controller.signal });
      }
      res.end();
    } catch {
      // Past the cap the client is told why; otherwise the client left (its close aborted the
      // upstream) or the backend broke mid-answer, and the client's answer is cut short too.
      if (limit.exceeded && !res.destroyed) endWithError(res, streaming);
      else res.destroy();
    }
  };
}

/** Counts request bytes on their way up and fails the upload past the cap. */
class BodyLimit extends Transform {
  exceeded = false;
  private seen = 0;

  constructor(private readonly max: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.max) {
      this.exceeded = true;
      return callback(new HttpError('payload_too_large'));
    }
    callback(null, chunk);
  }
}

/**
 * The backend's origin followed by the request's path and query. Resolved against the
 * backend URL instead, `//host/x` or `/\host/x` would name another host, and so would an
 * absolute-form target (`GET http://host/x`), of which only the path and query are kept.
 */
function upstreamUrl(target: string, backendUrl: URL): URL {
  if (target.startsWith('/')) return new URL(`${backendUrl.origin}${target}`);
  if (!URL.canParse(target)) throw new HttpError('bad_request', 'The request target is not a valid URL.');
  const { pathname, search } = new URL(target);
  return new URL(`${backendUrl.origin}${pathname}${search}`);
}

const NO_NAMES: ReadonlySet<string> = new Set();

/** The header names a `Connection` header lists: hop-by-hop too (RFC 9110, 7.6.1), never passed on. */
function connectionNamed(connection: string | string[] | undefined): ReadonlySet<string> {
  if (connection === undefined) return NO_NAMES;
  return new Set(String(connection).toLowerCase().split(',').map((name) => name.trim()));
}

function forwardedHeaders(req: Request, user: string): Record<string, string> {
  const headers: Record<string, string> = {};
  const hopByHop = connectionNamed(req.headers.connection);
  for (const [name, value] of Object.entries(req.headers as IncomingHttpHeaders)) {
    if (value === undefined || DROPPED_REQUEST_HEADERS.has(name) || hopByHop.has(name)) continue;
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  const prior = req.headers['x-forwarded-for'];
  headers['x-forwarded-for'] = prior && req.app.get('trust proxy') ? `${String(prior)}, ${req.socket.remoteAddress ?? ''}` : (req.ip ?? '');
  headers['x-forwarded-proto'] = req.protocol;
  if (req.headers.host !== undefined) headers['x-forwarded-host'] = req.headers.host;
  headers['x-forwarded-prefix'] = req.baseUrl;
  headers['x-user-id'] = user;
  return headers;
}

function upstreamError(err: unknown): HttpError {
  if (err instanceof errors.HeadersTimeoutError || err instanceof errors.ConnectTimeoutError) return new HttpError('gateway_timeout');
  return new HttpError('bad_gateway');
}

function endWithError(res: Response, streaming: boolean): void {
  if (streaming) {
    res.end(encodeEvent({ event: 'relay_error', data: JSON.stringify({ reason: 'payload_too_large' }) }));
    return;
  }
  res.end(JSON.stringify(errorBody('payload_too_large', 'The body is too large.')));
}
