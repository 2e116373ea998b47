/**
 * Big-events scenario: T topics, E events per topic of K KiB each, one reader per topic,
 * through the relay only. It measures what the relay's memory does while more than its
 * history budget flows through (RSS sampled every 100 ms, against the RSS once every
 * reader is connected), and whether every reader got every event. With `burst` > 1 a
 * topic's events come that many at once, for the slow-client policy under bursts.
 */
import { type ConnectedReport, type DoneReport, fixed, sampleProcs } from './common';
import { END_AFTER_MS, type ScenarioOutcome, codeNames, describe, startPublishing } from './fanout';
import { type Lab, type Subject, load1 } from './lab';
import type { LoadConfig } from './load';
import type { Proc } from './proc';

export interface BigEventsSettings {
  topics: number;
  events: number;
  eventKib: number;
  /** Bursts per second per topic. */
  rate: number;
  /** Events per burst. */
  burst: number;
  graceMs: number;
}

interface BigEventsRow {
  done: DoneReport | undefined;
  rssConnectedKb: number;
  rssMaxSampledKb: number;
  hwmKb: number;
  seconds: number;
  load1: number;
  notes: string[];
}

async function runOne(lab: Lab, settings: BigEventsSettings): Promise<BigEventsRow> {
  const codes = codeNames(settings.topics);
  const startLoad = load1();
  const backend = await lab.startBenchBackend(lab.subjectCore);
  let subject: Subject | undefined;
  let load: Proc | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    subject = await lab.startSubject('relay', backend, lab.subjectCore, settings.topics);
    const loadConfig: LoadConfig = {
      baseUrl: subject.baseUrl,
      pathTemplate: `${subject.prefix}/downloads/{code}/events`,
      codes,
      subscribers: settings.topics,
      eventsPerCode: settings.events,
      concurrency: settings.topics,
      auth: subject.auth,
      backendUrl: backend.url,
      connectTimeoutMs: 15_000,
      graceMs: settings.graceMs,
    };
    load = lab.spawnClient('load', 'load', loadConfig);
    const connected = await load.message<ConnectedReport>('connected', 60_000);
    const notes: string[] = [];
    if (connected.failed > 0) notes.push(`${connected.failed} streams failed to open (${describe(connected.failures)})`);
    const pids = subject.pids();
    const before = sampleProcs(pids);
    let rssMax = before.rssKb;
    timer = setInterval(() => {
      rssMax = Math.max(rssMax, sampleProcs(pids).rssKb);
    }, 100);
    const started = Date.now();
    const lastEventInMs = await startPublishing(backend.url, load, {
      codes,
      events: settings.events,
      rate: settings.rate,
      padBytes: settings.eventKib * 1024 - 40,
      burst: settings.burst,
    });
    const done = await load.message<DoneReport>('done', lastEventInMs + END_AFTER_MS + settings.graceMs + 60_000);
    clearInterval(timer);
    const after = sampleProcs(pids);
    rssMax = Math.max(rssMax, after.rssKb);
    if (done.delivered < done.expected) notes.push(`${done.expected - done.delivered} events lost`);
    if (done.shortStreams > 0) notes.push(`${done.shortStreams} streams ended early (cut as slow clients?)`);
    if (Object.keys(done.otherEvents).length > 0) notes.push(`other events: ${describe(done.otherEvents)}`);
    if (Object.keys(done.streamErrors).length > 0) notes.push(`stream errors: ${describe(done.streamErrors)}`);
    return {
      done,
      rssConnectedKb: before.rssKb,
      rssMaxSampledKb: rssMax,
      hwmKb: after.hwmKb,
      seconds: (Date.now() - started) / 1000,
      load1: startLoad,
      notes,
    };
  } finally {
    clearInterval(timer);
    await load?.stop('SIGTERM', 2000);
    await subject?.stop();
    await backend.proc.stop();
  }
}

export async function runBigEvents(lab: Lab, settings: BigEventsSettings): Promise<ScenarioOutcome> {
  const through = (settings.topics * settings.events * settings.eventKib) / 1024;
  console.error(`big-events: relay (${settings.topics} topics x ${settings.events} events x ${settings.eventKib} KiB, bursts of ${settings.burst})`);
  let row: BigEventsRow | undefined;
  const failures: string[] = [];
  try {
    row = await runOne(lab, settings);
    console.error(`big-events: ${row.done?.delivered ?? 0}/${row.done?.expected ?? '?'} delivered, RSS +${fixed((row.rssMaxSampledKb - row.rssConnectedKb) / 1024, 0)} MiB`);
  } catch (err) {
    failures.push(`relay: ${err instanceof Error ? err.message : String(err)}`);
  }
  const lines = [
    `### Big events: ${settings.topics} topics x ${settings.events} events x ${settings.eventKib} KiB (${fixed(through, 0)} MiB through), one reader each, bursts of ${settings.burst} at ${settings.rate}/s per topic`,
    '',
    '| subject | delivered / expected | RSS MiB: connected / max sampled / VmHWM | growth MiB (max sampled - connected) | seconds | load avg |',
    '|---|---|---|---|---|---|',
  ];
  if (row) {
    lines.push(
      `| relay | ${row.done?.delivered ?? 0} / ${row.done?.expected ?? settings.topics * settings.events} | ${fixed(row.rssConnectedKb / 1024, 0)} / ${fixed(row.rssMaxSampledKb / 1024, 0)} / ${fixed(row.hwmKb / 1024, 0)} | ${fixed((row.rssMaxSampledKb - row.rssConnectedKb) / 1024, 0)} | ${fixed(row.seconds, 1)} | ${fixed(row.load1, 1)} |`,
    );
    if (row.notes.length > 0) lines.push('', `- relay: ${row.notes.join('; ')}`);
  }
  for (const line of failures) lines.push(`- ${line}`);
  lines.push(
    '',
    'The relay runs with its default history budgets (REPLAY_BUFFER_BYTES, REPLAY_TOTAL_BYTES) and slow-client policy. ' +
      'RSS of the relay sampled every 100 ms from the moment every reader is connected to the last event; the target is a growth under 256 MiB with every event delivered.',
  );
  return { markdown: `${lines.join('\n')}\n`, data: { settings, row, failures }, failed: failures.length > 0 || (row?.done?.delivered ?? 0) < settings.topics * settings.events };
}
