/**
 * Fan-out benchmark: C subscribers over T codes, R events per second per code,
 * delivered by each subject in turn (direct to the backend, through the relay,
 * through nginx when installed), each subject, the backend and the load
 * generator in their own processes. Prints a Markdown table and writes it to
 * bench/results/fanout.md (and the raw numbers next to it as JSON).
 *
 *   npm run bench -- --subscribers 1000 --codes 10 --events 20 --rate 5
 *
 * Options: --subscribers C (1000), --codes T (10), --events E per code (20),
 * --rate R events/s per code (5), --concurrency N connection attempts in flight (100),
 * --subjects direct,relay,nginx, --out FILE, --nginx PATH (or NGINX_BIN; default
 * /usr/sbin/nginx), --grace-ms (10000), --no-pin.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, chmodSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type ChildMessage, type ConnectedReport, type DoneReport, type ProcSample, childPids, sampleProc, sampleProcs } from './common';
import type { LoadConfig } from './load';
import { Proc, freePort, waitHealthy } from './proc';

type SubjectName = 'direct' | 'relay' | 'nginx';
const ALL_SUBJECTS: readonly SubjectName[] = ['direct', 'relay', 'nginx'];

interface Settings {
  subscribers: number;
  codes: number;
  events: number;
  rate: number;
  concurrency: number;
  subjects: SubjectName[];
  out: string;
  nginx: string;
  graceMs: number;
  pin: boolean;
}

/** A started subject: where clients connect and which processes do its work. */
interface Subject {
  readonly name: SubjectName;
  readonly baseUrl: string;
  readonly pathTemplate: string;
  readonly auth: LoadConfig['auth'];
  pids(): number[];
  /** Problems the subject logged, for the notes. */
  diagnostics?(): string | undefined;
  stop(): Promise<void>;
}

interface Row {
  subject: SubjectName;
  connected: ConnectedReport;
  done: DoneReport | undefined;
  upstreamPeak: number;
  subjectCpuS: number;
  /** User and system parts of subjectCpuS. */
  subjectUserS: number;
  subjectSystemS: number;
  backendCpuS: number;
  /** Subject CPU per opened stream while connecting, in ms. */
  connectCpuMs: number;
  rssReadyKb: number;
  rssConnectedKb: number;
  rssPeakKb: number;
  notes: string[];
}

const HERE = __dirname;
const DIST = resolve(HERE, '..');
const ROOT = resolve(HERE, '../..');
const CLK_TCK = clockTicks();
/** The backend ends every stream this long after the last event, so teardown never overlaps a measured event. */
const END_AFTER_MS = 1000;

function clockTicks(): number {
  try {
    const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return value > 0 ? value : 100;
  } catch {
    return 100;
  }
}

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`--${name}: expected a positive integer, got "${raw}"`);
  return value;
}

function parseSettings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      subscribers: { type: 'string' },
      codes: { type: 'string' },
      events: { type: 'string' },
      rate: { type: 'string' },
      concurrency: { type: 'string' },
      subjects: { type: 'string' },
      out: { type: 'string' },
      nginx: { type: 'string' },
      'grace-ms': { type: 'string' },
      'no-pin': { type: 'boolean' },
    },
    strict: true,
  });
  const rate = values.rate === undefined ? 5 : Number(values.rate);
  if (!(rate > 0) || rate > 1000) throw new Error(`--rate: expected a number in (0, 1000], got "${values.rate ?? ''}"`);
  const subjects = (values.subjects ?? ALL_SUBJECTS.join(',')).split(',').map((s) => s.trim());
  for (const s of subjects) if (!ALL_SUBJECTS.includes(s as SubjectName)) throw new Error(`--subjects: unknown subject "${s}"`);
  const settings: Settings = {
    subscribers: positiveInt('subscribers', values.subscribers, 1000),
    codes: positiveInt('codes', values.codes, 10),
    events: positiveInt('events', values.events, 20),
    rate,
    concurrency: positiveInt('concurrency', values.concurrency, 100),
    subjects: subjects as SubjectName[],
    out: resolve(values.out ?? join(ROOT, 'bench/results/fanout.md')),
    nginx: values.nginx ?? process.env.NGINX_BIN ?? '/usr/sbin/nginx',
    graceMs: positiveInt('grace-ms', values['grace-ms'], 10_000),
    pin: values['no-pin'] !== true,
  };
  if (settings.codes > settings.subscribers) throw new Error('--codes must not exceed --subscribers');
  return settings;
}

/** The open-file limit a child can get: `wanted` if the hard limit can be raised that far, else the hard limit. */
function achievableNofile(wanted: number): number {
  try {
    const out = execFileSync('bash', ['-c', `ulimit -Hn ${wanted} 2>/dev/null; ulimit -Hn`], { encoding: 'utf8' }).trim();
    const limit = out === 'unlimited' ? wanted : Number(out);
    return Number.isSafeInteger(limit) && limit > 0 ? Math.min(limit, wanted) : wanted;
  } catch {
    return wanted;
  }
}

/** The CPUs this process may run on, from taskset; undefined when taskset is missing. */
function allowedCpus(): number[] | undefined {
  try {
    const out = execFileSync('taskset', ['-cp', String(process.pid)], { encoding: 'utf8' });
    const list = out.slice(out.lastIndexOf(':') + 1).trim();
    const cpuList: number[] = [];
    for (const part of list.split(',')) {
      const [from, to] = part.split('-').map(Number);
      if (from === undefined || Number.isNaN(from)) continue;
      for (let c = from; c <= (to ?? from); c++) cpuList.push(c);
    }
    return cpuList;
  } catch {
    return undefined;
  }
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return (await response.json()) as T;
}

async function postJson<T>(url: string, body: unknown): Promise<T> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const answer = (await response.json()) as T;
  if (!response.ok) throw new Error(`POST ${url}: ${response.status} ${JSON.stringify(answer)}`);
  return answer;
}

class Bench {
  private readonly subjectCore: number | undefined;
  private readonly loadCore: number | undefined;
  readonly pinning: string;
  /** Set when the open-file limit is lower than the run wants. */
  readonly limits: string | undefined;
  private readonly nofile: number;
  private readonly codes: string[];
  private readonly jwtSecret = randomBytes(32).toString('base64url');
  /** Worker processes of the last nginx started. */
  nginxWorkers = 1;

  constructor(private readonly settings: Settings) {
    const cpuList = settings.pin ? allowedCpus() : undefined;
    const first = cpuList?.[0];
    const last = cpuList?.[cpuList.length - 1];
    if (cpuList && cpuList.length >= 2 && first !== undefined && last !== undefined) {
      this.subjectCore = first;
      this.loadCore = last;
      this.pinning = `taskset: subject and backend on CPU ${first}, load generator on CPU ${last}; coordinator not pinned (idle while measuring)`;
    } else {
      this.pinning = settings.pin ? 'no pinning (taskset missing or fewer than 2 CPUs)' : 'no pinning (--no-pin)';
    }
    // Streams through a proxy use two descriptors each.
    this.nofile = achievableNofile(Math.max(65_536, settings.subscribers * 2 + 1024));
    if (this.nofile < settings.subscribers + 1024) {
      this.limits = `open-file limit ${this.nofile} (hard limit, cannot be raised here): fewer streams than asked can open`;
    } else if (this.nofile < settings.subscribers * 2 + 1024) {
      this.limits = `open-file limit ${this.nofile} (hard limit, cannot be raised here)`;
    }
    const width = String(settings.codes - 1).length;
    this.codes = Array.from({ length: settings.codes }, (_, i) => `bench${String(i).padStart(width, '0')}`);
  }

  private spawn(name: string, command: string, args: string[], core: number | undefined, env?: NodeJS.ProcessEnv, extraPids?: () => number[]): Proc {
    return new Proc({ name, command, args, core, env, nofile: this.nofile, echoStderr: true, echoStdout: process.env.BENCH_ECHO === '1', extraPids });
  }

  private async startBackend(): Promise<{ proc: Proc; url: string }> {
    const proc = this.spawn('backend', process.execPath, [join(HERE, 'backend.js'), '0', '127.0.0.1'], this.subjectCore);
    const ready = await proc.message<{ type: 'ready'; port: number }>('ready', 15_000);
    return { proc, url: `http://127.0.0.1:${ready.port}` };
  }

  private async startRelay(backendUrl: string): Promise<Subject> {
    const port = await freePort();
    const big = String(10 * this.settings.subscribers + 1000);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NODE_ENV: 'production',
      PORT: String(port),
      BACKEND_URL: backendUrl,
      JWT_SECRET: this.jwtSecret,
      LOG_LEVEL: 'warn',
      RATE_LIMIT_PER_MINUTE: '0',
      MAX_CONNECTIONS: big,
      MAX_CONNECTIONS_PER_USER: big,
      MAX_CONNECTIONS_PER_IP: big,
    };
    // BENCH_RELAY_NODE_ARGS="--trace-gc" (or --cpu-prof …) for looking inside (BENCH_LOAD_NODE_ARGS for the
    // load client); BENCH_ECHO=1 shows their stdout.
    const nodeArgs = (process.env.BENCH_RELAY_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');
    const proc = this.spawn('relay', process.execPath, [...nodeArgs, join(DIST, 'server.js')], this.subjectCore, env);
    const baseUrl = `http://127.0.0.1:${port}`;
    await waitHealthy(`${baseUrl}/healthz`, proc, 20_000);
    return {
      name: 'relay',
      baseUrl,
      pathTemplate: '/api/downloads/{code}/events',
      auth: 'jwt',
      pids: () => [proc.pid],
      stop: () => proc.stop(),
    };
  }

  private async startNginx(backendUrl: string): Promise<Subject> {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'bench-nginx-'));
    // Workers may run as another user (nobody when started as root): let them in.
    chmodSync(dir, 0o755);
    // One worker, unless the open-file limit cannot hold two descriptors per stream in one process:
    // then as many workers as needed, with reuseport spreading the connections evenly.
    const perWorker = Math.max(1024, this.nofile - 256);
    const workers = Math.max(1, Math.ceil((2 * this.settings.subscribers + 256) / perWorker));
    this.nginxWorkers = workers;
    const backend = new URL(backendUrl);
    const conf = `# written by bench/run.ts
daemon off;
master_process on;
worker_processes ${workers};
worker_rlimit_nofile ${this.nofile};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${this.nofile}; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream backend { server ${backend.host}; keepalive 64; }
  server {
    listen 127.0.0.1:${port} backlog=4096${workers > 1 ? ' reuseport' : ''};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_cache off;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
`;
    writeFileSync(join(dir, 'nginx.conf'), conf);
    let workerPids: number[] = [];
    const errorLog = join(dir, 'error.log');
    const proc = this.spawn('nginx', this.settings.nginx, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', errorLog], this.subjectCore, undefined, () => workerPids);
    const baseUrl = `http://127.0.0.1:${port}`;
    await waitHealthy(`${baseUrl}/health`, proc, 20_000);
    workerPids = childPids(proc.pid);
    return {
      name: 'nginx',
      baseUrl,
      pathTemplate: '/downloads/{code}/events',
      auth: 'header',
      pids: () => [proc.pid, ...workerPids],
      diagnostics: () => {
        let lines: string[] = [];
        try {
          lines = readFileSync(errorLog, 'utf8').split('\n').filter((line) => /\[(alert|crit|emerg|error)\]/.test(line));
        } catch {
          // no log
        }
        return lines.length === 0 ? undefined : `${lines.length} error log lines, first: ${(lines[0] ?? '').replace(/^\S+ \S+ /, '')}`;
      },
      stop: async () => {
        await proc.stop('SIGTERM');
        for (const pid of workerPids) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // exited with the master
          }
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  private async startSubject(name: SubjectName, backend: { proc: Proc; url: string }): Promise<Subject> {
    switch (name) {
      case 'direct':
        return {
          name,
          baseUrl: backend.url,
          pathTemplate: '/downloads/{code}/events',
          auth: 'header',
          pids: () => [backend.proc.pid],
          stop: async () => undefined,
        };
      case 'relay':
        return this.startRelay(backend.url);
      case 'nginx':
        return this.startNginx(backend.url);
    }
  }

  async run(name: SubjectName): Promise<Row> {
    const { settings } = this;
    const backend = await this.startBackend();
    let subject: Subject | undefined;
    let load: Proc | undefined;
    try {
      subject = await this.startSubject(name, backend);
      const loadConfig: LoadConfig = {
        baseUrl: subject.baseUrl,
        pathTemplate: subject.pathTemplate,
        codes: this.codes,
        subscribers: settings.subscribers,
        eventsPerCode: settings.events,
        concurrency: settings.concurrency,
        auth: subject.auth,
        backendUrl: backend.url,
        connectTimeoutMs: 15_000,
        graceMs: settings.graceMs,
      };
      const ready = sampleProcs(subject.pids());
      const loadArgs = (process.env.BENCH_LOAD_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');
      load = this.spawn('load', process.execPath, [...loadArgs, join(HERE, 'load.js'), JSON.stringify(loadConfig)], this.loadCore, {
        ...process.env,
        BENCH_JWT_SECRET: this.jwtSecret,
      });
      const connectBudget = 30_000 + settings.subscribers * 20;
      const connected = await load.message<ConnectedReport>('connected', connectBudget);
      const notes: string[] = [];
      if (connected.failed > 0) notes.push(`${connected.failed} streams failed to open (${describe(connected.failures)})`);

      const pids = subject.pids();
      const before = sampleProcs(pids);
      const connectCpuMs = connected.open > 0 ? (((before.ticks - ready.ticks) / CLK_TCK) * 1000) / connected.open : NaN;
      const backendBefore = sampleProc(backend.proc.pid);
      const { lastEventInMs } = await postJson<{ lastEventInMs: number }>(`${backend.url}/start`, {
        codes: this.codes,
        events: settings.events,
        rate: settings.rate,
        leadMs: 200,
        endAfterMs: END_AFTER_MS,
      });
      load.send({ cmd: 'start', durationMs: lastEventInMs + END_AFTER_MS });
      // CPU is read when the last expected event arrived, before the streams are torn down;
      // if some never arrive, when the load client gives up.
      const first = await load.message<ChildMessage>(['received', 'done'], lastEventInMs + END_AFTER_MS + settings.graceMs + 30_000);
      const after = sampleProcs(pids);
      const backendAfter = sampleProc(backend.proc.pid);
      if (first.type !== 'received') notes.push('events missing: the CPU window ends when the streams ended or timed out, teardown included');
      const done = first.type === 'done' ? (first as DoneReport) : await load.message<DoneReport>('done', END_AFTER_MS + settings.graceMs + 30_000);
      const stats = await getJson<{ peakConnections: number }>(`${backend.url}/stats`);

      if (done.delivered < done.expected) notes.push(`${done.expected - done.delivered} events lost`);
      if (done.duplicates > 0) notes.push(`${done.duplicates} duplicates`);
      if (done.gaps > 0) notes.push(`${done.gaps} gaps in seq`);
      if (done.shortStreams > 0) notes.push(`${done.shortStreams} streams ended early`);
      if (done.timedOutStreams > 0) notes.push(`${done.timedOutStreams} streams still open at the deadline`);
      if (Object.keys(done.otherEvents).length > 0) notes.push(`other events: ${describe(done.otherEvents)}`);
      if (Object.keys(done.streamErrors).length > 0) notes.push(`stream errors: ${describe(done.streamErrors)}`);
      const diagnostics = subject.diagnostics?.();
      if (diagnostics !== undefined) notes.push(`${name}: ${diagnostics}`);
      if (name === 'nginx' && this.nginxWorkers > 1) notes.push(`${this.nginxWorkers} nginx workers (open-file limit)`);
      if (done.cpuPercent > 85) notes.push(`load generator at ${done.cpuPercent.toFixed(0)}% CPU: delays may be the client's`);

      return {
        subject: name,
        connected,
        done,
        upstreamPeak: stats.peakConnections,
        subjectCpuS: cpuSeconds(before, after),
        subjectUserS: (after.userTicks - before.userTicks) / CLK_TCK,
        subjectSystemS: (after.systemTicks - before.systemTicks) / CLK_TCK,
        backendCpuS: backendBefore && backendAfter ? cpuSeconds(backendBefore, backendAfter) : NaN,
        connectCpuMs,
        rssReadyKb: ready.rssKb,
        rssConnectedKb: before.rssKb,
        rssPeakKb: after.hwmKb,
        notes,
      };
    } finally {
      await load?.stop('SIGTERM', 2000);
      await subject?.stop();
      await backend.proc.stop();
    }
  }
}

function cpuSeconds(before: ProcSample, after: ProcSample): number {
  return (after.ticks - before.ticks) / CLK_TCK;
}

function describe(counts: Record<string, number>): string {
  return Object.entries(counts)
    .map(([key, n]) => `${key}: ${n}`)
    .join(', ');
}

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a';
}

function per100k(cpuS: number, deliveries: number): string {
  return deliveries > 0 ? fixed((cpuS / deliveries) * 100_000, 2) : 'n/a';
}

function table(settings: Settings, rows: readonly Row[], skipped: readonly string[], header: string[]): string {
  const lines = [...header, ''];
  lines.push(
    `| subject | delivered / expected | p50 ms | p99 ms | max ms | p99 ms, seq ≥ ${Math.floor(settings.events / 4)} | upstream conns (peak) | connect all (s) | connect CPU ms / stream | subject CPU s / 100k deliveries | subject RSS MB (ready / connected / peak) | backend CPU s / 100k | load CPU % |`,
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const row of rows) {
    const d = row.done;
    const delivered = d?.delivered ?? 0;
    lines.push(
      `| ${row.subject} | ${delivered} / ${d?.expected ?? settings.subscribers * settings.events} | ${fixed(d?.delay.p50 ?? NaN, 2)} | ${fixed(d?.delay.p99 ?? NaN, 2)} | ${fixed(d?.delay.max ?? NaN, 1)} | ${fixed(d?.steadyDelay.p99 ?? NaN, 2)} | ${row.upstreamPeak} | ${fixed(row.connected.connectMs / 1000, 2)} | ${fixed(row.connectCpuMs, 2)} | ${per100k(row.subjectCpuS, delivered)} | ${fixed(row.rssReadyKb / 1024, 0)} / ${fixed(row.rssConnectedKb / 1024, 0)} / ${fixed(row.rssPeakKb / 1024, 0)} | ${per100k(row.backendCpuS, delivered)} | ${fixed(d?.cpuPercent ?? NaN, 0)} |`,
    );
  }
  lines.push('');
  for (const row of rows) if (row.notes.length > 0) lines.push(`- ${row.subject}: ${row.notes.join('; ')}`);
  for (const line of skipped) lines.push(`- ${line}`);
  const offsets = rows.map((r) => `${r.subject} ${fixed(r.connected.clockOffsetMs, 3)} ms (rtt ${fixed(r.connected.clockRttMs, 3)})`);
  lines.push(
    '',
    'Delay: from the backend stamping `t` (right before its writes) to the load client parsing the event, both `performance.timeOrigin + performance.now()`. ' +
      `The seq ≥ column leaves out each stream's first quarter of events (JIT warm-up, first GC). ` +
      `Estimated backend-minus-client clock offset: ${offsets.join(', ')}; not corrected. ` +
      'CPU: utime+stime from /proc from the backend\'s start signal to the last expected event received (teardown excluded), ' +
      `${CLK_TCK} ticks/s; the subject is the backend itself for direct, the relay process for relay, nginx master+worker for nginx. ` +
      'RSS: VmRSS before the first connection / when all streams were open / VmHWM at the end. Connect CPU: the subject\'s CPU from ready to all streams open, per stream.',
  );
  return `${lines.join('\n')}\n`;
}

function machineHeader(settings: Settings, bench: Bench, argv: string[]): string[] {
  let nproc = String(cpus().length);
  try {
    nproc = execFileSync('nproc', { encoding: 'utf8' }).trim();
  } catch {
    // keep os.cpus()
  }
  const command =
    process.env.npm_lifecycle_event === 'bench'
      ? `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`
      : `node ${relative(process.cwd(), __filename)}${argv.length > 0 ? ` ${argv.join(' ')}` : ''}`;
  return [
    `## Fan-out: ${settings.subscribers} subscribers over ${settings.codes} codes, ${settings.events} events per code at ${settings.rate}/s`,
    '',
    `Machine: nproc ${nproc}, ${cpus()[0]?.model ?? 'unknown CPU'}, Linux ${release()}, Node ${process.version}. ` +
      `Command: \`${command}\`. ${bench.pinning}. Connections opened ${settings.concurrency} attempts in flight at a time. ` +
      (bench.limits === undefined ? '' : `${bench.limits}. `) +
      `Run at ${new Date().toISOString()}.`,
  ];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const settings = parseSettings(argv);
  const bench = new Bench(settings);
  // Every run ends by itself: a generous budget, then everything is killed.
  const budgetMs = settings.subjects.length * (60_000 + settings.subscribers * 25 + (settings.events / settings.rate) * 1000 + settings.graceMs);
  setTimeout(() => {
    console.error(`bench: over its ${Math.round(budgetMs / 1000)} s budget; stopping`);
    process.exit(1);
  }, budgetMs).unref();
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));

  const rows: Row[] = [];
  const skipped: string[] = [];
  for (const name of settings.subjects) {
    if (name === 'nginx' && !executable(settings.nginx)) {
      skipped.push(`nginx: skipped (${settings.nginx} not found; install Debian's nginx or pass --nginx PATH)`);
      console.error(`bench: nginx skipped: ${settings.nginx} not found`);
      continue;
    }
    console.error(`bench: ${name}: ${settings.subscribers} subscribers, ${settings.codes} codes …`);
    try {
      const row = await bench.run(name);
      rows.push(row);
      const d = row.done;
      console.error(
        `bench: ${name}: ${d?.delivered ?? 0}/${d?.expected ?? '?'} delivered, p50 ${fixed(d?.delay.p50 ?? NaN, 2)} ms, p99 ${fixed(d?.delay.p99 ?? NaN, 2)} ms`,
      );
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      skipped.push(`${name}: FAILED: ${message.split('\n')[0] ?? ''}`);
      console.error(`bench: ${name} failed: ${message}`);
    }
  }

  const markdown = table(settings, rows, skipped, machineHeader(settings, bench, argv));
  process.stdout.write(`\n${markdown}`);
  mkdirSync(dirname(settings.out), { recursive: true });
  writeFileSync(settings.out, markdown);
  writeFileSync(settings.out.replace(/\.md$/, '') + '.json', `${JSON.stringify({ settings, rows, skipped }, null, 2)}\n`);
  console.error(`bench: wrote ${relative(process.cwd(), settings.out)}`);
  process.exit(rows.length > 0 && skipped.every((s) => !s.includes('FAILED')) ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error('bench:', err instanceof Error ? err.message : err);
  process.exit(1);
});
