/**
 * The fan-out scenario's Markdown report: every run's figures; where each run's delay may have
 * come from; each subject against the floor, nginx and direct of the same run; the pairs (relay
 * against relay-before or relay-plain, each against the floor) run by run; and with several runs,
 * the spread (min / median / max) and, for the relay, in how many runs each target held.
 */
import { fixed } from './common';
import { CORE_FULL_PCT, type FanoutRow, type FanoutSettings, LOAD_BUSY_PCT, clientLate } from './fanout-row';
import { CLK_TCK, type SubjectName } from './lab';
import { pairTable } from './pairs';

/** Peak RSS growth during the run over the idle RSS before any client connected, per client, in KiB. */
export function kibPerClient(row: FanoutRow): number {
  return (row.rssPeakKb - row.rssReadyKb) / row.subscribers;
}

/** Subject CPU seconds per 100,000 deliveries. */
export function cpuPer100k(row: FanoutRow): number {
  const delivered = row.done?.delivered ?? 0;
  return delivered > 0 ? (row.subjectCpuS / delivered) * 100_000 : NaN;
}

export function p99(row: FanoutRow): number {
  return row.done?.delay.p99 ?? NaN;
}

function per100k(cpuS: number, deliveries: number): string {
  return deliveries > 0 ? fixed((cpuS / deliveries) * 100_000, 2) : 'n/a';
}

/** Min, median and max of the finite values; NaNs when there are none. */
export function spread(values: readonly number[]): { min: number; median: number; max: number; n: number } {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  const n = sorted.length;
  if (n === 0) return { min: NaN, median: NaN, max: NaN, n };
  const mid = Math.floor(n / 2);
  const median = n % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return { min: sorted[0] as number, median, max: sorted[n - 1] as number, n };
}

/** ` **busy**` or ` **held**` after a figure whose row had the load client late; empty otherwise. */
function lateMark(row: FanoutRow): string {
  const late = clientLate(row);
  return late === undefined ? '' : ` **client ${late}**`;
}

function sizeOf(row: FanoutRow): string {
  return `${row.subscribers} / ${row.codes}`;
}

/** The row of `subject` with the same size and run as `row`. */
function peerOf(rows: readonly FanoutRow[], row: FanoutRow, subject: SubjectName): FanoutRow | undefined {
  return rows.find((r) => r.subject === subject && r.subscribers === row.subscribers && r.codes === row.codes && r.run === row.run && r.done !== undefined);
}

export function fanoutReport(settings: FanoutSettings, rows: readonly FanoutRow[], failures: readonly string[]): string {
  const done = rows.filter((r) => r.done !== undefined);
  const pairs = pairTable('Fan-out pairs of the same run', done, { name: 'subscribers / codes', of: sizeOf }, [
    { name: 'p99', of: p99 },
    { name: 'p99 after warm-up', of: (r) => r.done?.steadyDelay.p99 ?? NaN },
    { name: 'CPU / delivery', of: cpuPer100k },
    { name: 'KiB / client', of: kibPerClient },
  ]);
  const parts = [table(settings, rows, failures), causes(rows), ratioTable(rows), ...(pairs === '' ? [] : [pairs])];
  if (settings.runs > 1) parts.push(spreadTable(settings, rows));
  if (rows.some((r) => r.subject === 'relay') && rows.some((r) => r.subject === 'floor')) parts.push(targets(settings, rows));
  return parts.join('\n');
}

function table(settings: FanoutSettings, rows: readonly FanoutRow[], failures: readonly string[]): string {
  const lines = [
    `### Fan-out: ${settings.events} events per code at ${settings.rate}/s${settings.together ? ', every code in the same instant' : ''}${settings.runs > 1 ? `, ${settings.runs} runs` : ''}`,
    '',
    '| subscribers / codes | run | subject | delivered / expected | p50 ms | p99 ms | max ms | upstream conns (peak) | connect all (s) | subject CPU s / 100k deliveries (user+sys) | subject RSS MiB (connected / peak) | backend CPU s / 100k | load CPU % | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const d = row.done;
    const delivered = d?.delivered ?? 0;
    lines.push(
      `| ${sizeOf(row)} | ${row.run} | ${row.subject} | ${delivered} / ${d?.expected ?? row.subscribers * settings.events} | ${fixed(d?.delay.p50 ?? NaN, 2)} | ${fixed(d?.delay.p99 ?? NaN, 2)} | ${fixed(d?.delay.max ?? NaN, 1)} | ${row.upstreamPeak} | ${fixed(row.connected.connectMs / 1000, 2)} | ${per100k(row.subjectCpuS, delivered)} (${per100k(row.subjectUserS, delivered)}+${per100k(row.subjectSystemS, delivered)}) | ${fixed(row.rssConnectedKb / 1024, 0)} / ${fixed(row.rssPeakKb / 1024, 0)} | ${per100k(row.backendCpuS, delivered)} | ${fixed(d?.cpuPercent ?? NaN, 0)}${lateMark(row)} | ${fixed(row.load1, 1)} |`,
    );
  }
  lines.push('');
  for (const row of rows) if (row.notes.length > 0) lines.push(`- ${row.subject} at ${row.subscribers}, run ${row.run}: ${row.notes.join('; ')}`);
  for (const line of failures) lines.push(`- ${line}`);
  lines.push(
    '',
    'Delay: from the backend stamping `t` right before its writes to the load client parsing the event (both `performance.timeOrigin + performance.now()`, same machine). ' +
      'CPU: utime+stime from /proc between the start signal and the last expected event (teardown excluded), ' +
      `${CLK_TCK} ticks/s; the subject is the backend itself for direct, the relay process for relay, nginx master+workers for nginx. ` +
      "On loopback the kernel work of delivering to the receiver is charged to the sender's system time. " +
      'Subject and backend share one CPU, the load client has the other. Load avg: 1-minute load average when the row started (above ~2 on this 2-CPU machine, others were running too). ' +
      `**client busy**: the load client used over ${LOAD_BUSY_PCT} % of its core; **client held**: its own event loop stalled for at least half the row's p99 without it being busy (others had its core): in both, part of that row's delay is the client's.`,
  );
  return `${lines.join('\n')}\n`;
}

function gcCell(gc: FanoutRow['subjectGc']): string {
  return gc === undefined ? 'n/a' : `${fixed(gc.totalMs, 0)} / ${fixed(gc.maxMs, 1)} (${gc.count})`;
}

/** What else could have made a row's events late, beside the subject's own work. */
function causes(rows: readonly FanoutRow[]): string {
  const lines = [
    '### Where the delay comes from',
    '',
    '| subscribers / codes | run | subject | p99 ms | p99 ms after warm-up | load client: CPU % / CPU s per 100k events / loop delay p99, max ms / GC max ms | subject GC ms: sum / longest (pauses) | backend GC ms: sum / longest | subject core busy % (everyone) | others\' CPU % on subject core / load core; steal % | window s |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const d = row.done;
    if (d === undefined) continue;
    lines.push(
      `| ${sizeOf(row)} | ${row.run} | ${row.subject} | ${fixed(d.delay.p99, 1)} | ${fixed(d.steadyDelay.p99, 1)} | ${fixed(d.cpuPercent, 0)} / ${per100k((d.cpuPercent / 100) * (d.windowMs / 1000), d.delivered)} / ${fixed(d.loopDelayP99Ms, 1)}, ${fixed(d.loopDelayMaxMs, 1)} / ${fixed(d.gcMaxPauseMs, 1)}${lateMark(row)} | ${gcCell(row.subjectGc)} | ${gcCell(row.backendGc)} | ${fixed(row.subjectCorePct, 0)}${row.subjectCorePct >= CORE_FULL_PCT ? ' **full**' : ''} | ${fixed(row.othersSubjectCorePct, 0)} / ${fixed(row.othersLoadCorePct, 0)}; ${fixed(row.stealPct, 0)} | ${fixed(row.windowMs / 1000, 1)} |`,
    );
  }
  lines.push(
    '',
    'After warm-up: events with seq at or past a quarter of the events per code (JIT and first GCs left out). ' +
      'Load client: its CPU over the window, its own event-loop delay (`monitorEventLoopDelay`, 10 ms resolution) and longest GC pause; ' +
      'a loop delay near the p99 means the events waited in the client, not in the subject. ' +
      'GC: pauses inside the window from `gc` performance entries (bench/gc-probe.ts, preloaded into the Node subjects and the backend), n/a for nginx. ' +
      `Subject core busy: every process's ticks on it; **full** at ${CORE_FULL_PCT} % or more: events queue, and the p99 is how far behind the queue fell (it swings with a few % of anyone's CPU). ` +
      "Others' CPU: busy ticks of the core in /proc/stat minus the bench's own processes on it, in % of one core over the window; " +
      'on the subject core it competes with the subject and the backend directly. Steal: time the hypervisor gave to other machines, both cores.',
  );
  return `${lines.join('\n')}\n`;
}

const REFERENCES: readonly SubjectName[] = ['floor', 'nginx', 'direct'];

/** The subjects every row is compared with: the references, and the relay without Node internals when it ran (the switch's cost). */
function referencesOf(rows: readonly FanoutRow[]): readonly SubjectName[] {
  return rows.some((r) => r.subject === 'relay-plain') ? [...REFERENCES, 'relay-plain'] : REFERENCES;
}

/** `value (×a / ×b / ×c)` against each reference of the same configuration and run. */
function withRatios(value: number, digits: number, peers: readonly (FanoutRow | undefined)[], of: (row: FanoutRow) => number): string {
  const ratios = peers.map((peer) => (peer === undefined ? 'n/a' : `${fixed(value / of(peer), 2)}×`));
  return `${fixed(value, digits)} (${ratios.join(' / ')})`;
}

/** Memory slope per client of `subject` in `run`, between its smallest and largest size; NaN with one size. */
function slope(rows: readonly FanoutRow[], subject: SubjectName, run: number): number {
  const mine = rows.filter((r) => r.subject === subject && r.run === run && r.done !== undefined).sort((a, b) => a.subscribers - b.subscribers);
  const low = mine[0];
  const high = mine[mine.length - 1];
  if (low === undefined || high === undefined || high.subscribers === low.subscribers) return NaN;
  return (high.rssPeakKb - high.rssReadyKb - (low.rssPeakKb - low.rssReadyKb)) / (high.subscribers - low.subscribers);
}

/**
 * Every subject against the floor, nginx and direct of the same run and size: p99, CPU per
 * delivery and memory per client; then each subject's memory slope between the smallest and the
 * largest size, so that a fixed overhead neither hides nor inflates the cost per client.
 */
function ratioTable(rows: readonly FanoutRow[]): string {
  const references = referencesOf(rows);
  const lines = [
    `### Fan-out against the ${references.slice(0, -1).join(', ')} and ${references.at(-1) ?? ''} of the same run (ratios: × ${references.join(' / × ')})`,
    '',
    '| subscribers / codes | run | subject | p99 ms | CPU s / 100k deliveries | KiB / client (peak RSS growth over idle) |',
    '|---|---|---|---|---|---|',
  ];
  const done = rows.filter((r) => r.done !== undefined);
  for (const row of done) {
    const peers = references.map((name) => peerOf(done, row, name));
    lines.push(
      `| ${sizeOf(row)} | ${row.run} | ${row.subject} | ${withRatios(p99(row), 1, peers, p99)} | ${withRatios(cpuPer100k(row), 3, peers, cpuPer100k)} | ${withRatios(kibPerClient(row), 1, peers, kibPerClient)} |`,
    );
  }
  const slopes: string[] = [];
  for (const subject of new Set(done.map((r) => r.subject))) {
    const each = [...new Set(done.map((r) => r.run))].map((run) => slope(done, subject, run)).filter(Number.isFinite);
    if (each.length > 0) slopes.push(`${subject} ${each.map((v) => fixed(v, 1)).join(', ')} KiB`);
  }
  lines.push('');
  if (slopes.length > 0) lines.push(`Memory slope per client (peak RSS growth, between the smallest and the largest size; one figure per run): ${slopes.join('; ')}.`, '');
  lines.push(
    "KiB / client: (VmHWM at the end of the fan-out − VmRSS before the first client connected) / subscribers, summed over the subject's processes. " +
      'floor: bench/floor.ts, plain node:http, one upstream per code, each upstream chunk written to every client socket, no auth, no history.',
  );
  return `${lines.join('\n')}\n`;
}

function spreadCell(values: readonly number[], digits: number): string {
  const s = spread(values);
  return s.n === 0 ? 'n/a' : `${fixed(s.min, digits)} / ${fixed(s.median, digits)} / ${fixed(s.max, digits)}`;
}

/** Per size and subject, min / median / max over the runs. */
function spreadTable(settings: FanoutSettings, rows: readonly FanoutRow[]): string {
  const lines = [
    `### Spread over ${settings.runs} runs (min / median / max)`,
    '',
    '| subscribers / codes | subject | runs | p99 ms | p99 ms after warm-up | CPU s / 100k deliveries | KiB / client | runs with the load client busy / held |',
    '|---|---|---|---|---|---|---|---|',
  ];
  const done = rows.filter((r) => r.done !== undefined);
  for (const size of [...new Set(done.map(sizeOf))]) {
    for (const subject of [...new Set(done.map((r) => r.subject))]) {
      const mine = done.filter((r) => sizeOf(r) === size && r.subject === subject);
      if (mine.length === 0) continue;
      lines.push(
        `| ${size} | ${subject} | ${mine.length} | ${spreadCell(mine.map(p99), 1)} | ${spreadCell(mine.map((r) => r.done?.steadyDelay.p99 ?? NaN), 1)} | ${spreadCell(mine.map(cpuPer100k), 3)} | ${spreadCell(mine.map(kibPerClient), 1)} | ${mine.filter((r) => clientLate(r) === 'busy').length} / ${mine.filter((r) => clientLate(r) === 'held').length} |`,
      );
    }
  }
  const slopes: string[] = [];
  for (const subject of [...new Set(done.map((r) => r.subject))]) {
    const each = [...new Set(done.map((r) => r.run))].map((run) => slope(done, subject, run));
    if (each.some(Number.isFinite)) slopes.push(`${subject} ${spreadCell(each, 1)} KiB`);
  }
  if (slopes.length > 0) lines.push('', `Memory slope per client, min / median / max over the runs: ${slopes.join('; ')}.`);
  return `${lines.join('\n')}\n`;
}

/** Issue 19's targets for the relay against the floor of the same run (at most), and its ratio to nginx for reference. */
const TARGETS: readonly { name: string; of: (row: FanoutRow) => number; limit: number }[] = [
  { name: 'p99 at or below the floor', of: p99, limit: 1 },
  { name: 'CPU per delivery within 1.05× the floor', of: cpuPer100k, limit: 1.05 },
  { name: 'memory per client within 1.1× the floor', of: kibPerClient, limit: 1.1 },
];

/** For each size and target: the relay's ratio to the floor in every run, and whether it held in all of them. */
function targets(settings: FanoutSettings, rows: readonly FanoutRow[]): string {
  const lines = [
    `### Targets, relay against the floor of the same run (${settings.runs} run${settings.runs > 1 ? 's' : ''})`,
    '',
    '| subscribers / codes | target | relay ÷ floor, run by run | held in | relay ÷ nginx, run by run | runs with the load client late (relay or floor row) |',
    '|---|---|---|---|---|---|',
  ];
  const relayRows = rows.filter((r) => r.subject === 'relay' && r.done !== undefined);
  for (const size of [...new Set(relayRows.map(sizeOf))]) {
    const mine = relayRows.filter((r) => sizeOf(r) === size).sort((a, b) => a.run - b.run);
    for (const target of TARGETS) {
      const ratios = mine.map((r) => {
        const floor = peerOf(rows, r, 'floor');
        return floor === undefined ? NaN : target.of(r) / target.of(floor);
      });
      const nginx = mine.map((r) => {
        const peer = peerOf(rows, r, 'nginx');
        return peer === undefined ? NaN : target.of(r) / target.of(peer);
      });
      const judged = ratios.filter(Number.isFinite);
      const held = judged.filter((ratio) => ratio <= target.limit).length;
      const verdict = judged.length === 0 ? 'n/a' : `${held} / ${judged.length}${held === judged.length ? ' **every run**' : ''}`;
      const late = mine.filter((r) => clientLate(r) !== undefined || [peerOf(rows, r, 'floor')].some((f) => f !== undefined && clientLate(f) !== undefined)).length;
      const times = (values: readonly number[]): string => values.map((v) => (Number.isFinite(v) ? `${fixed(v, 2)}×` : 'n/a')).join(', ');
      lines.push(
        `| ${size} | ${target.name} | ${times(ratios)} | ${verdict} | ${times(nginx)} | ${late} |`,
      );
    }
  }
  lines.push(
    '',
    'A target holds in a run when the ratio is at or below its limit in that run. A run whose relay or floor row had the load client late (busy or held) compares two delays that are partly the client\'s: its p99 ratio says little.',
  );
  return `${lines.join('\n')}\n`;
}
