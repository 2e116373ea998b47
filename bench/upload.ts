/**
 * Upload scenario: one large multipart upload (POST /documents/upload-sse)
 * straight to the reference backend, then through each proxy subject
 * (the relay's POST /api/documents/upload-sse, nginx with request buffering off).
 * The backend processes fast (no chunk delay, 16 MiB chunks, files in tmpfs).
 * The subject has one CPU to itself; the backend and the client share the other,
 * as they do for every subject.
 */
import { writeFileSync } from 'node:fs';
import { fixed, sampleProcs } from './common';
import type { ScenarioOutcome } from './fanout';
import { CLK_TCK, type Lab, eachSubject, type Subject, type SubjectName, load1 } from './lab';
import type { Proc } from './proc';
import type { UploadClientConfig, UploadReport } from './upload-client';

export interface UploadSettings {
  bytes: number;
}

interface UploadRow {
  subject: SubjectName;
  report: UploadReport;
  /** MB/s (10^6 bytes) to file_saved. */
  mbPerS: number;
  rssBeforeKb: number;
  /** Highest RSS sampled every 50 ms while uploading. */
  rssMaxSampledKb: number;
  /** VmHWM after the upload, reset before it when /proc/PID/clear_refs allows. */
  hwmKb: number;
  hwmReset: boolean;
  subjectCpuS: number;
  load1: number;
  notes: string[];
}

/** Seconds from a time the client reported in ms; NaN travels through JSON as null. */
function seconds(ms: number | null): number {
  return typeof ms === 'number' ? ms / 1000 : NaN;
}

/** Resets the peak RSS (VmHWM) of `pid` (Linux, own processes or root). */
function resetHwm(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

async function runOne(lab: Lab, settings: UploadSettings, name: SubjectName): Promise<UploadRow> {
  const startLoad = load1();
  // The subject alone on its CPU; backend with the client on the other.
  const backend = await lab.startReferenceBackend(lab.loadCore);
  let subject: Subject | undefined;
  let client: Proc | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    subject = await lab.startSubject(name, backend, lab.subjectCore, 100);
    const pids = subject.pids();
    const before = sampleProcs(pids);
    const hwmReset = pids.every(resetHwm);
    let rssMax = before.rssKb;
    timer = setInterval(() => {
      rssMax = Math.max(rssMax, sampleProcs(pids).rssKb);
    }, 50);
    const config: UploadClientConfig = {
      url: `${subject.baseUrl}${subject.prefix}/documents/upload-sse`,
      auth: subject.auth,
      bytes: settings.bytes,
      chunkSize: 16 * 1024 * 1024,
    };
    client = lab.spawnClient('upload-client', 'upload-client', config);
    const report = await client.message<UploadReport>('uploaded', 60_000 + settings.bytes / 10_000);
    clearInterval(timer);
    const after = sampleProcs(pids);
    rssMax = Math.max(rssMax, after.rssKb);
    const notes: string[] = [];
    if (report.error !== undefined) notes.push(`error: ${report.error}`);
    if (name === 'nginx' && report.error?.startsWith('stalled') === true) {
      notes.push(
        'the backend answers (start, file_saving) while the body is still arriving, and nginx stops passing the request body on once the upstream has begun its response: it does not proxy HTTP/1.1 full-duplex, so this upload cannot complete through it',
      );
    }
    if (report.status !== 200) notes.push(`status ${report.status}`);
    if (report.savedBytes !== settings.bytes) notes.push(`backend stored ${report.savedBytes} of ${settings.bytes} bytes`);
    if (!hwmReset) notes.push('VmHWM could not be reset: it is the peak since the process started');
    const diagnostics = subject.diagnostics?.();
    if (diagnostics !== undefined) notes.push(diagnostics);
    return {
      subject: name,
      report,
      mbPerS: settings.bytes / 1e6 / seconds(report.fileSavedMs),
      rssBeforeKb: before.rssKb,
      rssMaxSampledKb: rssMax,
      hwmKb: after.hwmKb,
      hwmReset,
      subjectCpuS: (after.ticks - before.ticks) / CLK_TCK,
      load1: startLoad,
      notes,
    };
  } finally {
    clearInterval(timer);
    await client?.stop('SIGTERM', 2000);
    await subject?.stop();
    await backend.proc.stop();
    backend.cleanup();
  }
}

export async function runUpload(lab: Lab, settings: UploadSettings, subjects: readonly SubjectName[]): Promise<ScenarioOutcome> {
  const { rows, failures } = await eachSubject(
    (name) => `upload: ${name} (${fixed(settings.bytes / 2 ** 20, 0)} MiB)`,
    subjects,
    (name) => runOne(lab, settings, name),
    (row) => `${fixed(row.mbPerS, 0)} MB/s`,
  );
  const direct = rows.find((r) => r.subject === 'direct');
  const lines = [
    `### Upload: ${fixed(settings.bytes / 2 ** 30, 2)} GiB multipart, generated on the fly`,
    '',
    '| subject | MB/s to file_saved | of direct | body sent (s) | file_saved (s) | complete (s) | events | subject RSS MiB: before / max sampled / VmHWM | subject CPU s | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const r = row.report;
    lines.push(
      `| ${row.subject} | ${fixed(row.mbPerS, 0)} | ${direct ? `${fixed((row.mbPerS / direct.mbPerS) * 100, 0)} %` : 'n/a'} | ${fixed(seconds(r.bodySentMs), 2)} | ${fixed(seconds(r.fileSavedMs), 2)} | ${fixed(seconds(r.completeMs), 2)} | ${r.events} | ${fixed(row.rssBeforeKb / 1024, 0)} / ${fixed(row.rssMaxSampledKb / 1024, 0)} / ${fixed(row.hwmKb / 1024, 0)} | ${fixed(row.subjectCpuS, 2)} | ${fixed(row.load1, 1)} |`,
    );
  }
  lines.push('');
  for (const row of rows) if (row.notes.length > 0) lines.push(`- ${row.subject}: ${row.notes.join('; ')}`);
  for (const line of failures) lines.push(`- ${line}`);
  lines.push(
    '',
    'direct: POST /documents/upload-sse to the reference backend; relay: POST /api/documents/upload-sse (JWT); nginx: `proxy_request_buffering off`. ' +
      'MB/s = bytes / time from the first byte sent to the `file_saved` event (the backend has hashed and stored every byte; tmpfs). ' +
      'The backend runs with BACKEND_CHUNK_MS=0 and chunk_size 16 MiB. RSS of the subject (for direct, of the backend itself), sampled every 50 ms; ' +
      'VmHWM reset through /proc/PID/clear_refs before the upload. The subject has its own CPU; the backend and the client share the other.',
  );
  return { markdown: `${lines.join('\n')}\n`, data: { settings, rows, failures }, failed: failures.length > 0 };
}
