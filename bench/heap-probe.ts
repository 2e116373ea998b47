/**
 * Preloaded (`node --expose-gc -r dist/bench/heap-probe.js …`) into the relay and
 * the bench backend: on SIGUSR2 it collects garbage and prints
 * `{"type":"heap",…}` (process.memoryUsage() after a full GC) on stdout, for the
 * capacity scenario's heap-per-subscriber figure. With BENCH_HEAP_SNAPSHOT_DIR set
 * it also writes a heap snapshot there each time (see heapsnapshot.ts).
 */
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';

let taken = 0;

process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const usage = process.memoryUsage();
  const dir = process.env.BENCH_HEAP_SNAPSHOT_DIR;
  const snapshot = dir === undefined ? undefined : writeHeapSnapshot(join(dir, `${process.pid}-${taken++}.heapsnapshot`));
  process.stdout.write(`${JSON.stringify({ type: 'heap', gc: gc !== undefined, snapshot, ...usage })}\n`);
});
