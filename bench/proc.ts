import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';
import type { ChildMessage } from './common';

const TAIL_LINES = 40;
const live = new Set<Proc>();

// Whatever happens to the coordinator, its children do not outlive it.
process.on('exit', () => {
  for (const proc of live) proc.killNow();
});

export interface SpawnOptions {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** CPU to pin the process to with taskset; undefined: not pinned. */
  readonly core?: number | undefined;
  /** Open-file limit to set (soft, and hard when allowed) before exec. */
  readonly nofile: number;
  /** Echo the child's stderr, prefixed with its name. */
  readonly echoStderr?: boolean;
  /** Echo the child's stdout lines that are not messages, prefixed with its name. */
  readonly echoStdout?: boolean;
  /** More pids to SIGKILL if the coordinator dies (nginx workers). */
  readonly extraPids?: () => readonly number[];
}

/**
 * A child process started through `bash -c 'ulimit -n …; exec taskset -c N cmd'`,
 * so that its pid is the program's own (each exec keeps it). Its stdout lines that
 * are JSON objects with a `type` are messages; the rest is kept as a tail for errors.
 */
export class Proc {
  readonly child: ChildProcess;
  readonly name: string;
  readonly tail: string[] = [];
  private readonly messages: ChildMessage[] = [];
  private readonly events = new EventEmitter();
  private exitStatus: string | undefined;
  readonly exited: Promise<void>;

  constructor(private readonly options: SpawnOptions) {
    this.name = options.name;
    const pin = options.core === undefined ? '' : `taskset -c ${options.core} `;
    const script = `ulimit -Hn ${options.nofile} 2>/dev/null; ulimit -n ${options.nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec ${pin}"$0" "$@"`;
    this.child = spawn('bash', ['-c', script, options.command, ...options.args], {
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    live.add(this);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitStatus = signal ? `killed by ${signal}` : `exited with ${code ?? '?'}`;
        live.delete(this);
        this.events.emit('update');
        resolve();
      });
    });
    this.child.once('error', (err) => {
      this.keep(`spawn error: ${err.message}`);
    });
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const message = parseMessage(line);
      if (message) {
        this.messages.push(message);
        this.events.emit('update');
      } else {
        this.keep(line);
        if (options.echoStdout === true) process.stderr.write(`[${this.name}] ${line}\n`);
      }
    });
    createInterface({ input: this.child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      this.keep(line);
      if (options.echoStderr === true) process.stderr.write(`[${this.name}] ${line}\n`);
    });
  }

  get pid(): number {
    const pid = this.child.pid;
    if (pid === undefined) throw new Error(`${this.name} did not start: ${this.tail.join('\n')}`);
    return pid;
  }

  get running(): boolean {
    return this.exitStatus === undefined;
  }

  /** Waits for the first message of `type` (or of one of several types); throws on an `error` message, on exit, or after `timeoutMs`. */
  message<T extends ChildMessage>(type: string | readonly string[], timeoutMs: number): Promise<T> {
    const types: readonly string[] = typeof type === 'string' ? [type] : type;
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const index = this.messages.findIndex((m) => types.includes(m.type) || m.type === 'error');
        const found = this.messages[index];
        if (found) {
          this.messages.splice(index, 1);
          if (found.type === 'error') reject(new Error(`${this.name}: ${String(found.message)}`));
          else resolve(found as T);
          return true;
        }
        if (this.exitStatus !== undefined) {
          reject(new Error(`${this.name} ${this.exitStatus} before "${types.join('" or "')}":\n${this.tail.join('\n')}`));
          return true;
        }
        return false;
      };
      if (check()) return;
      const onUpdate = (): void => {
        if (!check()) return;
        clearTimeout(timer);
        this.events.off('update', onUpdate);
      };
      const timer = setTimeout(() => {
        this.events.off('update', onUpdate);
        reject(new Error(`${this.name}: no "${types.join('" or "')}" within ${timeoutMs} ms:\n${this.tail.join('\n')}`));
      }, timeoutMs);
      this.events.on('update', onUpdate);
    });
  }

  send(message: unknown): void {
    this.child.stdin?.write(`${JSON.stringify(message)}\n`);
  }

  /** `signal`, then SIGKILL if it has not exited after `graceMs`. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.child.kill(signal);
    const timer = setTimeout(() => this.killNow(), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  killNow(): void {
    for (const pid of this.options.extraPids?.() ?? []) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (this.running) this.child.kill('SIGKILL');
  }

  private keep(line: string): void {
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
  }
}

function parseMessage(line: string): ChildMessage | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string') return value as ChildMessage;
  } catch {
    // not a message
  }
  return undefined;
}

/** Polls `url` until it answers 200, the process exits, or `timeoutMs` passes. */
export async function waitHealthy(url: string, proc: Proc, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < until) {
    if (!proc.running) throw new Error(`${proc.name} exited while starting:\n${proc.tail.join('\n')}`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await response.arrayBuffer();
      if (response.status === 200) return;
      last = `status ${response.status}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${proc.name} not healthy at ${url} within ${timeoutMs} ms (${last}):\n${proc.tail.join('\n')}`);
}
