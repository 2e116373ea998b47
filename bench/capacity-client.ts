/**
 * Load client of the capacity scenario: holds idle SSE streams. On each stdin
 * line `{"cmd":"open","count":n}` it opens n more (a bounded number of attempts in
 * flight), reads and drops whatever they carry, and answers
 * `{"type":"opened","open","failed","failures","closed","ms"}`.
 *
 * Usage: node dist/bench/capacity-client.js '<CapacityClientConfig as JSON>'   (BENCH_JWT_SECRET for `auth: "jwt"`)
 */
import { Agent, request } from 'node:http';
import { createInterface } from 'node:readline';
import { identityHeader, nowMs, report, runBounded } from './common';

export interface CapacityClientConfig {
  readonly baseUrl: string;
  /** Path of a code's stream with `{code}` in it. */
  readonly pathTemplate: string;
  readonly codes: readonly string[];
  readonly auth: 'jwt' | 'header';
  /** Subscriber numbering starts here (users are bench-<n>), so that two clients do not overlap. */
  readonly firstIndex: number;
  readonly concurrency: number;
}

const config = JSON.parse(process.argv[2] ?? '{}') as CapacityClientConfig;
const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
let next = config.firstIndex;
let open = 0;
let failed = 0;
let closed = 0;
const failures: Record<string, number> = {};

function fail(cause: string): void {
  failed += 1;
  failures[cause] = (failures[cause] ?? 0) + 1;
}

function openOne(index: number, identity: Record<string, string>, settled: () => void): void {
  const code = config.codes[index % config.codes.length] as string;
  const headers: Record<string, string> = { Accept: 'text/event-stream', 'Cache-Control': 'no-cache', ...identity };
  let answered = false;
  const req = request(new URL(config.pathTemplate.replace('{code}', code), config.baseUrl), { headers, agent });
  req.setTimeout(30_000, () => req.destroy(new Error('headers timeout')));
  req.on('error', (err) => {
    // After the answer, the response's `close` counts the stream as closed.
    if (answered) return;
    answered = true;
    fail((err as { code?: string }).code ?? err.message);
    settled();
  });
  req.on('response', (res) => {
    answered = true;
    if (res.statusCode !== 200) {
      fail(`status ${res.statusCode ?? '?'}`);
      res.resume();
      req.destroy();
      settled();
      return;
    }
    req.setTimeout(0);
    open += 1;
    res.resume();
    res.once('close', () => {
      open -= 1;
      closed += 1;
    });
    settled();
  });
  req.end();
}


let queue = Promise.resolve();
createInterface({ input: process.stdin })
  .on('line', (line) => {
    const command = JSON.parse(line) as { cmd?: string; count?: number };
    if (command.cmd !== 'open') return;
    queue = queue.then(async () => {
      const count = command.count ?? 0;
      // Signed before the step is timed, as the other clients do.
      const identities = Array.from({ length: count }, (_, i) => identityHeader(config.auth, `bench-${next + i}`));
      const t0 = nowMs();
      await runBounded(next, count, config.concurrency, (index, done) => openOne(index, identities[index - next] ?? {}, done));
      next += count;
      report({ type: 'opened', open, failed, failures, closed, ms: nowMs() - t0 });
    });
  })
  .on('close', () => process.exit(0));
report({ type: 'ready' });
