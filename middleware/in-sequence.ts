import type { RequestHandler } from 'express';

/**
 * Express handlers run one after the other as one handler, as a route runs its own: without
 * the router matching a layer between each two. Opening a stream runs a dozen handlers
 * (request log, headers, CORS, path check, authentication, limits); as router layers, each
 * would be matched again on every open. An error (passed to `next`, thrown, or a
 * rejected promise), `'route'` and `'router'` go to the outer `next`, as from a route.
 */
export function inSequence(handlers: readonly RequestHandler[]): RequestHandler {
  return (req, res, done) => {
    let index = 0;
    const step = (err?: unknown): void => {
      if (err !== undefined && err !== null) return done(err);
      const handler = handlers[index++];
      if (handler === undefined) return done();
      try {
        const result: unknown = handler(req, res, step);
        if (result instanceof Promise) result.catch((cause: unknown) => step(cause ?? new Error('Rejected promise')));
      } catch (cause) {
        step(cause);
      }
    };
    step();
  };
}
