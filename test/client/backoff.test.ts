import { backoffDelay, resolveReconnect, retryAfterMs } from '../../src/client/backoff';

const DEFAULTS = resolveReconnect();

test('the default waits are 3 s, x1.5, at most 60 s, each moved by at most 25 %', () => {
  const middle = () => 0.5;
  expect([1, 2, 3, 4, 5].map((n) => backoffDelay(n, DEFAULTS, middle))).toEqual([3000, 4500, 6750, 10125, 15188]);
  expect(backoffDelay(20, DEFAULTS, middle)).toBe(60_000);
  expect(backoffDelay(1, DEFAULTS, () => 0)).toBe(2250);
  expect(backoffDelay(1, DEFAULTS, () => 0.999999)).toBe(3750);
  expect(DEFAULTS.attempts).toBe(5);
});

test('Retry-After is read as seconds or as an HTTP date', () => {
  expect(retryAfterMs('10')).toBe(10_000);
  expect(retryAfterMs(new Date(5_000).toUTCString(), 2_000)).toBe(3_000);
  expect(retryAfterMs(null)).toBeUndefined();
  expect(retryAfterMs('soon')).toBeUndefined();
});

test('a bad reconnect option fails at createClient, naming the field', () => {
  expect(() => resolveReconnect({ factor: 0.5 })).toThrow(/reconnect.factor/);
  expect(() => resolveReconnect({ jitter: 1 })).toThrow(/reconnect.jitter/);
  expect(() => resolveReconnect({ attempts: 1.5 })).toThrow(/reconnect.attempts/);
});
