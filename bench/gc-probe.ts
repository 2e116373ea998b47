/**
 * Preloaded into the Node subjects and the bench backend (`node -r dist/bench/gc-probe.js`, which
 * run.ts adds to BENCH_RELAY_NODE_ARGS, BENCH_FLOOR_NODE_ARGS and BENCH_BACKEND_NODE_ARGS): with
 * BENCH_GC_DIR set, it appends every GC pause of the process to `<BENCH_GC_DIR>/<pid>.csv` as
 * `start,duration` (epoch ms, ms), so the fan-out report can say how much of a window the
 * process spent collecting and whether its longest pause lines up with the delays. No relay code
 * changes: the observer is V8's own `gc` performance entries.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { PerformanceObserver, performance } from 'node:perf_hooks';

const dir = process.env.BENCH_GC_DIR;
if (dir !== undefined && dir !== '') {
  const file = join(dir, `${process.pid}.csv`);
  let lines: string[] = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) lines.push(`${(performance.timeOrigin + entry.startTime).toFixed(1)},${entry.duration.toFixed(3)}\n`);
  }).observe({ entryTypes: ['gc'] });
  // Written a second at a time, off the event path, and once more on exit.
  const flush = (): void => {
    if (lines.length === 0) return;
    const text = lines.join('');
    lines = [];
    appendFileSync(file, text);
  };
  setInterval(flush, 1000).unref();
  process.on('exit', flush);
}
