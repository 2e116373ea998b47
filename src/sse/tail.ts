/**
 * Where an event stream relayed as raw bytes stands after its last chunk, so the relay can end
 * it with a `retry:` field without touching what the backend sent. The proxy passes chunks on
 * unparsed, and a chunk may stop inside an event or inside a line.
 */
export class SseTail {
  /** The last (up to) three characters written: enough to tell two line ends in a row. */
  private last = '';

  /** Notes a chunk written to the client. */
  see(chunk: Buffer): void {
    this.last = chunk.length >= 3 ? chunk.toString('latin1', chunk.length - 3) : (this.last + chunk.toString('latin1')).slice(-3);
  }

  /**
   * The bytes that tell the client to reconnect after `ms`, or undefined when none can be
   * added: the stream stopped mid-line, and anything appended would change that line.
   * [spec] `retry` takes effect when its line is read, not when an event is dispatched, and a
   * stream's end discards an event without its blank line. So inside an event the field goes
   * alone: a blank line after it would dispatch the half-sent event.
   */
  retry(ms: number): Buffer | undefined {
    const field = `retry: ${Math.max(0, Math.floor(ms))}\n`;
    if (this.atEventEnd()) return Buffer.from(`${field}\n`, 'latin1');
    if (this.last.endsWith('\n') || this.last.endsWith('\r')) return Buffer.from(field, 'latin1');
    return undefined;
  }

  /** Nothing written yet, or the last line end closed an empty line (CR, LF and CRLF alike). */
  private atEventEnd(): boolean {
    const two = this.last.slice(-2);
    return this.last === '' || two === '\n\n' || two === '\r\r' || two === '\n\r' || this.last === '\n\r\n' || this.last === '\r\r\n';
  }
}
