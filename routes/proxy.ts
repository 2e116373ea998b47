import { once } from 'node:events';
import { Transform, type TransformCallback } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import type { Request, RequestHandler, Response } from 'express';
import { type Dispatcher, errors, request } from 'undici';
import { HttpError } from '../src/errors';
import { ProxiedStream } from '../src/relay/proxied-stream';
import type { UserStreams } from '../src/relay/user-streams';
import { encodeEvent } from '../src/sse/encode';
import type { StreamPolicy } from '../src/stream-policy';
import { tokenExpiryOf, userOf } from '../middleware/authenticate';
import { endAfterHeaders } from '../middleware/errors';

/**
 * Request headers never passed on: those that describe one hop (RFC 9110 §7.6.1), the client's
 * credentials, and `Expect` (Node's server already answered `100 Continue`; undici refuses to send it).
 */
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
  'expect',
  'authorization',
  'cookie',
]);
/**
 * Who the user is and where the request came from: the relay says that itself. A client's own
 * copy is dropped under any spelling a backend could read as one of these (see `foldedName`).
 */
const IDENTITY_HEADERS = new Set([
  'x-user-id',
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-cluster-client-ip',
  'x-original-forwarded-for',
  'x-remote-user',
  'x-remote-addr',
  'remote-user',
]);
const IDENTITY_PREFIXES = ['x-forwarded-', 'x-user-'];
/** More client headers than this, or more bytes of names and values, are refused with 431. */
const MAX_FORWARDED_HEADERS = 100;
const MAX_FORWARDED_HEADER_BYTES = 8 * 1024;
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
  /**
   * What an event stream goes by, as the relay's other streams: idle (by events; bytes of the
   * request body count too), lifetime, heartbeat, slow client. Any other answer with more
   * unsent bytes than its `maxBufferedBytes` is cut off.
   */
  readonly policy: StreamPolicy;
  /** Where an event stream is held, to end at its token's expiry or when the app ends the user's streams. */
  readonly userStreams: UserStreams;
  /** The `retry:` hint of an event stream ended at its token's expiry. */
  readonly retryHintMs: number;
  /**
   * Offered every 200 event-stream answer before anything of it is sent; returns true when it took
   * the answer over (a resumable streaming POST, see `resumablePosts`). Defaults to none: every
   * answer passes through.
   */
  readonly takeOver?: ((answer: ProxiedAnswer) => boolean) | undefined;
  /** An event stream was cut because its client did not read (counted with the relay's other streams). */
  readonly onSlowClientCut?: (() => void) | undefined;
}

/** An event-stream answer offered to `takeOver`: the backend's headers are already set on `res`. */
export interface ProxiedAnswer {
  readonly req: Request;
  readonly res: Response;
  readonly user: string;
  readonly url: URL;
  readonly upstream: Dispatcher.ResponseData;
  /** Aborts the upstream request. */
  abort(): void;
  /** Whether the request body is still being sent. */
  bodyArriving(): boolean;
  /** Why the answer broke, once it has: `payload_too_large` past the body cap, else `upstream_unavailable`. */
  failure(): string;
  /** Where the request body's arrival is reported as activity (an upload keeps its stream from being idle). */
  onBodyActivity(active: () => void): void;
}

const JSON_TYPE = /^application\/json\s*(;|$)/i;
/** How an event stream that the backend answered before the upload passed the cap says why it ends. */
const TOO_LARGE_EVENT = encodeEvent({ event: 'relay_error', data: JSON.stringify({ reason: 'payload_too_large' }) });

/**
 * Streams a request to the backend (`/api/x` → `/x`) and its answer back, both ways
 * at once: an upload goes up as it arrives while its events come down as they are
 * made. A client that leaves aborts the upstream request.
 */
export function proxy(options: ProxyOptions): RequestHandler {
  const { policy } = options;
  /** The event streams open now, under the policy's clock. */
  const streams = new Set<ProxiedStream>();
  policy.watch(streams);
  return async (req, res) => {
    const user = userOf(res);
    const url = upstreamUrl(req.url, options.backendUrl);
    // JSON is read whole by whoever parses it: it gets a cap of its own, far below an upload's.
    const json = JSON_TYPE.test(req.headers['content-type'] ?? '');
    const maxBytes = json ? Math.min(options.maxJsonBodyBytes, options.maxBodyBytes) : options.maxBodyBytes;
    const headers = forwardedHeaders(req, user);
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > maxBytes) throw new HttpError('payload_too_large', `The body is larger than ${maxBytes} bytes.`);

    const controller = new AbortController();
    // An answer taken over is aborted by whoever took it, not by its first client leaving.
    let taken = false;
    res.once('close', () => {
      if (!res.writableFinished && !taken) controller.abort();
    });
    // Past the cap its error aborts the upstream request (undici ends a request whose body fails).
    const limit = new BodyLimit(maxBytes);
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD' && (declared > 0 || req.headers['transfer-encoding'] !== undefined);

    let upstream: Dispatcher.ResponseData;
    try {
      upstream = await request(url, {
        method: req.method as Dispatcher.HttpMethod,
        headers,
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
    taken =
      streaming &&
      upstream.statusCode === 200 &&
      options.takeOver?.({
        req,
        res,
        user,
        url,
        upstream,
        abort: () => controller.abort(),
        bodyArriving: () => hasBody && !limit.writableFinished,
        failure: () => (limit.exceeded ? 'payload_too_large' : 'upstream_unavailable'),
        onBodyActivity: (active) => {
          limit.stream = { active };
        },
      }) === true;
    if (taken) return;
    if (streaming) {
      res.setHeader('Cache-Control', 'no-cache, no-transform');
      res.setHeader('X-Accel-Buffering', 'no');
      res.socket?.setNoDelay(true);
    }
    res.flushHeaders();
    // An event stream goes by the relay's stream policy: it is as long-lived, and any route may answer with one.
    const stream = streaming ? new ProxiedStream(policy, res, () => controller.abort(), () => hasBody && !limit.writableFinished) : undefined;
    if (stream) {
      streams.add(stream);
      limit.stream = stream;
      options.userStreams.track(user, res, tokenExpiryOf(res), options.retryHintMs, stream);
    }
    try {
      // Not pipeline(): it would destroy `res` when the upstream is aborted for an oversized
      // body, and the client would get a reset instead of the error below.
      for await (const chunk of upstream.body as AsyncIterable<Buffer>) {
        let flowing: boolean;
        if (stream) flowing = stream.pass(chunk);
        else {
          flowing = res.write(chunk);
          if (res.writableLength > policy.maxBufferedBytes) throw new Error('slow client');
        }
        // Also when the stream was ended or cut: the aborted signal ends the wait at once.
        if (!flowing) await once(res, 'drain', { signal: controller.signal });
      }
      res.end();
    } catch {
      // Past the cap the client is told why; a stream the relay ended ends cleanly when it can (see
      // `farewell`); otherwise the client left (its close aborted the upstream), was too slow, or the
      // backend broke mid-answer, and the answer is cut short.
      const farewell = stream?.farewell();
      if (limit.exceeded && !res.destroyed) endAfterHeaders(res, stream?.atEventEnd() === true ? TOO_LARGE_EVENT : undefined);
      else if (farewell !== undefined) res.end(farewell);
      else res.destroy();
    } finally {
      if (stream) streams.delete(stream);
      if (stream?.closeReason === 'slow_client') options.onSlowClientCut?.();
      limit.stream = undefined;
    }
  };
}

/** Counts request bytes on their way up and fails the upload past the cap. */
class BodyLimit extends Transform {
  exceeded = false;
  /** The event stream answering this body, while it is open: a body still arriving keeps it from being idle. */
  stream: { active(): void } | undefined;
  private seen = 0;

  constructor(private readonly max: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    this.stream?.active();
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

/**
 * A header name as CGI and WSGI backends read it: case-folded, `_` taken for `-` (`X_User_Id`
 * reaches them as `HTTP_X_USER_ID`, the same variable as `X-User-Id`).
 */
function foldedName(name: string): string {
  return name.toLowerCase().replaceAll('_', '-');
}

function isDropped(folded: string, hopByHop: ReadonlySet<string>): boolean {
  return (
    DROPPED_REQUEST_HEADERS.has(folded) ||
    IDENTITY_HEADERS.has(folded) ||
    IDENTITY_PREFIXES.some((prefix) => folded.startsWith(prefix)) ||
    hopByHop.has(folded)
  );
}

/**
 * The upstream request's headers: the relay's identity and forwarding headers first, so that
 * a backend that keeps only its first N headers still sees them, then the client's, minus
 * anything dropped. Past `MAX_FORWARDED_HEADERS` or `MAX_FORWARDED_HEADER_BYTES`: 431.
 */
function forwardedHeaders(req: Request, user: string): Record<string, string> {
  const headers: Record<string, string> = { 'x-user-id': user };
  const prior = req.headers['x-forwarded-for'];
  headers['x-forwarded-for'] = prior && req.app.get('trust proxy') ? `${String(prior)}, ${req.socket.remoteAddress ?? ''}` : (req.ip ?? '');
  headers['x-forwarded-proto'] = req.protocol;
  if (req.headers.host !== undefined) headers['x-forwarded-host'] = req.headers.host;
  headers['x-forwarded-prefix'] = req.baseUrl;

  const hopByHop = new Set([...connectionNamed(req.headers.connection)].map(foldedName));
  let count = 0;
  let bytes = 0;
  for (const [name, value] of Object.entries(req.headers as IncomingHttpHeaders)) {
    if (value === undefined || isDropped(foldedName(name), hopByHop)) continue;
    const joined = Array.isArray(value) ? value.join(', ') : value;
    count += 1;
    bytes += name.length + joined.length;
    if (count > MAX_FORWARDED_HEADERS || bytes > MAX_FORWARDED_HEADER_BYTES) {
      throw new HttpError('headers_too_large', `At most ${MAX_FORWARDED_HEADERS} headers and ${MAX_FORWARDED_HEADER_BYTES} bytes of them are passed to the backend; send fewer.`);
    }
    headers[name] = joined;
  }
  return headers;
}

function upstreamError(err: unknown): HttpError {
  if (err instanceof errors.HeadersTimeoutError || err instanceof errors.ConnectTimeoutError) return new HttpError('gateway_timeout');
  return new HttpError('bad_gateway');
}
