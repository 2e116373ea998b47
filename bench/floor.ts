/**
 * The floor subject: the least a Node relay can do. Plain node:http, one upstream
 * per code (node:http to the backend, opened by the first client of the code), and
 * each upstream chunk written as it comes to every client socket of that code: no
 * auth, no history, no parsing, no heartbeats, no limits. Whatever the relay costs
 * above this is the price of its features.
 *
 *   GET /downloads/:code/events   the code's stream
 *   GET /health                   200
 *
 * Prints `{"type":"ready","port":n}` when listening.
 * Usage: node dist/bench/floor.js <backend url> [port] [host]
 */
import { type IncomingMessage, type ServerResponse, createServer, get } from 'node:http';
import { serveChild } from './common';
import { SSE_HEADERS } from '../src/sse/encode';

const ROUTE = /^\/downloads\/([A-Za-z0-9_-]{1,128})\/events$/;

/** One code: its upstream response (once it answered) and the clients waiting for or reading it. */
interface Channel {
  readonly clients: Set<ServerResponse>;
  open: boolean;
}

const channels = new Map<string, Channel>();

function openUpstream(backend: string, code: string, channel: Channel): void {
  const upstream = get(`${backend}/downloads/${code}/events`, { headers: { accept: 'text/event-stream', 'x-user-id': 'floor' } }, (response) => {
    channel.open = true;
    for (const res of channel.clients) res.flushHeaders();
    response.on('data', (chunk: Buffer) => {
      for (const res of channel.clients) res.write(chunk);
    });
    response.on('end', () => {
      channels.delete(code);
      for (const res of channel.clients) res.end();
    });
  });
  upstream.on('error', () => {
    channels.delete(code);
    for (const res of channel.clients) res.destroy();
  });
}

function handle(backend: string, req: IncomingMessage, res: ServerResponse): void {
  const route = req.method === 'GET' ? ROUTE.exec(req.url ?? '') : null;
  if (route === null) {
    res.writeHead(req.url === '/health' ? 200 : 404).end();
    return;
  }
  const code = route[1] as string;
  let channel = channels.get(code);
  res.writeHead(200, SSE_HEADERS);
  if (channel === undefined) {
    channel = { clients: new Set(), open: false };
    channels.set(code, channel);
    openUpstream(backend, code, channel);
  } else if (channel.open) {
    res.flushHeaders();
  }
  const own = channel;
  own.clients.add(res);
  res.once('close', () => own.clients.delete(res));
}

function main(): void {
  const backend = process.argv[2];
  if (backend === undefined) throw new Error('usage: floor.js <backend url> [port] [host]');
  const port = Number(process.argv[3] ?? 0);
  const host = process.argv[4] ?? '127.0.0.1';
  const server = createServer({ requestTimeout: 0, keepAliveTimeout: 30_000 }, (req, res) => handle(backend, req, res));
  serveChild(server, port, host);
}

main();
