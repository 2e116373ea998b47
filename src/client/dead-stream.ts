/**
 * Telling a dead stream from a quiet one. The relay leaves no stream silent for longer than its
 * heartbeat interval (`HEARTBEAT_MS`: a quiet stream gets a `: hb` comment), so a stream that
 * delivers no byte, not even a heartbeat, for twice that has a dead socket that did not say so:
 * a phone that changed networks, a laptop that slept.
 */

/** The error a stream read fails with once its `SilenceWatch` called it dead. */
export class DeadStreamError extends Error {
  constructor(readonly silentMs: number) {
    super(`no byte for ${silentMs} ms: the connection is dead`);
    this.name = 'DeadStreamError';
  }
}

/**
 * The relay's heartbeat interval as a client knows it: what the relay said in its last `ready`
 * event, else what the client was given; undefined with neither (a silent stream is then never
 * called dead). One per client, so that streams without a `ready` event of their own (a chat
 * answer) go by what the multiplexed stream learnt.
 */
export class RelayHeartbeat {
  private said: number | undefined;

  constructor(private readonly given: number | undefined) {}

  /** The interval to watch streams with now. */
  get ms(): number | undefined {
    return this.said ?? this.given;
  }

  /** Takes a `ready` event's `heartbeatMs` (anything else is ignored); returns the interval to watch that stream with. */
  learn(heartbeatMs: unknown): number | undefined {
    if (typeof heartbeatMs === 'number' && Number.isFinite(heartbeatMs) && heartbeatMs > 0) {
      this.said = heartbeatMs;
      return heartbeatMs;
    }
    return this.given;
  }
}

/**
 * Watches one stream read for silence (see `readEventStream`'s `watch`): each chunk that arrives
 * restarts the clock; no chunk for twice the heartbeat interval ends the read with
 * `DeadStreamError`. Unarmed until `arm` gives it an interval.
 */
export class SilenceWatch {
  /** Set once the stream was called dead. */
  error: DeadStreamError | undefined;
  private limitMs: number | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private kill: ((error: DeadStreamError) => void) | undefined;

  /** Starts watching with the relay's heartbeat interval; undefined leaves the stream unwatched. */
  arm(heartbeatMs: number | undefined): void {
    this.limitMs = heartbeatMs === undefined ? undefined : 2 * heartbeatMs;
    this.heard();
  }

  /** A chunk arrived. */
  heard(): void {
    clearTimeout(this.timer);
    const limitMs = this.limitMs;
    if (limitMs === undefined || this.error !== undefined || this.kill === undefined) return;
    this.timer = setTimeout(() => {
      this.error = new DeadStreamError(limitMs);
      this.kill?.(this.error);
    }, limitMs);
  }

  /** The reader's side: `kill` stops the read; until `release`, silence calls it. */
  bind(kill: (error: DeadStreamError) => void): void {
    this.kill = kill;
    this.heard();
  }

  release(): void {
    clearTimeout(this.timer);
    this.kill = undefined;
  }
}
