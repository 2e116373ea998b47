/**
 * The benchmark's event source: a minimal SSE backend on plain node:http whose
 * events carry the time they were written, so that a client can measure the
 * delay from the backend's write to its own parse.
 *
 *   GET  /downloads/:code/events  SSE (contract headers, `id:` on every event, Last-Event-ID honored)
 *   GET  /downloads/:code/status  200 JSON (the relay's authorization check), counted
 *   GET  /health                  200 {"status":"ok"}
 *   GET  /clock                   {"now": epoch ms}, for estimating the clock offset between processes
 *   GET  /stats                   {"connections","peakConnections","opened","resumed","maxPerCode","statusRequests"}: event streams
 *                                 (opened: every one; resumed: those with Last-Event-ID) and status requests
 *   POST /start                   {"codes":[...],"events":n,"rate":r,"leadMs":ms,"endAfterMs":ms}: publish, then end every
 *                                 stream endAfterMs after the very last event (all codes together, so that no
 *                                 teardown overlaps a measured event); endAfterMs < 0 keeps them open.
 *                                 Optional "padBytes" makes each event that much bigger (a "pad" field; such
 *                                 events are not kept for Last-Event-ID), "burst" writes that many events of a
 *                                 code at once, `rate` bursts per second; "together": true publishes every code in
 *                                 the same instant instead of staggered. Answers {"lastEventInMs","startAt"}
 *
 * Each event is `data: {"t":<epoch ms>,"seq":n}` and `id: n+1`, serialized once
 * and written to every open response of its code. Codes publish staggered over
 * one period so the load is even. Prints `{"type":"ready","port":n}` when listening.
 * Usage: node dist/bench/backend.js [port] [host]
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { nowMs, serveChild } from './common';
import { SSE_HEADERS, encodeComment } from '../src/sse/encode';

const HEARTBEAT = encodeComment('hb');
const HEARTBEAT_MS = 15_000;
const CODE = /^[A-Za-z0-9_-]{1,128}$/;
const ROUTE = /^\/downloads\/([^/]+)\/(events|status)$/;
const MAX_BODY = 1024 * 1024;

interface StartRequest {
  codes: string[];
  events: number;
  rate: number;
  leadMs: number;
  endAfterMs: number;
  padBytes: number;
  burst: number;
  together: boolean;
}

/** One code's stream: its history (for Last-Event-ID) and its open responses. */
class Channel {
  readonly frames: Buffer[] = [];
  readonly streams = new Set<ServerResponse>();
  finished = false;
  /** When the last event was written (0: never); a channel that just published needs no heartbeat. */
  lastPublishAt = 0;
}

const channels = new Map<string, Channel>();
let connections = 0;
let peakConnections = 0;
let opened = 0;
let resumed = 0;
let maxPerCode = 0;
let statusRequests = 0;
let publishing = false;

function channelOf(code: string): Channel {
  let channel = channels.get(code);
  if (!channel) {
    channel = new Channel();
    channels.set(code, channel);
  }
  return channel;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function openStream(req: IncomingMessage, res: ServerResponse, code: string): void {
  const channel = channelOf(code);
  const raw = req.headers['last-event-id'];
  const after = typeof raw === 'string' && /^\d{1,9}$/.test(raw.trim()) ? Number(raw.trim()) : 0;
  if (channel.finished && after >= channel.frames.length && after > 0) {
    res.writeHead(204).end();
    return;
  }
  req.socket.setNoDelay(true);
  res.writeHead(200, SSE_HEADERS);
  res.flushHeaders();
  for (let i = after; i < channel.frames.length; i++) res.write(channel.frames[i] as Buffer);
  if (channel.finished) {
    res.end();
    return;
  }
  channel.streams.add(res);
  connections += 1;
  opened += 1;
  if (after > 0) resumed += 1;
  peakConnections = Math.max(peakConnections, connections);
  maxPerCode = Math.max(maxPerCode, channel.streams.size);
  res.once('close', () => {
    if (channel.streams.delete(res)) connections -= 1;
  });
}

/** Writes one event, serialized once, to every open response of `code`. */
function publish(code: string, seq: number, pad: string): void {
  const channel = channelOf(code);
  // The timestamp is taken as late as possible: right before the first write.
  const frame = Buffer.from(`data: {"t":${nowMs()},"seq":${seq}${pad}}\nid: ${seq + 1}\n\n`);
  // Big events are for measuring the relay's memory: a GiB of history here would only blur that.
  if (pad === '') channel.frames.push(frame);
  channel.lastPublishAt = Date.now();
  for (const res of channel.streams) res.write(frame);
}

/** Ends the streams of `codes`: no more events will come. */
function finish(codes: readonly string[]): void {
  for (const code of codes) {
    const channel = channelOf(code);
    channel.finished = true;
    for (const res of channel.streams) res.end();
    connections -= channel.streams.size;
    channel.streams.clear();
  }
}

/**
 * Publishes `events` per code at `rate` per second, each code offset by a share of the period
 * (code i of n by i/n of it, unless `together`). Returns the time until the last event is
 * written, and when (epoch ms) the first code's first event is due, from which every event's
 * time follows.
 */
function start(request: StartRequest): { lastEventInMs: number; startAt: number } {
  const period = 1000 / request.rate;
  const startAt = nowMs() + request.leadMs;
  const schedule: { at: number; code: string; seq: number }[] = [];
  request.codes.forEach((code, i) => {
    const offset = request.together ? 0 : (i * period) / request.codes.length;
    for (let seq = 0; seq < request.events; seq++) schedule.push({ at: startAt + offset + Math.floor(seq / request.burst) * period, code, seq });
  });
  schedule.sort((a, b) => a.at - b.at);
  const pad = request.padBytes > 0 ? `,"pad":"${'x'.repeat(request.padBytes)}"` : '';
  publishing = true;
  let next = 0;
  const tick = (): void => {
    const now = nowMs();
    while (next < schedule.length) {
      const item = schedule[next] as (typeof schedule)[number];
      if (item.at > now) break;
      next += 1;
      publish(item.code, item.seq, pad);
    }
    if (next < schedule.length) {
      const due = (schedule[next] as (typeof schedule)[number]).at;
      setTimeout(tick, Math.max(0, due - nowMs()));
    } else if (request.endAfterMs >= 0) {
      setTimeout(() => {
        finish(request.codes);
        publishing = false;
      }, request.endAfterMs);
    } else {
      publishing = false;
    }
  };
  setTimeout(tick, request.leadMs);
  const last = schedule[schedule.length - 1];
  return { lastEventInMs: last === undefined ? 0 : last.at - nowMs(), startAt };
}

function parseStart(body: string): StartRequest | string {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return 'body is not JSON';
  }
  const v = value as Partial<Record<keyof StartRequest, unknown>>;
  if (!Array.isArray(v.codes) || !v.codes.every((c): c is string => typeof c === 'string' && CODE.test(c))) return 'codes: expected an array of codes';
  if (typeof v.events !== 'number' || !Number.isInteger(v.events) || v.events < 1) return 'events: expected an integer >= 1';
  if (typeof v.rate !== 'number' || !(v.rate > 0) || v.rate > 10_000) return 'rate: expected a number in (0, 10000]';
  const leadMs = typeof v.leadMs === 'number' && v.leadMs >= 0 ? v.leadMs : 100;
  const endAfterMs = typeof v.endAfterMs === 'number' ? v.endAfterMs : 1000;
  const padBytes = typeof v.padBytes === 'number' && Number.isInteger(v.padBytes) && v.padBytes >= 0 ? Math.min(v.padBytes, 4 * MAX_BODY) : 0;
  const burst = typeof v.burst === 'number' && Number.isInteger(v.burst) && v.burst >= 1 ? v.burst : 1;
  return { codes: v.codes, events: v.events, rate: v.rate, leadMs, endAfterMs, padBytes, burst, together: v.together === true };
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://bench');
  const route = ROUTE.exec(url.pathname);
  if (req.method === 'GET' && route) {
    const code = decodeURIComponent(route[1] ?? '');
    if (!CODE.test(code)) return json(res, 400, { error: { code: 'invalid_code', message: 'Bad code.' } });
    if (route[2] === 'events') return openStream(req, res, code);
    statusRequests += 1;
    const channel = channels.get(code);
    return json(res, 200, { code, status: channel?.finished === true ? 'COMPLETED' : 'IN_PROGRESS' });
  }
  if (req.method === 'GET' && url.pathname === '/health') return json(res, 200, { status: 'ok' });
  if (req.method === 'GET' && url.pathname === '/clock') return json(res, 200, { now: nowMs() });
  if (req.method === 'GET' && url.pathname === '/stats') return json(res, 200, { connections, peakConnections, opened, resumed, maxPerCode, statusRequests, publishing });
  if (req.method === 'POST' && url.pathname === '/start') {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
      if (body.length > MAX_BODY) req.destroy();
    });
    req.on('end', () => {
      if (publishing) return json(res, 409, { error: { code: 'busy', message: 'Already publishing.' } });
      const request = parseStart(body);
      if (typeof request === 'string') return json(res, 400, { error: { code: 'bad_request', message: request } });
      json(res, 202, start(request));
    });
    return;
  }
  json(res, 404, { error: { code: 'not_found', message: 'No such route.' } });
}

function main(): void {
  const port = Number(process.argv[2] ?? 0);
  const host = process.argv[3] ?? '127.0.0.1';
  const server = createServer({ requestTimeout: 0, keepAliveTimeout: 30_000 }, handle);
  // Only channels that were quiet for a whole interval get one: a heartbeat to every stream at
  // once would stall a measured event for as long as 10,000 writes take.
  const heartbeat = setInterval(() => {
    const quietSince = Date.now() - HEARTBEAT_MS;
    for (const channel of channels.values()) {
      if (channel.lastPublishAt > quietSince) continue;
      for (const res of channel.streams) if (!res.writableNeedDrain) res.write(HEARTBEAT);
    }
  }, HEARTBEAT_MS);
  heartbeat.unref();
  serveChild(server, port, host);
}

main();
