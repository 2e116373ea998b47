import type { UserStreams } from '../relay/user-streams';
import type { RecentCuts } from './cuts';

/** What `/readyz` answers: `ready`, or why not. */
export type Readiness = 'ready' | 'backend_unavailable' | 'redis_unavailable' | 'shutting_down';

/** What a relay keeps for its operators besides its public parts: read by the admin API and the metrics. */
export interface RelayOps {
  /** Every open stream, by user. */
  readonly userStreams: UserStreams;
  /** The last streams cut short and requests refused by a limit. */
  readonly cuts: RecentCuts;
  /** When the relay was created (epoch ms). */
  readonly startedAt: number;
  /** The cap on open streams in all (`maxConnections`). */
  readonly maxConnections: number;
  /** What `/readyz` would answer now. */
  readiness(): Promise<Readiness>;
}
