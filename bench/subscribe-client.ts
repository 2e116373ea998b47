/**
 * Load client of the subscribe-rate scenario. Opens one anchor stream per code
 * (so every topic is live and each later subscriber goes through the relay's
 * authorization check) and one untimed warm-up step, then, for each offered rate in turn, opens new streams at
 * that rate for one step (open loop: a new attempt is started when it is due,
 * whatever the earlier ones are doing), each as a new user with its own JWT.
 * Connect time: from the request to the response headers (the relay sends them with
 * the first bytes of the stream); the stream is then closed. After each step it
 * prints `{"type":"step",…}`; it stops after two steps in a row whose p99 passes the limit.
 *
 * Usage: node dist/bench/subscribe-client.js '<SubscribeClientConfig as JSON>'   (BENCH_JWT_SECRET for `auth: "jwt"`)
 */
import { Agent, request } from 'node:http';
import { identityHeader, nowMs, report, summarize } from './common';

export interface SubscribeClientConfig {
  readonly baseUrl: string;
  readonly pathTemplate: string;
  readonly codes: readonly string[];
  readonly auth: 'jwt' | 'header';
  /** Offered rates, streams per second, in order. */
  readonly rates: readonly number[];
  readonly stepMs: number;
  /** Stop after two steps in a row whose p99 connect time passes this (one may be a hiccup of a shared machine). */
  readonly p99LimitMs: number;
}

export interface StepReport {
  readonly type: 'step';
  readonly rate: number;
  readonly attempted: number;
  readonly opened: number;
  readonly failed: number;
  readonly failures: Record<string, number>;
  /** Streams opened per second over the step (first attempt to last answer). */
  readonly achieved: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  /** This process's CPU over the step, % of one core. */
  readonly cpuPercent: number;
  /** When the step began and its last stream answered (epoch ms, see nowMs). */
  readonly startAt: number;
  readonly endAt: number;
  readonly [field: string]: unknown;
}

const config = JSON.parse(process.argv[2] ?? '{}') as SubscribeClientConfig;
const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
let userCounter = 0;

function headersFor(user: string): Record<string, string> {
  return { Accept: 'text/event-stream', 'Cache-Control': 'no-cache', ...identityHeader(config.auth, user) };
}

/** Opens a stream; resolves with the connect time (ms) or a failure cause. Closes it at once unless `keep`. */
function connect(code: string, headers: Record<string, string>, keep: boolean): Promise<number | string> {
  return new Promise((resolve) => {
    const t0 = nowMs();
    let settled = false;
    const req = request(new URL(config.pathTemplate.replace('{code}', code), config.baseUrl), { headers, agent });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', (err) => {
      if (settled) return;
      settled = true;
      resolve((err as { code?: string }).code ?? err.message);
    });
    req.on('response', (res) => {
      settled = true;
      const ms = nowMs() - t0;
      if (res.statusCode !== 200) {
        res.resume();
        req.destroy();
        resolve(`status ${res.statusCode ?? '?'}`);
        return;
      }
      if (keep) res.resume();
      else req.destroy();
      resolve(ms);
    });
    req.end();
  });
}

/** One step at `rate`; a timed one tells the coordinator when it starts, so it can read CPU then. */
async function step(rate: number, timed: boolean): Promise<StepReport> {
  const count = Math.max(1, Math.round((rate * config.stepMs) / 1000));
  const plans = Array.from({ length: count }, (_, i) => {
    const user = `sub-${userCounter++}`;
    return { code: config.codes[i % config.codes.length] as string, headers: headersFor(user) };
  });
  const times: number[] = [];
  const failures: Record<string, number> = {};
  let lastAnswer = 0;
  if (timed) report({ type: 'step-start' });
  const cpu0 = process.cpuUsage();
  const start = nowMs();
  const pending: Promise<void>[] = [];
  await new Promise<void>((resolve) => {
    let launched = 0;
    const tick = (): void => {
      const due = Math.min(count, Math.floor(((nowMs() - start) * rate) / 1000) + 1);
      while (launched < due) {
        const plan = plans[launched++] as (typeof plans)[number];
        pending.push(
          connect(plan.code, plan.headers, false).then((result) => {
            lastAnswer = nowMs();
            if (typeof result === 'number') times.push(result);
            else failures[result] = (failures[result] ?? 0) + 1;
          }),
        );
      }
      if (launched < count) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  await Promise.all(pending);
  const cpu = process.cpuUsage(cpu0);
  const elapsed = nowMs() - start;
  const summary = summarize(Float64Array.from(times));
  return {
    type: 'step',
    rate,
    attempted: count,
    opened: times.length,
    failed: count - times.length,
    failures,
    achieved: times.length / ((lastAnswer - start) / 1000),
    p50: summary.p50,
    p99: summary.p99,
    max: summary.max,
    cpuPercent: ((cpu.user + cpu.system) / 1000 / elapsed) * 100,
    startAt: start,
    endAt: start + elapsed,
  };
}

async function main(): Promise<void> {
  // One live stream per code, so the topics stay open and new subscribers are authorized one by one.
  const anchors = await Promise.all(config.codes.map((code, i) => connect(code, headersFor(`anchor-${i}`), true)));
  const anchorFailures = anchors.filter((a) => typeof a !== 'number');
  if (anchorFailures.length > 0) throw new Error(`anchor streams failed: ${anchorFailures.slice(0, 3).join(', ')}`);
  // One untimed step at the first rate: the JIT compiles the whole path, so the first
  // reported step is not paying for it (it cost the relay 2.5 ms per stream at 250/s).
  await step(config.rates[0] ?? 250, false);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  report({ type: 'anchored' });
  let over = 0;
  for (const rate of config.rates) {
    const result = await step(rate, true);
    report(result);
    over = !(result.p99 <= config.p99LimitMs) || result.failed > result.attempted * 0.01 ? over + 1 : 0;
    if (over === 2) break;
    // Let closes and TIME_WAIT settle between steps.
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  report({ type: 'done' }, () => process.exit(0));
}

main().catch((err: unknown) => {
  report({ type: 'error', message: err instanceof Error ? err.message : String(err) }, () => process.exit(1));
});
