/**
 * Summarizes V8 .cpuprofile files (from `node --cpu-prof`, e.g.
 * BENCH_RELAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" npm run bench …):
 * self time by area (Node's own modules, each package, this project's files, GC,
 * idle) and by function, over the whole profile or a window of it.
 *
 *   node dist/bench/cpuprofile.js FILE.cpuprofile [--top 25] [--from-s 5] [--to-s 20] [--inclusive name,name]
 *
 * --inclusive: time spent in each named function and everything it called
 * (a function name, name@file-part to tell same-named functions apart, or *@file-part
 * for every function of a file or package).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
}

/** Which part of the program a frame belongs to. */
function area(url: string, name: string): string {
  if (url === '') return name.startsWith('(') ? name : '(native/V8 builtins)';
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0] === 'internal' ? url.slice(14).split('/')[0] : url.slice(5)}`;
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) {
    const rest = url.slice(modules + 13).split('/');
    return rest[0]?.startsWith('@') === true ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? url);
  }
  const dist = url.lastIndexOf('/dist/');
  return dist >= 0 ? url.slice(dist + 6) : url;
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string' }, 'from-s': { type: 'string' }, 'to-s': { type: 'string' }, inclusive: { type: 'string' } },
  });
  const top = Number(values.top ?? 25);
  const fromUs = Number(values['from-s'] ?? 0) * 1e6;
  const toUs = values['to-s'] === undefined ? Infinity : Number(values['to-s']) * 1e6;
  for (const file of positionals) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
    const wanted = (values.inclusive ?? '').split(',').filter((w) => w !== '');
    const inclusive = new Map<string, number>(wanted.map((w) => [w, 0]));
    const matches = (node: ProfileNode, want: string): boolean => {
      const [name, file] = want.split('@');
      return (name === '*' || node.callFrame.functionName === name) && (file === undefined || node.callFrame.url.includes(file));
    };
    const selfUs = new Map<number, number>();
    let t = 0;
    let total = 0;
    profile.samples.forEach((id, i) => {
      const delta = profile.timeDeltas[i + 1] ?? 0;
      t += profile.timeDeltas[i] ?? 0;
      if (t < fromUs || t > toUs) return;
      selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
      total += delta;
      if (wanted.length === 0) return;
      const hit = new Set<string>();
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const node = byId.get(at);
        if (node) for (const w of wanted) if (matches(node, w)) hit.add(w);
      }
      for (const w of hit) inclusive.set(w, (inclusive.get(w) ?? 0) + delta);
    });
    const areas = new Map<string, number>();
    const functions = new Map<string, number>();
    let idle = 0;
    for (const [id, us] of selfUs) {
      const node = byId.get(id);
      if (!node) continue;
      const { functionName, url, lineNumber } = node.callFrame;
      if (functionName === '(idle)') idle += us;
      const a = area(url, functionName);
      areas.set(a, (areas.get(a) ?? 0) + us);
      const key = `${functionName || '(anonymous)'} ${a}${url === '' ? '' : `:${lineNumber + 1}`}`;
      functions.set(key, (functions.get(key) ?? 0) + us);
    }
    const busy = total - idle;
    const pct = (us: number): string => `${((us / busy) * 100).toFixed(1)} %`;
    console.log(`\n${file}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s not idle (percentages of not idle)`);
    console.log('\nself time by area:');
    for (const [a, us] of [...areas].filter(([a]) => a !== '(idle)').sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`  ${pct(us).padStart(7)}  ${a}`);
    if (wanted.length > 0) {
      console.log('\ninclusive time (the function and all it called):');
      for (const [w, us] of inclusive) console.log(`  ${pct(us).padStart(7)}  ${w}`);
    }
    console.log('\nself time by function:');
    for (const [f, us] of [...functions].filter(([f]) => !f.startsWith('(idle)')).sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`  ${pct(us).padStart(7)}  ${f}`);
  }
}

main();
