import { type Server, type Socket, connect, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

/** One browser connection through the proxy, and the last request line the browser sent on it. */
interface Link {
  readonly browser: Socket;
  readonly relay: Socket;
  lastRequest: string;
  /** The relay's bytes on this connection reach the browser this late (0: at once). */
  delayMs: number;
  /** The browser's bytes on this connection go to the relay at this rate (0: as they come). */
  bytesPerSecond: number;
}

/**
 * A TCP proxy that can stop forwarding a connection's bytes while keeping both sockets open, as a
 * phone that lost its network or a laptop that slept does: nobody gets an error or a close. It can
 * also hold the answers to some requests back for a while, as a slow network does.
 */
export class FreezingProxy {
  url = '';
  private readonly links = new Set<Link>();
  private readonly delays = new Map<string, number>();
  private readonly throttles = new Map<string, number>();
  private readonly server: Server;

  constructor(private readonly target: string) {
    this.server = createServer((browser) => {
      const { hostname, port } = new URL(this.target);
      const relay = connect(Number(port), hostname);
      const link: Link = { browser, relay, lastRequest: '', delayMs: 0, bytesPerSecond: 0 };
      this.links.add(link);
      // Registered before the pipes: a request to delay is seen before the relay gets it.
      browser.on('data', (chunk: Buffer) => {
        const line = /^(GET|POST|PUT|DELETE|HEAD|OPTIONS) (\S+)/.exec(chunk.toString('latin1'));
        if (!line) return;
        link.lastRequest = `${line[1]} ${line[2]}`;
        const delayMs = [...this.delays].find(([request]) => link.lastRequest.startsWith(request))?.[1];
        if (delayMs !== undefined && link.delayMs === 0) this.slow(link, delayMs);
        const bytesPerSecond = [...this.throttles].find(([request]) => link.lastRequest.startsWith(request))?.[1];
        if (bytesPerSecond !== undefined && link.bytesPerSecond === 0) this.throttle(link, bytesPerSecond);
      });
      browser.pipe(relay);
      relay.pipe(browser);
      const drop = (): void => {
        this.links.delete(link);
        browser.destroy();
        relay.destroy();
      };
      browser.on('error', drop).on('close', drop);
      relay.on('error', drop).on('close', drop);
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** From now on, the relay's answers to requests starting with `request` (and whatever follows on their connection) reach the browser `ms` late. */
  delay(request: string, ms: number): void {
    this.delays.set(request, ms);
  }

  /**
   * From now on, what the browser sends after a request starting with `request` (its body, once the
   * chunk with the request line went on) reaches the relay at `bytesPerSecond`, as a slow uplink
   * would pass it. The browser's writes are taken at once, so to the browser its body is sent.
   */
  slowUpload(request: string, bytesPerSecond: number): void {
    this.throttles.set(request, bytesPerSecond);
  }

  /** Stops forwarding, both ways, on every open connection whose last request starts with `request`; returns how many. */
  freeze(request: string): number {
    let frozen = 0;
    for (const link of this.links) {
      if (!link.lastRequest.startsWith(request)) continue;
      link.browser.unpipe(link.relay);
      link.relay.unpipe(link.browser);
      link.browser.pause();
      link.relay.pause();
      frozen += 1;
    }
    return frozen;
  }

  private slow(link: Link, delayMs: number): void {
    link.delayMs = delayMs;
    link.relay.unpipe(link.browser);
    link.relay.on('data', (chunk: Buffer) => {
      setTimeout(() => {
        if (!link.browser.destroyed) link.browser.write(chunk);
      }, delayMs);
    });
    // Unpiped, the socket was paused: a data listener alone does not start it again.
    link.relay.resume();
  }

  private throttle(link: Link, bytesPerSecond: number): void {
    link.bytesPerSecond = bytesPerSecond;
    link.browser.unpipe(link.relay);
    let queued = Buffer.alloc(0);
    link.browser.on('data', (chunk: Buffer) => {
      queued = Buffer.concat([queued, chunk]);
    });
    const slice = Math.max(1, Math.round(bytesPerSecond / 10));
    const timer = setInterval(() => {
      if (link.relay.destroyed) return clearInterval(timer);
      if (queued.length === 0) return;
      link.relay.write(queued.subarray(0, slice));
      queued = queued.subarray(slice);
    }, 100);
    link.browser.resume();
  }

  async close(): Promise<void> {
    for (const link of this.links) {
      link.browser.destroy();
      link.relay.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
