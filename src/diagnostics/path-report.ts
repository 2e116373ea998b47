import { type StreamEvent, readEventStream } from '../client/sse-body';

// The judging half of the path check, with no Node imports: the CLI (path-check.ts) and the
// browser client (src/client/path-check.ts) read the same stream and reach the same verdict.

/** One tick as the check saw it. */
export interface TickArrival {
  readonly seq: number;
  /** When the relay wrote it (the relay's clock, epoch ms). */
  readonly sentAt: number;
  /** When its bytes reached the check (this machine's clock, epoch ms). */
  readonly receivedAt: number;
}

/** What the check concludes about the path between the relay and this client. */
export interface PathReport {
  /** `one by one`: ticks arrived as they were sent; `bursts`: something held them and let them go together. */
  readonly delivery: 'one by one' | 'bursts';
  readonly ticks: number;
  readonly expectedTicks: number;
  /** Ticks that arrived together with the one before (within a quarter of the interval). */
  readonly bunched: number;
  /** Arrival minus send time, ms (depends on the two clocks agreeing). */
  readonly lateMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /** The same, less the fastest tick's: what the path added, whatever the clocks say. */
  readonly heldMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /** The quiet phase asked for, and whether the stream was still there at its end (undefined: none asked). */
  readonly quietMs: number;
  readonly quietSurvived: boolean | undefined;
  readonly heartbeatMs: number | undefined;
  readonly heartbeatsSeen: number;
}

/** Of `arrivals` (in order) `interval` ms apart: bursts when more than a fifth of them came bunched with the one before. */
export function judgeTicks(arrivals: readonly TickArrival[], interval: number): Pick<PathReport, 'delivery' | 'bunched' | 'lateMs' | 'heldMs'> {
  let bunched = 0;
  let previous: number | undefined;
  for (const { receivedAt } of arrivals) {
    if (previous !== undefined && receivedAt - previous < interval / 4) bunched += 1;
    previous = receivedAt;
  }
  const late = arrivals.map((a) => a.receivedAt - a.sentAt).sort((a, b) => a - b);
  const fastest = late[0] ?? 0;
  const held = late.map((ms) => ms - fastest);
  return {
    delivery: bunched > Math.max(1, (arrivals.length - 1) / 5) ? 'bursts' : 'one by one',
    bunched,
    lateMs: percentiles(late),
    heldMs: percentiles(held),
  };
}

function percentiles(sorted: readonly number[]): PathReport['lateMs'] {
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
  return { p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? NaN };
}

/**
 * Reads a ticks stream (`GET /api/diagnostics/ticks`) to its end, stamping each chunk with `now()`
 * as it arrives, and judges it. A body cut mid-stream is not an error: what arrived is the finding.
 */
export async function readTicks(body: ReadableStream<Uint8Array>, interval: number, count: number, now: () => number = Date.now): Promise<PathReport> {
  const arrivals: TickArrival[] = [];
  let receivedAt = 0;
  let heartbeatMs: number | undefined;
  let quietMs = 0;
  let heartbeatsSeen = 0;
  let done = false;
  const onEvent = (event: StreamEvent): void => {
    const data = JSON.parse(event.data) as { seq?: number; sentAt: number; heartbeatMs?: number; quiet?: number };
    if (event.event === 'start') {
      heartbeatMs = data.heartbeatMs;
      quietMs = data.quiet ?? 0;
    } else if (event.event === 'tick' && data.seq !== undefined) arrivals.push({ seq: data.seq, sentAt: data.sentAt, receivedAt });
    else if (event.event === 'done') done = true;
  };
  try {
    await readEventStream(body, onEvent, {
      onBytes: () => (receivedAt = now()),
      onComment: () => (heartbeatsSeen += 1),
    });
  } catch {
    // Cut mid-stream: what arrived is the finding.
  }
  return {
    ...judgeTicks(arrivals, interval),
    ticks: arrivals.length,
    expectedTicks: count,
    quietMs,
    quietSurvived: quietMs > 0 ? done : undefined,
    heartbeatMs,
    heartbeatsSeen,
  };
}

/** The report as lines a person reads. */
export function describeReport(report: PathReport): string[] {
  const ms = (figures: PathReport['lateMs']): string => `p50 ${figures.p50} ms, p99 ${figures.p99} ms, max ${figures.max} ms`;
  const lines = [
    `delivery: ${report.delivery} (${report.ticks}/${report.expectedTicks} ticks, ${report.bunched} arrived bunched with the one before)`,
    `late (arrival - sent, needs synced clocks): ${ms(report.lateMs)}`,
    `held (beyond the fastest tick): ${ms(report.heldMs)}`,
  ];
  if (report.quietSurvived !== undefined) {
    const beats = `${report.heartbeatsSeen} heartbeat${report.heartbeatsSeen === 1 ? '' : 's'} of every ${report.heartbeatMs ?? '?'} ms seen`;
    lines.push(`quiet stream: ${report.quietSurvived ? 'survived' : 'CUT'} ${report.quietMs} ms with only heartbeats (${beats})`);
  }
  return lines;
}
