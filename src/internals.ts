import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';

/*
 * Every place the relay reaches past Node's or Express's public API. Each saves memory or CPU
 * per held stream (the capacity and fan-out benches show how much); none is needed for a
 * stream to work. A `NodeInternals` checks at creation that each trick still applies to this
 * Node (a Node upgrade may rename what it relies on) and per response that the host app did
 * not wrap what it goes around; where one does not apply it falls back to the public API and
 * says so in one warning line. `nodeInternals: 0` (`NODE_INTERNALS=0`) turns them all off.
 */

/** A response's methods as Node defines them: an own or different one is a host app's wrapper. */
const NATIVE_WRITE = ServerResponse.prototype.write;
const NATIVE_END = ServerResponse.prototype.end;
const CRLF = Buffer.from('\r\n', 'latin1');
const NO_PARAMS: Record<string, string> = Object.freeze({});

/** What Express leaves on a request (undocumented fields, as Express 5 and its router set them). */
interface RoutedRequest {
  next?: unknown;
  _parsedUrl?: unknown;
  params?: Record<string, string>;
}

/** The tricks one Node answered for at start, for `NodeInternals`. */
interface Probed {
  /** Node's key for a response's headers stored before `writeHead` (`kOutHeaders`). */
  readonly storedHeadersKey: symbol | undefined;
  /** `_header` holds the sent header block as a string. */
  readonly headerBlock: boolean;
  /** `chunkedEncoding` says whether the body goes as HTTP/1.1 chunks. */
  readonly chunkedFlag: boolean;
}

/** A response to an HTTP/1.1 GET that was never on a socket, to look at what Node keeps on one. */
function probeResponse(): ServerResponse {
  const req = new IncomingMessage(new Socket());
  req.method = 'GET';
  req.httpVersionMajor = 1;
  req.httpVersionMinor = 1;
  return new ServerResponse(req);
}

/** Looks at one response, before and after its headers are stored, for each trick's footing. */
function probe(res: ServerResponse): Probed {
  const key = Object.getOwnPropertySymbols(res).find((symbol) => symbol.description === 'kOutHeaders');
  let stored = false;
  let headerBlock = false;
  let chunkedFlag = false;
  try {
    res.setHeader('X-Probe', '1');
    const held: unknown = key === undefined ? undefined : (res as unknown as Record<symbol, unknown>)[key];
    stored = typeof held === 'object' && held !== null && 'x-probe' in held;
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    const block: unknown = (res as { _header?: unknown })._header;
    headerBlock = typeof block === 'string' && block.startsWith('HTTP/1.1 200') && block.includes('X-Probe: 1');
    chunkedFlag = res.chunkedEncoding && typeof block === 'string' && /\r\nTransfer-Encoding: chunked\r\n/i.test(block);
  } catch {
    // A Node whose responses work otherwise: every trick falls back.
  }
  return { storedHeadersKey: stored ? key : undefined, headerBlock, chunkedFlag };
}

// A topic writes one frame to all its subscribers in a row: framing the chunk for the last
// frame seen makes that once per event, not once per subscriber.
let lastFrame: Buffer | undefined;
let lastChunk = Buffer.alloc(0);

/** A frame as one HTTP/1.1 chunk: size line, bytes, CRLF. */
export function chunkOf(frame: Buffer): Buffer {
  if (frame !== lastFrame) {
    lastChunk = Buffer.concat([Buffer.from(`${frame.length.toString(16)}\r\n`, 'latin1'), frame, CRLF]);
    lastFrame = frame;
  }
  return lastChunk;
}

/**
 * Parts (Latin-1 strings, and buffers) joined into one buffer, framed as one HTTP/1.1 chunk when
 * `chunked`: the body of a response written straight to its socket, assembled per client.
 */
export function joinedChunk(parts: readonly (string | Buffer)[], chunked: boolean): Buffer {
  let length = 0;
  for (const part of parts) length += part.length;
  const head = chunked ? `${length.toString(16)}\r\n` : '';
  const bytes = Buffer.allocUnsafe(head.length + length + (chunked ? 2 : 0));
  let at = bytes.write(head, 0, 'latin1');
  for (const part of parts) at += typeof part === 'string' ? bytes.write(part, at, 'latin1') : part.copy(bytes, at);
  if (chunked) CRLF.copy(bytes, at);
  return bytes;
}

/** Options of `NodeInternals`. */
export interface NodeInternalsOptions {
  /** False: public API only, and nothing is checked. */
  readonly enabled: boolean;
  /** Where the one line about a trick that does not apply goes (once per trick). */
  readonly warn: (line: string) => void;
  /** The response looked at to check the tricks. Defaults to a fresh one of this Node's. */
  readonly probe?: ServerResponse;
}

/** The tricks of one relay: those that apply, checked, and a switch for all of them. */
export class NodeInternals {
  private readonly storedHeadersKey: symbol | undefined;
  private readonly flattenHeaderBlock: boolean;
  private readonly writeDirect: boolean;
  private readonly shedRouting: boolean;
  private readonly warnings = new Set<string>();
  private readonly warn: (line: string) => void;

  constructor({ enabled, warn, probe: response }: NodeInternalsOptions) {
    this.warn = warn;
    this.shedRouting = enabled;
    if (!enabled) {
      this.storedHeadersKey = undefined;
      this.flattenHeaderBlock = false;
      this.writeDirect = false;
      return;
    }
    const probed = probe(response ?? probeResponse());
    this.storedHeadersKey = probed.storedHeadersKey;
    this.flattenHeaderBlock = probed.headerBlock;
    this.writeDirect = probed.chunkedFlag;
    const missing: string[] = [];
    if (probed.storedHeadersKey === undefined) missing.push("the stored headers' symbol (kOutHeaders)");
    if (!probed.headerBlock) missing.push('the header block (_header)');
    if (!probed.chunkedFlag) missing.push('the chunked-encoding flag (chunkedEncoding)');
    if (missing.length > 0) this.warnOnce('probe', `this Node's responses lack ${missing.join(', ')}: held streams use the public API for those (NODE_INTERNALS=0 turns every such trick off)`);
  }

  /**
   * Lets go of what a response keeps of its headers once they are sent:
   *
   * - the block (`_header`) as the string it was joined into: a rope of dozens of pieces, much
   *   larger than the text itself (heap snapshots). Measuring its UTF-8 length makes V8 flatten
   *   it in place (a native call, which the optimizer cannot drop), and the pieces go. Read
   *   only: nothing of Node's changes.
   * - the headers set before `writeHead` (`setHeader`: the request id, the rate limit's,
   *   Express's `X-Powered-By` even once removed), kept in an object under `kOutHeaders`, in
   *   dictionary mode, of no use once the block is sent (setting a header then throws). Node
   *   starts every response with none (null); this puts it back.
   */
  settleHeaders(res: ServerResponse): void {
    if (!res.headersSent) return;
    if (this.flattenHeaderBlock) {
      const block: unknown = (res as { _header?: unknown })._header;
      if (typeof block === 'string') Buffer.byteLength(block, 'utf8');
    }
    if (this.storedHeadersKey !== undefined) (res as unknown as Record<symbol, unknown>)[this.storedHeadersKey] = null;
  }

  /**
   * The socket a response's body may be written to directly, framed by the caller (`chunkOf`
   * when `res.chunkedEncoding`), or undefined: through `res.write()`.
   *
   * Express re-prototypes every `res` (Object.setPrototypeOf), and in V8 11 (Node 20) an object
   * given a new prototype gets a map of its own as soon as a property is added to it: with
   * thousands of responses, every property access inside `res.write()` is megamorphic and misses
   * V8's stub cache (bench/write-path.ts). Sockets are not re-prototyped.
   *
   * Not for a HEAD request (no body), a response with bytes still queued in it (direct writes
   * would overtake them), or one whose `write` or `end` the host app wrapped (compression, a
   * logging middleware): what it wraps them for would be bypassed.
   */
  directSocket(res: ServerResponse): Socket | undefined {
    if (!this.writeDirect) return undefined;
    const socket = res.socket;
    if (socket === null || res.req.method === 'HEAD' || res.writableLength !== socket.writableLength) return undefined;
    if (res.write !== NATIVE_WRITE || res.end !== NATIVE_END) {
      this.warnOnce('wrapped', 'res.write or res.end is wrapped by the host app (compression, a logging middleware?): held streams write through it instead of straight to their sockets');
      return undefined;
    }
    return socket;
  }

  /** Whether a response whose headers are out sends its body as HTTP/1.1 chunks: what a direct write must frame. */
  chunkedBody(res: ServerResponse): boolean {
    return this.writeDirect && res.chunkedEncoding;
  }

  /**
   * Lets go of what Express and its router left on a request whose stream is attached: a held
   * stream keeps its `req` and `res` for hours, and all this for as long (heap snapshots of the
   * capacity bench):
   *
   * - `req.next`: Express's routing state (a `next` and a restore closure per router level, and
   *   what they hold). Nothing calls it once the stream is attached.
   * - `req._parsedUrl`: parseurl's cached `Url` and its strings; parsed again if anyone asks.
   * - `req.params`: the route's, in dictionary mode (public API, so this one stays with the switch off).
   * - `res.locals`: created without a prototype, so in dictionary mode; the request log reads
   *   it when the response closes, so its entries stay, in a plain object that shares one shape
   *   with every other stream's (public API too).
   *
   * Fields are overwritten, never deleted: deleting one would turn `req` into a dictionary too.
   */
  shedRoutingState(req: IncomingMessage, res: ServerResponse): void {
    const routed = req as IncomingMessage & RoutedRequest;
    if (this.shedRouting) {
      if (typeof routed.next === 'function') {
        routed.next = undefined;
        if (routed._parsedUrl !== undefined) routed._parsedUrl = undefined;
      } else {
        this.warnOnce('routing', "a held request has no Express routing state where Express 5 keeps it (req.next): held requests keep whatever this Express holds instead");
      }
    }
    if (routed.params !== undefined) routed.params = NO_PARAMS;
    const withLocals = res as ServerResponse & { locals?: Record<string, unknown> };
    if (withLocals.locals !== undefined) withLocals.locals = { ...withLocals.locals };
  }

  private warnOnce(trick: string, line: string): void {
    if (this.warnings.has(trick)) return;
    this.warnings.add(trick);
    this.warn(`node internals: ${line}`);
  }
}
