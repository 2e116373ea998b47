/**
 * Capacity scenario: idle subscribers (no events, over a fixed set of codes) are
 * added step by step until the target, the memory budget, or the open-file limit;
 * after each step the subject's RSS (and, for Node subjects, its heap after a full
 * GC) is read. Reports memory per subscriber and the time to connect them all.
 */
import { fixed, sampleProcs } from './common';
import type { CapacityClientConfig } from './capacity-client';
import { type ScenarioOutcome, codeNames, describe } from './fanout';
import { type Lab, eachSubject, type Subject, type SubjectName, load1 } from './lab';
import type { Proc } from './proc';

export interface CapacitySettings {
  /** Subscribers to reach. */
  max: number;
  step: number;
  codes: number;
  /** Stop adding when the subject's RSS passes this. */
  budgetMb: number;
  concurrency: number;
}

interface Step {
  subscribers: number;
  rssKb: number;
  heapUsed: number | undefined;
  /** Time this step's connections took, ms. */
  ms: number;
}

interface CapacityRow {
  subject: SubjectName;
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

async function runOne(lab: Lab, settings: CapacitySettings, name: SubjectName): Promise<CapacityRow> {
  const startLoad = load1();
  const notes: string[] = [];
  const codes = codeNames(settings.codes);
  // One process holds one descriptor per stream: the relay (plus one per code upstream), the
  // backend for direct, and the backend behind nginx too (nginx's own two per stream are spread
  // over workers). Keep headroom for everything else.
  const target = Math.min(settings.max, lab.nofile - 300 - settings.codes);
  if (target < settings.max) {
    const holder = name === 'relay' || name === 'relay-plain' ? 'the relay' : name === 'nginx' ? 'the backend behind nginx' : 'the backend';
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
    return { subject: name, target, steps, clients: clientCount, failed, closed, stoppedBecause, load1: startLoad, notes };
  } finally {
    await Promise.all(clients.map((client) => client.stop('SIGTERM', 2000)));
    await subject?.stop();
    await backend.proc.stop();
  }
}

export async function runCapacity(lab: Lab, settings: CapacitySettings, subjects: readonly SubjectName[]): Promise<ScenarioOutcome> {
  const { rows, failures } = await eachSubject(
    (name) => `capacity: ${name} (up to ${settings.max} idle subscribers over ${settings.codes} codes)`,
    subjects,
    (name) => runOne(lab, settings, name),
  );
  const lines = [
    `### Capacity: idle subscribers over ${settings.codes} codes, added ${settings.step} at a time`,
    '',
    '| subject | subscribers held | stopped because | time to connect all (s) | RSS MiB (before / after) | RSS KiB / subscriber (whole / marginal) | heap KiB / subscriber (whole / marginal) | load avg |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const first = row.steps[0];
    const last = row.steps[row.steps.length - 1];
    if (!first || !last || last.subscribers === 0) continue;
    const n = last.subscribers;
    const measured = row.steps.slice(1);
    const rssWhole = (last.rssKb - first.rssKb) / n;
    const rssMarginal = slope(measured.map((s) => [s.subscribers, s.rssKb]));
    const heapWhole = last.heapUsed !== undefined && first.heapUsed !== undefined ? (last.heapUsed - first.heapUsed) / 1024 / n : NaN;
    const heapMarginal = slope(measured.filter((s) => s.heapUsed !== undefined).map((s) => [s.subscribers, (s.heapUsed ?? 0) / 1024]));
    const connectS = row.steps.reduce((sum, s) => sum + s.ms, 0) / 1000;
    lines.push(
      `| ${row.subject} | ${n} | ${row.stoppedBecause} | ${fixed(connectS, 2)} | ${fixed(first.rssKb / 1024, 0)} / ${fixed(last.rssKb / 1024, 0)} | ${fixed(rssWhole, 1)} / ${fixed(rssMarginal, 1)} | ${row.subject === 'nginx' ? 'n/a' : `${fixed(heapWhole, 1)} / ${fixed(heapMarginal, 1)}`} | ${fixed(row.load1, 1)} |`,
    );
  }
  lines.push('');
  for (const row of rows) if (row.notes.length > 0) lines.push(`- ${row.subject}: ${row.notes.join('; ')}`);
  for (const line of failures) lines.push(`- ${line}`);
  lines.push(
    '',
    'RSS: VmRSS of the subject (nginx: master + workers; direct: the backend) after a full GC in Node subjects. ' +
      '"whole" = (RSS after − RSS before the first stream) / subscribers, so it includes code compiled on the way; "marginal" = least-squares slope over the steps. ' +
      'Heap: heapUsed after `gc()` (heap probe preloaded with --expose-gc). Connect time: the sum of the steps, each opened with bounded concurrency, JWT per subscriber for the relay.',
  );
  return { markdown: `${lines.join('\n')}\n`, data: { settings, rows, failures }, failed: failures.length > 0 };
}
