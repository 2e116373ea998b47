/**
 * Multiplex scenario (issues 16, 19): the same events to the same clients, once as one
 * single-topic stream per (client, topic) and once as one multiplexed stream per client
 * carrying all its topics, each with the codes publishing staggered over the period and with
 * all of them publishing in the same instant (where a multiplexed stream writes the events of
 * one turn of the event loop as one chunk); plus multiplexed streams of one topic each, whose
 * heap against the all-topics run gives the memory of one extra topic on a stream. Relay only.
 * The relay and the backend share one CPU, the client (multiplex-client.ts) has the other.
 */
import type { ChildMessage, DelaySummary } from './common';
import { fixed, sampleProc, sampleProcs } from './common';
import { heapAfterGc } from './capacity';
import { type ScenarioOutcome, codeNames, postJson } from './fanout';
import { CLK_TCK, type Lab, load1 } from './lab';
import type { MultiplexClientConfig } from './multiplex-client';

export interface MultiplexSettings {
  readonly clients: number;
  readonly topics: number;
  readonly events: number;
  readonly rate: number;
  readonly concurrency: number;
  /** How long past the last event's due time a missing delivery is still waited for. */
  readonly graceMs: number;
}

type Mode = 'single' | 'multiplex' | 'multiplex-1';
/** `staggered`: each code offset by a share of the period, as in fan-out; `together`: all codes in the same instant. */
type Publish = 'staggered' | 'together';

interface MultiplexRow {
  mode: Mode;
  publish: Publish;
  streams: number;
  memberships: number;
  delivered: number;
  expected: number;
  delay: DelaySummary | undefined;
  cpuS: number;
  userS: number;
  systemS: number;
  heapBaseKb: number;
  heapConnectedKb: number;
  rssConnectedKb: number;
  /** The load client's CPU over the same window, % of one CPU. */
  clientCpuPercent: number;
  load1: number;
}

async function runOne(lab: Lab, settings: MultiplexSettings, mode: Mode, publish: Publish, failures: string[]): Promise<MultiplexRow> {
  const topicsPerClient = mode === 'multiplex-1' ? 1 : settings.topics;
  const codes = codeNames(settings.topics);
  const startLoad = load1();
  const backend = await lab.startBenchBackend(lab.subjectCore);
  const subject = await lab.startRelay(backend.url, lab.subjectCore, settings.clients * settings.topics);
  // The base is read before the client exists: once it runs, streams may be opening during the read.
  const heapBase = (await heapAfterGc(subject.node)) ?? NaN;
  const client = lab.spawnClient('multiplex', 'multiplex-client', {
    baseUrl: subject.baseUrl,
    mode: mode === 'single' ? 'single' : 'multiplex',
    clients: settings.clients,
    codes,
    topicsPerClient,
    eventsPerCode: settings.events,
    concurrency: settings.concurrency,
  } satisfies MultiplexClientConfig);
  try {
    const connected = await client.message<ChildMessage & { open: number; failed: number }>('connected', 60_000);
    if (connected.failed > 0) throw new Error(`${connected.failed} streams failed to open: ${JSON.stringify(connected)}`);
    const heapConnected = (await heapAfterGc(subject.node)) ?? NaN;
    const before = sampleProcs(subject.pids());
    const clientBefore = sampleProc(client.pid);
    const startedAt = performance.now();
    const { lastEventInMs } = await postJson<{ lastEventInMs: number }>(`${backend.url}/start`, {
      codes,
      events: settings.events,
      rate: settings.rate,
      leadMs: 200,
      endAfterMs: -1,
      together: publish === 'together',
    });
    client.send({ cmd: 'start' });
    // The client says `received` once every expected event arrived; on a loaded machine the last ones
    // may come late, so they get the grace period. Past it, CPU is read anyway and the row says so.
    const complete = await client.message('received', lastEventInMs + settings.graceMs).then(
      () => true,
      () => false,
    );
    const after = sampleProcs(subject.pids());
    const clientAfter = sampleProc(client.pid);
    const windowS = (performance.now() - startedAt) / 1000;
    client.send({ cmd: 'report' });
    const done = await client.message<ChildMessage & { expected: number; delivered: number; delay: DelaySummary }>('done', 30_000);
    if (!complete) failures.push(`${mode} ${publish}: ${done.expected - done.delivered} events missing ${settings.graceMs} ms after the last was due (its CPU window includes the wait)`);
    return {
      mode,
      publish,
      streams: connected.open,
      memberships: settings.clients * topicsPerClient,
      delivered: done.delivered,
      expected: done.expected,
      delay: done.delay,
      cpuS: (after.ticks - before.ticks) / CLK_TCK,
      userS: (after.userTicks - before.userTicks) / CLK_TCK,
      systemS: (after.systemTicks - before.systemTicks) / CLK_TCK,
      heapBaseKb: heapBase / 1024,
      heapConnectedKb: heapConnected / 1024,
      rssConnectedKb: before.rssKb,
      clientCpuPercent: clientBefore && clientAfter ? ((clientAfter.ticks - clientBefore.ticks) / CLK_TCK / windowS) * 100 : NaN,
      load1: startLoad,
    };
  } finally {
    await client.stop('SIGTERM', 2000);
    await subject.stop();
    await backend.proc.stop();
  }
}

export async function runMultiplex(lab: Lab, settings: MultiplexSettings): Promise<ScenarioOutcome> {
  const rows: MultiplexRow[] = [];
  const failures: string[] = [];
  const runs: [Mode, Publish][] = [
    ['single', 'staggered'],
    ['multiplex', 'staggered'],
    ['single', 'together'],
    ['multiplex', 'together'],
    ['multiplex-1', 'staggered'],
  ];
  for (const [mode, publish] of runs) {
    console.error(`bench: multiplex: ${mode}, ${publish} (${settings.clients} clients, ${settings.topics} topics)`);
    try {
      rows.push(await runOne(lab, settings, mode, publish, failures));
    } catch (err) {
      failures.push(`${mode} ${publish}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return { markdown: table(settings, rows, failures), data: { settings, rows, failures }, failed: failures.length > 0 };
}

function table(settings: MultiplexSettings, rows: readonly MultiplexRow[], failures: readonly string[]): string {
  const lines = [
    `### Multiplex: ${settings.clients} clients × ${settings.topics} topics, ${settings.events} events per topic at ${settings.rate}/s`,
    '',
    '| mode | codes publish | streams | topic memberships | delivered / expected | p50 ms | p99 ms | max ms | relay CPU s / 100k deliveries (user+sys) | heap KiB per client (connected − base) | relay RSS MiB connected | load client CPU % | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const per100k = (s: number, n: number): string => (n > 0 ? fixed((s / n) * 100_000, 2) : 'n/a');
  for (const row of rows) {
    lines.push(
      `| ${row.mode} | ${row.publish} | ${row.streams} | ${row.memberships} | ${row.delivered} / ${row.expected} | ${fixed(row.delay?.p50 ?? NaN, 2)} | ${fixed(row.delay?.p99 ?? NaN, 2)} | ${fixed(row.delay?.max ?? NaN, 1)} | ${per100k(row.cpuS, row.delivered)} (${per100k(row.userS, row.delivered)}+${per100k(row.systemS, row.delivered)}) | ${fixed((row.heapConnectedKb - row.heapBaseKb) / settings.clients, 1)} | ${fixed(row.rssConnectedKb / 1024, 0)} | ${fixed(row.clientCpuPercent, 0)} | ${fixed(row.load1, 1)} |`,
    );
  }
  const all = rows.find((r) => r.mode === 'multiplex' && r.publish === 'staggered');
  const one = rows.find((r) => r.mode === 'multiplex-1');
  lines.push('');
  const cpuPerDelivery = (row: MultiplexRow | undefined): number => (row && row.delivered > 0 ? row.cpuS / row.delivered : NaN);
  for (const publish of ['staggered', 'together'] as const) {
    const ratio = cpuPerDelivery(rows.find((r) => r.mode === 'multiplex' && r.publish === publish)) / cpuPerDelivery(rows.find((r) => r.mode === 'single' && r.publish === publish));
    if (Number.isFinite(ratio)) lines.push(`- Relay CPU per delivery, multiplex / single, codes publishing ${publish}: ${fixed(ratio, 2)}.`);
  }
  if (all && one && settings.topics > 1) {
    const perTopic = (all.heapConnectedKb - all.heapBaseKb - (one.heapConnectedKb - one.heapBaseKb)) / (settings.clients * (settings.topics - 1));
    lines.push(`- Heap per extra topic on a multiplexed stream: ${fixed(perTopic * 1024, 0)} bytes ((multiplex − multiplex-1) / (clients × ${settings.topics - 1})).`);
  }
  for (const line of failures) lines.push(`- ${line}`);
  lines.push(
    '',
    'single: one stream per (client, topic); multiplex: one `GET /api/events` per client with all its topics; multiplex-1: one topic each (memory reference). ' +
      'Heap: heapUsed after `gc()` once the streams are open, minus before any. CPU: relay utime+stime from the start signal to the last expected event.',
  );
  return `${lines.join('\n')}\n`;
}
