/**
 * Chat scenario: time to first token of POST /chat/stream straight to the
 * reference backend (no token delay) against POST /api/chat/stream through the
 * relay (and through nginx). The subject has one CPU; backend and client the other.
 */
import { fixed } from './common';
import { type ScenarioOutcome, describe } from './fanout';
import { type Lab, eachSubject, type Subject, type SubjectName, load1 } from './lab';
import type { ChatClientConfig, ChatReport } from './chat-client';
import type { Proc } from './proc';

export interface ChatSettings {
  requests: number;
  warmup: number;
}

interface ChatRow {
  subject: SubjectName;
  report: ChatReport;
  load1: number;
}

async function runOne(lab: Lab, settings: ChatSettings, name: SubjectName): Promise<ChatRow> {
  const startLoad = load1();
  const backend = await lab.startReferenceBackend(lab.loadCore);
  let subject: Subject | undefined;
  let client: Proc | undefined;
  try {
    subject = await lab.startSubject(name, backend, lab.subjectCore, 100);
    const config: ChatClientConfig = {
      url: `${subject.baseUrl}${subject.prefix}/chat/stream`,
      auth: subject.auth,
      requests: settings.requests,
      warmup: settings.warmup,
    };
    client = lab.spawnClient('chat-client', 'chat-client', config);
    const report = await client.message<ChatReport>('chat', 60_000 + settings.requests * 1000);
    return { subject: name, report, load1: startLoad };
  } finally {
    await client?.stop('SIGTERM', 2000);
    await subject?.stop();
    await backend.proc.stop();
    backend.cleanup();
  }
}

export async function runChat(lab: Lab, settings: ChatSettings, subjects: readonly SubjectName[]): Promise<ScenarioOutcome> {
  const { rows, failures } = await eachSubject(
    (name) => `chat: ${name} (${settings.requests} requests)`,
    subjects,
    (name) => runOne(lab, settings, name),
    (row) => `TTFT p50 ${fixed(row.report.ttft.p50, 2)} ms, p99 ${fixed(row.report.ttft.p99, 2)} ms`,
  );
  const direct = rows.find((r) => r.subject === 'direct');
  const lines = [
    `### Chat: time to first token, ${settings.requests} requests one after the other (after ${settings.warmup} warm-up)`,
    '',
    '| subject | TTFT p50 ms | TTFT p99 ms | TTFT max ms | p50 added to direct ms | whole answer p50 ms | tokens / answer | failed | load avg |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const r = row.report;
    lines.push(
      `| ${row.subject} | ${fixed(r.ttft.p50, 2)} | ${fixed(r.ttft.p99, 2)} | ${fixed(r.ttft.max, 2)} | ${direct ? fixed(r.ttft.p50 - direct.report.ttft.p50, 2) : 'n/a'} | ${fixed(r.total.p50, 2)} | ${r.tokens} | ${r.failed}${r.failed > 0 ? ` (${describe(r.failures)})` : ''} | ${fixed(row.load1, 1)} |`,
    );
  }
  lines.push('');
  for (const line of failures) lines.push(`- ${line}`);
  lines.push(
    '',
    'direct: POST /chat/stream to the reference backend with BACKEND_TOKEN_MS=0 (each token a setTimeout(0) after the last, so the first comes ~1 ms after the request); ' +
      'relay: POST /api/chat/stream (JWT verified, body streamed up, events streamed down). One keep-alive connection from the client. TTFT: request start to the first `content_block_delta` parsed.',
  );
  return { markdown: `${lines.join('\n')}\n`, data: { settings, rows, failures }, failed: failures.length > 0 };
}
