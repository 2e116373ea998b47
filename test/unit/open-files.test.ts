import { filesNeeded, openFileLimit, socketBudget } from '../../config/open-files';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max processes             63704                63704                processes
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

test('the soft open-file limit is read from /proc/self/limits', () => {
  expect(openFileLimit(() => LIMITS)).toBe(1024);
  expect(openFileLimit(() => LIMITS.replace('1024                 524288', 'unlimited            unlimited'))).toBeUndefined();
  expect(
    openFileLimit(() => {
      throw new Error('ENOENT');
    }),
  ).toBeUndefined();
  if (process.platform === 'linux') expect(openFileLimit()).toBeGreaterThan(0);
});

test.each([1024, 20_000, 1_048_576])('with %d open files, clients and their upstreams fit, and streams stay under the socket cap', (limit) => {
  const { maxSockets, maxConnections } = socketBudget(limit);
  expect(filesNeeded(maxSockets)).toBeLessThanOrEqual(limit);
  expect(maxConnections).toBeLessThan(maxSockets);
  expect(maxConnections).toBeGreaterThanOrEqual(maxSockets * 0.85);
});

test('a tiny limit still leaves a few sockets', () => {
  expect(socketBudget(100)).toEqual({ maxSockets: 16, maxConnections: 8 });
});
