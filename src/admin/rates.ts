/** Running totals that the ops page shows as rates. */
export interface Totals {
  /** Events relayed. */
  readonly events: number;
  /** Event deliveries (one per event per subscriber). */
  readonly deliveries: number;
  /** Streams opened. */
  readonly opens: number;
}

type Series = Record<keyof Totals, number[]>;

/**
 * Per-second rates of a few running totals over the last `windowSeconds`, one point per call
 * of `sample()` (the admin server calls it every second). A point is the growth since the
 * previous sample divided by the seconds between them, so a late timer does not make a spike.
 */
export class RateHistory {
  private readonly points: Series = { events: [], deliveries: [], opens: [] };
  private last: { at: number; totals: Totals } | undefined;

  constructor(
    private readonly read: () => Totals,
    readonly windowSeconds = 300,
  ) {}

  sample(now = Date.now()): void {
    const totals = this.read();
    const last = this.last;
    this.last = { at: now, totals };
    if (!last || now <= last.at) return;
    const seconds = (now - last.at) / 1000;
    for (const name of Object.keys(this.points) as (keyof Totals)[]) {
      const series = this.points[name];
      // A total that went down was reset (a new relay behind the same sources): no rate for that second.
      series.push(Math.max(0, Math.round(((totals[name] - last.totals[name]) / seconds) * 100) / 100));
      if (series.length > this.windowSeconds) series.shift();
    }
  }

  /** Each rate per second, oldest first, one point per sample. */
  series(): Series {
    return { events: [...this.points.events], deliveries: [...this.points.deliveries], opens: [...this.points.opens] };
  }
}
