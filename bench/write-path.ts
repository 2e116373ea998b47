/**
 * Micro-benchmark of the fan-out write loop: one small SSE frame written to N
 * open responses, for responses made by plain node:http and by Express 5, and
 * for variants that isolate what Express changes (the prototype it gives `res`,
 * the properties it adds). A child process (pinned to another CPU) holds the N
 * client connections and reads everything.
 *
 *   node dist/bench/write-path.js [--streams 10000] [--rounds 40] [--variants a,b] [--out FILE]
 *   node --allow-natives-syntax dist/bench/write-path.js ...   also reports V8 map facts per variant
 *
 * Per round and variant: the synchronous loop (what a profiler attributes to the
 * publishing function) and the loop plus the flush (Node corks each socket on
 * write and uncorks it on the next tick: the syscalls happen there).
 */
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { Agent, type IncomingMessage, type Server, ServerResponse, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import express from 'express';
import helmet from 'helmet';
import { NodeInternals } from '../src/internals';
import { resolveOptions } from '../src/options';
import { Subscriber } from '../src/relay/subscriber';
import { StreamPolicy } from '../src/stream-policy';
import { allowedCpus } from './lab';

/** An open stream: its response, and the relay's Subscriber that opened it. */
interface Held {
  readonly res: ServerResponse;
  readonly subscriber: Subscriber;
}

/** How a variant serves a stream: it gets the open responses pushed into `held`. */
interface Variant {
  readonly name: string;
  readonly description: string;
  listener(held: Held[]): (req: IncomingMessage, res: ServerResponse) => void;
}

const NO_HOOKS = { onClose: (): void => undefined };
const POLICY = new StreamPolicy(resolveOptions({ backendUrl: 'http://127.0.0.1:1', clientMaxBufferedBytes: 1024 * 1024, clientDrainGraceMs: 5000, clientBufferCeilingFactor: 8 }));
const INTERNALS = new NodeInternals({ enabled: true, warn: (line) => console.error(line) });

/** Opens the stream the way the relay does: a Subscriber sends the status, headers and retry hint. */
function openStream(res: ServerResponse, held: Held[]): void {
  const subscriber = new Subscriber(res, POLICY, NO_HOOKS, INTERNALS);
  subscriber.open(2000);
  held.push({ res, subscriber });
}

const VARIANTS: readonly Variant[] = [
  {
    name: 'http',
    description: 'plain node:http responses',
    listener: (held) => (_req, res) => openStream(res, held),
  },
  {
    name: 'http+proto',
    description: 'node:http, each res re-prototyped with Object.setPrototypeOf onto one Object.create(ServerResponse.prototype), as Express does',
    listener: (held) => {
      const proto = Object.create(ServerResponse.prototype) as object;
      return (req, res) => {
        Object.setPrototypeOf(req, Object.create(Object.getPrototypeOf(req) as object) as object);
        Object.setPrototypeOf(res, proto);
        openStream(res, held);
      };
    },
  },
  {
    name: 'express',
    description: 'Express 5 app, one route',
    listener: (held) => {
      const app = express();
      app.get('/s', (_req, res) => openStream(res, held));
      return app;
    },
  },
  {
    name: 'express+helmet',
    description: 'Express 5 with helmet() and a router, as server.ts mounts the relay',
    listener: (held) => {
      const app = express();
      app.disable('x-powered-by');
      app.use(helmet());
      const router = express.Router();
      router.use((_req, res, next) => {
        res.locals.user = 'u';
        next();
      });
      router.get('/s', (_req, res) => openStream(res, held));
      app.use(router);
      return app;
    },
  },
  {
    name: 'express,proto reset',
    description: 'Express 5, then Object.setPrototypeOf(res, ServerResponse.prototype) after the route ran',
    listener: (held) => {
      const app = express();
      app.get('/s', (_req, res) => {
        Object.setPrototypeOf(res, ServerResponse.prototype);
        openStream(res, held);
      });
      return app;
    },
  },
];

interface LoopStats {
  /** Median and p90 of the synchronous loop, ms. */
  loopP50: number;
  loopP90: number;
  /** Median and p90 of loop plus flush (until setImmediate), ms. */
  flushP50: number;
  flushP90: number;
  /** Process CPU (user+system) per round, ms. */
  cpuPerRound: number;
}

interface VariantResult {
  variant: string;
  description: string;
  streams: number;
  write: LoopStats;
  send: LoopStats;
  subscriber: LoopStats;
  v8?: Record<string, unknown>;
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** What Subscriber.send did first: the cap check on the response, then res.write. */
function sendLikeRelay(stream: Held, frame: Buffer): void {
  const { res } = stream;
  if (res.writableLength + frame.length > 1024 * 1024) {
    res.destroy();
    return;
  }
  res.write(frame);
}

function plainWrite(stream: Held, frame: Buffer): void {
  stream.res.write(frame);
}

/** The relay's Subscriber.send as it is in this tree. */
function subscriberSend(stream: Held, frame: Buffer): void {
  stream.subscriber.send(frame);
}

async function measure(held: readonly Held[], rounds: number, body: (stream: Held, frame: Buffer) => void): Promise<LoopStats> {
  const loops: number[] = [];
  const flushes: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let round = 0; round < rounds; round++) {
    const frame = Buffer.from(`data: {"t":${Date.now()},"seq":${round}}\nid: ${round + 1}\n\n`);
    const t0 = performance.now();
    for (const stream of held) body(stream, frame);
    const t1 = performance.now();
    await immediate();
    const t2 = performance.now();
    loops.push(t1 - t0);
    flushes.push(t2 - t0);
    // Let the client drain before the next round.
    await pause(30);
  }
  const cpu = process.cpuUsage(cpu0);
  return {
    loopP50: quantile(loops, 0.5),
    loopP90: quantile(loops, 0.9),
    flushP50: quantile(flushes, 0.5),
    flushP90: quantile(flushes, 0.9),
    cpuPerRound: (cpu.user + cpu.system) / 1000 / rounds,
  };
}

/** V8 facts about the held responses, when run with --allow-natives-syntax. */
function v8Facts(streams: readonly Held[]): Record<string, unknown> | undefined {
  if (!process.execArgv.includes('--allow-natives-syntax')) return undefined;
  // Natives syntax is only parsed in code compiled at run time.
  const hasFast = new Function('o', 'return %HasFastProperties(o)') as (o: unknown) => boolean;
  const sameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: unknown, b: unknown) => boolean;
  const held = streams.map((stream) => stream.res);
  const first = held[0];
  if (first === undefined) return undefined;
  let mapsLikeFirst = 0;
  let fast = 0;
  for (const res of held) {
    if (sameMap(res, first)) mapsLikeFirst += 1;
    if (hasFast(res)) fast += 1;
  }
  const proto = Object.getPrototypeOf(first) as object;
  const chain: string[] = [];
  for (let p: object | null = first; p !== null; p = Object.getPrototypeOf(p) as object | null) {
    chain.push(p === first ? 'res' : (p.constructor?.name ?? '?') + (Object.prototype.hasOwnProperty.call(p, 'write') ? '(write)' : ''));
  }
  return {
    resWithFastProperties: fast,
    resSharingFirstMap: mapsLikeFirst,
    ownProperties: Object.keys(first).length,
    protoHasFastProperties: hasFast(proto),
    prototypeChain: chain.join(' -> '),
  };
}

async function runVariant(variant: Variant, streams: number, rounds: number, clientCore: number | undefined): Promise<VariantResult> {
  const held: Held[] = [];
  const server: Server = createServer({ requestTimeout: 0 }, variant.listener(held));
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, resolve));
  const port = (server.address() as AddressInfo).port;
  const args = [__filename, 'client', String(port), String(streams)];
  const child =
    clientCore === undefined
      ? spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] })
      : spawn('taskset', ['-c', String(clientCore), process.execPath, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('open')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`client exited with ${code ?? '?'}`)));
  });
  if (held.length !== streams) throw new Error(`${variant.name}: ${held.length} of ${streams} streams open`);
  // Warm up both loops so neither is measured while the JIT compiles.
  await measure(held, 10, plainWrite);
  await measure(held, 10, sendLikeRelay);
  await measure(held, 10, subscriberSend);
  const write = await measure(held, rounds, plainWrite);
  const send = await measure(held, rounds, sendLikeRelay);
  const subscriber = await measure(held, rounds, subscriberSend);
  const v8 = v8Facts(held);
  child.stdin?.end();
  for (const { res } of held) res.destroy();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await new Promise<void>((resolve) => {
    if (child.exitCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  return { variant: variant.name, description: variant.description, streams, write, send, subscriber, ...(v8 && { v8 }) };
}

/** The client process: opens `streams` connections and reads them until stdin closes. */
async function client(port: number, streams: number): Promise<void> {
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  let open = 0;
  let inFlight = 0;
  let next = 0;
  await new Promise<void>((resolve, reject) => {
    const launch = (): void => {
      while (inFlight < 200 && next < streams) {
        next += 1;
        inFlight += 1;
        const req = request({ host: '127.0.0.1', port, path: '/s', agent, headers: { Accept: 'text/event-stream' } }, (res) => {
          res.resume();
          inFlight -= 1;
          open += 1;
          if (open === streams) resolve();
          else launch();
        });
        req.on('error', reject);
        req.end();
      }
    };
    launch();
  });
  process.stdout.write('open\n');
  process.stdin.on('end', () => process.exit(0)).resume();
}

function fmt(value: number): string {
  return value.toFixed(2);
}

function cells(stats: LoopStats): string {
  return `${fmt(stats.loopP50)} / ${fmt(stats.loopP90)} | ${fmt(stats.flushP50)} | ${fmt(stats.cpuPerRound)}`;
}

async function main(): Promise<void> {
  if (process.argv[2] === 'client') return client(Number(process.argv[3]), Number(process.argv[4]));
  const { values } = parseArgs({
    options: { streams: { type: 'string' }, rounds: { type: 'string' }, variants: { type: 'string' }, out: { type: 'string' } },
  });
  const streams = Number(values.streams ?? 10_000);
  const rounds = Number(values.rounds ?? 40);
  const wanted = values.variants?.split(',') ?? VARIANTS.map((v) => v.name);
  const cores = allowedCpus() ?? [];
  // This process on the first CPU, the client on the last.
  const clientCore = cores.length >= 2 ? cores[cores.length - 1] : undefined;
  if (clientCore !== undefined && cores[0] !== undefined) execFileSync('taskset', ['-cp', String(cores[0]), String(process.pid)]);
  const results: VariantResult[] = [];
  for (const variant of VARIANTS.filter((v) => wanted.includes(v.name))) {
    const result = await runVariant(variant, streams, rounds, clientCore);
    results.push(result);
    console.error(
      `write-path: ${variant.name}: loop p50 ms: res.write ${fmt(result.write.loopP50)}, check+write ${fmt(result.send.loopP50)}, Subscriber.send ${fmt(result.subscriber.loopP50)}`,
    );
  }
  const lines = [
    `## Write path: one 40-byte frame to ${streams} open responses, ${rounds} rounds`,
    '',
    `Node ${process.version} (V8 ${process.versions.v8}); server on CPU ${cores[0] ?? '?'}, client on CPU ${clientCore ?? 'unpinned'}. ` +
      '`loop`: the synchronous for-loop; `+flush`: until setImmediate, i.e. including the uncork on the next tick where the socket writes happen. CPU: this process per round.',
    '',
    '| variant | res.write: loop p50 / p90 ms | +flush p50 | CPU ms/round | writableLength check + res.write: loop p50 / p90 | +flush p50 | CPU ms/round | relay Subscriber.send: loop p50 / p90 | +flush p50 | CPU ms/round |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.variant} | ${[r.write, r.send, r.subscriber].map(cells).join(' | ')} |`),
    '',
    ...results.map((r) => `- ${r.variant}: ${r.description}${r.v8 ? `; V8: ${JSON.stringify(r.v8)}` : ''}`),
  ];
  const markdown = `${lines.join('\n')}\n`;
  process.stdout.write(markdown);
  if (values.out !== undefined) {
    writeFileSync(values.out, markdown);
    writeFileSync(values.out.replace(/\.md$/, '.json'), `${JSON.stringify(results, null, 2)}\n`);
  }
}

main().catch((err: unknown) => {
  console.error('write-path:', err);
  process.exit(1);
});
