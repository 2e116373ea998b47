/**
 * What a fan-out run records per (configuration, subject, run), and the judgements the report
 * and the scenario both make on it: apart from the scenario, so the report and the chart read
 * rows without importing the code that produces them.
 */
import type { ConnectedReport, DoneReport, GcSummary } from './common';
import type { SubjectName } from './lab';

export interface FanoutSettings {
  /** (subscribers, codes) pairs, run in order. */
  configs: { subscribers: number; codes: number }[];
  events: number;
  rate: number;
  concurrency: number;
  graceMs: number;
  /** How many times each (configuration, subject) runs; the report gives min / median / max over them. */
  runs: number;
  /** Every code publishes in the same instant (the 10,000-client case), instead of staggered over the period. */
  together: boolean;
}

export interface FanoutRow {
  subject: SubjectName;
  subscribers: number;
  codes: number;
  /** Which repetition, from 1. */
  run: number;
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
  /** The delivery window as the coordinator saw it: start signal to the last expected event, ms. */
  windowMs: number;
  /** GC pauses in the window of the subject's Node process (none for nginx) and of the backend. */
  subjectGc: GcSummary | undefined;
  backendGc: GcSummary | undefined;
  /** CPU other processes took in the window, in % of one core: on the subject's core, on the load client's core; and stolen by the hypervisor on both. */
  othersSubjectCorePct: number;
  othersLoadCorePct: number;
  stealPct: number;
  /** How busy the subject's core was in the window, everyone's work counted, in %. */
  subjectCorePct: number;
  notes: string[];
}

/**
 * The subject's core was at least this busy: events queue behind each other, and the p99 is how
 * far behind the queue fell, which swings with every few % of CPU (the subject's, the backend's,
 * anyone's) rather than measuring the subject's delivery path.
 */
export const CORE_FULL_PCT = 90;

/** The load client used more than this share of its core: its own queueing is part of the delays. */
export const LOAD_BUSY_PCT = 85;

/**
 * Whether a row's delays may be partly the load client's, and why: `busy`, its own CPU over
 * LOAD_BUSY_PCT % of its core (its work is the bottleneck); `held`, its event loop stalled for
 * at least half the row's p99 (more than 20 ms) while it was not busy: something else had its
 * core (others' processes, see the row's others' CPU) or it was collecting garbage.
 */
export function clientLate(row: FanoutRow): 'busy' | 'held' | undefined {
  const d = row.done;
  if (d === undefined) return undefined;
  if (d.cpuPercent > LOAD_BUSY_PCT) return 'busy';
  if (d.loopDelayMaxMs > 20 && d.loopDelayMaxMs >= d.delay.p99 / 2) return 'held';
  return undefined;
}
