import { type Socket, connect } from 'node:net';

/**
 * The load client's reader of one SSE response off a raw socket: the status line, HTTP/1.1
 * chunked framing (or a body that runs to the socket's close), and of the event stream only
 * what a delay needs: each event's name and data, and `retry:` for a client that reconnects.
 * Ids and comments are skipped.
 *
 * Not a general SSE parser (the relay's own path uses eventsource-parser): it exists so that
 * the process measuring 10,000 streams costs much less than the process measured. Through
 * node:http, a TextDecoder and eventsource-parser the client was at 88 to 93 % of its CPU at
 * 10,000 subscribers, and its own queueing showed up as the subject's delay.
 */

const LF = 0x0a;
const CR = 0x0d;
const HEAD_END = Buffer.from('\r\n\r\n');
const MAX_HEAD_BYTES = 16 * 1024;

/** What a `SseWire` reports. */
export interface SseWireHandler {
  /** The response head arrived; `status` is its status code. */
  onHead(status: number): void;
  /** One event: its `event:` name (undefined when none) and its data lines joined with LF. */
  onEvent(name: string | undefined, data: string): void;
  /** A `retry:` field's value, in milliseconds. */
  onRetry?(ms: number): void;
  /** The last chunk of a chunked body: the server ended the stream. */
  onEnd(): void;
  /** Bytes that are not an HTTP response. */
  onError(message: string): void;
}

type Phase = 'head' | 'size' | 'data' | 'data-end' | 'identity' | 'ended';

export class SseWire {
  private phase: Phase = 'head';
  private head: Buffer | undefined;
  /** Bytes left in the current chunk. */
  private left = 0;
  /** The current chunk-size line, while it is split across reads. */
  private sizeLine = '';
  /** The current SSE line, while it is split across chunks or reads. */
  private carry: Buffer | undefined;
  private name: string | undefined;
  private data: string | undefined;

  constructor(private readonly handler: SseWireHandler) {}

  /** Feeds bytes as they come off the socket; they are not kept (the caller may reuse their buffer). */
  push(bytes: Buffer): void {
    let at = 0;
    if (this.phase === 'head') {
      at = this.readHead(bytes);
      if (at < 0) return;
    }
    while (at < bytes.length) {
      switch (this.phase) {
        case 'identity':
          this.body(bytes, at, bytes.length);
          return;
        case 'size': {
          const lf = bytes.indexOf(LF, at);
          if (lf < 0) {
            this.sizeLine += bytes.toString('latin1', at);
            return;
          }
          const line = this.sizeLine + bytes.toString('latin1', at, lf);
          this.sizeLine = '';
          at = lf + 1;
          const size = parseInt(line, 16);
          if (!Number.isFinite(size)) return this.fail(`bad chunk size "${line.trim()}"`);
          if (size === 0) {
            this.phase = 'ended';
            this.handler.onEnd();
            return;
          }
          this.left = size;
          this.phase = 'data';
          break;
        }
        case 'data': {
          const end = Math.min(bytes.length, at + this.left);
          this.body(bytes, at, end);
          this.left -= end - at;
          at = end;
          if (this.left === 0) this.phase = 'data-end';
          break;
        }
        case 'data-end': {
          // The CRLF after a chunk's data, possibly split across reads.
          const lf = bytes.indexOf(LF, at);
          if (lf < 0) return;
          at = lf + 1;
          this.phase = 'size';
          break;
        }
        case 'head':
        case 'ended':
          return;
      }
    }
  }

  /** Reads the head; returns where the body starts in `bytes`, or -1 when the head is not complete (or was refused). */
  private readHead(bytes: Buffer): number {
    const joined = this.head === undefined ? bytes : Buffer.concat([this.head, bytes]);
    const end = joined.indexOf(HEAD_END);
    if (end < 0) {
      if (joined.length > MAX_HEAD_BYTES) this.fail('response head too large');
      // A copy: the caller may reuse its read buffer.
      else this.head = Buffer.from(joined);
      return -1;
    }
    this.head = undefined;
    const text = joined.toString('latin1', 0, end);
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(text);
    if (status === null) {
      this.fail(`not an HTTP response: "${text.slice(0, 40)}"`);
      return -1;
    }
    this.phase = /\r\ntransfer-encoding:[^\r]*chunked/i.test(text) ? 'size' : 'identity';
    this.handler.onHead(Number(status[1]));
    // The handler may have ended this stream (a refused status).
    if ((this.phase as Phase) === 'ended') return -1;
    const bodyStart = end + HEAD_END.length;
    return bodyStart - (joined.length - bytes.length);
  }

  /** Stops reading: nothing more is reported. */
  close(): void {
    this.phase = 'ended';
  }

  private fail(message: string): void {
    this.phase = 'ended';
    this.handler.onError(message);
  }

  /** Body bytes [from, to) of `bytes`: split into lines. */
  private body(bytes: Buffer, from: number, to: number): void {
    let at = from;
    while (at < to) {
      const lf = bytes.indexOf(LF, at);
      if (lf < 0 || lf >= to) {
        const rest = bytes.subarray(at, to);
        this.carry = this.carry === undefined ? Buffer.from(rest) : Buffer.concat([this.carry, rest]);
        return;
      }
      if (this.carry !== undefined) {
        const line = Buffer.concat([this.carry, bytes.subarray(at, lf)]);
        this.carry = undefined;
        this.line(line, 0, line.length);
      } else {
        this.line(bytes, at, lf);
      }
      at = lf + 1;
    }
  }

  /** One line, [from, to) of `bytes`, without its LF. */
  private line(bytes: Buffer, from: number, to: number): void {
    const end = to > from && bytes[to - 1] === CR ? to - 1 : to;
    if (end === from) {
      if (this.data !== undefined) this.handler.onEvent(this.name, this.data);
      this.name = undefined;
      this.data = undefined;
      return;
    }
    const field = fieldOf(bytes, from, end);
    if (field === undefined) return;
    const [kind, valueFrom] = field;
    const value = bytes.toString('utf8', valueFrom, end);
    if (kind === 'data') this.data = this.data === undefined ? value : `${this.data}\n${value}`;
    else if (kind === 'event') this.name = value;
    else if (/^\d+$/.test(value)) this.handler.onRetry?.(Number(value));
  }
}

const FIELDS = [
  ['data', Buffer.from('data:')],
  ['event', Buffer.from('event:')],
  ['retry', Buffer.from('retry:')],
] as const;

/** `data`, `event` or `retry` and where its value starts (after the colon and one optional space); undefined for any other line. */
function fieldOf(bytes: Buffer, from: number, end: number): ['data' | 'event' | 'retry', number] | undefined {
  for (const [kind, prefix] of FIELDS) {
    if (end - from >= prefix.length && bytes.compare(prefix, 0, prefix.length, from, from + prefix.length) === 0) {
      const valueFrom = from + prefix.length;
      return [kind, bytes[valueFrom] === 0x20 ? valueFrom + 1 : valueFrom];
    }
  }
  return undefined;
}

// Every read of every stream of a client process lands in one buffer, read at once: no
// allocation per read, so the client's own GC stays out of the delays it measures.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** A raw connection to `url`'s host and port whose every read is pushed into `wire`. */
export function connectWire(url: URL, wire: SseWire): Socket {
  return connect({
    host: url.hostname,
    port: Number(url.port),
    onread: {
      buffer: READ_BUFFER,
      callback: (size: number, buffer: Uint8Array) => {
        wire.push(Buffer.from(buffer.buffer, buffer.byteOffset, size));
        return true;
      },
    },
  });
}
