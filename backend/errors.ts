import { HttpError } from '../src/errors';

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

/**
 * An error with a code of the table above. It is the relay's `HttpError` with the backend's
 * own codes, so the relay's `notFound` and `errorHandler` (middleware/errors.ts) answer it.
 */
export class BackendError extends HttpError {
  constructor(
    override readonly code: BackendErrorCode,
    message?: string,
  ) {
    super(code, message ?? BACKEND_ERRORS[code].message, BACKEND_ERRORS[code].status);
    this.name = 'BackendError';
  }
}
