import type { RequestHandler } from 'express';
import { HttpError } from '../src/errors';

/** The scheme and authority of an absolute-form request target (`GET http://host/x`). */
const AUTHORITY = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;
/** A `.` or `..` segment, raw or percent-encoded (`%2e`, `%2E`, `.%2e`...). */
const DOT_SEGMENT = /^(?:\.|%2e){1,2}$/i;
/** A slash that is not a separator here but may become one further on: encoded, or a backslash. */
const DISGUISED_SLASH = /%2f|%5c|\\/i;

/**
 * Refuses (400 `invalid_path`) a path that has more than one spelling: dot segments, raw or
 * percent-encoded; encoded slashes and backslashes (raw or `%5c`); empty segments (`//`) but a
 * trailing slash. The relay routes on the path as sent, while the URL parser, the backend's
 * framework or a proxy in front of it normalizes: `/api/downloads/C/./events` missed the shared
 * stream route and reached the backend's stream route through the plain proxy, outside every
 * stream limit. Refused rather than normalized: no browser sends these (it normalizes first),
 * and one spelling per route leaves nothing for the relay and the backend to disagree about.
 */
export const canonicalPath: RequestHandler = (req, _res, next) => {
  const target = req.originalUrl.replace(AUTHORITY, '');
  const path = target.slice(0, target.search(/[?#]|$/));
  const segments = path.split('/').slice(1);
  const refused =
    DISGUISED_SLASH.test(path) || segments.some((segment, i) => DOT_SEGMENT.test(segment) || (segment === '' && i < segments.length - 1));
  next(refused ? new HttpError('invalid_path') : undefined);
};
