import { type PathReport, readTicks } from '../diagnostics/path-report';
import { RelayError, type Transport } from './transport';

/** Options of `client.checkPath`. */
export interface PathCheckOptions {
  /** Ms between ticks. Defaults to 250. */
  interval?: number;
  /** Ticks to send. Defaults to 20. */
  count?: number;
  /** Ms with only heartbeats after the ticks, or `auto` (two of the relay's heartbeats). Defaults to 0: no quiet phase. */
  quiet?: number | 'auto';
}

/**
 * Reads the relay's ticks stream with the client's credentials, through whatever stands between
 * this page and the relay, and reports whether the events came one by one or in bursts.
 * Rejects with `RelayError` when the relay refuses the check.
 */
export async function checkPath(transport: Transport, options: PathCheckOptions = {}): Promise<PathReport> {
  const interval = options.interval ?? 250;
  const count = options.count ?? 20;
  const query = new URLSearchParams({ interval: String(interval), count: String(count), quiet: String(options.quiet ?? 0) });
  const response = await transport.request(`/api/diagnostics/ticks?${query.toString()}`, { headers: { accept: 'text/event-stream' } });
  if (!response.ok || !response.body) throw await RelayError.from(response);
  return readTicks(response.body, interval, count);
}
