import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { inSequence } from '../../middleware/in-sequence';

const req = {} as Request;
const res = {} as Response;

function run(handlers: RequestHandler[]): Promise<unknown> {
  return new Promise((resolve) => {
    inSequence(handlers)(req, res, ((err?: unknown) => resolve(err ?? 'done')) as NextFunction);
  });
}

test('handlers run in order, each after the previous called next, and the last next goes out', async () => {
  const order: number[] = [];
  const handler = (n: number): RequestHandler => (_req, _res, next) => {
    order.push(n);
    setImmediate(next);
  };
  expect(await run([handler(1), handler(2), handler(3)])).toBe('done');
  expect(order).toEqual([1, 2, 3]);
});

test('an error passed to next, thrown, or a rejected promise stops the sequence and goes out', async () => {
  const never: RequestHandler = () => {
    throw new Error('must not run');
  };
  const boom = new Error('boom');
  expect(await run([(_req, _res, next) => next(boom), never])).toBe(boom);
  expect(
    await run([
      () => {
        throw boom;
      },
      never,
    ]),
  ).toBe(boom);
  expect(await run([() => Promise.reject(boom), never])).toBe(boom);
  expect(await run([(_req, _res, next) => next('route'), never])).toBe('route');
});

test('a handler that answers ends the sequence: nothing after it runs and next is not called', async () => {
  let outer = false;
  let after = false;
  inSequence([
    () => undefined,
    () => {
      after = true;
    },
  ])(req, res, () => {
    outer = true;
  });
  await new Promise((resolve) => setImmediate(resolve));
  expect(after).toBe(false);
  expect(outer).toBe(false);
});
