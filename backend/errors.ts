import type { ErrorRequestHandler, RequestHandler } from 'express';

/** Every error the reference backend answers, with its status and a message that says what to do. */
const BACKEND_ERRORS = {
  bad_request: { status: 400, message: 'The request is malformed.' },
  invalid_id: { status: 400, message: 'The id in the path must be 1-128 characters of A-Z, a-z, 0-9, "_" or "-".' },
  invalid_user: { status: 400, message: 'X-User-Id must be 1-256 printable characters.' },
  invalid_last_event_id: { status: 400, message: 'Last-Event-ID (or ?lastEventId=) must be a non-negative integer this backend sent.' },
  missing_user: { status: 401, message: 'Send the caller in X-User-Id (the relay sets it from the token).' },
  not_found: { status: 404, message: 'No such resource for this user.' },
  not_ready: { status: 409, message: 'The export is not finished yet; wait for its COMPLETED event.' },
  export_failed: { status: 409, message: 'The export failed and has no file; start a new one.' },
  session_running: { status: 409, message: 'The session is still running; cancel it first.' },
  session_finished: { status: 409, message: 'The session already finished; there is nothing to cancel.' },
  payload_too_large: { status: 413, message: 'The request body is too large.' },
  unsupported_media_type: { status: 415, message: 'Send multipart/form-data with a file part named "file".' },
  too_many_jobs: { status: 429, message: 'Too many running jobs for this user; wait for one to finish or cancel one.' },
  internal: { status: 500, message: 'Something went wrong in the backend.' },
  shutting_down: { status: 503, message: 'The backend is shutting down; retry against another instance.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type BackendErrorCode = keyof typeof BACKEND_ERRORS;

/** An error with a code of the table above; `errorHandler` answers it as `{"error":{code,message}}`. */
export class BackendError extends Error {
  readonly status: number;

  constructor(
    readonly code: BackendErrorCode,
    message?: string,
    status?: number,
  ) {
    super(message ?? BACKEND_ERRORS[code].message);
    this.status = status ?? BACKEND_ERRORS[code].status;
    this.name = 'BackendError';
  }
}

/** Answers an unknown route with a JSON 404. */
export const notFound: RequestHandler = (_req, _res, next) => {
  next(new BackendError('not_found', 'No such route.'));
};

/**
 * Turns any error into `{"error":{code,message}}`; unexpected ones (not a `BackendError`, nor
 * a body parser's 4xx) are answered 500 `internal` and given to `log`. After headers were
 * sent it can only end the response.
 */
export function errorHandler(log?: (err: unknown) => void): ErrorRequestHandler {
  return (err: unknown, _req, res, _next) => {
    const error = asBackendError(err);
    if (error.code === 'internal') log?.(err);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res
      .status(error.status)
      .set({ 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' })
      .json({ error: { code: error.code, message: error.message } });
  };
}

function asBackendError(err: unknown): BackendError {
  if (err instanceof BackendError) return err;
  // express.json sets status and type on its errors (413 entity.too.large, 400 entity.parse.failed, ...).
  const status = (err as { status?: unknown }).status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    if (status === 413) return new BackendError('payload_too_large');
    const type = (err as { type?: unknown }).type;
    return new BackendError('bad_request', type === 'entity.parse.failed' ? 'The body is not valid JSON.' : undefined, status);
  }
  return new BackendError('internal');
}
