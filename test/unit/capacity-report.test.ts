import { type CapacityRow, type CapacitySettings, type Step, capacityReport } from '../../bench/capacity';
import type { SubjectName } from '../../bench/lab';

const SETTINGS: CapacitySettings = { max: 2000, step: 1000, codes: 100, budgetMb: 2048, concurrency: 100, runs: 2 };

/** A row that held 2,000 idle streams in two steps, `kib` KiB of RSS and heap each, opened in `connectS` seconds. */
function row(subject: SubjectName, run: number, kib: number, connectS: number): CapacityRow {
  const step = (subscribers: number, ms: number): Step => ({ subscribers, rssKb: 50_000 + kib * subscribers, heapUsed: 10_000_000 + kib * 1024 * subscribers, ms });
  return {
    subject,
    run,
    target: 2000,
    steps: [step(0, 0), step(1000, (connectS * 1000) / 2), step(2000, (connectS * 1000) / 2)],
    clients: 1,
    failed: 0,
    closed: 0,
    stoppedBecause: 'reached 2000',
    load1: 0.5,
    notes: [],
  };
}

/** The table rows of the section under `heading`. */
function section(markdown: string, heading: string): string[] {
  const from = markdown.slice(markdown.indexOf(heading) + heading.length);
  const end = from.indexOf('\n### ');
  return (end === -1 ? from : from.slice(0, end)).split('\n').filter((line) => line.startsWith('| 2000 |') || /^\| [a-z-]+ \| \d \|/.test(line));
}

test('capacity over several runs gives each run its row, and relay ÷ relay-before and each ÷ the floor run by run', () => {
  const rows = [
    row('floor', 1, 10, 1),
    row('relay-before', 1, 20, 2),
    row('relay', 1, 21, 2),
    row('floor', 2, 10, 1),
    row('relay-before', 2, 20, 4),
    row('relay', 2, 19, 2),
  ];
  const markdown = capacityReport(SETTINGS, rows, []);
  expect(section(markdown, '### Capacity: idle')).toHaveLength(6);
  expect(section(markdown, '### Capacity: idle')[4]).toMatch(/^\| relay-before \| 2 \| 2000 \| reached 2000 \| 4\.00 \|/);
  const pairs = section(markdown, '### Capacity pairs of the same run');
  expect(pairs.map((line) => line.split(' | ')[1])).toEqual(['relay ÷ relay-before', 'relay-before ÷ floor', 'relay ÷ floor']);
  // RSS whole, RSS marginal, heap whole, heap marginal, connect time.
  expect(pairs[0]).toBe('| 2000 | relay ÷ relay-before | **1.00** (1.05, 0.95) | **1.00** (1.05, 0.95) | **1.00** (1.05, 0.95) | **1.00** (1.05, 0.95) | **0.75** (1.00, 0.50) |');
  expect(pairs[1]).toMatch(/^\| 2000 \| relay-before ÷ floor \| \*\*2\.00\*\* \(2\.00, 2\.00\) \|/);
});

test('capacity with one run keeps its table without a run column, and no pairs without a second subject', () => {
  const markdown = capacityReport({ ...SETTINGS, runs: 1 }, [row('relay', 1, 20, 2)], []);
  expect(markdown).toContain('| subject | subscribers held |');
  expect(markdown).toMatch(/\n\| relay \| 2000 \| reached 2000 \| 2\.00 \|/);
  expect(markdown).not.toContain('pairs of the same run');
});
