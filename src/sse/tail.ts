import { retryValue } from './encode';

const CR = 0x0d;
const LF = 0x0a;
const R = 0x72;
const BOM = [0xef, 0xbb, 0xbf];
/** [spec] a `retry` field whose value is only digits sets the reconnection time; one leading space is not part of the value. */
const RETRY_FIELD = /^retry: ?(\d+)$/;
/** Longest line kept across chunks while it may still be a `retry:` field (longer ones are not worth telling apart). */
const MAX_RETRY_LINE = 32;
const NOTHING = Buffer.alloc(0);

/**
 * Where an event stream relayed as raw bytes stands after its last chunk, so the relay can end
 * it with a `retry:` field without touching what the backend sent. The proxy passes chunks on
 * unparsed, and a chunk may stop inside an event or inside a line.
 */
export class SseTail {
  /** The last (up to) three characters written: enough to tell two line ends in a row. */
  private last = '';
  /** The current line so far while it may be a `retry:` field ('' at a line start); undefined: it is not one. */
  private line: string | undefined = '';
  /** The reconnection time the backend's own `retry:` fields last set, if any. */
  private told: number | undefined;

  /** Notes a chunk written to the client. */
  see(chunk: Buffer): void {
    // [spec] a leading BOM is not part of the first line.
    const start = this.last === '' && BOM.every((byte, i) => chunk[i] === byte) ? BOM.length : 0;
    this.scan(chunk, start);
    this.last = chunk.length >= 3 ? chunk.toString('latin1', chunk.length - 3) : (this.last + chunk.toString('latin1')).slice(-3);
  }

  /**
   * The bytes that tell the client to reconnect after `ms`: none (an empty buffer) when the
   * backend already told it that, or undefined when none can be added: the stream stopped
   * mid-line, and anything appended would change that line.
   * [spec] `retry` takes effect when its line is read, not when an event is dispatched, and a
   * stream's end discards an event without its blank line. So inside an event the field goes
   * alone: a blank line after it would dispatch the half-sent event.
   */
  retry(ms: number): Buffer | undefined {
    if (retryValue(ms) === this.told) return NOTHING;
    const field = `retry: ${retryValue(ms)}\n`;
    if (this.atEventEnd()) return Buffer.from(`${field}\n`, 'latin1');
    if (this.last.endsWith('\n') || this.last.endsWith('\r')) return Buffer.from(field, 'latin1');
    return undefined;
  }

  /** Follows the lines of `chunk` from `from`, reading each `retry:` field. */
  private scan(chunk: Buffer, from: number): void {
    let cr = chunk.indexOf(CR, from);
    let lf = chunk.indexOf(LF, from);
    for (;;) {
      if (cr !== -1 && cr < from) cr = chunk.indexOf(CR, from);
      if (lf !== -1 && lf < from) lf = chunk.indexOf(LF, from);
      const end = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf);
      if (end === -1) break;
      // A CRLF's LF ends an empty line here: harmless, an empty line is no field.
      const line = this.line === '' ? (chunk[from] === R ? chunk.toString('latin1', from, end) : undefined) : this.line === undefined ? undefined : this.line + chunk.toString('latin1', from, end);
      const field = line === undefined ? null : RETRY_FIELD.exec(line);
      if (field) this.told = Number(field[1]);
      this.line = '';
      from = end + 1;
    }
    if (from >= chunk.length || this.line === undefined) return;
    if (this.line === '' && chunk[from] !== R) {
      this.line = undefined;
      return;
    }
    const line = this.line + chunk.toString('latin1', from);
    this.line = line.length <= MAX_RETRY_LINE ? line : undefined;
  }

  /**
   * Nothing written yet, or the last line end closed an empty line (CR, LF and CRLF alike):
   * what comes next starts a new block, so a whole comment (or event) may go here.
   */
  atEventEnd(): boolean {
    const two = this.last.slice(-2);
    return this.last === '' || two === '\n\n' || two === '\r\r' || two === '\n\r' || this.last === '\n\r\n' || this.last === '\r\r\n';
  }
}
