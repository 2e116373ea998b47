import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { EventSource } from 'eventsource';
import { FixtureBackend } from '../support/fixture-backend';
import { freePort } from '../support/free-port';
import { RedisServer } from '../support/redis';
import { type RunningRelay, eventSourceAs, startRelay } from '../support/relay-server';
import { until } from '../support/until';

// Debian's prometheus package (.ci/run installs it) has both; the tests fail, never skip, without them.
const PROMETHEUS_BIN = process.env.PROMETHEUS_BIN ?? '/usr/bin/prometheus';
const PROMTOOL_BIN = process.env.PROMTOOL_BIN ?? '/usr/bin/promtool';
const DEPLOY = join(__dirname, '../../deploy');
const RULES = join(DEPLOY, 'prometheus/alerts.yml');
const RULE_TESTS = join(DEPLOY, 'prometheus/alerts.test.yml');
const DASHBOARD = join(DEPLOY, 'grafana/sse-relay.json');
const PATH = '/downloads/scraped/events';

// A real Prometheus on a 2-core machine shared with other work takes a few seconds to start.
jest.setTimeout(90_000);

const run = promisify(execFile);

function binary(path: string): string {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${path} not found: install Debian's prometheus package (apt-get install -y prometheus; .ci/run does), or set PROMETHEUS_BIN and PROMTOOL_BIN`);
  }
  return path;
}

/** Every PromQL expression of the dashboard's panels, with Grafana's variables as Prometheus can run them. */
function dashboardQueries(): { panel: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
  return dashboard.panels.flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr.replaceAll('$instance', '.*').replaceAll('$__rate_interval', '1m') })),
  );
}

/** The metric names a PromQL expression reads (label names, functions and keywords aside). */
function metricNames(expr: string): string[] {
  const withoutLabels = expr.replace(/\{[^}]*\}/g, '').replace(/\b(by|without)\s*\([^)]*\)/g, '');
  return [...withoutLabels.matchAll(/\b([a-z_][a-z0-9_]*)\b(?!\s*\()/g)]
    .map((match) => match[1]!)
    .filter((name) => name.includes('_') || name === 'up');
}

test('promtool accepts the alert rules, and their unit tests pass: each alert fires on its condition once its `for` passed, and not before', async () => {
  const check = await run(binary(PROMTOOL_BIN), ['check', 'rules', RULES]);
  expect(check.stdout).toContain('SUCCESS: 9 rules found');
  const tests = await run(PROMTOOL_BIN, ['test', 'rules', RULE_TESTS]);
  expect(tests.stdout).toContain('SUCCESS');
});

describe('a real Prometheus scraping running relays', () => {
  let backend: FixtureBackend;
  let relay: RunningRelay;
  /** A relay of a cluster beside it, for the metrics only a cluster has. */
  let clustered: RunningRelay;
  const redis = new RedisServer();
  let prometheus: ChildProcess | undefined;
  let prometheusUrl = '';
  let dataDir = '';
  let stream: EventSource | undefined;
  const output: string[] = [];

  beforeAll(async () => {
    binary(PROMETHEUS_BIN);
    backend = await new FixtureBackend().start();
    relay = await startRelay(backend.url, { maxConnections: 1234 });
    await redis.start();
    clustered = await startRelay(backend.url, { redisUrl: redis.url });
    dataDir = mkdtempSync(join(tmpdir(), 'sse-relay-prometheus-'));
    const config = join(dataDir, 'prometheus.yml');
    writeFileSync(
      config,
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: [${JSON.stringify(RULES)}]`,
        'scrape_configs:',
        '  - job_name: sse-relay',
        `    static_configs: [{ targets: [${JSON.stringify(new URL(relay.url).host)}, ${JSON.stringify(new URL(clustered.url).host)}] }]`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    prometheusUrl = `http://127.0.0.1:${port}`;
    prometheus = spawn(PROMETHEUS_BIN, [`--config.file=${config}`, `--storage.tsdb.path=${join(dataDir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    prometheus.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    prometheus.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    // A jest that exits hard must not leave it holding the port.
    process.once('exit', () => prometheus?.kill('SIGKILL'));
    await until(
      async () => {
        if (prometheus?.exitCode !== null) throw new Error(`prometheus exited: ${output.join('').slice(-2000)}`);
        return (await fetch(`${prometheusUrl}/-/ready`).catch(() => undefined))?.status === 200;
      },
      30_000,
      'prometheus to be ready',
    );
  }, 60_000);

  afterAll(async () => {
    stream?.close();
    if (prometheus && prometheus.exitCode === null) {
      const exited = once(prometheus, 'exit');
      prometheus.kill('SIGTERM');
      await exited;
    }
    await relay?.close();
    await clustered?.close();
    await redis.kill();
    await backend?.close();
    if (dataDir !== '') rmSync(dataDir, { recursive: true, force: true });
  });

  async function query(expr: string): Promise<{ status: string; error?: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } }> {
    const response = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await response.json()) as Awaited<ReturnType<typeof query>>;
  }

  async function valueOf(expr: string): Promise<number | undefined> {
    const answer = await query(expr);
    const value = answer.data.result[0]?.value[1];
    return value === undefined ? undefined : Number(value);
  }

  test("reads the relays' series back: up, readiness, the stream cap, open streams, relayed events, Redis", async () => {
    const alone = `job="sse-relay", instance="${new URL(relay.url).host}"`;
    const inCluster = `job="sse-relay", instance="${new URL(clustered.url).host}"`;
    stream = eventSourceAs(`${relay.url}/api${PATH}`, 'alice');
    await until(() => backend.listeners(PATH) === 1, 5000, 'the upstream');
    for (let i = 0; i < 5; i += 1) backend.emit(PATH, `data: ${i}\n`);
    await until(() => relay.relay.stats.deliveries === 5, 5000, 'five deliveries');

    await until(async () => (await valueOf(`sse_relay_events_total{${alone}}`)) === 5, 30_000, 'prometheus to scrape the five events');
    expect(await valueOf(`up{${alone}}`)).toBe(1);
    expect(await valueOf(`sse_relay_ready{${alone}}`)).toBe(1);
    expect(await valueOf(`sse_relay_max_connections{${alone}}`)).toBe(1234);
    expect(await valueOf(`sse_relay_open_streams{${alone}}`)).toBe(1);
    expect(await valueOf(`sse_relay_deliveries_total{${alone}}`)).toBe(5);
    // Alone, the Redis gauge is absent, not 0 (which would raise SseRelayRedisUnavailable); in a cluster it is 1.
    expect((await query(`sse_relay_redis_up{${alone}}`)).data.result).toEqual([]);
    await until(async () => (await valueOf(`sse_relay_redis_up{${inCluster}}`)) === 1, 30_000, 'sse_relay_redis_up 1');

    // The backend fails its health check: both relays are scraped as not ready.
    backend.healthStatus = 503;
    await until(async () => (await valueOf('sum(sse_relay_ready{job="sse-relay"})')) === 0, 30_000, 'sse_relay_ready 0');
    backend.healthStatus = 200;
  });

  test('loads every alert rule and evaluates each against the scraped series without an error', async () => {
    type Rule = { name: string; health: string; lastError?: string };
    const rules = async (): Promise<Rule[]> => {
      const answer = (await (await fetch(`${prometheusUrl}/api/v1/rules`)).json()) as { data: { groups: { rules: Rule[] }[] } };
      return answer.data.groups.flatMap((group) => group.rules);
    };
    await until(async () => (await rules()).every((rule) => rule.health === 'ok'), 30_000, 'every rule evaluated');
    const loaded = await rules();
    expect(loaded.map((rule) => rule.name).sort()).toEqual(
      [
        'SseRelayAtCapacity',
        'SseRelayConnectionsNearLimit',
        'SseRelayDown',
        'SseRelayNotReady',
        'SseRelayRedisUnavailable',
        'SseRelaySlowClientCuts',
        'SseRelayUpstreamGiveUps',
        'SseRelayUpstreamReconnects',
        'SseRelayUpstreamsNearLimit',
      ].sort(),
    );
  });

  test("every dashboard panel's query runs, and every metric the panels and rules name is one a relay exports", async () => {
    const exported = (await Promise.all([relay, clustered].map(async ({ url }) => (await fetch(`${url}/metrics`)).text()))).join('\n');
    const names = new Set([...exported.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(([, name, type]) => (type === 'histogram' ? [`${name!}_bucket`, `${name!}_sum`, `${name!}_count`] : [name!])));
    names.add('up');
    const rulesText = readFileSync(RULES, 'utf8');
    const ruleExprs = [...rulesText.matchAll(/^\s+expr: (.+)$/gm)].map((match) => match[1]!);
    const queries = dashboardQueries();
    expect(queries.length).toBeGreaterThan(20);
    for (const expr of [...ruleExprs, ...queries.map((q) => q.expr)]) {
      for (const name of metricNames(expr)) expect({ expr, name, exported: names.has(name) }).toEqual({ expr, name, exported: true });
    }
    for (const { panel, expr } of queries) {
      const answer = await query(expr);
      expect({ panel, expr, status: answer.status, error: answer.error }).toEqual({ panel, expr, status: 'success', error: undefined });
    }
    // And they read the relays' series: the panels of their own gauges have a value.
    expect(await valueOf('count(sse_relay_open_streams{instance=~".*"})')).toBe(2);
  });
});
