import type { Request, Response } from 'express';

const NO_PARAMS: Record<string, string> = Object.freeze({});

/**
 * Lets go of what Express and the router left on a request whose stream is attached: a held
 * stream keeps its `req` and `res` for hours, and all this for as long (heap snapshots of the
 * capacity bench):
 *
 * - `req.next`: Express's routing state (a `next` and a restore closure per router level, and
 *   what they hold), 2.2 KiB per stream. Nothing calls it once the stream is attached.
 * - `req._parsedUrl`: parseurl's cached `Url` and its strings; parsed again if anyone asks.
 * - `req.params`: the route's, in dictionary mode.
 * - `res.locals`: created without a prototype, so in dictionary mode (256 B for five
 *   entries); the request log reads it when the response closes, so its entries stay, in a
 *   plain object that shares one shape with every other stream's.
 *
 * Fields are overwritten, never deleted: deleting one would turn `req` into a dictionary too.
 */
export function shedRoutingState(req: Request, res: Response): void {
  (req as { next?: unknown }).next = undefined;
  (req as { _parsedUrl?: unknown })._parsedUrl = undefined;
  req.params = NO_PARAMS;
  res.locals = { ...res.locals };
}
