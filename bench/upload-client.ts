/**
 * Load client of the upload scenario: one multipart POST whose file part is
 * generated on the fly (a 1 MiB pattern written again and again, with
 * backpressure), and the response's SSE read with eventsource-parser.
 * Prints `{"type":"uploaded",…}` with the times to the body sent, to `file_saved`
 * (the backend has stored every byte) and to `complete`.
 *
 * Usage: node dist/bench/upload-client.js '<UploadClientConfig as JSON>'   (BENCH_JWT_SECRET for `auth: "jwt"`)
 */
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { createParser } from 'eventsource-parser';
import { identityHeader, nowMs, report } from './common';

export interface UploadClientConfig {
  readonly url: string;
  readonly auth: 'jwt' | 'header';
  readonly bytes: number;
  /** The backend's chunk_size: large, so that processing is a few dozen chunks. */
  readonly chunkSize: number;
}

export interface UploadReport {
  readonly type: 'uploaded';
  readonly status: number;
  readonly bytes: number;
  readonly bodySentMs: number;
  readonly fileSavedMs: number;
  readonly completeMs: number;
  /** Bytes the backend says it stored. */
  readonly savedBytes: number;
  readonly events: number;
  readonly lastEvent: string;
  readonly error: string | undefined;
  readonly [field: string]: unknown;
}

const config = JSON.parse(process.argv[2] ?? '{}') as UploadClientConfig;
const PATTERN = randomBytes(1024 * 1024);
/** No byte taken and no event for this long: the upload is stuck (a proxy that stopped forwarding the body). */
const STALL_MS = 10_000;

function main(): void {
  const boundary = `----bench${randomBytes(8).toString('hex')}`;
  const field = (name: string, value: string): string => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const head = Buffer.from(
    field('collection_name', 'bench') +
      field('chunk_size', String(config.chunkSize)) +
      field('chunk_overlap', '0') +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="bench.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const headers: Record<string, string> = {
    'Content-Type': `multipart/form-data; boundary=${boundary}`,
    'Content-Length': String(head.length + config.bytes + tail.length),
    Accept: 'text/event-stream',
    ...identityHeader(config.auth, 'uploader'),
  };

  let bodySentMs = NaN;
  let fileSavedMs = NaN;
  let completeMs = NaN;
  let savedBytes = 0;
  let events = 0;
  let lastEvent = '';
  let error: string | undefined;
  let status = 0;
  const start = nowMs();
  let lastProgress = start;
  const watchdog = setInterval(() => {
    if (nowMs() - lastProgress < STALL_MS) return;
    error ??= `stalled: no body byte accepted and no event for ${STALL_MS / 1000} s (last event "${lastEvent}")`;
    req.destroy();
    finish();
  }, 1000);
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    clearInterval(watchdog);
    const message: UploadReport = { type: 'uploaded', status, bytes: config.bytes, bodySentMs, fileSavedMs, completeMs, savedBytes, events, lastEvent, error };
    report(message, () => process.exit(0));
  };

  const req = request(config.url, { method: 'POST', headers, agent: false });
  req.on('error', (err) => {
    error ??= err.message;
    finish();
  });
  req.on('response', (res) => {
    status = res.statusCode ?? 0;
    const decoder = new TextDecoder();
    const parser = createParser({
      onEvent: (event) => {
        events += 1;
        lastProgress = nowMs();
        let data: { event?: string; bytes?: number; message?: string };
        try {
          data = JSON.parse(event.data) as typeof data;
        } catch {
          return;
        }
        lastEvent = data.event ?? '';
        if (data.event === 'file_saved') {
          fileSavedMs = nowMs() - start;
          savedBytes = data.bytes ?? 0;
        } else if (data.event === 'complete') completeMs = nowMs() - start;
        else if (data.event === 'error' || data.event === 'cancelled') error ??= `${data.event}: ${data.message ?? ''}`;
      },
    });
    res.on('data', (chunk: Buffer) => parser.feed(decoder.decode(chunk, { stream: true })));
    res.on('end', finish);
    res.on('error', (err) => {
      error ??= err.message;
      finish();
    });
  });

  // The body, generated as it is sent; write() returning false means wait for drain.
  req.write(head);
  let sent = 0;
  const pump = (): void => {
    while (sent < config.bytes) {
      const n = Math.min(PATTERN.length, config.bytes - sent);
      const ok = req.write(n === PATTERN.length ? PATTERN : PATTERN.subarray(0, n));
      sent += n;
      lastProgress = nowMs();
      if (!ok) {
        req.once('drain', () => {
          lastProgress = nowMs();
          pump();
        });
        return;
      }
    }
    req.end(tail, () => {
      bodySentMs = nowMs() - start;
    });
  };
  pump();
}

main();
