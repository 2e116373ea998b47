import { subscribe } from 'node:diagnostics_channel';
import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/** What Node itself answers to a request head that came too slowly. */
const REQUEST_TIMEOUT = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n';

/** What Node publishes on `http.server.request.start` and `http.server.response.finish`. */
interface HttpMessage {
  readonly request: IncomingMessage;
  readonly socket: Socket;
  readonly server: Server;
}

/**
 * Gives every socket of `server` `timeoutMs`, from its accept and from the end of each response
 * that keeps it open, to complete a request head; past it the socket gets Node's 408 and is
 * closed. One that sent no byte since a response is closed without a word, as an idle keep-alive
 * one is: a client whose request crossed the close sends it again, where it could take a 408 for
 * its answer. Node's own `headersTimeout` is enforced by a periodic sweep over a list that has been
 * seen to lose a silent socket once other requests came and went.
 *
 * The waiting sockets share one timer: every deadline is `timeoutMs` away when set, so the order in
 * which they are set is the order in which they fall. A socket whose head arrived is off the list
 * and costs nothing for as long as its response lasts (a held stream: hours); the head and the end
 * of each response are seen through Node's diagnostics channels, not listeners on each response.
 */
export function enforceHeadDeadline(server: Server, timeoutMs: number): void {
  const deadlines = new HeadDeadlines(timeoutMs);
  byServer.set(server, deadlines);
  watchMessages();
  server.on('connection', (socket: Socket) => deadlines.arm(socket, undefined));
  server.prependListener('request', (req: IncomingMessage) => {
    if (started === req) {
      started = undefined;
      return;
    }
    // Node did not publish this request's start: nothing tells when heads arrive, so leave them to Node's own timeout.
    byServer.delete(server);
    deadlines.stop();
  });
  // A socket handed over for an upgrade or a tunnel is no longer HTTP's to time (Node publishes no
  // start for it). Watched only once the app listens: a listener of ours would change what gets there.
  const handedOver = (_req: IncomingMessage, socket: Socket): void => deadlines.headArrived(socket);
  const watched = new Set<string | symbol>();
  server.on('newListener', (event: string | symbol) => {
    if ((event !== 'upgrade' && event !== 'connect') || watched.has(event)) return;
    watched.add(event);
    server.prependListener(event, handedOver);
  });
}

/** A socket waiting for a request head. */
interface Waiting {
  readonly deadline: number;
  /** Its `bytesRead` when its last response ended; undefined while it has sent no request. */
  readonly readBefore: number | undefined;
}

class HeadDeadlines {
  /** In the order of their deadlines. */
  private readonly waiting = new Map<Socket, Waiting>();
  /** Sockets with requests pipelined behind the one being answered, by how many. */
  private readonly queued = new WeakMap<Socket, number>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly onClose: (this: Socket) => void;

  constructor(private readonly timeoutMs: number) {
    const waiting = this.waiting;
    this.onClose = function (this: Socket) {
      waiting.delete(this);
    };
  }

  arm(socket: Socket, readBefore: number | undefined): void {
    if (this.stopped || socket.destroyed) return;
    // Deleted first, so that the socket moves to the end, where its new deadline belongs.
    const known = this.waiting.delete(socket);
    this.waiting.set(socket, { deadline: performance.now() + this.timeoutMs, readBefore });
    if (!known) socket.on('close', this.onClose);
    if (this.timer === undefined) this.schedule(this.timeoutMs);
  }

  headArrived(socket: Socket): void {
    if (this.waiting.delete(socket)) {
      socket.removeListener('close', this.onClose);
      return;
    }
    // Parsed while an earlier response on the socket is still going: that one's end starts no deadline.
    this.queued.set(socket, (this.queued.get(socket) ?? 0) + 1);
  }

  responseFinished(socket: Socket): void {
    const queued = this.queued.get(socket);
    if (queued === undefined) return this.arm(socket, socket.bytesRead);
    if (queued === 1) this.queued.delete(socket);
    else this.queued.set(socket, queued - 1);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const socket of this.waiting.keys()) socket.removeListener('close', this.onClose);
    this.waiting.clear();
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => this.expire(), Math.max(1, Math.ceil(ms)));
    this.timer.unref();
  }

  private expire(): void {
    this.timer = undefined;
    const now = performance.now();
    for (const [socket, waiting] of this.waiting) {
      if (waiting.deadline > now) return this.schedule(waiting.deadline - now);
      this.waiting.delete(socket);
      socket.removeListener('close', this.onClose);
      const quiet = waiting.readBefore !== undefined && socket.bytesRead === waiting.readBefore;
      if (!quiet && socket.writable) socket.write(REQUEST_TIMEOUT);
      socket.destroy();
    }
  }
}

const byServer = new WeakMap<Server, HeadDeadlines>();
/** The request whose start Node published last: the one it emits next. */
let started: IncomingMessage | undefined;
let watching = false;

/**
 * One subscription for the process, for every server enforced: each request head (those Node
 * answers itself too, without a `request` event: 400, 417, 503) and each response's end.
 */
function watchMessages(): void {
  if (watching) return;
  watching = true;
  subscribe('http.server.request.start', (message) => {
    const { request, socket, server } = message as HttpMessage;
    started = request;
    byServer.get(server)?.headArrived(socket);
  });
  subscribe('http.server.response.finish', (message) => {
    const { socket, server } = message as HttpMessage;
    byServer.get(server)?.responseFinished(socket);
  });
}
