/** Every error a client can get, with its status and a message that says what to do. */
export const ERROR_CODES = {
  bad_request: { status: 400, message: 'The request is malformed.' },
  invalid_id: { status: 400, message: 'The id in the path must be 1-128 characters of A-Z, a-z, 0-9, "_" or "-".' },
  invalid_path: { status: 400, message: 'The path must not contain dot segments (. or ..), empty segments, backslashes or encoded slashes, raw or percent-encoded; send it as a browser would.' },
  invalid_last_event_id: { status: 400, message: 'Last-Event-ID must be at most 256 characters, without control characters (CR, LF, NUL) or characters past U+00FF.' },
  invalid_topic: { status: 400, message: 'Each topic must be download:CODE or session:SESSION_ID (ids of 1-128 characters of A-Z, a-z, 0-9, "_" or "-").' },
  too_many_topics: { status: 400, message: 'Give at least one topic and at most MAX_TOPICS_PER_STREAM (32 by default) on one stream.' },
  invalid_cursor: { status: 400, message: 'Last-Event-ID is not a cursor of this relay: resume with the id of the last event received, or without one.' },
  unauthorized: { status: 401, message: 'Send a token: Authorization: Bearer <jwt>, or the access_token cookie.' },
  invalid_token: { status: 401, message: 'The token is not valid.' },
  token_expired: { status: 401, message: 'The token has expired; get a new one.' },
  admin_unauthorized: { status: 401, message: 'Send the admin key: Authorization: Bearer <ADMIN_API_KEY>, or as the password of HTTP Basic auth (any user name).' },
  forbidden: { status: 403, message: 'This user may not do that.' },
  not_found: { status: 404, message: 'No such resource for this user.' },
  stream_not_found: { status: 404, message: 'No such answer for this user: its id is unknown, it ended longer ago than the linger period, or it was cancelled.' },
  payload_too_large: { status: 413, message: 'The request body is too large.' },
  headers_too_large: { status: 431, message: 'The request carries too many headers, or too large ones; send fewer.' },
  too_many_connections: { status: 429, message: 'Too many open streams; close one or retry later.' },
  rate_limited: { status: 429, message: 'Too many requests; retry later.' },
  bad_gateway: { status: 502, message: 'The backend could not be reached; retry later.' },
  upstream_not_event_stream: { status: 502, message: 'The backend answered with something other than an event stream.' },
  upstream_redirect_refused: { status: 502, message: 'The backend redirected the stream where the relay may not follow.' },
  upstream_unavailable: { status: 502, message: 'The backend stream could not be reached; retry later.' },
  over_capacity: { status: 503, message: 'The relay is at capacity; retry later.' },
  shutting_down: { status: 503, message: 'The relay is shutting down; retry.' },
  redis_unavailable: { status: 503, message: "This relay ended the user's streams, but Redis did not take the message for the other relays; retry once Redis is back." },
  gateway_timeout: { status: 504, message: 'The backend did not answer in time; retry later.' },
  internal: { status: 500, message: 'Something went wrong in the relay.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error with a registered code: the error middleware answers it as `{"error":{code,message}}`. */
export class HttpError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode | string,
    message?: string,
    status?: number,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    const known = (ERROR_CODES as Record<string, { status: number; message: string }>)[code];
    super(message ?? known?.message ?? code);
    this.status = status ?? known?.status ?? 500;
    this.name = 'HttpError';
  }
}

/** Headers of every error answer besides its own: never cached, never sniffed as anything but JSON. */
export const ERROR_HEADERS: Readonly<Record<string, string>> = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' };

/** The JSON body of an error answer. */
export function errorBody(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}
