import type { Request, Response } from 'express';
import { SSE_HEADERS, commentFrame, eventFrame, retryFrame } from './sse-frames';
import { BackendError } from './errors';

const HEARTBEAT = commentFrame('hb');
const EVENT_ID = /^\d{1,15}$/;

/**
 * The full history of one stream (a download, an upload session, a chat answer)
 * and the responses reading it. Ids are 1, 2, 3… in order; each event is
 * serialized once and the same bytes go to every reader.
 *
 * A reader is a cursor into the history: it is written to while its socket takes
 * data, and waits for `drain` otherwise. A slow client only falls behind; nothing
 * is queued for it beyond what the history already holds.
 */
export class EventLog {
  private readonly frames: Buffer[] = [];
  private readonly readers = new Set<LogReader>();
  private done = false;

  /** @param onReaderLeft called when a reader's connection closes before it got the end, with the readers left. */
  constructor(private readonly onReaderLeft?: (remaining: number) => void) {}

  /** The id of the newest event; 0 when there is none. */
  get lastId(): number {
    return this.frames.length;
  }

  get finished(): boolean {
    return this.done;
  }

  get readerCount(): number {
    return this.readers.size;
  }

  /** Appends one event (its data serialized as JSON) and sends it to every reader. Returns its id; ignored after `finish()`. */
  append(data: unknown, event?: string): number {
    if (this.done) return this.frames.length;
    const id = this.frames.length + 1;
    this.frames.push(eventFrame(id, event, JSON.stringify(data)));
    for (const reader of this.readers) reader.pump();
    return id;
  }

  /** No more events: every reader's response ends once it has been sent everything. */
  finish(): void {
    if (this.done) return;
    this.done = true;
    for (const reader of this.readers) reader.pump();
  }

  /**
   * Writes the events after `afterId` to the started event stream `res`, then
   * each new one as it is appended, and ends `res` after the last event of a
   * finished log.
   */
  attach(res: Response, afterId: number): void {
    const reader = new LogReader(this.frames, res, afterId, () => this.done);
    this.readers.add(reader);
    whenClosed(res, () => {
      this.readers.delete(reader);
      if (!res.writableFinished) this.onReaderLeft?.(this.readers.size);
    });
    reader.pump();
  }
}

class LogReader {
  private waiting = false;

  constructor(
    private readonly frames: readonly Buffer[],
    private readonly res: Response,
    private cursor: number,
    private readonly logDone: () => boolean,
  ) {}

  pump(): void {
    if (this.waiting || this.res.writableEnded || this.res.destroyed) return;
    while (this.cursor < this.frames.length) {
      const frame = this.frames[this.cursor] as Buffer;
      this.cursor += 1;
      if (!this.res.write(frame)) {
        this.waiting = true;
        this.res.once('drain', () => {
          this.waiting = false;
          this.pump();
        });
        return;
      }
    }
    if (this.logDone()) this.res.end();
  }
}

/** The open event-stream responses of one backend, so that `close()` can end them all. */
export class StreamSet {
  private readonly open = new Map<Response, NodeJS.Timeout>();

  constructor(
    private readonly heartbeatMs: number,
    private readonly retryMs: number,
  ) {}

  get size(): number {
    return this.open.size;
  }

  /**
   * Starts an event stream on `res`: the contract's headers, flushed at once so
   * the client sees the stream open before the first event, then `: hb` comments
   * until the response closes. `retry` adds the reconnect hint for GET streams.
   */
  start(res: Response, options: { retry?: boolean } = {}): void {
    res.status(200).set(SSE_HEADERS);
    res.flushHeaders();
    if (options.retry === true) res.write(retryFrame(this.retryMs));
    const heartbeat = setInterval(() => {
      // A client that is not reading gets nothing on top of its backlog.
      if (!res.writableNeedDrain) res.write(HEARTBEAT);
    }, this.heartbeatMs);
    this.open.set(res, heartbeat);
    whenClosed(res, () => {
      clearInterval(heartbeat);
      this.open.delete(res);
    });
  }

  /**
   * Serves a resumable GET of `log` after the client's last event: `204 No Content`
   * when it already has the last event of a finished log (which tells `EventSource`
   * to stop reconnecting), else the missed events and then the live ones.
   */
  serveLog(req: Request, res: Response, log: EventLog): void {
    const afterId = lastEventIdOf(req);
    // An id this backend has not sent yet would hide every event up to it.
    if (afterId > log.lastId) throw new BackendError('invalid_last_event_id');
    if (log.finished && afterId >= log.lastId && afterId > 0) {
      res.status(204).end();
      return;
    }
    this.start(res, { retry: true });
    log.attach(res, afterId);
  }

  /** Ends every open stream now. */
  endAll(): void {
    for (const [res, heartbeat] of this.open) {
      clearInterval(heartbeat);
      res.end();
    }
    this.open.clear();
  }
}

/** The id after which a resuming client wants events: `Last-Event-ID`, else `?lastEventId=`; 0 for neither. */
function lastEventIdOf(req: Request): number {
  const query: unknown = req.query.lastEventId;
  if (query !== undefined && typeof query !== 'string') throw new BackendError('invalid_last_event_id');
  const raw = (req.get('last-event-id') ?? query ?? '').trim();
  if (raw === '') return 0;
  if (!EVENT_ID.test(raw)) throw new BackendError('invalid_last_event_id');
  return Number(raw);
}

/**
 * Runs `onClose` when the response closes (it finished, or the client left), or
 * at once if that already happened: `close` does not fire twice, and a client can
 * leave before its handler runs.
 */
export function whenClosed(res: Response, onClose: () => void): void {
  if (res.destroyed) onClose();
  else res.once('close', onClose);
}
