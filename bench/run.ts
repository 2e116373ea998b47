/**
 * `npm run bench`: runs the scenarios (fanout, capacity, subscribe, upload, chat)
 * against each subject (direct, relay, nginx), each process on its own, and
 * writes one Markdown report (plus the raw numbers as JSON and the fan-out chart
 * as SVG) under bench/results/.
 *
 *   npm run bench                                 all scenarios, modest sizes (a few minutes)
 *   npm run bench -- --size full                  10,000 fan-out subscribers, 20,000 idle ones
 *   npm run bench -- --scenario fanout --subscribers 1000,10000 --codes 10,100
 *   npm run bench -- --scenario big-events        40 topics x 400 events x 64 KiB through the relay: memory
 *   npm run bench -- --scenario fanout,capacity --subjects relay,relay-plain   Node internals on against off
 *   npm run bench -- --scenario restart           clients with granted tokens across a relay restart (--size full: 10,000 on 100 topics)
 *   npm run bench -- --scenario fanout,capacity --subjects floor,relay-before,relay --before <checkout>   a change, before against after
 *
 * See bench/README.md for every option.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type BigEventsSettings, runBigEvents } from './big-events';
import { type CapacitySettings, runCapacity } from './capacity';
import { type ChatSettings, runChat } from './chat';
import { fixed } from './common';
import { type ScenarioOutcome, runFanout } from './fanout';
import type { FanoutSettings } from './fanout-row';
import { ALL_SUBJECTS, DEFAULT_SUBJECTS, FANOUT_ONLY, Lab, ROOT, type SubjectName, beforeDist, commitOf, ensureNginx, load1, machineLine } from './lab';
import { type MultiplexSettings, runMultiplex } from './multiplex';
import { CLUSTER_PARTS, COST_SETUP_NAMES, DEFAULT_COST_SETUPS, type ClusterSettings, runCluster } from './cluster';
import { type RestartSettings, runRestart } from './restart';
import { portable, portableArgs } from './portable-path';
import { type SubscribeSettings, runSubscribe } from './subscribe';
import { type UploadSettings, runUpload } from './upload';

const SCENARIOS = ['fanout', 'capacity', 'subscribe', 'upload', 'chat', 'big-events', 'multiplex', 'cluster', 'restart'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

interface Settings {
  scenarios: ScenarioName[];
  subjects: SubjectName[];
  fanout: FanoutSettings;
  capacity: CapacitySettings;
  subscribe: SubscribeSettings;
  upload: UploadSettings;
  chat: ChatSettings;
  bigEvents: BigEventsSettings;
  multiplex: MultiplexSettings;
  cluster: ClusterSettings;
  restart: RestartSettings;
  out: string;
  nginx: string;
  pin: boolean;
  /** The `dist/` of the relay-before subject, when it runs. */
  before: string | undefined;
}

/**
 * Sizes of `--size small` (the default) and `--size full`; explicit options win. Full runs every
 * fan-out five times (issue 19 asks for the spread over five; about 20 s a row, so the 80 fan-out
 * rows of four subjects take about half an hour, the whole full run well under an hour), at
 * 2,000 and 10,000, the sizes the targets name, with 1,000 and 5,000 between.
 */
const SIZES = {
  small: { subscribers: '1000,3000', capacityMax: 5000, capacityStep: 1000, runs: 1, restartClients: 300, restartTopics: 10 },
  full: { subscribers: '1000,2000,5000,10000', capacityMax: 20_000, capacityStep: 2500, runs: 5, restartClients: 10_000, restartTopics: 100 },
} as const;

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`--${name}: expected a positive integer, got "${raw}"`);
  return value;
}

function intList(name: string, raw: string): number[] {
  return raw.split(',').map((part) => positiveInt(name, part.trim(), 0));
}

/** The names listed in `raw` (all of `all` may be named), or `defaults` when none is given. */
function pick<T extends string>(name: string, raw: string | undefined, all: readonly T[], defaults: readonly T[] = all): T[] {
  const list = (raw ?? defaults.join(',')).split(',').map((s) => s.trim());
  for (const item of list) if (!all.includes(item as T)) throw new Error(`--${name}: unknown "${item}" (expected ${all.join(', ')})`);
  return list as T[];
}

const USAGE = `npm run bench -- [options]   (every option: bench/README.md)

  --scenario LIST     ${SCENARIOS.join(',')} (default: all)
  --subjects LIST     ${ALL_SUBJECTS.join(',')} (default: ${DEFAULT_SUBJECTS.join(',')});
                      relay-plain is the relay with NODE_INTERNALS=0, to set beside relay;
                      relay-before is the relay built in the checkout --before names
  --before DIR        a checkout built with npm run build (or its dist/), for relay-before;
                      default: BENCH_BEFORE
  --size small|full   small (default): fan-out ${SIZES.small.subscribers} once, capacity ${SIZES.small.capacityMax}
  --subscribers LIST, --codes LIST, --runs N, --events N, --rate N, ...
  --capacity-runs N   repeat the capacity scenario, every subject once per run (default 1)
  --out FILE          report path (default bench/results/latest.md)
  --no-pin            do not use taskset

  npm run bench -- --scenario fanout,capacity --subjects relay,relay-plain   Node internals on against off
  npm run bench -- --scenario fanout,capacity --subjects floor,relay-before,relay --before ../old --runs 3 --capacity-runs 3
`;

function parseSettings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenario: { type: 'string' },
      subjects: { type: 'string' },
      size: { type: 'string' },
      subscribers: { type: 'string' },
      codes: { type: 'string' },
      events: { type: 'string' },
      rate: { type: 'string' },
      concurrency: { type: 'string' },
      'grace-ms': { type: 'string' },
      'capacity-max': { type: 'string' },
      'capacity-step': { type: 'string' },
      'capacity-codes': { type: 'string' },
      'capacity-runs': { type: 'string' },
      'memory-budget-mb': { type: 'string' },
      'subscribe-rates': { type: 'string' },
      'subscribe-step-ms': { type: 'string' },
      'p99-limit-ms': { type: 'string' },
      'upload-mib': { type: 'string' },
      'chat-requests': { type: 'string' },
      'chat-warmup': { type: 'string' },
      'big-topics': { type: 'string' },
      'big-events': { type: 'string' },
      'big-event-kib': { type: 'string' },
      'big-rate': { type: 'string' },
      'big-burst': { type: 'string' },
      'multiplex-clients': { type: 'string' },
      'multiplex-topics': { type: 'string' },
      'cluster-subscribers': { type: 'string' },
      'cluster-codes': { type: 'string' },
      'cluster-takeovers': { type: 'string' },
      'cluster-lease-ms': { type: 'string' },
      'restart-clients': { type: 'string' },
      'restart-topics': { type: 'string' },
      'restart-events': { type: 'string' },
      'restart-rate': { type: 'string' },
      'restart-drain-window-ms': { type: 'string' },
      'restart-stop-after-ms': { type: 'string' },
      'restart-no-grants': { type: 'boolean' },
      'restart-relays': { type: 'string' },
      'restart-redis-cluster': { type: 'boolean' },
      'cluster-parts': { type: 'string' },
      'cluster-rates': { type: 'string' },
      'cluster-cost-codes': { type: 'string' },
      'cluster-cost-subscribers': { type: 'string' },
      'cluster-cost-seconds': { type: 'string' },
      'cluster-burst': { type: 'string' },
      'cluster-setups': { type: 'string' },
      runs: { type: 'string' },
      together: { type: 'boolean' },
      out: { type: 'string' },
      nginx: { type: 'string' },
      before: { type: 'string' },
      'no-pin': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const sizeName = values.size ?? 'small';
  if (sizeName !== 'small' && sizeName !== 'full') throw new Error(`--size: expected small or full, got "${sizeName}"`);
  const size = SIZES[sizeName];
  const subscribers = intList('subscribers', values.subscribers ?? size.subscribers);
  // Default: 100 subscribers per code, the target's 10,000 on 100.
  const codes = values.codes === undefined ? subscribers.map((c) => Math.max(1, Math.round(c / 100))) : intList('codes', values.codes);
  if (codes.length !== subscribers.length && codes.length !== 1) throw new Error('--codes: give one number, or one per --subscribers entry');
  const configs = subscribers.map((c, i) => ({ subscribers: c, codes: codes.length === 1 ? (codes[0] as number) : (codes[i] as number) }));
  for (const config of configs) if (config.codes > config.subscribers) throw new Error('--codes must not exceed --subscribers');
  const rate = values.rate === undefined ? 5 : Number(values.rate);
  if (!(rate > 0) || rate > 1000) throw new Error(`--rate: expected a number in (0, 1000], got "${values.rate ?? ''}"`);
  const capacityMax = positiveInt('capacity-max', values['capacity-max'], size.capacityMax);
  // Shared by every scenario that takes them: parsed once, so a default is changed in one place.
  const events = positiveInt('events', values.events, 20);
  const concurrency = positiveInt('concurrency', values.concurrency, 100);
  const graceMs = positiveInt('grace-ms', values['grace-ms'], 10_000);
  const subjects = pick('subjects', values.subjects, ALL_SUBJECTS, DEFAULT_SUBJECTS);
  const beforeDir = values.before ?? process.env.BENCH_BEFORE;
  if (subjects.includes('relay-before') && beforeDir === undefined) throw new Error('--subjects relay-before: give --before <dir> (a checkout built with npm run build), or BENCH_BEFORE');
  const restartRelays = positiveInt('restart-relays', values['restart-relays'], 1);
  if (values.before !== undefined && !subjects.includes('relay-before')) throw new Error('--before is for the relay-before subject: name it in --subjects');
  return {
    scenarios: pick('scenario', values.scenario, SCENARIOS),
    subjects,
    fanout: {
      configs,
      events,
      rate,
      concurrency,
      graceMs,
      runs: positiveInt('runs', values.runs, size.runs),
      together: values.together === true,
    },
    capacity: {
      max: capacityMax,
      step: positiveInt('capacity-step', values['capacity-step'], Math.min(capacityMax, size.capacityStep)),
      codes: positiveInt('capacity-codes', values['capacity-codes'], 100),
      budgetMb: positiveInt('memory-budget-mb', values['memory-budget-mb'], 2048),
      concurrency,
      runs: positiveInt('capacity-runs', values['capacity-runs'], 1),
    },
    subscribe: {
      rates: intList('subscribe-rates', values['subscribe-rates'] ?? '250,500,1000,1500,2000,2500,3000,4000,5000,6000,8000'),
      stepMs: positiveInt('subscribe-step-ms', values['subscribe-step-ms'], 2000),
      codes: 100,
      p99LimitMs: positiveInt('p99-limit-ms', values['p99-limit-ms'], 100),
    },
    upload: { bytes: positiveInt('upload-mib', values['upload-mib'], 1024) * 1024 * 1024 },
    chat: { requests: positiveInt('chat-requests', values['chat-requests'], 200), warmup: positiveInt('chat-warmup', values['chat-warmup'], 20) },
    bigEvents: {
      topics: positiveInt('big-topics', values['big-topics'], 40),
      events: positiveInt('big-events', values['big-events'], 400),
      eventKib: positiveInt('big-event-kib', values['big-event-kib'], 64),
      rate: positiveInt('big-rate', values['big-rate'], 20),
      burst: positiveInt('big-burst', values['big-burst'], 1),
      graceMs,
    },
    multiplex: {
      clients: positiveInt('multiplex-clients', values['multiplex-clients'], 100),
      topics: positiveInt('multiplex-topics', values['multiplex-topics'], 20),
      events,
      rate,
      concurrency,
      graceMs,
    },
    cluster: {
      parts: pick('cluster-parts', values['cluster-parts'], CLUSTER_PARTS),
      subscribers: positiveInt('cluster-subscribers', values['cluster-subscribers'], 1000),
      codes: positiveInt('cluster-codes', values['cluster-codes'], 10),
      events,
      rate,
      concurrency,
      graceMs,
      takeovers: positiveInt('cluster-takeovers', values['cluster-takeovers'], 3),
      leaseMs: positiveInt('cluster-lease-ms', values['cluster-lease-ms'], 5000),
      costRates: intList('cluster-rates', values['cluster-rates'] ?? '10,100,1000'),
      costCodes: positiveInt('cluster-cost-codes', values['cluster-cost-codes'], 10),
      costSubscribers: positiveInt('cluster-cost-subscribers', values['cluster-cost-subscribers'], 30),
      costSeconds: positiveInt('cluster-cost-seconds', values['cluster-cost-seconds'], 4),
      costBurst: positiveInt('cluster-burst', values['cluster-burst'], 1),
      costSetups: pick('cluster-setups', values['cluster-setups'], COST_SETUP_NAMES, DEFAULT_COST_SETUPS),
      costBuilds: subjects.includes('relay-before') ? ['relay-before', 'relay'] : ['relay'],
    },
    restart: {
      clients: positiveInt('restart-clients', values['restart-clients'], size.restartClients),
      topics: positiveInt('restart-topics', values['restart-topics'], size.restartTopics),
      events: positiveInt('restart-events', values['restart-events'], 40),
      rate: positiveInt('restart-rate', values['restart-rate'], 2),
      concurrency,
      graceMs,
      grants: values['restart-no-grants'] !== true,
      drainWindowMs: positiveInt('restart-drain-window-ms', values['restart-drain-window-ms'], 1000),
      stopAfterMs: positiveInt('restart-stop-after-ms', values['restart-stop-after-ms'], 3000),
      // One run unless asked: each is a fresh backend, relay and clients.
      runs: positiveInt('runs', values.runs, 1),
      relays: restartRelays,
      redis: values['restart-redis-cluster'] === true ? 'cluster' : restartRelays > 1 ? 'single' : 'none',
    },
    out: resolve(values.out ?? join(ROOT, 'bench/results/latest.md')),
    nginx: values.nginx ?? process.env.NGINX_BIN ?? '/usr/sbin/nginx',
    pin: values['no-pin'] !== true,
    before: subjects.includes('relay-before') && beforeDir !== undefined ? beforeDist(beforeDir) : undefined,
  };
}

function commandLine(argv: string[]): string {
  return process.env.npm_lifecycle_event === 'bench'
    ? `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`
    : `node ${relative(process.cwd(), __filename)}${argv.length > 0 ? ` ${argv.join(' ')}` : ''}`;
}

/**
 * Has every Node subject and the bench backend log their GC pauses (gc-probe.ts) into a
 * directory of this run, through the node flags lab.ts already takes from the environment.
 */
function recordGcPauses(): void {
  const dir = mkdtempSync(join(tmpdir(), 'bench-gc-'));
  process.env.BENCH_GC_DIR = dir;
  for (const name of ['RELAY', 'FLOOR', 'BACKEND']) {
    const key = `BENCH_${name}_NODE_ARGS`;
    process.env[key] = `-r ${join(__dirname, 'gc-probe.js')} ${process.env[key] ?? ''}`.trim();
  }
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const settings = parseSettings(argv);
  // Every run ends by itself.
  const budgetMs = 3 * 3600 * 1000;
  setTimeout(() => {
    console.error(`bench: over its ${budgetMs / 60_000} min budget; stopping`);
    process.exit(1);
  }, budgetMs).unref();
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));

  const notes: string[] = [];
  let subjects = settings.subjects;
  if (subjects.includes('nginx')) {
    const missing = ensureNginx(settings.nginx);
    if (missing !== undefined) {
      subjects = subjects.filter((s) => s !== 'nginx');
      notes.push(`**nginx SKIPPED**: ${missing}`);
      console.error(`bench: NGINX SKIPPED: ${missing}`);
    }
  }
  recordGcPauses();
  const lab = new Lab({ pin: settings.pin, nginx: settings.nginx, before: settings.before });
  // Which code each relay subject ran, so a before/after report says what it compared.
  const beforeCommit = settings.before === undefined ? undefined : commitOf(settings.before);
  const beforeName = `<a build of ${beforeCommit ?? 'another checkout'}>`;
  if (settings.before !== undefined) {
    const thisCommit = commitOf(ROOT);
    notes.push(
      `relay-before: \`dist/server.js\` of ${beforeCommit === undefined ? 'a checkout outside git' : `a build of commit ${beforeCommit}`}; ` +
        `relay${subjects.includes('relay-plain') ? ' and relay-plain' : ''}: this checkout's build${thisCommit === undefined ? '' : `, commit ${thisCommit}`}. ` +
        'Both run with the same environment, the bench code and probes of this checkout.',
    );
  }
  const others = subjects.filter((s) => !FANOUT_ONLY.includes(s));
  const startedAt = new Date();
  const loadAtStart = load1();
  const sections: string[] = [];
  const data: Record<string, unknown> = {};
  let svgName: string | undefined;
  let failed = false;
  for (const scenario of settings.scenarios) {
    let outcome: ScenarioOutcome;
    switch (scenario) {
      case 'fanout':
        outcome = await runFanout(lab, settings.fanout, subjects);
        break;
      case 'capacity':
        // The floor holds idle streams too: its heap and RSS per stream are the like-for-like baseline.
        outcome = await runCapacity(lab, settings.capacity, subjects);
        break;
      case 'subscribe':
        outcome = await runSubscribe(lab, settings.subscribe, others);
        break;
      case 'upload':
        outcome = await runUpload(lab, settings.upload, others);
        break;
      case 'chat':
        outcome = await runChat(lab, settings.chat, others);
        break;
      case 'big-events':
        outcome = await runBigEvents(lab, settings.bigEvents);
        break;
      case 'multiplex':
        outcome = await runMultiplex(lab, settings.multiplex);
        break;
      case 'cluster':
        outcome = await runCluster(lab, settings.cluster);
        break;
      case 'restart':
        outcome = await runRestart(lab, settings.restart);
        break;
    }
    failed ||= outcome.failed;
    data[scenario] = outcome.data;
    let markdown = outcome.markdown;
    if (outcome.svg !== undefined) {
      svgName = `${basename(settings.out, '.md')}-${scenario}.svg`;
      mkdirSync(dirname(settings.out), { recursive: true });
      writeFileSync(join(dirname(settings.out), svgName), outcome.svg);
      markdown += `\n![${scenario} ${outcome.svgAlt ?? 'delay against subscribers'}](${svgName})\n`;
    }
    sections.push(markdown);
  }
  const header = [
    '## Benchmark results',
    '',
    `Machine: ${machineLine()}. Command: \`${commandLine(portableArgs(argv, ROOT, { '--before': beforeName }))}\`. ${lab.pinning}; open-file limit ${lab.nofile} per process. ` +
      `Run ${startedAt.toISOString()} to ${new Date().toISOString()}; 1-minute load average ${fixed(loadAtStart, 1)} at the start, ${fixed(load1(), 1)} at the end ` +
      '(this machine is shared: above ~2 on 2 CPUs means others were running too, and timings are noisy).',
    ...notes.map((n) => `\n${n}`),
    '',
  ];
  const markdown = `${[...header, ...sections].join('\n')}`;
  process.stdout.write(`\n${markdown}`);
  mkdirSync(dirname(settings.out), { recursive: true });
  writeFileSync(settings.out, markdown);
  writeFileSync(settings.out.replace(/\.md$/, '') + '.json', `${JSON.stringify({ settings: { ...settings, out: portable(settings.out, ROOT), nginx: portable(settings.nginx, ROOT), before: settings.before === undefined ? undefined : beforeName }, machine: machineLine(), startedAt, ...data }, null, 2)}\n`);
  console.error(`bench: wrote ${relative(process.cwd(), settings.out)}${svgName === undefined ? '' : ` and ${svgName}`}`);
  process.exit(failed ? 1 : 0);
}

main().catch((err: unknown) => {
  console.error('bench:', err instanceof Error ? err.message : err);
  process.exit(1);
});
