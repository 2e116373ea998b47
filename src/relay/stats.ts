/** Running totals of one relay (and what it holds open), read by the metrics endpoint and by tests. */
export class RelayStats {
  eventsRelayed = 0;
  /** Event deliveries: one per event per subscriber. */
  deliveries = 0;
  bytesRelayed = 0;
  duplicatesDropped = 0;
  /** Upstream events that could not be re-encoded (dropped, logged). */
  eventsDropped = 0;
  replays = 0;
  resyncs = 0;
  /** Resumes from before a topic's history caught up from the backend (one request each). */
  catchUps = 0;
  /** Catch-ups that could not reach the history (the backend refused, broke off or did not replay): `resync` if needed. */
  catchUpFallbacks = 0;
  /** Backend event streams this relay subscribed to itself (a cluster follower reads Redis instead). */
  upstreamConnects = 0;
  /** Requests to backend event streams open now: from sent until their answer is done with. */
  upstreamsOpen = 0;
  upstreamReconnects = 0;
  upstreamGiveUps = 0;
  slowClientsCut = 0;
  streamsOpened = 0;
  streamsClosed = 0;
  authFailures = 0;
  /** Called per relayed event with the seconds from its parse to its write to the last subscriber. */
  onDelivered: (seconds: number) => void = () => undefined;
  readonly closeReasons = new Map<string, number>();
  /** Requests refused by a limit: `total`, `perUser`, `perIp` (connections) or `rate`. */
  readonly rejections = new Map<string, number>();
  /** What a cluster read from Redis without a valid signature and dropped: `entry` (a topic's history) or `end_user`. */
  readonly forged = new Map<string, number>();

  countClose(reason: string): void {
    this.streamsClosed += 1;
    this.closeReasons.set(reason, (this.closeReasons.get(reason) ?? 0) + 1);
  }

  countRejection(limit: string): void {
    this.rejections.set(limit, (this.rejections.get(limit) ?? 0) + 1);
  }

  countForged(kind: string): void {
    this.forged.set(kind, (this.forged.get(kind) ?? 0) + 1);
  }
}
