import { Agent, fetch } from 'undici';
import { type PathReport, readTicks } from './path-report';

export interface CheckOptions {
  /** The relay's base URL as clients reach it (through the proxy or CDN to test), or the ticks URL itself. */
  readonly url: string;
  readonly token: string;
  readonly interval?: number;
  readonly count?: number;
  /** Quiet ms after the ticks, or `auto` (two of the relay's heartbeats). Defaults to `auto`. */
  readonly quiet?: number | 'auto';
}

/** Thrown when the ticks stream could not be opened; `status` is the HTTP answer, if any. */
export class CheckError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'CheckError';
  }
}

/**
 * Reads `GET /api/diagnostics/ticks` through whatever stands in between, as a browser would
 * (compression accepted), and reports how the ticks arrived.
 */
export async function checkPath(options: CheckOptions): Promise<PathReport> {
  const interval = options.interval ?? 250;
  const count = options.count ?? 20;
  const url = new URL(options.url);
  if (!url.pathname.endsWith('/diagnostics/ticks')) url.pathname = `${url.pathname.replace(/\/$/, '')}/api/diagnostics/ticks`;
  url.search = new URLSearchParams({ interval: String(interval), count: String(count), quiet: String(options.quiet ?? 'auto') }).toString();

  // A quiet phase may outlast fetch's default body timeout (300 s); the relay bounds the stream.
  const dispatcher = new Agent({ bodyTimeout: 0, headersTimeout: 30_000 });
  try {
    const answer = await fetch(url, { dispatcher, headers: { accept: 'text/event-stream', authorization: `Bearer ${options.token}` } });
    if (answer.status !== 200 || !answer.body) {
      const body = await answer.text().catch(() => '');
      throw new CheckError(`${url.origin}${url.pathname} answered ${answer.status}: ${body.slice(0, 300)}`, answer.status);
    }
    return await readTicks(answer.body as ReadableStream<Uint8Array>, interval, count);
  } finally {
    await dispatcher.close();
  }
}
