/**
 * Preloaded (`node --expose-gc -r dist/bench/heap-probe.js …`) into the relay and
 * the bench backend: on SIGUSR2 it collects garbage and prints
 * `{"type":"heap",…}` (process.memoryUsage() after a full GC) on stdout, for the
 * capacity scenario's heap-per-subscriber figure.
 */
export {};

process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const usage = process.memoryUsage();
  process.stdout.write(`${JSON.stringify({ type: 'heap', gc: gc !== undefined, ...usage })}\n`);
});
