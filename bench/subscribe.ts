/**
 * Subscribe-rate scenario: new streams per second, each a new user (for the relay:
 * a JWT verified and the backend's status route asked), offered at rising rates
 * until p99 connect time passes the limit. The subject and the backend share one
 * CPU, the client has the other.
 */
import { fixed, nowMs, sampleProcs } from './common';
import { type ScenarioOutcome, codeNames, describe } from './fanout';
import { CLK_TCK, type Lab, eachSubject, type Subject, type SubjectName, load1 } from './lab';
import type { Proc } from './proc';
import type { StepReport, SubscribeClientConfig } from './subscribe-client';

export interface SubscribeSettings {
  rates: number[];
  stepMs: number;
  codes: number;
  p99LimitMs: number;
}

interface SubscribeRow {
  subject: SubjectName;
  steps: (StepReport & { subjectCpuPercent: number; backendCpuPercent: number; subjectCpuMsPerStream: number })[];
  load1: number;
  notes: string[];
}

async function runOne(lab: Lab, settings: SubscribeSettings, name: SubjectName): Promise<SubscribeRow> {
  const startLoad = load1();
  const backend = await lab.startBenchBackend(lab.subjectCore);
  let subject: Subject | undefined;
  let client: Proc | undefined;
  try {
    subject = await lab.startSubject(name, backend, lab.subjectCore, 20_000);
    const config: SubscribeClientConfig = {
      baseUrl: subject.baseUrl,
      pathTemplate: `${subject.prefix}/downloads/{code}/events`,
      codes: codeNames(settings.codes),
      auth: subject.auth,
      rates: settings.rates,
      stepMs: settings.stepMs,
      p99LimitMs: settings.p99LimitMs,
    };
    client = lab.spawnClient('subscribe-client', 'subscribe-client', config);
    await client.message('anchored', 60_000);
    const steps: SubscribeRow['steps'] = [];
    // CPU of the subject (for direct: the backend) and of the backend, read when the client
    // starts a step and when it reports it.
    const cpuNow = (): { at: number; subject: number; backend: number } => ({
      at: nowMs(),
      subject: sampleProcs(subject?.pids() ?? []).ticks,
      backend: sampleProcs([backend.proc.pid]).ticks,
    });
    for (;;) {
      const begin = await client.message<{ type: 'step-start' } | { type: 'done' }>(['step-start', 'done'], 120_000);
      if (begin.type === 'done') break;
      const before = cpuNow();
      const step = await client.message<StepReport>('step', 120_000);
      const after = cpuNow();
      const spanMs = after.at - before.at;
      const subjectMs = ((after.subject - before.subject) / CLK_TCK) * 1000;
      const backendMs = ((after.backend - before.backend) / CLK_TCK) * 1000;
      steps.push({
        ...step,
        subjectCpuPercent: (subjectMs / spanMs) * 100,
        backendCpuPercent: name === 'direct' ? NaN : (backendMs / spanMs) * 100,
        subjectCpuMsPerStream: subjectMs / Math.max(1, step.opened),
      });
      console.error(`bench: subscribe: ${name}: ${step.rate}/s offered, ${fixed(step.achieved, 0)}/s opened, p99 ${fixed(step.p99, 1)} ms`);
    }
    const notes: string[] = [];
    const diagnostics = subject.diagnostics?.();
    if (diagnostics !== undefined) notes.push(diagnostics);
    return { subject: name, steps, load1: startLoad, notes };
  } finally {
    await client?.stop('SIGTERM', 2000);
    await subject?.stop();
    await backend.proc.stop();
  }
}

/** The highest offered rate whose p99 stayed within the limit with (almost) every stream opened. */
function sustained(row: SubscribeRow, limit: number): StepReport | undefined {
  return row.steps.filter((s) => s.p99 <= limit && s.failed <= s.attempted * 0.01).sort((a, b) => b.rate - a.rate)[0];
}

export async function runSubscribe(lab: Lab, settings: SubscribeSettings, subjects: readonly SubjectName[]): Promise<ScenarioOutcome> {
  const { rows, failures } = await eachSubject(
    (name) => `subscribe: ${name}`,
    subjects,
    (name) => runOne(lab, settings, name),
  );
  const lines = [
    `### Subscribe rate: new streams per second until p99 connect time passes ${settings.p99LimitMs} ms`,
    '',
    '| subject | sustained rate (p99 ≤ limit) | offered / s | opened / s | p50 ms | p99 ms | max ms | failed | subject CPU % | subject CPU ms / stream | backend CPU % | client CPU % |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const best = sustained(row, settings.p99LimitMs);
    row.steps.forEach((s, i) => {
      const first = i === 0 ? `**${best ? `${best.rate}/s` : `< ${row.steps[0]?.rate ?? '?'}/s`}**` : '';
      lines.push(
        `| ${i === 0 ? row.subject : ''} | ${first} | ${s.rate} | ${fixed(s.achieved, 0)} | ${fixed(s.p50, 2)} | ${fixed(s.p99, 2)} | ${fixed(s.max, 1)} | ${s.failed}${s.failed > 0 ? ` (${describe(s.failures)})` : ''} | ${fixed(s.subjectCpuPercent, 0)} | ${fixed(s.subjectCpuMsPerStream, 3)} | ${fixed(s.backendCpuPercent, 0)} | ${fixed(s.cpuPercent, 0)} |`,
      );
    });
  }
  lines.push('');
  for (const row of rows) lines.push(`- ${row.subject}: load avg ${fixed(row.load1, 1)} at start${row.notes.length > 0 ? `; ${row.notes.join('; ')}` : ''}`);
  for (const line of failures) lines.push(`- ${line}`);
  lines.push(
    '',
    `Each step offers new streams at the rate for ${settings.stepMs} ms (open loop), spread over ${settings.codes} codes that each already have a live anchor stream, after one untimed warm-up step at the first rate. ` +
      'Every stream is a new user: through the relay that is a JWT verified and a status request to the backend (no cached answer), then the attach to the live topic. ' +
      'direct and nginx check nothing (reference only). Connect time: request to response headers; the client then closes the stream. ' +
      'CPU %: of one core, from the start of the step to its report (/proc, 10 ms ticks); the subject and the backend share one CPU, so their sum near 100 % is the ceiling. The run stops after two steps in a row past the limit; the sustained rate is the highest step within it.',
  );
  return { markdown: `${lines.join('\n')}\n`, data: { settings, rows, failures }, failed: failures.length > 0 };
}
