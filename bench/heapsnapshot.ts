/**
 * Compares two V8 heap snapshots (e.g. from the capacity scenario with
 * BENCH_HEAP_SNAPSHOT_DIR set): the growth of retained self size by object kind
 * (constructor name for objects, else the node type), divided by how many
 * subscribers were added between them, so it reads as bytes per subscriber.
 *
 *   node dist/bench/heapsnapshot.js BEFORE.heapsnapshot AFTER.heapsnapshot [--per 2500] [--top 30]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size and count by kind. */
function tally(file: string): Map<string, { bytes: number; count: number }> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const out = new Map<string, { bytes: number; count: number }>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt] ?? 0] ?? '?';
    const name = snap.strings[snap.nodes[i + nameAt] ?? 0] ?? '?';
    const kind = type === 'object' || type === 'closure' ? `${type} ${name}` : type === 'native' ? `native ${name.slice(0, 60)}` : `(${type})`;
    const entry = out.get(kind) ?? { bytes: 0, count: 0 };
    entry.bytes += snap.nodes[i + sizeAt] ?? 0;
    entry.count += 1;
    out.set(kind, entry);
  }
  return out;
}

function main(): void {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { per: { type: 'string' }, top: { type: 'string' } } });
  const [beforeFile, afterFile] = positionals;
  if (beforeFile === undefined || afterFile === undefined) throw new Error('usage: heapsnapshot.js BEFORE AFTER [--per N] [--top N]');
  const per = Number(values.per ?? 1);
  const top = Number(values.top ?? 30);
  const before = tally(beforeFile);
  const after = tally(afterFile);
  const rows: { kind: string; bytes: number; count: number }[] = [];
  let total = 0;
  for (const [kind, a] of after) {
    const b = before.get(kind) ?? { bytes: 0, count: 0 };
    rows.push({ kind, bytes: a.bytes - b.bytes, count: a.count - b.count });
    total += a.bytes - b.bytes;
  }
  rows.sort((x, y) => y.bytes - x.bytes);
  console.log(`growth: ${(total / per).toFixed(0)} bytes per unit (÷ ${per}), by kind:`);
  console.log('  bytes/unit  objects/unit  kind');
  for (const row of rows.slice(0, top)) console.log(`  ${(row.bytes / per).toFixed(0).padStart(10)}  ${(row.count / per).toFixed(2).padStart(12)}  ${row.kind}`);
}

main();
