import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './free-port';

/** The nginx binary the deploy tests run: `NGINX_BIN`, else Debian's. */
const NGINX_BIN = process.env.NGINX_BIN ?? '/usr/sbin/nginx';

/** Throws when the nginx binary is missing: a test that needs nginx must fail, never skip, without it. */
export function requireNginx(): string {
  try {
    accessSync(NGINX_BIN, constants.X_OK);
  } catch {
    throw new Error(
      `nginx not found at ${NGINX_BIN}: install Debian's nginx-light (apt-get install -y nginx-light; .ci/run does) or set NGINX_BIN`,
    );
  }
  return NGINX_BIN;
}

export interface RunningNginx {
  readonly url: string;
  /** What nginx wrote to stderr (its error log) so far. */
  stderr(): string;
  /** Stops nginx, waits for it to exit and removes its directory. */
  close(): Promise<void>;
}

const START_ATTEMPTS = 5;
const READY_WITHIN_MS = 10_000;

/**
 * Starts nginx in the foreground as one process, its pid, temp files and config
 * in a fresh temp dir and its error log on stderr. `http` returns the directives
 * of the http block (upstreams, a server that listens on `127.0.0.1:<port>`).
 * A port taken between finding it free and nginx binding it is retried with another.
 */
export async function startNginx(http: (port: number) => string): Promise<RunningNginx> {
  const bin = requireNginx();
  const dir = mkdtempSync(join(tmpdir(), 'nginx-test-'));
  const conf = join(dir, 'nginx.conf');
  try {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      writeFileSync(conf, mainConfig(dir, http(port)));
      const nginx = new NginxProcess(bin, ['-p', dir, '-c', conf, '-e', 'stderr'], `http://127.0.0.1:${port}`);
      let started: boolean;
      try {
        started = await nginx.ready();
      } catch (err) {
        await nginx.stop();
        throw err;
      }
      if (started) {
        return {
          url: nginx.url,
          stderr: () => nginx.stderr,
          async close() {
            await nginx.stop();
            rmSync(dir, { recursive: true, force: true });
          },
        };
      }
      await nginx.stop();
      if (!nginx.stderr.includes('Address already in use') || attempt === START_ATTEMPTS) {
        throw new Error(`nginx did not start (attempt ${attempt}): ${nginx.stderr.trim() || nginx.exit}`);
      }
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** One nginx child process: its stderr, whether it is still running, how to stop it. */
class NginxProcess {
  stderr = '';
  exit = '';
  private readonly proc: ChildProcess;
  private readonly closed: Promise<void>;

  constructor(
    bin: string,
    args: string[],
    readonly url: string,
  ) {
    this.proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc.stderr?.setEncoding('utf8').on('data', (text: string) => (this.stderr += text));
    this.proc.on('error', (err) => (this.exit ||= err.message));
    this.closed = new Promise((resolve) =>
      this.proc.on('close', (code, signal) => {
        this.exit ||= `exited with ${signal ?? String(code)}`;
        resolve();
      }),
    );
  }

  /**
   * True once the port answers HTTP as nginx (by its Server header: another
   * process that took the port must not pass for it), false if nginx exited first.
   */
  async ready(): Promise<boolean> {
    const deadline = Date.now() + READY_WITHIN_MS;
    while (Date.now() < deadline) {
      if (this.exit) return false;
      if (await answersAsNginx(this.url)) return true;
      await sleep(20);
    }
    throw new Error(`nginx did not answer on ${this.url} within ${READY_WITHIN_MS} ms: ${this.stderr.trim()}`);
  }

  async stop(): Promise<void> {
    if (!this.exit) this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.closed;
    clearTimeout(timer);
  }
}

function mainConfig(dir: string, http: string): string {
  return `daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log stderr warn;
events {}
http {
  access_log off;
${tempPaths(dir)}
${http}
}
`;
}

/**
 * nginx's temporary files in `dir`, one `http` block's lines: without them nginx writes under
 * its compiled-in prefix, which an unprivileged run cannot.
 */
export function tempPaths(dir: string): string {
  return `  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;`;
}

function answersAsNginx(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = get(`${url}/nginx-test-ready`, { agent: false }, (res) => {
      res.resume();
      resolve(String(res.headers.server ?? '').startsWith('nginx'));
    });
    req.on('error', () => resolve(false));
  });
}
