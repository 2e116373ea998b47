import type { Logger } from 'pino';
import { HttpError } from '../errors';

/** The shortest gap between two log lines about refusals: a relay at its budget refuses many. */
const LOG_EVERY_MS = 10_000;

const MESSAGE = 'The relay holds as many upstream connections as it may; retry later.';

/**
 * How many topic upstreams (backend event streams) a relay may hold at once, from its open-file
 * limit: a multiplexed stream holds one per topic on a single client socket, so the caps on
 * sockets and streams alone do not bound them. Past it a request that needs one more is
 * answered 503 `over_capacity`, while the relay still has the descriptors to say so.
 */
export class UpstreamBudget {
  private refused = 0;
  private loggedAt = Number.NEGATIVE_INFINITY;

  constructor(
    readonly max: number,
    private readonly logger: Logger,
    private readonly onRefused: () => void,
  ) {}

  /** Throws 503 `over_capacity` (with `Retry-After`) unless `needed` more upstreams fit beside `held`. */
  admit(held: number, needed: number): void {
    if (held + needed <= this.max) return;
    this.onRefused();
    this.refused += 1;
    const now = Date.now();
    if (now - this.loggedAt >= LOG_EVERY_MS) {
      this.logger.warn({ held, needed, maxUpstreams: this.max, refused: this.refused }, 'upstream budget reached: streams and topic adds that need a new upstream get 503');
      this.loggedAt = now;
      this.refused = 0;
    }
    // Spread like a full relay's 503: clients refused together do not all come back together.
    throw new HttpError('over_capacity', MESSAGE, undefined, { 'Retry-After': String(5 + Math.floor(Math.random() * 10)) });
  }
}
