/**
 * Ratios between two subjects of the same run: the relay against the relay of another checkout
 * (a change's cost), the relay without Node internals against the relay (the switch's cost), and
 * every subject against the floor. A machine that is busier in one minute than the next moves both
 * sides of a pair alike, so a pair's ratio is steadier than either figure; showing it run by run
 * shows whether a difference keeps its sign.
 */
import { fixed } from './common';
import type { SubjectName } from './lab';

/** What a row must say to be paired: its subject, its run, and whatever `groupOf` reads (the size). */
interface PairedRow {
  readonly subject: SubjectName;
  readonly run: number;
}

interface Measure<Row> {
  readonly name: string;
  of(row: Row): number;
}

/** Numerator and denominator, in the order the report shows them. */
const CHANGES: readonly (readonly [SubjectName, SubjectName])[] = [
  ['relay', 'relay-before'],
  ['relay-plain', 'relay'],
];

/** The pairs among `subjects`: the changes first, then every other subject against the floor. */
function pairsOf(subjects: ReadonlySet<SubjectName>): (readonly [SubjectName, SubjectName])[] {
  const pairs = CHANGES.filter(([a, b]) => subjects.has(a) && subjects.has(b));
  if (subjects.has('floor')) for (const s of subjects) if (s !== 'floor') pairs.push([s, 'floor']);
  return pairs;
}

function median(values: readonly number[]): number {
  const sorted = values.filter(Number.isFinite).sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return NaN;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** `median (run 1, run 2, …)`, or n/a. */
function ratioCell(ratios: readonly number[]): string {
  const middle = median(ratios);
  if (!Number.isFinite(middle)) return 'n/a';
  const each = ratios.map((r) => (Number.isFinite(r) ? fixed(r, 2) : 'n/a'));
  return ratios.length === 1 ? fixed(middle, 2) : `**${fixed(middle, 2)}** (${each.join(', ')})`;
}

/**
 * One line per group (a size, say) and pair: for each measure, the ratio a ÷ b in each run where both
 * ran, and their median. Empty when no pair ran.
 */
export function pairTable<Row extends PairedRow>(title: string, rows: readonly Row[], group: { name: string; of(row: Row): string }, measures: readonly Measure<Row>[]): string {
  const groupOf = (row: Row): string => group.of(row);
  const pairs = pairsOf(new Set(rows.map((r) => r.subject)));
  if (pairs.length === 0) return '';
  const lines = [
    `### ${title}`,
    '',
    `| ${[group.name, 'ratio', ...measures.map((m) => m.name)].join(' | ')} |`,
    `|${'---|'.repeat(measures.length + 2)}`,
  ];
  const runs = [...new Set(rows.map((r) => r.run))].sort((x, y) => x - y);
  for (const group of [...new Set(rows.map(groupOf))]) {
    for (const [a, b] of pairs) {
      const row = (subject: SubjectName, run: number): Row | undefined => rows.find((r) => r.subject === subject && r.run === run && groupOf(r) === group);
      const both = runs.flatMap((run) => {
        const ra = row(a, run);
        const rb = row(b, run);
        return ra === undefined || rb === undefined ? [] : [[ra, rb] as const];
      });
      if (both.length === 0) continue;
      const cells = measures.map((m) => ratioCell(both.map(([ra, rb]) => m.of(ra) / m.of(rb))));
      lines.push(`| ${group} | ${a} ÷ ${b} | ${cells.join(' | ')} |`);
    }
  }
  lines.push(
    '',
    'Each cell: the median of the ratios in bold, then the ratio in each run (a ÷ b, both measured in that run, one after the other). ' +
      'Below 1: a costs less than b. A ratio that changes side of 1 from run to run is within the noise of this machine.',
  );
  return `${lines.join('\n')}\n`;
}
