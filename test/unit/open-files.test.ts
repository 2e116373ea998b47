import { descriptorBudget, filesNeeded, openFileLimit } from '../../config/open-files';

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

test.each([512, 1024, 20_000, 1_048_576])('with %d open files, clients, proxied requests and topic upstreams all fit, and streams stay under the socket cap', (limit) => {
  const caps = descriptorBudget(limit);
  expect(filesNeeded(caps)).toBeLessThanOrEqual(limit);
  expect(caps.maxConnections).toBeLessThan(caps.maxSockets);
  expect(caps.maxConnections).toBeGreaterThanOrEqual(caps.maxSockets * 0.85);
  // A multiplexed stream's topics each hold an upstream: they have a share of their own, as large as the clients'.
  expect(caps.maxUpstreams).toBe(caps.maxSockets);
});

test('the numbers for 1024 and 20000 descriptors', () => {
  expect(descriptorBudget(1024)).toEqual({ maxSockets: 256, maxConnections: 231, maxUpstreams: 256 });
  expect(descriptorBudget(20_000)).toEqual({ maxSockets: 6581, maxConnections: 5923, maxUpstreams: 6581 });
});

test('a tiny limit still leaves a few sockets and upstreams', () => {
  expect(descriptorBudget(100)).toEqual({ maxSockets: 16, maxConnections: 8, maxUpstreams: 16 });
});
