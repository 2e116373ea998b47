import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One scripted stream of the fixture: its history and its open responses. */
interface Channel {
  readonly frames: { id: string; raw: string }[];
  readonly open: Set<ServerResponse>;
  ended: boolean;
}

/**
 * A backend whose event streams the test drives by hand: `emit` writes a frame to
 * every open response of a path, `drop` kills them mid-stream, `end` finishes.
 * Resumes after `Last-Event-ID` like the contract's backend. Status routes admit
 * the users listed in `owners`.
 */
export class FixtureBackend {
  readonly server: Server;
  readonly channels = new Map<string, Channel>();
  /** Users allowed per stream path; other users get 404 on the stream and on its status route. */
  readonly owners = new Map<string, Set<string>>();
  /** Every stream request seen, in order. */
  readonly requests: { path: string; user: string | undefined; lastEventId: string | undefined }[] = [];
  readonly sockets = new Set<Socket>();
  /** Status-route requests seen. */
  statusChecks = 0;
  /** `GET /health` requests seen. */
  healthChecks = 0;
  /** What `GET /health` answers. */
  healthStatus = 200;
  /** When set, stream requests are answered with this status instead. */
  refuseWith: number | undefined;
  /** A resumed stream starts this many events before the client's `Last-Event-ID` (a backend that resends too much). */
  resendBeforeResume = 0;
  /** Answers a stream request itself when it returns true (redirects, odd statuses, odd content types). */
  respond: ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined;
  /** Awaited before a status route answers, given its path (to hold authorizations back). */
  beforeStatus: ((path: string) => Promise<void>) | undefined;
  /** Called with each stream response once its history was written (to script drops). */
  onStream: ((res: ServerResponse) => void) | undefined;
  url = '';

  constructor() {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async start(): Promise<this> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  own(path: string, ...users: string[]): void {
    this.owners.set(path, new Set(users));
  }

  channel(path: string): Channel {
    let channel = this.channels.get(path);
    if (!channel) {
      channel = { frames: [], open: new Set(), ended: false };
      this.channels.set(path, channel);
    }
    return channel;
  }

  /** Appends an event (raw SSE text without the id line, which is added) and writes it to listeners. */
  emit(path: string, raw: string): string {
    const channel = this.channel(path);
    const id = String(channel.frames.length + 1);
    const frame = `${raw}id: ${id}\n\n`;
    channel.frames.push({ id, raw: frame });
    for (const res of channel.open) res.write(frame);
    return id;
  }

  /** Writes raw bytes to every listener, exactly as given (for awkward framing). */
  writeRaw(path: string, chunk: string | Buffer): void {
    for (const res of this.channel(path).open) res.write(chunk);
  }

  /** Kills every open response of a path mid-stream (a broken connection, not an end). */
  drop(path: string): void {
    for (const res of this.channel(path).open) res.socket?.destroy();
  }

  /**
   * Ends the open responses of a path cleanly, the stream itself going on: a reconnect with
   * `Last-Event-ID` gets what came after (the ordinary "server closes, client reconnects" pattern).
   */
  closeStreams(path: string): void {
    for (const res of this.channel(path).open) res.end();
  }

  /** Ends the stream normally: no more events; a reconnect with the last id gets 204. */
  end(path: string): void {
    const channel = this.channel(path);
    channel.ended = true;
    for (const res of channel.open) res.end();
  }

  /** Open stream responses of a path, as seen by the backend. */
  listeners(path: string): number {
    return this.channel(path).open.size;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fixture');
    const user = req.headers['x-user-id'] as string | undefined;
    if (url.pathname === '/health') {
      this.healthChecks += 1;
      return json(res, this.healthStatus, this.healthStatus === 200 ? { status: 'ok' } : { status: 'unhealthy' });
    }
    // The contract's two status routes: a download's, and an upload session's.
    if (url.pathname.endsWith('/status') || url.pathname.startsWith('/sessions/')) {
      this.statusChecks += 1;
      const streamPath = url.pathname.endsWith('/status')
        ? url.pathname.replace(/\/status$/, '/events')
        : url.pathname.replace(/^\/sessions\//, '/documents/upload-sse/reconnect/');
      const answer = (): void => (this.allowed(streamPath, user) ? json(res, 200, { ok: true }) : json(res, 404, notFound()));
      if (this.beforeStatus) void this.beforeStatus(url.pathname).then(answer);
      else answer();
      return;
    }
    const lastEventId = req.headers['last-event-id'] as string | undefined;
    this.requests.push({ path: url.pathname, user, lastEventId });
    if (this.respond?.(req, res) === true) return;
    if (this.refuseWith !== undefined) return json(res, this.refuseWith, { error: { code: 'refused', message: 'scripted refusal' } });
    if (!this.allowed(url.pathname, user)) return json(res, 404, notFound());
    const channel = this.channel(url.pathname);
    const from = lastEventId === undefined ? 0 : Math.max(0, channel.frames.findIndex((f) => f.id === lastEventId) + 1 - this.resendBeforeResume);
    if (channel.ended && from >= channel.frames.length && lastEventId !== undefined) {
      res.writeHead(204).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    res.flushHeaders();
    for (const frame of channel.frames.slice(from)) res.write(frame.raw);
    if (channel.ended) return void res.end();
    channel.open.add(res);
    res.on('close', () => channel.open.delete(res));
    this.onStream?.(res);
  }

  private allowed(path: string, user: string | undefined): boolean {
    const owners = this.owners.get(path);
    return owners === undefined || (user !== undefined && owners.has(user));
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

function notFound(): unknown {
  return { error: { code: 'not_found', message: 'No such code.' } };
}
