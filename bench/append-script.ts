/**
 * Micro-benchmark of the owner's append script (`SharedTopicStore.append`) on a private
 * redis-server: one topic, events shaped as the cluster feed writes them. Cases: one event per
 * call awaited one by one (a quiet topic: each call its own round trip), one per call with a
 * hundred in flight, ten per call (a busy topic's batches); the history empty or full (every call
 * then has the oldest entries to drop); with 0 or 2 connections listening to the announcements;
 * signed or not. With `--before <checkout>` the same cases run that checkout's build too, the
 * rounds of both interleaved. Prints Redis CPU (`INFO cpu`, user+sys, Redis's whole process) and
 * the script's own time (`INFO commandstats`, EVALSHA) per event, median of the rounds.
 *
 *   node dist/bench/append-script.js [--before ../other] [--events 2000] [--rounds 5] [--listeners 0,2]
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { RedisLink } from '../src/cluster/redis';
import { type NewEntry, SharedTopicStore } from '../src/cluster/shared-topic';
import { RedisServer } from '../test/support/redis';
import { beforeDist } from './lab';

const { values } = parseArgs({
  options: { before: { type: 'string' }, events: { type: 'string' }, rounds: { type: 'string' }, listeners: { type: 'string' } },
});
const EVENTS = Number(values.events ?? 2000);
const ROUNDS = Number(values.rounds ?? 5);
const LISTENERS = (values.listeners ?? '0,2').split(',').map(Number);
const HISTORY = 1000;

type Modules = { RedisLink: typeof RedisLink; SharedTopicStore: typeof SharedTopicStore };
type Build = { name: string; modules: Modules };

interface Case {
  mode: 'awaited' | 'in flight' | 'ten per call';
  full: boolean;
  listeners: number;
  signed: boolean;
}

// A bench event's data, and a signature's length (HMAC-SHA256, base64url).
const DATA = JSON.stringify({ t: 1733030000000, seq: 12345, message: 'x'.repeat(60) });
const SIGNATURE = 'A'.repeat(43);

async function main(): Promise<void> {
  const builds: Build[] = [];
  if (values.before !== undefined) {
    const dist = beforeDist(values.before);
    builds.push({
      name: 'before',
      modules: {
        RedisLink: ((await import(join(dist, 'src/cluster/redis.js'))) as { RedisLink: typeof RedisLink }).RedisLink,
        SharedTopicStore: ((await import(join(dist, 'src/cluster/shared-topic.js'))) as { SharedTopicStore: typeof SharedTopicStore }).SharedTopicStore,
      },
    });
  }
  builds.push({ name: 'this build', modules: { RedisLink, SharedTopicStore } });
  const server = await new RedisServer().start();
  const probe = new Redis(server.url);
  const cases: Case[] = [];
  for (const listeners of LISTENERS) {
    for (const full of [false, true]) {
      for (const mode of ['awaited', 'in flight', 'ten per call'] as const) cases.push({ mode, full, listeners, signed: false });
    }
    cases.push({ mode: 'awaited', full: true, listeners, signed: true });
  }
  console.log(`| case | ${builds.map((build) => `${build.name}: Redis CPU µs / event | ${build.name}: script µs / event`).join(' | ')} |`);
  console.log(`|---|${builds.map(() => '---|---|').join('')}`);
  try {
    for (const one of cases) {
      const results = builds.map(() => ({ cpu: [] as number[], script: [] as number[] }));
      for (let round = 0; round < ROUNDS; round++) {
        for (const [i, build] of builds.entries()) {
          const measured = await runCase(server.url, probe, build.modules, one);
          results[i]?.cpu.push(measured.cpu);
          results[i]?.script.push(measured.script);
        }
      }
      const label = `${one.mode}, history ${one.full ? 'full' : 'filling'}, ${one.listeners} listening${one.signed ? ', signed' : ''}`;
      console.log(`| ${label} | ${results.map((r) => `${median(r.cpu).toFixed(1)} | ${median(r.script).toFixed(1)}`).join(' | ')} |`);
    }
  } finally {
    probe.disconnect();
    await server.kill();
  }
}

async function runCase(url: string, probe: Redis, modules: Modules, one: Case): Promise<{ cpu: number; script: number }> {
  await probe.flushall();
  const link = new modules.RedisLink({ url: new URL(url) }, 'bench', pino({ level: 'silent' }));
  const listeners: Redis[] = [];
  try {
    while (!link.ready) await new Promise((resolve) => setTimeout(resolve, 5));
    const store = new modules.SharedTopicStore(link, { maxEntries: HISTORY, maxBytes: 64 << 20 }, 60_000, 600_000);
    for (let i = 0; i < one.listeners; i++) {
      const listener = new Redis(url);
      await listener.subscribe(store.channel('t'));
      listeners.push(listener);
    }
    const holder = (await store.claim('t', undefined)) ?? '';
    let seq = 0;
    let previous = '0-0';
    const entries = (count: number): NewEntry[] =>
      Array.from({ length: count }, () => {
        const id = String(++seq);
        const fields = ['k', 'v', 'i', id, 'e', id, 'd', DATA];
        if (one.signed) fields.push('h', SIGNATURE);
        return { fields, size: DATA.length + id.length };
      });
    const append = async (count: number): Promise<void> => {
      const ids = (await store.append('t', holder, previous, `${holder}#${seq}`, entries(count))) ?? [];
      previous = ids[ids.length - 1] ?? previous;
    };
    if (one.full) for (let i = 0; i < HISTORY; i += 100) await append(100);
    const before = await redisStats(probe);
    if (one.mode === 'awaited') for (let i = 0; i < EVENTS; i++) await append(1);
    else if (one.mode === 'ten per call') for (let i = 0; i < EVENTS; i += 10) await append(10);
    else for (let i = 0; i < EVENTS; i += 100) await Promise.all(Array.from({ length: 100 }, () => append(1)));
    const after = await redisStats(probe);
    return { cpu: ((after.cpuS - before.cpuS) * 1e6) / EVENTS, script: (after.scriptUs - before.scriptUs) / EVENTS };
  } finally {
    for (const listener of listeners) listener.disconnect();
    link.close();
  }
}

async function redisStats(probe: Redis): Promise<{ cpuS: number; scriptUs: number }> {
  const cpu = await probe.info('cpu');
  const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? NaN);
  const commands = await probe.info('commandstats');
  const scriptUs = Number(/^cmdstat_evalsha:calls=\d+,usec=(\d+)/m.exec(commands)?.[1] ?? 0) + Number(/^cmdstat_eval:calls=\d+,usec=(\d+)/m.exec(commands)?.[1] ?? 0);
  return { cpuS: field('used_cpu_user') + field('used_cpu_sys'), scriptUs };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
