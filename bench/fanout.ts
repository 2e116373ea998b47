/**
 * Fan-out scenario: C subscribers over T codes, E events per code at R/s, served
 * in turn by each subject (direct, relay, nginx), for one or more (C, T)
 * configurations. The subject and the backend share one CPU, the load client
 * (bench/load.ts) has the other.
 */
import { type ChildMessage, type ConnectedReport, type DoneReport, type ProcSample, sampleProc, sampleProcs } from './common';
import { CLK_TCK, type Lab, eachSubject, type SubjectName, type Subject, load1 } from './lab';
import type { LoadConfig } from './load';
import type { Proc } from './proc';
import { type Series, lineChart } from './chart';

export interface FanoutSettings {
  /** (subscribers, codes) pairs, run in order. */
  configs: { subscribers: number; codes: number }[];
  events: number;
  rate: number;
  concurrency: number;
  graceMs: number;
}

export interface FanoutRow {
  subject: SubjectName;
  subscribers: number;
  codes: number;
  connected: ConnectedReport;
  done: DoneReport | undefined;
  upstreamPeak: number;
  subjectCpuS: number;
  subjectUserS: number;
  subjectSystemS: number;
  backendCpuS: number;
  /** Subject CPU per opened stream while connecting, in ms. */
  connectCpuMs: number;
  rssReadyKb: number;
  rssConnectedKb: number;
  rssPeakKb: number;
  /** 1-minute load average when the run started (others' work shows here). */
  load1: number;
  notes: string[];
}

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

async function runOne(lab: Lab, settings: FanoutSettings, name: SubjectName, subscribers: number, codeCount: number): Promise<FanoutRow> {
  const codes = codeNames(codeCount);
  const startLoad = load1();
  const backend = await lab.startBenchBackend(lab.subjectCore);
  let subject: Subject | undefined;
  let load: Proc | undefined;
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
    const lastEventInMs = await startPublishing(backend.url, load, { codes, events: settings.events, rate: settings.rate });
    // CPU is read when the last expected event arrived, before the streams are torn down;
    // if some never arrive, when the load client gives up.
    const first = await load.message<ChildMessage>(['received', 'done'], lastEventInMs + END_AFTER_MS + settings.graceMs + 30_000);
    const after = sampleProcs(pids);
    const backendAfter = sampleProc(backend.proc.pid);
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
    if (done.cpuPercent > 85) notes.push(`load generator at ${done.cpuPercent.toFixed(0)}% CPU: delays may be the client's`);

    return {
      subject: name,
      subscribers,
      codes: codeCount,
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
      notes,
    };
  } finally {
    await load?.stop('SIGTERM', 2000);
    await subject?.stop();
    await backend.proc.stop();
  }
}

function cpuSeconds(before: ProcSample, after: ProcSample): number {
  return (after.ticks - before.ticks) / CLK_TCK;
}

export function describe(counts: Record<string, number>): string {
  return Object.entries(counts)
    .map(([key, n]) => `${key}: ${n}`)
    .join(', ');
}

export function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a';
}

function per100k(cpuS: number, deliveries: number): string {
  return deliveries > 0 ? fixed((cpuS / deliveries) * 100_000, 2) : 'n/a';
}

export interface ScenarioOutcome {
  readonly markdown: string;
  readonly data: unknown;
  /** An SVG chart, when the scenario has one. */
  readonly svg?: string;
  /** Subjects or steps that failed. */
  readonly failed: boolean;
}

export async function runFanout(lab: Lab, settings: FanoutSettings, subjects: readonly SubjectName[]): Promise<ScenarioOutcome> {
  const rows: FanoutRow[] = [];
  const failures: string[] = [];
  for (const { subscribers, codes } of settings.configs) {
    const ran = await eachSubject(
      (name) => `fanout: ${name} (${subscribers} subscribers, ${codes} codes)`,
      subjects,
      (name) => runOne(lab, settings, name, subscribers, codes),
      ({ done: d }) => `${d?.delivered ?? 0}/${d?.expected ?? '?'} delivered, p50 ${fixed(d?.delay.p50 ?? NaN, 2)} ms, p99 ${fixed(d?.delay.p99 ?? NaN, 2)} ms`,
    );
    rows.push(...ran.rows);
    failures.push(...ran.failures);
  }
  const markdown = `${table(settings, rows, failures)}\n${ratioTable(rows)}`;
  return { markdown, data: { settings, rows, failures }, svg: chart(rows), failed: failures.length > 0 };
}

function table(settings: FanoutSettings, rows: readonly FanoutRow[], failures: readonly string[]): string {
  const lines = [
    `### Fan-out: ${settings.events} events per code at ${settings.rate}/s`,
    '',
    '| subscribers / codes | subject | delivered / expected | p50 ms | p99 ms | max ms | upstream conns (peak) | connect all (s) | subject CPU s / 100k deliveries (user+sys) | subject RSS MiB (connected / peak) | backend CPU s / 100k | load CPU % | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const d = row.done;
    const delivered = d?.delivered ?? 0;
    lines.push(
      `| ${row.subscribers} / ${row.codes} | ${row.subject} | ${delivered} / ${d?.expected ?? row.subscribers * settings.events} | ${fixed(d?.delay.p50 ?? NaN, 2)} | ${fixed(d?.delay.p99 ?? NaN, 2)} | ${fixed(d?.delay.max ?? NaN, 1)} | ${row.upstreamPeak} | ${fixed(row.connected.connectMs / 1000, 2)} | ${per100k(row.subjectCpuS, delivered)} (${per100k(row.subjectUserS, delivered)}+${per100k(row.subjectSystemS, delivered)}) | ${fixed(row.rssConnectedKb / 1024, 0)} / ${fixed(row.rssPeakKb / 1024, 0)} | ${per100k(row.backendCpuS, delivered)} | ${fixed(d?.cpuPercent ?? NaN, 0)} | ${fixed(row.load1, 1)} |`,
    );
  }
  lines.push('');
  for (const row of rows) if (row.notes.length > 0) lines.push(`- ${row.subject} at ${row.subscribers}: ${row.notes.join('; ')}`);
  for (const line of failures) lines.push(`- ${line}`);
  lines.push(
    '',
    'Delay: from the backend stamping `t` right before its writes to the load client parsing the event (both `performance.timeOrigin + performance.now()`, same machine). ' +
      'CPU: utime+stime from /proc between the start signal and the last expected event (teardown excluded), ' +
      `${CLK_TCK} ticks/s; the subject is the backend itself for direct, the relay process for relay, nginx master+workers for nginx. ` +
      'On loopback the kernel work of delivering to the receiver is charged to the sender\'s system time. ' +
      'Subject and backend share one CPU, the load client has the other. Load avg: 1-minute load average when the row started (above ~2 on this 2-CPU machine, others were running too).',
  );
  return `${lines.join('\n')}\n`;
}

/** Peak RSS growth during the run over the idle RSS before any client connected, per client, in KiB. */
export function kibPerClient(row: FanoutRow): number {
  return (row.rssPeakKb - row.rssReadyKb) / row.subscribers;
}

function cpuPer100k(row: FanoutRow): number {
  const delivered = row.done?.delivered ?? 0;
  return delivered > 0 ? (row.subjectCpuS / delivered) * 100_000 : NaN;
}

const REFERENCES: readonly SubjectName[] = ['floor', 'nginx', 'direct'];

/** `value (×a / ×b / ×c)` against the floor, nginx and direct of the same configuration. */
function withRatios(value: number, digits: number, peers: readonly (FanoutRow | undefined)[], of: (row: FanoutRow) => number): string {
  const ratios = peers.map((peer) => (peer === undefined ? 'n/a' : `${fixed(value / of(peer), 2)}×`));
  return `${fixed(value, digits)} (${ratios.join(' / ')})`;
}

/**
 * Every subject against the floor, nginx and direct of the same run and size: p99, CPU per
 * delivery and memory per client; then each subject's memory slope between the smallest and the
 * largest size, so that a fixed overhead neither hides nor inflates the cost per client.
 */
function ratioTable(rows: readonly FanoutRow[]): string {
  const lines = [
    `### Fan-out against the floor, nginx and direct (ratios: × ${REFERENCES.join(' / × ')})`,
    '',
    '| subscribers / codes | subject | p99 ms | CPU s / 100k deliveries | KiB / client (peak RSS growth over idle) |',
    '|---|---|---|---|---|',
  ];
  const done = rows.filter((r) => r.done !== undefined);
  for (const row of done) {
    const peers = REFERENCES.map((name) => done.find((r) => r.subject === name && r.subscribers === row.subscribers && r.codes === row.codes));
    lines.push(
      `| ${row.subscribers} / ${row.codes} | ${row.subject} | ${withRatios(row.done?.delay.p99 ?? NaN, 1, peers, (r) => r.done?.delay.p99 ?? NaN)} | ${withRatios(cpuPer100k(row), 3, peers, cpuPer100k)} | ${withRatios(kibPerClient(row), 1, peers, kibPerClient)} |`,
    );
  }
  const slopes: string[] = [];
  for (const subject of new Set(done.map((r) => r.subject))) {
    const mine = done.filter((r) => r.subject === subject).sort((a, b) => a.subscribers - b.subscribers);
    const low = mine[0];
    const high = mine[mine.length - 1];
    if (low === undefined || high === undefined || high.subscribers === low.subscribers) continue;
    const slope = (high.rssPeakKb - high.rssReadyKb - (low.rssPeakKb - low.rssReadyKb)) / (high.subscribers - low.subscribers);
    slopes.push(`${subject} ${fixed(slope, 1)} KiB`);
  }
  lines.push('');
  if (slopes.length > 0) lines.push(`Memory slope per client (peak RSS growth, between the smallest and the largest size): ${slopes.join(', ')}.`, '');
  lines.push(
    'KiB / client: (VmHWM at the end of the fan-out − VmRSS before the first client connected) / subscribers, summed over the subject\'s processes. ' +
      'floor: bench/floor.ts, plain node:http, one upstream per code, each upstream chunk written to every client socket, no auth, no history.',
  );
  return `${lines.join('\n')}\n`;
}

function chart(rows: readonly FanoutRow[]): string | undefined {
  const subjects = [...new Set(rows.map((r) => r.subject))];
  const counts = new Set(rows.map((r) => r.subscribers));
  if (rows.length === 0 || counts.size < 1) return undefined;
  const series: Series[] = [];
  const colors: Record<SubjectName, string> = { direct: '#555555', floor: '#ff7f0e', relay: '#1f77b4', nginx: '#2ca02c' };
  for (const subject of subjects) {
    const color = colors[subject];
    const mine = rows.filter((r) => r.subject === subject && r.done !== undefined).sort((a, b) => a.subscribers - b.subscribers);
    series.push({ name: `${subject} p99`, points: mine.map((r) => [r.subscribers, r.done?.delay.p99 ?? NaN]), color, dashed: false });
    series.push({ name: `${subject} p50`, points: mine.map((r) => [r.subscribers, r.done?.delay.p50 ?? NaN]), color, dashed: true });
  }
  return lineChart({ title: 'Fan-out delay (backend write to client parse)', xLabel: 'subscribers', yLabel: 'delay, ms', series });
}
