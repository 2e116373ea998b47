import type { ServerResponse } from 'node:http';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { ERROR_HEADERS, HttpError, errorBody } from '../src/errors';

/** Answers an unknown route with the contract's JSON 404. */
export const notFound: RequestHandler = (_req, _res, next) => {
  next(new HttpError('not_found', 'No such route.'));
};

/**
 * Turns any error into `{"error":{code,message}}`; unexpected ones (not an `HttpError`, nor
 * a body parser's 4xx) are answered 500 `internal` and given to `log`. After headers were
 * sent it can only end the response.
 */
export function errorHandler(log?: (err: unknown) => void): ErrorRequestHandler {
  return (err: unknown, _req, res, _next) => {
    const error = asHttpError(err);
    if (error.code === 'internal') log?.(err);
    if (res.headersSent) return endAfterHeaders(res);
    if (error.status >= 500) {
      // The request's log line carries this error.
      (res as unknown as { err?: unknown }).err = err;
    }
    res.status(error.status).set(error.headers).set(ERROR_HEADERS).json(errorBody(error.code, error.message));
  };
}

/**
 * Ends a response on an error after its headers went out. Its status can no longer say so, and
 * its body must not grow past what the headers declared (a length, an encoding, a type that is not
 * the relay's), so the connection is closed and the client sees the answer cut short. `last`, when
 * given, is bytes that extend the body within its own format (an event after an event stream's
 * last whole event): they end it instead, when no length or encoding was declared.
 */
export function endAfterHeaders(res: ServerResponse, last?: Buffer): void {
  const encoding = res.getHeader('content-encoding');
  const open = res.getHeader('content-length') === undefined && (encoding === undefined || String(encoding).toLowerCase() === 'identity');
  if (last !== undefined && open && !res.destroyed) res.end(last);
  else res.destroy();
}

function asHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  // body-parser and friends set status/type on their errors (e.g. 413 entity.too.large, 400 entity.parse.failed).
  const status = (err as { status?: unknown }).status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const type = (err as { type?: unknown }).type;
    if (status === 413) return new HttpError('payload_too_large');
    return new HttpError('bad_request', type === 'entity.parse.failed' ? 'The body is not valid JSON.' : undefined, status);
  }
  return new HttpError('internal');
}
