import { type Server, type Socket, connect, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

/** One browser connection through the proxy, and the last request line the browser sent on it. */
interface Link {
  readonly browser: Socket;
  readonly relay: Socket;
  lastRequest: string;
}

/**
 * A TCP proxy that can stop forwarding a connection's bytes while keeping both sockets open, as a
 * phone that lost its network or a laptop that slept does: nobody gets an error or a close.
 */
export class FreezingProxy {
  url = '';
  private readonly links = new Set<Link>();
  private readonly server: Server;

  constructor(private readonly target: string) {
    this.server = createServer((browser) => {
      const { hostname, port } = new URL(this.target);
      const relay = connect(Number(port), hostname);
      const link: Link = { browser, relay, lastRequest: '' };
      this.links.add(link);
      browser.on('data', (chunk: Buffer) => {
        const line = /^(GET|POST|PUT|DELETE|HEAD|OPTIONS) (\S+)/.exec(chunk.toString('latin1'));
        if (line) link.lastRequest = `${line[1]} ${line[2]}`;
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

  async close(): Promise<void> {
    for (const link of this.links) {
      link.browser.destroy();
      link.relay.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
