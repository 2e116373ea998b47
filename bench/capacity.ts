/**
 * Capacity scenario: idle subscribers (no events, over a fixed set of codes) are
 * added step by step until the target, the memory budget, or the open-file limit;
 * after each step the subject's RSS (and, for Node subjects, its heap after a full
 * GC) is read. Reports memory per subscriber and the time to connect them all, and with
 * several runs (every subject once per run, in turn) the pairs of each run (pairs.ts).
 */
import { fixed, sampleProcs } from './common';
import type { CapacityClientConfig } from './capacity-client';
import { type ScenarioOutcome, codeNames, describe } from './fanout';
import { type Lab, eachSubject, type Subject, type SubjectName, load1 } from './lab';
import { pairTable } from './pairs';
import type { Proc } from './proc';

export interface CapacitySettings {
  /** Subscribers to reach. */
  max: number;
  step: number;
  codes: number;
  /** Stop adding when the subject's RSS passes this. */
  budgetMb: number;
  concurrency: number;
  /** How often every subject runs, in turn. */
  runs: number;
}

export interface Step {
  subscribers: number;
  rssKb: number;
  heapUsed: number | undefined;
  /** Time this step's connections took, ms. */
  ms: number;
}

export interface CapacityRow {
  subject: SubjectName;
  run: number;
  target: number;
  steps: Step[];
  clients: number;
  failed: number;
  closed: number;
  stoppedBecause: string;
  load1: number;
  notes: string[];
}

interface HeapMessage {
  readonly type: 'heap';
  readonly heapUsed: number;
}

/** Full GC in `proc` (heap probe), then its heap; undefined when the subject has no Node process. */
export async function heapAfterGc(proc: Proc | undefined): Promise<number | undefined> {
  if (!proc) return undefined;
  process.kill(proc.pid, 'SIGUSR2');
  const message = await proc.message<HeapMessage & { [key: string]: unknown }>('heap', 30_000);
  return message.heapUsed;
}

/** Least-squares slope of y over x. */
function slope(points: readonly (readonly [number, number])[]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

async function runOne(lab: Lab, settings: CapacitySettings, name: SubjectName, run: number): Promise<CapacityRow> {
  const startLoad = load1();
  const notes: string[] = [];
  const codes = codeNames(settings.codes);
  // One process holds one descriptor per stream: the relay (plus one per code upstream), the
  // backend for direct, and the backend behind nginx too (nginx's own two per stream are spread
  // over workers). Keep headroom for everything else.
  const target = Math.min(settings.max, lab.nofile - 300 - settings.codes);
  if (target < settings.max) {
    const holder = name.startsWith('relay') ? 'the relay' : name === 'nginx' ? 'the backend behind nginx' : 'the backend';
    notes.push(`stopped at ${target}, not ${settings.max}: open-file limit ${lab.nofile} per process (${holder} holds one per stream)`);
  }
  const perClient = lab.nofile - 300;
  const clientCount = Math.max(1, Math.ceil(target / perClient));
  if (clientCount > 1) notes.push(`${clientCount} load client processes (open-file limit ${lab.nofile} each)`);

  const backend = await lab.startBenchBackend(lab.subjectCore);
  let subject: Subject | undefined;
  const clients: Proc[] = [];
  try {
    subject = await lab.startSubject(name, backend, lab.subjectCore, target);
    for (let i = 0; i < clientCount; i++) {
      const config: CapacityClientConfig = {
        baseUrl: subject.baseUrl,
        pathTemplate: `${subject.prefix}/downloads/{code}/events`,
        codes,
        auth: subject.auth,
        firstIndex: i * 1_000_000,
        concurrency: Math.max(1, Math.floor(settings.concurrency / clientCount)),
      };
      const client = lab.spawnClient(`capacity-client-${i}`, 'capacity-client', config);
      clients.push(client);
      await client.message('ready', 15_000);
    }
    const heapBase = await heapAfterGc(subject.node);
    const steps: Step[] = [{ subscribers: 0, rssKb: sampleProcs(subject.pids()).rssKb, heapUsed: heapBase, ms: 0 }];
    let total = 0;
    let failed = 0;
    let closed = 0;
    let failures: Record<string, number> = {};
    let stoppedBecause = `reached ${target}`;
    while (total < target) {
      const count = Math.min(settings.step, target - total);
      clients.forEach((client, i) => client.send({ cmd: 'open', count: Math.floor(count / clientCount) + (i < count % clientCount ? 1 : 0) }));
      const reports = await Promise.all(
        clients.map((client) =>
          client.message<{ type: 'opened'; open: number; failed: number; closed: number; failures: Record<string, number>; ms: number }>('opened', 120_000 + count * 20),
        ),
      );
      // The clients open in parallel, each timing its own opens (tokens are signed before).
      const ms = Math.max(...reports.map((r) => r.ms));
      total = reports.reduce((sum, r) => sum + r.open, 0);
      failed = reports.reduce((sum, r) => sum + r.failed, 0);
      closed = reports.reduce((sum, r) => sum + r.closed, 0);
      failures = {};
      for (const r of reports) for (const [cause, n] of Object.entries(r.failures)) failures[cause] = (failures[cause] ?? 0) + n;
      const heapUsed = await heapAfterGc(subject.node);
      const rssKb = sampleProcs(subject.pids()).rssKb;
      steps.push({ subscribers: total, rssKb, heapUsed, ms });
      console.error(`bench: capacity: ${name}: ${total} open, RSS ${fixed(rssKb / 1024, 0)} MiB${heapUsed === undefined ? '' : `, heap ${fixed(heapUsed / 2 ** 20, 0)} MiB`}`);
      if (failed > 0) {
        stoppedBecause = `${failed} streams failed to open (${describe(failures)})`;
        break;
      }
      if (rssKb / 1024 > settings.budgetMb) {
        stoppedBecause = `memory budget ${settings.budgetMb} MiB reached`;
        break;
      }
    }
    if (closed > 0) notes.push(`${closed} streams closed while idle`);
    const diagnostics = subject.diagnostics?.();
    if (diagnostics !== undefined) notes.push(diagnostics);
    if (name === 'nginx' && lab.nginxWorkers > 1) notes.push(`${lab.nginxWorkers} nginx workers (open-file limit)`);
    return { subject: name, run, target, steps, clients: clientCount, failed, closed, stoppedBecause, load1: startLoad, notes };
  } finally {
    await Promise.all(clients.map((client) => client.stop('SIGTERM', 2000)));
    await subject?.stop();
    await backend.proc.stop();
  }
}

/** Memory per subscriber and connect time of one row; undefined when it opened none. */
function figures(row: CapacityRow): { n: number; rssWhole: number; rssMarginal: number; heapWhole: number; heapMarginal: number; connectS: number; first: Step; last: Step } | undefined {
  const first = row.steps[0];
  const last = row.steps[row.steps.length - 1];
  if (!first || !last || last.subscribers === 0) return undefined;
  const n = last.subscribers;
  const measured = row.steps.slice(1);
  return {
    n,
    first,
    last,
    rssWhole: (last.rssKb - first.rssKb) / n,
    rssMarginal: slope(measured.map((s) => [s.subscribers, s.rssKb])),
    heapWhole: last.heapUsed !== undefined && first.heapUsed !== undefined ? (last.heapUsed - first.heapUsed) / 1024 / n : NaN,
    heapMarginal: slope(measured.filter((s) => s.heapUsed !== undefined).map((s) => [s.subscribers, (s.heapUsed ?? 0) / 1024])),
    connectS: row.steps.reduce((sum, s) => sum + s.ms, 0) / 1000,
  };
}

export async function runCapacity(lab: Lab, settings: CapacitySettings, subjects: readonly SubjectName[]): Promise<ScenarioOutcome> {
  const rows: CapacityRow[] = [];
  const failures: string[] = [];
  // Every subject once per run, in turn, so that a busy minute on the machine falls on all of them.
  for (let run = 1; run <= settings.runs; run++) {
    const ran = await eachSubject(
      (name) => `capacity: ${name} (up to ${settings.max} idle subscribers over ${settings.codes} codes${settings.runs > 1 ? `, run ${run}/${settings.runs}` : ''})`,
      subjects,
      (name) => runOne(lab, settings, name, run),
    );
    rows.push(...ran.rows);
    failures.push(...ran.failures);
  }
  return { markdown: capacityReport(settings, rows, failures), data: { settings, rows, failures }, failed: failures.length > 0 };
}

/** The capacity scenario's Markdown: every row, its notes, and with several runs the pairs of each run. */
export function capacityReport(settings: CapacitySettings, rows: readonly CapacityRow[], failures: readonly string[]): string {
  const several = settings.runs > 1;
  const lines = [
    `### Capacity: idle subscribers over ${settings.codes} codes, added ${settings.step} at a time${several ? `, ${settings.runs} runs` : ''}`,
    '',
    `| subject |${several ? ' run |' : ''} subscribers held | stopped because | time to connect all (s) | RSS MiB (before / after) | RSS KiB / subscriber (whole / marginal) | heap KiB / subscriber (whole / marginal) | load avg |`,
    `|---|${several ? '---|' : ''}---|---|---|---|---|---|---|`,
  ];
  for (const row of rows) {
    const f = figures(row);
    if (f === undefined) continue;
    lines.push(
      `| ${row.subject} |${several ? ` ${row.run} |` : ''} ${f.n} | ${row.stoppedBecause} | ${fixed(f.connectS, 2)} | ${fixed(f.first.rssKb / 1024, 0)} / ${fixed(f.last.rssKb / 1024, 0)} | ${fixed(f.rssWhole, 1)} / ${fixed(f.rssMarginal, 1)} | ${row.subject === 'nginx' ? 'n/a' : `${fixed(f.heapWhole, 1)} / ${fixed(f.heapMarginal, 1)}`} | ${fixed(row.load1, 1)} |`,
    );
  }
  lines.push('');
  for (const row of rows) if (row.notes.length > 0) lines.push(`- ${row.subject}${several ? `, run ${row.run}` : ''}: ${row.notes.join('; ')}`);
  for (const line of failures) lines.push(`- ${line}`);
  lines.push(
    '',
    'RSS: VmRSS of the subject (nginx: master + workers; direct: the backend) after a full GC in Node subjects. ' +
      '"whole" = (RSS after − RSS before the first stream) / subscribers, so it includes code compiled on the way; "marginal" = least-squares slope over the steps. ' +
      'Heap: heapUsed after `gc()` (heap probe preloaded with --expose-gc). Connect time: the sum of the steps, each opened with bounded concurrency, JWT per subscriber for the relay.',
  );
  // Pairs compare like with like: rows that held the same number of streams.
  const paired = rows.filter((row) => figures(row) !== undefined);
  const pairs = pairTable('Capacity pairs of the same run', paired, { name: 'subscribers held', of: (row) => String(figures(row)?.n ?? 0) }, [
    { name: 'RSS KiB / subscriber, whole', of: (row) => figures(row)?.rssWhole ?? NaN },
    { name: 'RSS, marginal', of: (row) => figures(row)?.rssMarginal ?? NaN },
    { name: 'heap KiB / subscriber, whole', of: (row) => figures(row)?.heapWhole ?? NaN },
    { name: 'heap, marginal', of: (row) => figures(row)?.heapMarginal ?? NaN },
    { name: 'time to connect all', of: (row) => figures(row)?.connectS ?? NaN },
  ]);
  if (pairs !== '') lines.push('', pairs);
  return `${lines.join('\n')}\n`;
}
