import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { TEST_SECRET } from './relay-server';

const SERVER = join(__dirname, '../../dist/server.js');

/** The standalone relay (dist/server.js) as its own process, with its log lines kept. */
export class RelayProcess {
  readonly log: { msg: string; [field: string]: unknown }[] = [];
  port = 0;

  private constructor(readonly child: ChildProcess) {}

  /**
   * Starts a relay with `env` over production defaults; resolves once it listens. With
   * `openFiles`, the relay runs under that `ulimit -n` (through bash, which then execs node).
   */
  static async start(env: Record<string, string>, { openFiles }: { openFiles?: number } = {}): Promise<RelayProcess> {
    if (!existsSync(SERVER)) throw new Error(`${SERVER} is missing: npm test builds it first (npm run build)`);
    const [command, args] =
      openFiles === undefined ? [process.execPath, [SERVER]] : ['bash', ['-c', `ulimit -n ${openFiles} && exec "$0" "$1"`, process.execPath, SERVER]];
    const child = spawn(command, args, {
      env: { ...process.env, NODE_ENV: 'production', PORT: '0', HOST: '127.0.0.1', JWT_SECRET: TEST_SECRET, LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const relay = new RelayProcess(child);
    let buffered = '';
    const listening = new Promise<number>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) {
          let parsed: { msg: string; url?: string };
          try {
            parsed = JSON.parse(line) as { msg: string; url?: string };
          } catch {
            parsed = { msg: line };
          }
          relay.log.push(parsed);
          if (parsed.msg === 'relay listening' && parsed.url !== undefined) resolve(Number(new URL(parsed.url).port));
        }
      });
      child.stderr?.on('data', (chunk: Buffer) => relay.log.push({ msg: `stderr: ${chunk.toString()}` }));
      child.once('exit', (code) => reject(new Error(`relay exited with ${String(code)} before listening: ${relay.log.map((l) => l.msg).join(' | ')}`)));
    });
    relay.port = await listening;
    return relay;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** kill -9: no goodbye to Redis, no drain. */
  async kill(): Promise<void> {
    if (!this.alive) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGKILL');
    await exited;
  }

  /** SIGTERM, then the exit (what systemd or Kubernetes does before starting the next one); resolves to the exit code. */
  async stop(): Promise<number | null> {
    const exited = once(this.child, 'exit') as Promise<[number | null]>;
    this.child.kill('SIGTERM');
    return (await exited)[0];
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Log lines with this message. */
  lines(msg: string): { msg: string; [field: string]: unknown }[] {
    return this.log.filter((line) => line.msg === msg);
  }
}
