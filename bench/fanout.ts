/**
 * Fan-out scenario: C subscribers over T codes, E events per code at R/s, served
 * in turn by each subject (direct, floor, relay, nginx), for one or more (C, T)
 * configurations, each repeated `runs` times (every subject once per run, in turn).
 * The subject and the backend share one CPU, the load client (bench/load.ts) has the
 * other. Besides the subject's figures, each row records what else could have made
 * its events late: the load client's CPU, event-loop delay and GC, the subject's and
 * the backend's GC pauses (gc-probe.ts), and the CPU other processes took on either
 * core during the window. The report is fanout-report.ts.
 */
import { join } from 'node:path';
import { type ChildMessage, type ConnectedReport, type CpuTicks, type DoneReport, type ProcSample, fixed, gcPauses, nowMs, sampleCpus, sampleProc, sampleProcs } from './common';
import { fanoutChart } from './chart';
import { fanoutReport } from './fanout-report';
import { type FanoutRow, type FanoutSettings, LOAD_BUSY_PCT } from './fanout-row';
import { CLK_TCK, type Lab, eachSubject, type SubjectName, type Subject, load1 } from './lab';
import type { LoadConfig } from './load';
import type { Proc } from './proc';

/** The backend ends every stream this long after the last event, so teardown never overlaps a measured event. */
export const END_AFTER_MS = 1000;

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return (await response.json()) as T;
}

export async function postJson<T>(url: string, body: unknown): Promise<T> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const answer = (await response.json()) as T;
  if (!response.ok) throw new Error(`POST ${url}: ${response.status} ${JSON.stringify(answer)}`);
  return answer;
}

/**
 * Has the reference backend publish `events` per code at `rate`, starting in 200 ms and ending every
 * stream END_AFTER_MS after the last event, and lets the load client read until then.
 * Other fields of `run` (event padding, bursts) go to the backend as they are.
 * Resolves to how far from now the last event is due, in ms.
 */
export async function startPublishing(backendUrl: string, load: Proc, run: { codes: readonly string[]; events: number; rate: number; [field: string]: unknown }): Promise<number> {
  const { lastEventInMs } = await postJson<{ lastEventInMs: number }>(`${backendUrl}/start`, { ...run, leadMs: 200, endAfterMs: END_AFTER_MS });
  load.send({ cmd: 'start', durationMs: lastEventInMs + END_AFTER_MS });
  return lastEventInMs;
}

export function codeNames(count: number): string[] {
  const width = String(count - 1).length;
  return Array.from({ length: count }, (_, i) => `bench${String(i).padStart(width, '0')}`);
}

async function runOne(lab: Lab, settings: FanoutSettings, name: SubjectName, subscribers: number, codeCount: number, run: number): Promise<FanoutRow> {
  const codes = codeNames(codeCount);
  const startLoad = load1();
  const backend = await lab.startBenchBackend(lab.subjectCore);
  let subject: Subject | undefined;
  let load: Proc | undefined;
  let row: FanoutRow;
  try {
    subject = await lab.startSubject(name, backend, lab.subjectCore, subscribers);
    const loadConfig: LoadConfig = {
      baseUrl: subject.baseUrl,
      pathTemplate: `${subject.prefix}/downloads/{code}/events`,
      codes,
      subscribers,
      eventsPerCode: settings.events,
      concurrency: settings.concurrency,
      auth: subject.auth,
      backendUrl: backend.url,
      connectTimeoutMs: 15_000,
      graceMs: settings.graceMs,
    };
    const ready = sampleProcs(subject.pids());
    load = lab.spawnClient('load', 'load', loadConfig);
    const connected = await load.message<ConnectedReport>('connected', 30_000 + subscribers * 20);
    const notes: string[] = [];
    if (connected.failed > 0) notes.push(`${connected.failed} streams failed to open (${describe(connected.failures)})`);
    if (Math.abs(connected.clockOffsetMs) > connected.clockRttMs) {
      notes.push(`clocks of backend and load client differ by ${fixed(connected.clockOffsetMs, 2)} ms (probe round trip ${fixed(connected.clockRttMs, 2)} ms): delays are off by that much`);
    }

    const pids = subject.pids();
    const before = sampleProcs(pids);
    const connectCpuMs = connected.open > 0 ? (((before.ticks - ready.ticks) / CLK_TCK) * 1000) / connected.open : NaN;
    const backendBefore = sampleProc(backend.proc.pid);
    const loadBefore = sampleProc(load.pid);
    const cpusBefore = sampleCpus();
    const windowStart = nowMs();
    const lastEventInMs = await startPublishing(backend.url, load, { codes, events: settings.events, rate: settings.rate, together: settings.together });
    // CPU is read when the last expected event arrived, before the streams are torn down;
    // if some never arrive, when the load client gives up.
    const first = await load.message<ChildMessage>(['received', 'done'], lastEventInMs + END_AFTER_MS + settings.graceMs + 30_000);
    const after = sampleProcs(pids);
    const backendAfter = sampleProc(backend.proc.pid);
    const loadAfter = sampleProc(load.pid);
    const cpusAfter = sampleCpus();
    const windowEnd = nowMs();
    const windowMs = windowEnd - windowStart;
    const pct = (ticks: number): number => (ticks / CLK_TCK / (windowMs / 1000)) * 100;
    const subjectTicks = after.ticks - before.ticks;
    // For direct the subject is the backend: count its ticks once.
    const backendTicks = name === 'direct' || !backendBefore || !backendAfter ? 0 : backendAfter.ticks - backendBefore.ticks;
    const loadTicks = loadBefore && loadAfter ? loadAfter.ticks - loadBefore.ticks : 0;
    if (first.type !== 'received') notes.push('events missing: the CPU window ends when the streams ended or timed out, teardown included');
    const done = first.type === 'done' ? (first as DoneReport) : await load.message<DoneReport>('done', END_AFTER_MS + settings.graceMs + 30_000);
    const stats = await getJson<{ peakConnections: number }>(`${backend.url}/stats`);

    if (done.delivered < done.expected) notes.push(`${done.expected - done.delivered} events lost`);
    if (done.duplicates > 0) notes.push(`${done.duplicates} duplicates`);
    if (done.gaps > 0) notes.push(`${done.gaps} gaps in seq`);
    if (done.shortStreams > 0) notes.push(`${done.shortStreams} streams ended early`);
    if (done.timedOutStreams > 0) notes.push(`${done.timedOutStreams} streams still open at the deadline`);
    if (Object.keys(done.otherEvents).length > 0) notes.push(`other events: ${describe(done.otherEvents)}`);
    if (Object.keys(done.streamErrors).length > 0) notes.push(`stream errors: ${describe(done.streamErrors)}`);
    const diagnostics = subject.diagnostics?.();
    if (diagnostics !== undefined) notes.push(`${name}: ${diagnostics}`);
    if (name === 'nginx' && lab.nginxWorkers > 1) notes.push(`${lab.nginxWorkers} nginx workers (open-file limit)`);
    if (done.cpuPercent > LOAD_BUSY_PCT) notes.push(`load generator at ${done.cpuPercent.toFixed(0)}% CPU: delays may be the client's`);

    row = {
      subject: name,
      subscribers,
      codes: codeCount,
      run,
      connected,
      done,
      upstreamPeak: stats.peakConnections,
      subjectCpuS: cpuSeconds(before, after),
      subjectUserS: (after.userTicks - before.userTicks) / CLK_TCK,
      subjectSystemS: (after.systemTicks - before.systemTicks) / CLK_TCK,
      backendCpuS: backendBefore && backendAfter ? cpuSeconds(backendBefore, backendAfter) : NaN,
      connectCpuMs,
      rssReadyKb: ready.rssKb,
      rssConnectedKb: before.rssKb,
      rssPeakKb: after.hwmKb,
      load1: startLoad,
      windowMs,
      subjectGc: undefined,
      backendGc: undefined,
      othersSubjectCorePct: pct(busyOn(cpusBefore, cpusAfter, lab.subjectCore) - subjectTicks - backendTicks),
      othersLoadCorePct: pct(busyOn(cpusBefore, cpusAfter, lab.loadCore) - loadTicks),
      stealPct: pct(stolen(cpusBefore, cpusAfter)),
      subjectCorePct: pct(busyOn(cpusBefore, cpusAfter, lab.subjectCore)),
      notes,
    };
    // Read once the processes have exited, so their last pauses are written.
    const gcDir = process.env.BENCH_GC_DIR;
    const subjectPid = subject.node?.pid;
    const window = [windowStart, windowEnd] as const;
    const readGc = (): void => {
      if (gcDir === undefined) return;
      row.subjectGc = subjectPid === undefined ? undefined : gcPauses(join(gcDir, `${subjectPid}.csv`), ...window);
      row.backendGc = name === 'direct' ? row.subjectGc : gcPauses(join(gcDir, `${backend.proc.pid}.csv`), ...window);
    };
    await stopAll(load, subject, backend.proc);
    readGc();
    return row;
  } finally {
    await stopAll(load, subject, backend.proc);
  }
}

async function stopAll(load: Proc | undefined, subject: Subject | undefined, backend: Proc): Promise<void> {
  await load?.stop('SIGTERM', 2000);
  await subject?.stop();
  await backend.stop();
}

/** Busy ticks of `cpu` between two samples; NaN when unpinned or unknown. */
function busyOn(before: CpuTicks, after: CpuTicks, cpu: number | undefined): number {
  if (cpu === undefined) return NaN;
  const from = before.busy.get(cpu);
  const to = after.busy.get(cpu);
  return from === undefined || to === undefined ? NaN : to - from;
}

function stolen(before: CpuTicks, after: CpuTicks): number {
  let ticks = 0;
  for (const [cpu, to] of after.steal) ticks += to - (before.steal.get(cpu) ?? to);
  return ticks;
}

function cpuSeconds(before: ProcSample, after: ProcSample): number {
  return (after.ticks - before.ticks) / CLK_TCK;
}

export function describe(counts: Record<string, number>): string {
  return Object.entries(counts)
    .map(([key, n]) => `${key}: ${n}`)
    .join(', ');
}



export interface ScenarioOutcome {
  readonly markdown: string;
  readonly data: unknown;
  /** An SVG chart, when the scenario has one. */
  readonly svg?: string;
  /** What the chart shows, for its alt text. Defaults to the fan-out's "delay against subscribers". */
  readonly svgAlt?: string;
  /** Subjects or steps that failed. */
  readonly failed: boolean;
}

export async function runFanout(lab: Lab, settings: FanoutSettings, subjects: readonly SubjectName[]): Promise<ScenarioOutcome> {
  const rows: FanoutRow[] = [];
  const failures: string[] = [];
  for (const { subscribers, codes } of settings.configs) {
    // Every subject once per run, in turn, so that a busy minute on the machine falls on all of them.
    for (let run = 1; run <= settings.runs; run++) {
      const ran = await eachSubject(
        (name) => `fanout: ${name} (${subscribers} subscribers, ${codes} codes${settings.runs > 1 ? `, run ${run}/${settings.runs}` : ''})`,
        subjects,
        (name) => runOne(lab, settings, name, subscribers, codes, run),
        ({ done: d }) => `${d?.delivered ?? 0}/${d?.expected ?? '?'} delivered, p50 ${fixed(d?.delay.p50 ?? NaN, 2)} ms, p99 ${fixed(d?.delay.p99 ?? NaN, 2)} ms, load client ${fixed(d?.cpuPercent ?? NaN, 0)}% CPU`,
      );
      rows.push(...ran.rows);
      failures.push(...ran.failures);
    }
  }
  return { markdown: fanoutReport(settings, rows, failures), data: { settings, rows, failures }, svg: fanoutChart(rows), failed: failures.length > 0 };
}
