import { AnswerStream } from './answer-stream';
import { type ReconnectOptions, backoffDelay, pause, retryAfterMs } from './backoff';
import { type RelayHeartbeat, SilenceWatch } from './dead-stream';
import { type StreamEvent, parseJsonData, readEventStream } from './sse-body';
import { RelayError, type Transport, errorText } from './transport';

/** The processing stages that count chunks, as the backend names them. */
export type ChunkStage = 'ocr' | 'llm_metadata' | 'embedding';

/** Where one file of an upload is. */
export interface FileProgress {
  readonly name: string;
  readonly size: number;
  /** The backend's session, known from the stream's first event. */
  sessionId: string | undefined;
  /** The last stage event (`start`, `ocr_chunk_processed`, …, `complete`), or `queued` / `sending` before the first. */
  stage: string;
  /** Bytes the backend has stored so far. */
  bytesReceived: number;
  totalChunks: number | undefined;
  /** Chunks done per stage. */
  processed: Record<ChunkStage, number>;
  /** True once the file completed, failed or was cancelled. */
  done: boolean;
  outcome: 'complete' | 'cancelled' | 'error' | undefined;
  /** The error, when `outcome` is `error`. */
  error: string | undefined;
  /** Times the stream broke and was resumed. */
  reconnects: number;
}

/** Options fields sent with each file (`collection_name`, `chunk_size`, `chunk_overlap`, …). */
export type UploadFields = Readonly<Record<string, string | number>>;

/** Callbacks of `upload`. */
export interface UploadHandlers {
  /** A file's progress changed. */
  onProgress?(file: UploadedFile): void;
  /** Every event of a file's stream, parsed. */
  onEvent?(file: UploadedFile, data: Record<string, unknown>): void;
  /** Something skipped (a bad chunk) or failed (a cancel the relay refused). */
  onError?(error: Error, file: UploadedFile): void;
}

/** One file of an upload. */
export interface UploadedFile {
  readonly index: number;
  readonly progress: Readonly<FileProgress>;
  /** Cancels this file: its backend session when it has one, else the request. Resolves when asked. */
  cancel(): Promise<void>;
}

/** A running upload of several files. */
export interface Upload {
  readonly files: readonly UploadedFile[];
  /** Cancels every file that has not finished. */
  cancel(): Promise<void>;
  /** Resolves when every file has finished (completed, failed or cancelled). */
  readonly done: Promise<readonly Readonly<FileProgress>[]>;
}

export interface UploadTiming {
  readonly reconnect: Readonly<ReconnectOptions>;
  /** Files sent at once; each holds a connection while it is processed. */
  readonly concurrency: number;
  /** The relay's heartbeat interval: a processing stream silent for twice it is dead, and resumed. */
  readonly heartbeat?: RelayHeartbeat;
}

const FINAL = new Set(['complete', 'error', 'cancelled']);
const STAGE_OF: Readonly<Record<string, ChunkStage>> = {
  ocr_chunk_processed: 'ocr',
  llm_chunk_processed: 'llm_metadata',
  embedding_chunk_processed: 'embedding',
};

/** Uploads `files`, each its own `POST /api/documents/upload-sse` and backend session. */
export function startUpload(transport: Transport, timing: UploadTiming, files: readonly File[], fields: UploadFields, handlers: UploadHandlers): Upload {
  const uploads = files.map((file, index) => new FileUpload(transport, timing, file, index, fields, handlers));
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < uploads.length) await (uploads[next++] as FileUpload).run();
  };
  // Started after this call returns, so the caller can lay out `files` before the first progress call.
  const done = Promise.resolve()
    .then(() => Promise.all(Array.from({ length: Math.min(timing.concurrency, uploads.length) }, worker)))
    .then(() => uploads.map((upload) => upload.progress));
  return {
    files: uploads,
    async cancel() {
      await Promise.all(uploads.map((upload) => upload.cancel()));
    },
    done,
  };
}

class FileUpload implements UploadedFile {
  readonly progress: FileProgress;
  private readonly abort = new AbortController();
  /** The last id read from the session's reconnect route. */
  private lastId: string | undefined;
  private cancelRequested = false;
  private cancelSent = false;

  constructor(
    private readonly transport: Transport,
    private readonly timing: UploadTiming,
    private readonly file: File,
    readonly index: number,
    private readonly fields: UploadFields,
    private readonly handlers: UploadHandlers,
  ) {
    this.progress = {
      name: file.name,
      size: file.size,
      sessionId: undefined,
      stage: 'queued',
      bytesReceived: 0,
      totalChunks: undefined,
      processed: { ocr: 0, llm_metadata: 0, embedding: 0 },
      done: false,
      outcome: undefined,
      error: undefined,
      reconnects: 0,
    };
  }

  async run(): Promise<void> {
    if (this.cancelRequested) return this.finish('cancelled');
    this.update({ stage: 'sending' });
    const form = new FormData();
    // Options before the file: the backend reads them before it starts storing.
    for (const [name, value] of Object.entries(this.fields)) form.append(name, String(value));
    form.append('file', this.file, this.file.name);
    try {
      const response = await this.transport.request('/api/documents/upload-sse', {
        method: 'POST',
        body: form,
        headers: { accept: 'text/event-stream' },
        signal: this.abort.signal,
      });
      if (!response.ok || response.body === null) throw await RelayError.from(response);
      // Once the body is sent the relay keeps the answer: a break is resumed through it first.
      const answer = new AnswerStream(
        this.transport,
        {
          reconnect: this.timing.reconnect,
          signal: this.abort.signal,
          onStatus: (status) => {
            if (status === 'open') this.progress.reconnects += 1;
          },
          ...(this.timing.heartbeat ? { heartbeat: this.timing.heartbeat } : {}),
        },
        // Ids are the backend's unless the relay keeps the answer (then it may number them itself).
        (event) => this.received(event, answer.streamId === undefined),
      );
      await answer.follow(response, () => this.progress.done);
    } catch (err) {
      if (this.abort.signal.aborted) return this.finish('cancelled');
      if (this.progress.sessionId === undefined) return this.finish('error', errorText(err));
    }
    await this.resume();
  }

  /**
   * Follows the session's stream again, from the last event seen on it, until a final event: for
   * an answer the relay did not keep or no longer has (its grace period passed).
   */
  private async resume(): Promise<void> {
    let failures = 0;
    while (!this.progress.done) {
      const sessionId = this.progress.sessionId;
      if (sessionId === undefined || this.abort.signal.aborted) return this.finish(this.abort.signal.aborted ? 'cancelled' : 'error', 'the stream ended early');
      let wait: number | undefined;
      try {
        const response = await this.transport.request(`/api/documents/upload-sse/reconnect/${encodeURIComponent(sessionId)}`, {
          headers: { accept: 'text/event-stream', ...(this.lastId === undefined ? {} : { 'last-event-id': this.lastId }) },
          signal: this.abort.signal,
        });
        if (response.status === 204) return this.finish('complete');
        if (response.status === 429 || response.status === 503) {
          wait = retryAfterMs(response.headers.get('retry-after'));
          void response.body?.cancel();
        } else if (!response.ok || response.body === null) {
          const error = await RelayError.from(response);
          if (response.status >= 400 && response.status < 500) return this.finish('error', error.message);
        } else {
          this.progress.reconnects += 1;
          let got = 0;
          const watch = new SilenceWatch();
          watch.arm(this.timing.heartbeat?.ms);
          await readEventStream(
            response.body,
            (event) => {
              got += 1;
              this.received(event, true);
            },
            { watch },
          );
          // A stream that carried events resumes at once; one that ended empty is a failure, with
          // backoff and the attempt cap (else a relay that keeps ending it would be asked in a tight loop).
          if (got > 0) {
            failures = 0;
            continue;
          }
        }
      } catch (err) {
        if (this.abort.signal.aborted) return this.finish('cancelled');
        void err;
      }
      failures += 1;
      if (failures > this.timing.reconnect.attempts) return this.finish('error', 'the session stream could not be resumed');
      try {
        // A cancel ends the wait at once, and the browser coming back online does too.
        await pause(wait ?? backoffDelay(failures, this.timing.reconnect), this.abort.signal);
      } catch {
        return this.finish('cancelled');
      }
    }
  }

  /** `backendIds`: the event's id is the backend's, one the session's reconnect route resumes after (a kept answer may carry the relay's). */
  private received(event: StreamEvent, backendIds: boolean): void {
    if (backendIds && event.id !== undefined) this.lastId = event.id;
    const data = parseJsonData(event, (_bad, error) => this.handlers.onError?.(new Error(`skipped a bad upload event: ${error.message}`), this));
    if (typeof data !== 'object' || data === null) return;
    const record = data as Record<string, unknown>;
    const name = typeof record.event === 'string' ? record.event : (event.event ?? 'message');
    if (typeof record.session_id === 'string' && this.progress.sessionId === undefined) {
      this.progress.sessionId = record.session_id;
      // A cancel asked for before the session was known goes out now.
      if (this.cancelRequested) void this.sendCancel();
    }
    if (typeof record.total_chunks === 'number') this.progress.totalChunks = record.total_chunks;
    if (typeof record.bytes_received === 'number') this.progress.bytesReceived = record.bytes_received;
    if (typeof record.bytes === 'number' && name === 'file_saved') this.progress.bytesReceived = record.bytes;
    const stage = STAGE_OF[name];
    if (stage !== undefined && typeof record.processed === 'number') this.progress.processed[stage] = record.processed;
    this.handlers.onEvent?.(this, record);
    if (FINAL.has(name)) {
      const message = typeof record.message === 'string' ? record.message : undefined;
      this.finish(name as 'complete' | 'error' | 'cancelled', message, name);
    } else {
      this.update({ stage: name });
    }
  }

  async cancel(): Promise<void> {
    if (this.progress.done || this.cancelRequested) return;
    this.cancelRequested = true;
    if (this.progress.sessionId !== undefined) await this.sendCancel();
    else if (this.progress.stage === 'queued') this.finish('cancelled');
    // Still sending and no session yet: the cancel goes out when the first event names the session.
  }

  private async sendCancel(): Promise<void> {
    if (this.cancelSent) return;
    this.cancelSent = true;
    try {
      // The stream then ends with the backend's own `cancelled` event.
      await this.transport.json(`/api/sessions/${encodeURIComponent(this.progress.sessionId as string)}/cancel`, {});
    } catch (err) {
      // 409: it finished first. Anything else: stop reading, so the page is not left waiting.
      if (!(err instanceof RelayError && err.status === 409)) {
        this.handlers.onError?.(err instanceof Error ? err : new Error(String(err)), this);
        this.abort.abort();
      }
    }
  }

  private update(change: Partial<FileProgress>): void {
    Object.assign(this.progress, change);
    this.handlers.onProgress?.(this);
  }

  private finish(outcome: 'complete' | 'error' | 'cancelled', error?: string, stage: string = outcome): void {
    if (this.progress.done) return;
    this.update({ done: true, outcome, stage, error: outcome === 'error' ? (error ?? 'failed') : undefined });
  }
}
