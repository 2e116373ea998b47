import { createParser, type EventSourceParser } from 'eventsource-parser';
import type { SseEvent } from './encode';

const LF = 10;
const SPACE = 32;

/** What a reader reports, in stream order. */
export interface ReaderCallbacks {
  /**
   * One dispatched event, or an id-only frame (`data` undefined). `lastEventId` is the spec's
   * last event id after it: the frame's own id, else the one before.
   */
  onFrame(frame: SseEvent, lastEventId: string | undefined): void;
  /** A valid `retry:` field, in milliseconds. */
  onRetry(ms: number): void;
  /** A line or an event passed `maxBufferSize` characters; nothing more is read. */
  onOverflow(): void;
}

/**
 * Reads one connection's event stream: splits lines at CR, LF or CRLF and hands each line to
 * eventsource-parser, which parses the fields. Splitting here adds what the parser does not
 * give: [spec] an `id:` in a block without data still sets the last event id (the parser
 * dispatches nothing for it), and a line ending in a bare CR is complete at once (the parser
 * holds it until the next chunk, so CR-only streams would arrive an event late).
 */
export class EventStreamReader {
  private readonly parser: EventSourceParser;
  /** The unfinished last line of what was fed. */
  private partial = '';
  /** The last chunk ended with CR: an LF starting the next one belongs to that line end. */
  private afterCR = false;
  /** The current block's id field, if it had one; and whether it had a data field. */
  private blockId: string | undefined;
  private blockHasData = false;
  private lastId: string | undefined;
  private overflowed = false;

  constructor(
    private readonly callbacks: ReaderCallbacks,
    private readonly maxBufferSize: number,
    lastEventId: string | undefined,
  ) {
    this.lastId = lastEventId;
    this.parser = createParser({
      maxBufferSize,
      onEvent: (event) => {
        if (event.id !== undefined) this.lastId = event.id;
        this.callbacks.onFrame(event, this.lastId);
      },
      onRetry: (ms) => this.callbacks.onRetry(ms),
      onError: (error) => {
        if (error.type === 'max-buffer-size-exceeded') this.overflow();
      },
    });
  }

  /** The spec's last event id: what a reconnect sends as `Last-Event-ID`. */
  get lastEventId(): string | undefined {
    return this.lastId;
  }

  /** Feeds decoded text; complete blocks are reported before this returns. */
  feed(text: string): void {
    if (this.overflowed) return;
    let start = this.afterCR && text.charCodeAt(0) === LF ? 1 : 0;
    this.afterCR = false;
    let cr = text.indexOf('\r', start);
    let lf = text.indexOf('\n', start);
    while (!this.overflowed) {
      if (cr !== -1 && cr < start) cr = text.indexOf('\r', start);
      if (lf !== -1 && lf < start) lf = text.indexOf('\n', start);
      const end = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf);
      if (end === -1) break;
      const line = this.partial === '' ? text.slice(start, end) : this.partial + text.slice(start, end);
      this.partial = '';
      start = end + 1;
      if (end === cr) {
        if (start === text.length) this.afterCR = true;
        else if (text.charCodeAt(start) === LF) start += 1;
      }
      this.line(line);
    }
    if (this.overflowed) return;
    this.partial += text.slice(start);
    if (this.partial.length > this.maxBufferSize) this.overflow();
  }

  private line(line: string): void {
    if (line === '') {
      // [spec] dispatch: an empty data buffer dispatches nothing, but the id buffer was already set.
      if (this.blockId !== undefined && !this.blockHasData) {
        this.lastId = this.blockId;
        this.callbacks.onFrame({ id: this.blockId }, this.lastId);
      }
      this.blockId = undefined;
      this.blockHasData = false;
      this.parser.feed('\n');
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    if (field === 'data') this.blockHasData = true;
    else if (field === 'id') {
      const value = colon === -1 ? '' : line.slice(line.charCodeAt(colon + 1) === SPACE ? colon + 2 : colon + 1);
      // [spec] an id containing NUL is ignored.
      if (!value.includes('\0')) this.blockId = value;
    }
    this.parser.feed(`${line}\n`);
  }

  private overflow(): void {
    if (this.overflowed) return;
    this.overflowed = true;
    this.partial = '';
    this.callbacks.onOverflow();
  }
}
