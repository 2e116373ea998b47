/**
 * What every scenario needs: CPU pinning, the open-file limit, and starting the
 * processes under test (the bench backend, the reference backend, the relay,
 * nginx), each its own process.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, chmodSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { childPids } from './common';
import { Proc, waitHealthy } from './proc';
import { freePort } from '../test/support/free-port';
import { tempPaths } from '../test/support/nginx';

export type SubjectName = 'direct' | 'floor' | 'relay' | 'relay-plain' | 'relay-before' | 'nginx';
/** The subjects that are a relay's `server.js`, run the same way. */
export type RelayName = Extract<SubjectName, 'relay' | 'relay-plain' | 'relay-before'>;
/**
 * Every subject `--subjects` may name. `relay-plain` is the relay with `NODE_INTERNALS=0` (no
 * trick past Node's and Express's public API): run beside `relay` it shows what they save.
 * `relay-before` is the relay as built in another checkout (`--before`): run beside `relay`
 * it shows what a change did, both measured in the same minutes of the same machine.
 */
export const ALL_SUBJECTS: readonly SubjectName[] = ['direct', 'floor', 'relay', 'relay-plain', 'relay-before', 'nginx'];
/** The subjects of a run that names none. */
export const DEFAULT_SUBJECTS: readonly SubjectName[] = ['direct', 'floor', 'relay', 'nginx'];
/** Subjects only the fan-out and capacity scenarios have: the floor relays nothing but the bench backend's streams. */
export const FANOUT_ONLY: readonly SubjectName[] = ['floor'];

/** A running backend: the bench's own (SSE fan-out) or the reference one (uploads, chat). */
export interface Backend {
  readonly proc: Proc;
  readonly url: string;
  /** Removes what it left behind (upload directory). */
  cleanup(): void;
}

/** A started subject: where clients connect and which processes do its work. */
export interface Subject {
  readonly name: SubjectName;
  readonly baseUrl: string;
  /** Prefix of the backend's paths on this subject: `/api` for the relay. */
  readonly prefix: string;
  /** `jwt`: clients send a Bearer token; `header`: clients send X-User-Id as the relay would. */
  readonly auth: 'jwt' | 'header';
  /** The Node process that serves the streams, with the heap probe loaded (not for nginx). */
  readonly node?: Proc;
  pids(): number[];
  /** Problems the subject logged, for the notes. */
  diagnostics?(): string | undefined;
  stop(): Promise<void>;
}

export interface LabOptions {
  readonly pin: boolean;
  readonly nginx: string;
  /** The `dist/` directory of the `relay-before` subject (see `beforeDist`). */
  readonly before?: string;
}

const HERE = __dirname;
const DIST = resolve(HERE, '..');
export const ROOT = resolve(HERE, '../..');
export const CLK_TCK = clockTicks();

function clockTicks(): number {
  try {
    const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return value > 0 ? value : 100;
  } catch {
    return 100;
  }
}

/**
 * The `dist/` directory holding `server.js` for `--before <dir>`: `dir` may be the checkout (whose
 * `npm run build` wrote `dir/dist`) or its `dist/` itself. Throws when neither has a `server.js`.
 */
export function beforeDist(dir: string): string {
  const root = resolve(dir);
  for (const candidate of [join(root, 'dist'), root]) if (existsSync(join(candidate, 'server.js'))) return candidate;
  throw new Error(`--before ${dir}: no dist/server.js there (run npm run build in that checkout first)`);
}

/**
 * The commit a directory's checkout is at, short, with ` (modified)` when tracked files differ
 * from it; undefined when it is not in a git checkout.
 */
export function commitOf(dir: string): string | undefined {
  try {
    const git = (...args: string[]): string => execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const commit = git('rev-parse', '--short', 'HEAD');
    return git('status', '--porcelain', '--untracked-files=no') === '' ? commit : `${commit} (modified)`;
  } catch {
    return undefined;
  }
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

/**
 * Runs one scenario's `runOne` for each subject in turn (`what` says what, e.g. "upload: relay
 * (1024 MiB)"). A subject that fails is a line in `failures`, not the end of the others;
 * `summary` is logged after each that ran.
 */
export async function eachSubject<Row>(
  what: (name: SubjectName) => string,
  subjects: readonly SubjectName[],
  runOne: (name: SubjectName) => Promise<Row>,
  summary: (row: Row) => string = () => 'done',
): Promise<{ rows: Row[]; failures: string[] }> {
  const rows: Row[] = [];
  const failures: string[] = [];
  for (const name of subjects) {
    console.error(`bench: ${what(name)} …`);
    try {
      const row = await runOne(name);
      rows.push(row);
      console.error(`bench: ${what(name)}: ${summary(row)}`);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      failures.push(`${what(name)}: FAILED: ${message.split('\n')[0] ?? ''}`);
      console.error(`bench: ${what(name)} failed: ${message}`);
    }
  }
  return { rows, failures };
}

/** The CPUs this process may run on, from taskset; undefined when taskset is missing. */
export function allowedCpus(): number[] | undefined {
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

export function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes sure nginx is there: when the default binary is missing and we are root,
 * installs Debian's nginx-light with apt-get. Returns why nginx is unavailable, or undefined.
 */
export function ensureNginx(path: string): string | undefined {
  if (executable(path)) return undefined;
  if (path !== '/usr/sbin/nginx') return `${path} not found`;
  if (process.getuid?.() !== 0) return `${path} not found, and not root to apt-get install nginx-light`;
  console.error('bench: /usr/sbin/nginx missing: apt-get install -y nginx-light …');
  try {
    execFileSync('bash', ['-c', 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light'], { stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (err) {
    return `apt-get install nginx-light failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
  }
  // The package starts a system nginx on port 80: the bench does not need it.
  try {
    execFileSync('bash', ['-c', 'command -v service >/dev/null && service nginx stop || true'], { stdio: 'ignore' });
  } catch {
    // not running
  }
  return executable(path) ? undefined : `${path} still missing after apt-get`;
}

export class Lab {
  /** CPU of the subject (and of the fan-out backend); undefined: not pinned. */
  readonly subjectCore: number | undefined;
  /** CPU of the load generator. */
  readonly loadCore: number | undefined;
  readonly pinning: string;
  readonly nofile: number;
  readonly jwtSecret = randomBytes(32).toString('base64url');
  /** Worker processes of the last nginx started. */
  nginxWorkers = 1;

  constructor(private readonly options: LabOptions) {
    const cpuList = options.pin ? allowedCpus() : undefined;
    const first = cpuList?.[0];
    const last = cpuList?.[cpuList.length - 1];
    if (cpuList && cpuList.length >= 2 && first !== undefined && last !== undefined) {
      this.subjectCore = first;
      this.loadCore = last;
      this.pinning = `taskset: subject on CPU ${first}, load generator on CPU ${last}`;
    } else {
      this.pinning = options.pin ? 'no pinning (taskset missing or fewer than 2 CPUs)' : 'no pinning (--no-pin)';
    }
    this.nofile = achievableNofile(65_536);
  }

  spawn(name: string, command: string, args: string[], core: number | undefined, env?: NodeJS.ProcessEnv, extraPids?: () => number[]): Proc {
    return new Proc({ name, command, args, core, env, nofile: this.nofile, echoStderr: true, echoStdout: process.env.BENCH_ECHO === '1', extraPids });
  }

  /**
   * A load client (`dist/bench/<script>.js`, given `config` as JSON) on the load CPU, with
   * the JWT secret the relay checks and the node flags of BENCH_<NAME>_NODE_ARGS.
   */
  spawnClient(name: string, script: string, config: unknown): Proc {
    const args = [...this.nodeArgs(script), join(HERE, `${script}.js`), JSON.stringify(config)];
    return this.spawn(name, process.execPath, args, this.loadCore, { ...process.env, BENCH_JWT_SECRET: this.jwtSecret });
  }

  /** Node flags for a child from BENCH_<NAME>_NODE_ARGS (e.g. BENCH_RELAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"). */
  nodeArgs(name: string): string[] {
    return (process.env[`BENCH_${name.toUpperCase()}_NODE_ARGS`] ?? '').split(' ').filter((arg) => arg !== '');
  }

  /** The bench's SSE backend (bench/backend.ts), with the heap probe loaded. */
  async startBenchBackend(core: number | undefined): Promise<Backend> {
    const args = ['--expose-gc', '-r', join(HERE, 'heap-probe.js'), ...this.nodeArgs('backend'), join(HERE, 'backend.js'), '0', '127.0.0.1'];
    const proc = this.spawn('backend', process.execPath, args, core);
    const ready = await proc.message<{ type: 'ready'; port: number }>('ready', 15_000);
    return { proc, url: `http://127.0.0.1:${ready.port}`, cleanup: () => undefined };
  }

  /** The reference backend (backend/), set up to process fast: no chunk or token delay, uploads stored in tmpfs when there is one. */
  async startReferenceBackend(core: number | undefined): Promise<Backend> {
    const port = await freePort();
    const base = executable('/dev/shm') ? '/dev/shm' : tmpdir();
    const uploadDir = mkdtempSync(join(base, 'bench-uploads-'));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      BACKEND_PORT: String(port),
      BACKEND_HOST: '127.0.0.1',
      BACKEND_CHUNK_MS: '0',
      BACKEND_TOKEN_MS: '0',
      BACKEND_TICK_MS: '0',
      BACKEND_UPLOAD_DIR: uploadDir,
      BACKEND_MAX_UPLOAD_BYTES: String(64 * 1024 ** 3),
      BACKEND_MAX_ACTIVE_PER_USER: '100000',
    };
    const proc = this.spawn('refbackend', process.execPath, [...this.nodeArgs('backend'), join(DIST, 'backend/main.js')], core, env);
    const url = `http://127.0.0.1:${port}`;
    await waitHealthy(`${url}/health`, proc, 20_000);
    return { proc, url, cleanup: () => rmSync(uploadDir, { recursive: true, force: true }) };
  }

  /**
   * The relay in front of `backendUrl`; `extraEnv` adds settings (a cluster's `REDIS_URL`, a `PORT` to start again on), `name`
   * says which subject it is: `relay-before` runs the `server.js` of `--before`, the others this build's.
   */
  async startRelay(backendUrl: string, core: number | undefined, maxStreams: number, extraEnv: NodeJS.ProcessEnv = {}, name: RelayName = 'relay'): Promise<Subject> {
    const dist = name === 'relay-before' ? this.options.before : DIST;
    if (dist === undefined) throw new Error('relay-before needs --before <dir> (a checkout built with npm run build)');
    const port = extraEnv.PORT === undefined ? await freePort() : Number(extraEnv.PORT);
    const big = String(10 * maxStreams + 1000);
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
      MAX_UPLOAD_BYTES: String(64 * 1024 ** 3),
      ...extraEnv,
    };
    const args = ['--expose-gc', '-r', join(HERE, 'heap-probe.js'), ...this.nodeArgs('relay'), join(dist, 'server.js')];
    const proc = this.spawn(name, process.execPath, args, core, env);
    const baseUrl = `http://127.0.0.1:${port}`;
    await waitHealthy(`${baseUrl}/healthz`, proc, 20_000);
    return { name, baseUrl, prefix: '/api', auth: 'jwt', node: proc, pids: () => [proc.pid], stop: () => proc.stop() };
  }

  /** The floor (bench/floor.ts): a bare node:http relay, one upstream per code, with the heap probe loaded. */
  async startFloor(backendUrl: string, core: number | undefined): Promise<Subject> {
    const args = ['--expose-gc', '-r', join(HERE, 'heap-probe.js'), ...this.nodeArgs('floor'), join(HERE, 'floor.js'), backendUrl, '0', '127.0.0.1'];
    const proc = this.spawn('floor', process.execPath, args, core);
    const ready = await proc.message<{ type: 'ready'; port: number }>('ready', 15_000);
    return { name: 'floor', baseUrl: `http://127.0.0.1:${ready.port}`, prefix: '', auth: 'header', node: proc, pids: () => [proc.pid], stop: () => proc.stop() };
  }

  /** nginx with `proxy_buffering off` (and request buffering off, for uploads) in front of the backend. */
  async startNginx(backendUrl: string, core: number | undefined, maxStreams: number): Promise<Subject> {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'bench-nginx-'));
    // Workers may run as another user (nobody when started as root): let them in.
    chmodSync(dir, 0o755);
    // One worker, unless the open-file limit cannot hold two descriptors per stream in one process:
    // then as many workers as needed, with reuseport spreading the connections. The spread is a
    // hash, not even: at 19,600 streams two workers reset 852 connections, so plan on 75 %.
    const perWorker = Math.max(1024, Math.floor((this.nofile - 256) * 0.75));
    const workers = Math.max(1, Math.ceil((2 * maxStreams + 256) / perWorker));
    this.nginxWorkers = workers;
    const backend = new URL(backendUrl);
    const conf = `# written by bench/lab.ts
daemon off;
master_process on;
worker_processes ${workers};
worker_rlimit_nofile ${this.nofile};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${this.nofile}; }
http {
  access_log off;
${tempPaths(dir)}
  upstream backend { server ${backend.host}; keepalive 64; }
  server {
    listen 127.0.0.1:${port} backlog=4096${workers > 1 ? ' reuseport' : ''};
    client_max_body_size 0;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
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
    const proc = this.spawn('nginx', this.options.nginx, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', errorLog], core, undefined, () => workerPids);
    const baseUrl = `http://127.0.0.1:${port}`;
    await waitHealthy(`${baseUrl}/health`, proc, 20_000);
    workerPids = childPids(proc.pid);
    return {
      name: 'nginx',
      baseUrl,
      prefix: '',
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

  /** Starts `name` in front of `backend`; `maxStreams` sizes limits and nginx workers. */
  startSubject(name: SubjectName, backend: Backend, core: number | undefined, maxStreams: number): Promise<Subject> {
    switch (name) {
      case 'direct':
        return Promise.resolve({
          name,
          baseUrl: backend.url,
          prefix: '',
          auth: 'header',
          node: backend.proc,
          pids: () => [backend.proc.pid],
          stop: async () => undefined,
        });
      case 'floor':
        return this.startFloor(backend.url, core);
      case 'relay':
        return this.startRelay(backend.url, core, maxStreams);
      case 'relay-plain':
        return this.startRelay(backend.url, core, maxStreams, { NODE_INTERNALS: '0' }, 'relay-plain');
      case 'relay-before':
        return this.startRelay(backend.url, core, maxStreams, {}, 'relay-before');
      case 'nginx':
        return this.startNginx(backend.url, core, maxStreams);
    }
  }
}

/** One line about the machine, for result headers. */
export function machineLine(): string {
  let nproc = String(cpus().length);
  try {
    nproc = execFileSync('nproc', { encoding: 'utf8' }).trim();
  } catch {
    // keep os.cpus()
  }
  return `nproc ${nproc}, ${cpus()[0]?.model ?? 'unknown CPU'}, Linux ${release()}, Node ${process.version}`;
}

/** The 1-minute load average, to show whether others were using the machine. */
export function load1(): number {
  return loadavg()[0] ?? NaN;
}
