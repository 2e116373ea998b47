import { fanoutChart } from '../../bench/chart';
import type { DelaySummary, DoneReport } from '../../bench/common';
import type { FanoutRow, FanoutSettings } from '../../bench/fanout-row';
import { fanoutReport, spread } from '../../bench/fanout-report';
import type { SubjectName } from '../../bench/lab';

function delays(p99: number): DelaySummary {
  return { count: 1000, min: 1, p50: p99 / 4, p90: p99 / 2, p99, p999: p99, max: p99 * 1.1, mean: p99 / 4 };
}

/** A finished fan-out row of 1,000 subscribers with these figures (events all delivered). */
function row(subject: SubjectName, run: number, figures: { p99: number; cpuS: number; peakKb: number; loadCpu?: number; loopMaxMs?: number }): FanoutRow {
  const done: DoneReport = {
    type: 'done',
    expected: 20_000,
    received: 20_000,
    delivered: 20_000,
    duplicates: 0,
    gaps: 0,
    otherEvents: {},
    completeStreams: 1000,
    shortStreams: 0,
    timedOutStreams: 0,
    streamErrors: {},
    delay: delays(figures.p99),
    steadyDelay: delays(figures.p99),
    steadyFromSeq: 5,
    cpuPercent: figures.loadCpu ?? 20,
    windowMs: 5000,
    loopDelayP99Ms: 1,
    loopDelayMaxMs: figures.loopMaxMs ?? 2,
    gcCount: 0,
    gcPauseMs: 0,
    gcMaxPauseMs: 0,
  };
  return {
    subject,
    subscribers: 1000,
    codes: 10,
    run,
    connected: { type: 'connected', open: 1000, failed: 0, failures: {}, connectMs: 900, clockOffsetMs: 0, clockRttMs: 0.1 },
    done,
    upstreamPeak: 10,
    subjectCpuS: figures.cpuS,
    subjectUserS: figures.cpuS / 2,
    subjectSystemS: figures.cpuS / 2,
    backendCpuS: 0.1,
    connectCpuMs: 0.5,
    rssReadyKb: 50_000,
    rssConnectedKb: 60_000,
    rssPeakKb: figures.peakKb,
    load1: 0.5,
    windowMs: 5000,
    subjectGc: { count: 1, totalMs: 3, maxMs: 3 },
    backendGc: { count: 0, totalMs: 0, maxMs: 0 },
    othersSubjectCorePct: 2,
    othersLoadCorePct: 1,
    stealPct: 0,
    subjectCorePct: 60,
    notes: [],
  };
}

const SETTINGS: FanoutSettings = { configs: [{ subscribers: 1000, codes: 10 }], events: 20, rate: 5, concurrency: 100, graceMs: 1000, runs: 3, together: false };

// Floor: 20 KiB per client, 1 s of CPU; the relay at 0.9×, 1.2× and 1.0× of the floor's p99 in runs 1 to 3.
const ROWS: FanoutRow[] = [
  row('floor', 1, { p99: 100, cpuS: 1, peakKb: 70_000 }),
  row('relay', 1, { p99: 90, cpuS: 1.04, peakKb: 71_000 }),
  row('floor', 2, { p99: 100, cpuS: 1, peakKb: 70_000 }),
  row('relay', 2, { p99: 120, cpuS: 1.2, peakKb: 71_000, loadCpu: 95 }),
  row('floor', 3, { p99: 50, cpuS: 1, peakKb: 70_000 }),
  row('relay', 3, { p99: 50, cpuS: 1, peakKb: 90_000, loopMaxMs: 40 }),
];

function tableRows(markdown: string, heading: string): string[] {
  const section = markdown.slice(markdown.indexOf(heading));
  return section.split('\n').filter((line) => line.startsWith('| 1000 / 10 |'));
}

describe('the fan-out report over several runs', () => {
  it('gives min, median and max, leaving out runs without a figure', () => {
    expect(spread([3, 1, 2])).toEqual({ min: 1, median: 2, max: 3, n: 3 });
    expect(spread([4, 1, NaN, 2, 3])).toEqual({ min: 1, median: 2.5, max: 4, n: 4 });
    expect(spread([]).n).toBe(0);
  });

  it("says run by run whether the relay met each target against that run's floor, and whether it held in every run", () => {
    const targets = tableRows(fanoutReport(SETTINGS, ROWS, []), '### Targets');
    expect(targets).toEqual([
      expect.stringMatching(/^\| 1000 \/ 10 \| p99 at or below the floor \| 0\.90×, 1\.20×, 1\.00× \| 2 \/ 3 \|/),
      expect.stringMatching(/^\| 1000 \/ 10 \| CPU per delivery within 1\.05× the floor \| 1\.04×, 1\.20×, 1\.00× \| 2 \/ 3 \|/),
      expect.stringMatching(/^\| 1000 \/ 10 \| memory per client within 1\.1× the floor \| 1\.05×, 1\.05×, 2\.00× \| 2 \/ 3 \|/),
    ]);
    // Two of the three runs had the client late (busy in run 2, held in run 3).
    for (const line of targets) expect(line).toMatch(/\| 2 \|$/);
  });

  it('marks the rows whose load client was busy or held, and spreads the figures per subject', () => {
    const markdown = fanoutReport(SETTINGS, ROWS, []);
    const causes = tableRows(markdown, '### Where the delay comes from');
    expect(causes.filter((line) => line.includes('**client busy**'))).toEqual([expect.stringContaining('| 2 | relay |')]);
    expect(causes.filter((line) => line.includes('**client held**'))).toEqual([expect.stringContaining('| 3 | relay |')]);
    const relaySpread = tableRows(markdown, '### Spread').find((line) => line.includes('| relay |'));
    expect(relaySpread).toBe('| 1000 / 10 | relay | 3 | 50.0 / 90.0 / 120.0 | 50.0 / 90.0 / 120.0 | 5.000 / 5.200 / 6.000 | 21.0 / 21.0 / 40.0 | 1 / 1 |');
  });

  it('draws each subject as the median of its runs with a band from the fastest to the slowest', () => {
    const sized = [...ROWS, ...ROWS.map((r) => ({ ...r, subscribers: 2000, done: r.done && { ...r.done, delay: delays(r.done.delay.p99 * 2) } }))];
    const svg = fanoutChart(sized) ?? '';
    expect(svg).toContain('relay p99, 3 runs');
    // One band per subject, each a polygon of 4 corners (two sizes, low and high).
    const bands = [...svg.matchAll(/<polygon points="([^"]+)"/g)].map((m) => (m[1] ?? '').split(' ').length);
    expect(bands).toEqual([4, 4]);
    // The relay's band spans more than its median line: its runs differ.
    const relayBand = [...svg.matchAll(/<polygon points="([^"]+)" fill="#1f77b4"/g)][0]?.[1] ?? '';
    const ys = relayBand.split(' ').map((p) => Number(p.split(',')[1]));
    expect(Math.max(...ys) - Math.min(...ys)).toBeGreaterThan(0);
  });
});

describe('the fan-out pairs of the same run', () => {
  // relay-before and relay-plain beside the relay of each run: the relay's p99 is 0.9×, 1.1× and
  // 1.0× of relay-before's, relay-plain's CPU 1.5× the relay's in every run.
  const PAIRED: FanoutRow[] = [1, 2, 3].flatMap((run) => {
    const relay = ROWS.find((r) => r.subject === 'relay' && r.run === run) as FanoutRow;
    const p99 = relay.done?.delay.p99 ?? NaN;
    return [
      row('relay-before', run, { p99: p99 / [0.9, 1.1, 1][run - 1]!, cpuS: relay.subjectCpuS, peakKb: relay.rssPeakKb }),
      row('relay-plain', run, { p99, cpuS: relay.subjectCpuS * 1.5, peakKb: relay.rssPeakKb }),
    ];
  });

  it('shows relay ÷ relay-before and relay-plain ÷ relay run by run, with their median, before each subject ÷ the floor', () => {
    const markdown = fanoutReport(SETTINGS, [...ROWS, ...PAIRED], []);
    const section = markdown.slice(markdown.indexOf('### Fan-out pairs of the same run'));
    const pairs = tableRows(section.slice(0, section.indexOf('\n### ')), '');
    expect(pairs.map((line) => line.split(' | ')[1])).toEqual(['relay ÷ relay-before', 'relay-plain ÷ relay', 'relay ÷ floor', 'relay-before ÷ floor', 'relay-plain ÷ floor']);
    expect(pairs[0]).toMatch(/^\| 1000 \/ 10 \| relay ÷ relay-before \| \*\*1\.00\*\* \(0\.90, 1\.10, 1\.00\) \|/);
    expect(pairs[1]).toMatch(/^\| 1000 \/ 10 \| relay-plain ÷ relay \| \*\*1\.00\*\* \(1\.00, 1\.00, 1\.00\) \| \*\*1\.00\*\* \(1\.00, 1\.00, 1\.00\) \| \*\*1\.50\*\* \(1\.50, 1\.50, 1\.50\) \|/);
    expect(pairs[2]).toMatch(/^\| 1000 \/ 10 \| relay ÷ floor \| \*\*1\.00\*\* \(0\.90, 1\.20, 1\.00\) \|/);
  });

  it('has no pairs section without a second subject', () => {
    expect(fanoutReport(SETTINGS, ROWS.filter((r) => r.subject === 'relay'), [])).not.toContain('pairs of the same run');
  });
});
