import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RequestHandler } from 'express';
import { HttpError } from '../src/errors';

/** Where `npm run build` writes the browser client (esbuild, one ES module). */
const BUNDLE = 'client/sse-relay-client.mjs';

/**
 * The built bundle: beside the compiled routes (`dist/routes` → `dist/client`), or under
 * `dist/` when the routes run from source (ts-jest, ts-node).
 */
function findBundle(): string | undefined {
  return [join(__dirname, '..', BUNDLE), join(__dirname, '..', 'dist', BUNDLE)].find((path) => existsSync(path));
}

/**
 * `GET /client.js`: the browser client as an ES module, with no auth. Read once; answered with a
 * strong ETag (its content hash), so a browser revalidates in one round trip and gets a 304.
 */
export function clientScript(file: string | undefined = findBundle()): RequestHandler {
  let script: { body: Buffer; etag: string } | undefined;
  return (req, res, next) => {
    if (file === undefined) {
      next(new HttpError('not_found', 'The browser client is not built: run `npm run build`.'));
      return;
    }
    if (script === undefined) {
      const body = readFileSync(file);
      script = { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
    }
    res.set({
      'Content-Type': 'text/javascript; charset=utf-8',
      // Short: the URL has no version, so an upgraded relay's client reaches pages within minutes.
      'Cache-Control': 'public, max-age=300',
      ETag: script.etag,
      'X-Content-Type-Options': 'nosniff',
      // A module script from another origin is fetched in CORS mode; the file is public.
      'Access-Control-Allow-Origin': '*',
    });
    if (req.fresh) {
      res.status(304).end();
      return;
    }
    res.send(script.body);
  };
}
