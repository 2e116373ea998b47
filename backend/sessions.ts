import { createHash } from 'node:crypto';
import { type WriteStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import { ActiveCounter } from './active-counter';
import { type Chunking, chunkRange, totalChunks } from './chunking';
import { BackendError } from './errors';
import { newId } from './ids';
import type { BackendConfig } from './options';
import { EventLog, type StreamSet } from './sse-stream';

/** Where a session is: receiving its file, in one of the processing stages, or finished. */
export type SessionStage = 'receiving' | 'ocr' | 'llm_metadata' | 'embedding' | 'complete' | 'cancelled' | 'error';

/** The `code` of an `error` event. */
export type SessionErrorCode = 'bad_request' | 'payload_too_large' | 'too_many_chunks' | 'empty_file' | 'storage_failed';

/** What the upload asked for, from its form fields. */
export interface UploadSettings extends Chunking {
  readonly collectionName: string;
}

/** The processing stages in order, with the names of their events. */
const STAGES = [
  { stage: 'ocr', start: 'ocr_start', chunk: 'ocr_chunk_processed', complete: 'ocr_complete' },
  { stage: 'llm_metadata', start: 'llm_metadata_start', chunk: 'llm_chunk_processed', complete: 'llm_metadata_complete' },
  { stage: 'embedding', start: 'embedding_start', chunk: 'embedding_chunk_processed', complete: 'embedding_complete' },
] as const;

/**
 * One document upload: the file is stored as it arrives, then cut into chunks
 * that go through OCR, LLM metadata and embedding, one chunk per `chunkMs` each.
 * Every step is an event in the session's log; every event carries `event` and
 * `session_id`.
 *
 * When the work stops, on purpose:
 * - While the file is still arriving, the upload connection is the only way the
 *   file can complete, so the intake cancels the session as soon as it closes.
 * - While processing, a stream that breaks can be resumed through the reconnect
 *   route, so losing every stream only starts `reconnectGraceMs`; a reader who
 *   attaches in time stops the clock, and without one the session is cancelled:
 *   a user who leaves does not leave work running.
 * - `cancel()` (the cancel route, shutdown) stops the timers at once; live
 *   readers get a final `cancelled` event and their streams end.
 */
export class UploadSession {
  readonly log: EventLog;
  readonly createdAt = new Date();
  /** Aborted when the session stops taking its file (cancel or error): the intake stops reading the request. */
  readonly intake = new AbortController();
  stage: SessionStage = 'receiving';
  /** Bytes received so far; once saved, the stored file's size. */
  bytes = 0;
  /** SHA-256 (hex) of the stored file, once saved. */
  sha256: string | undefined;
  totalChunks: number | undefined;
  readonly processed = { ocr: 0, llm_metadata: 0, embedding: 0 };
  error: { code: SessionErrorCode; message: string } | undefined;
  cancelReason: string | undefined;
  finishedAt: Date | undefined;
  private bodyDone = false;
  private saved = false;
  private nextSavingEventAt: number;
  private timer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private fileSettled: Promise<void> = Promise.resolve();

  constructor(
    readonly id: string,
    readonly owner: string,
    readonly fileName: string,
    readonly mimeType: string,
    private settings: UploadSettings,
    readonly filePath: string,
    private readonly config: BackendConfig,
    private readonly onFinish: (session: UploadSession) => void,
  ) {
    this.log = new EventLog((remaining) => {
      if (remaining === 0 && this.processing) this.startGrace();
    });
    this.nextSavingEventAt = config.savingEventBytes;
    this.emit('start', { collection_name: settings.collectionName, file_name: fileName });
    this.emit('file_saving', { file_name: fileName, mime_type: mimeType, bytes_received: 0 });
  }

  /** True until the session completed, failed or was cancelled. */
  get running(): boolean {
    return this.stage !== 'complete' && this.stage !== 'cancelled' && this.stage !== 'error';
  }

  private get processing(): boolean {
    return this.running && this.stage !== 'receiving';
  }

  /** True until the whole request body was read: losing the upload connection before that loses the file. */
  get awaitingBody(): boolean {
    return this.stage === 'receiving' && !this.bodyDone;
  }

  /** Stores the file part as it arrives, hashing it on the way; it is never held whole in memory. */
  receive(file: Readable): void {
    const hash = createHash('sha256');
    const meter = new Transform({
      transform: (chunk: Buffer, _encoding, callback) => {
        hash.update(chunk);
        this.bytes += chunk.length;
        this.received();
        callback(null, chunk);
      },
    });
    this.fileSettled = (async () => {
      let out: WriteStream | undefined;
      try {
        await mkdir(this.config.uploadDir, { recursive: true });
        if (this.intake.signal.aborted) return;
        out = createWriteStream(this.filePath, { flags: 'wx' });
        await pipeline(file, meter, out, { signal: this.intake.signal });
        this.stored(out.bytesWritten, hash.digest('hex'));
      } catch (err) {
        if (this.intake.signal.aborted) return;
        this.config.onError(err);
        this.fail('storage_failed', 'The file could not be stored; retry the upload.');
      } finally {
        // Deleting the file is only safe once the descriptor is closed: an open still in flight would recreate it.
        if (out && !out.closed) await new Promise<void>((resolve) => out?.once('close', () => resolve()));
      }
    })();
  }

  /** The whole request body was read; `settings` include fields that came after the file. */
  bodyReceived(settings: UploadSettings): void {
    if (this.stage !== 'receiving') return;
    this.settings = settings;
    this.bodyDone = true;
    this.maybeProcess();
  }

  /** Serves the reconnect route: missed events, then live ones; attaching in time stops the grace clock. */
  resume(req: Request, res: Response, streams: StreamSet): void {
    streams.serveLog(req, res, this.log);
    if (this.log.readerCount > 0) clearTimeout(this.graceTimer);
  }

  /** Stops the session now; live readers get `cancelled` and their streams end. False when it had already finished. */
  cancel(reason: string): boolean {
    if (!this.running) return false;
    const stage = this.stage;
    this.stop('cancelled');
    this.cancelReason = reason;
    this.emit('cancelled', { reason, stage });
    this.finished(stage === 'receiving');
    return true;
  }

  /** Ends the session with an `error` event. */
  fail(code: SessionErrorCode, message: string): void {
    if (!this.running) return;
    const stage = this.stage;
    this.stop('error');
    this.error = { code, message };
    this.emit('error', { code, message, stage });
    this.finished(stage === 'receiving');
  }

  /** Deletes the stored file, once no write to it is pending. */
  async removeFile(): Promise<void> {
    await this.fileSettled;
    await rm(this.filePath, { force: true });
  }

  /** The session as `GET /sessions/:id` answers it. `done` is true for every final stage. */
  state(): Record<string, unknown> {
    return {
      session_id: this.id,
      stage: this.stage,
      done: !this.running,
      cancelled: this.stage === 'cancelled',
      error: this.error ?? null,
      ...(this.cancelReason !== undefined ? { cancel_reason: this.cancelReason } : {}),
      file_name: this.fileName,
      mime_type: this.mimeType,
      bytes: this.bytes,
      sha256: this.sha256 ?? null,
      collection_name: this.settings.collectionName,
      chunk_size: this.settings.chunkSize,
      chunk_overlap: this.settings.chunkOverlap,
      total_chunks: this.totalChunks ?? null,
      processed: { ...this.processed },
      last_event_id: String(this.log.lastId),
      created_at: this.createdAt.toISOString(),
      finished_at: this.finishedAt?.toISOString() ?? null,
    };
  }

  private emit(event: string, fields: Record<string, unknown> = {}): void {
    this.log.append({ event, session_id: this.id, ...fields });
  }

  private received(): void {
    if (this.bytes >= this.nextSavingEventAt) {
      const step = this.config.savingEventBytes;
      this.nextSavingEventAt = (Math.floor(this.bytes / step) + 1) * step;
      this.emit('file_saving', { file_name: this.fileName, bytes_received: this.bytes });
    }
    // Refuse early: no reason to take the rest of a file that cannot be processed.
    if (totalChunks(this.bytes, this.settings) > this.config.maxChunks) this.tooManyChunks();
  }

  private stored(bytes: number, sha256: string): void {
    if (!this.running) return;
    this.bytes = bytes;
    this.sha256 = sha256;
    this.saved = true;
    this.emit('file_saved', { file_name: this.fileName, bytes, sha256 });
    this.maybeProcess();
  }

  private maybeProcess(): void {
    if (this.stage !== 'receiving' || !this.bodyDone || !this.saved) return;
    if (this.bytes === 0) return this.fail('empty_file', 'The file is empty; there is nothing to process.');
    const total = totalChunks(this.bytes, this.settings);
    if (total > this.config.maxChunks) return this.tooManyChunks();
    this.totalChunks = total;
    this.emit('processing_start', {
      collection_name: this.settings.collectionName,
      chunk_size: this.settings.chunkSize,
      chunk_overlap: this.settings.chunkOverlap,
    });
    this.emit('total_chunks', { total_chunks: total });
    this.beginStage(0);
    if (this.log.readerCount === 0) this.startGrace();
  }

  private beginStage(index: number): void {
    const spec = STAGES[index];
    if (spec === undefined) return this.complete();
    this.stage = spec.stage;
    this.emit(spec.start, { stage: spec.stage, total_chunks: this.totalChunks });
    this.timer = setTimeout(() => this.processChunk(index, 0), this.config.chunkMs);
  }

  private processChunk(index: number, chunk: number): void {
    const spec = STAGES[index] as (typeof STAGES)[number];
    const total = this.totalChunks as number;
    const range = chunkRange(chunk, this.bytes, this.settings);
    this.processed[spec.stage] = chunk + 1;
    this.emit(spec.chunk, {
      stage: spec.stage,
      chunk_index: chunk,
      processed: chunk + 1,
      total_chunks: total,
      byte_start: range.start,
      byte_end: range.end,
    });
    if (chunk + 1 < total) {
      this.timer = setTimeout(() => this.processChunk(index, chunk + 1), this.config.chunkMs);
      return;
    }
    this.emit(spec.complete, { stage: spec.stage, processed: total, total_chunks: total });
    this.beginStage(index + 1);
  }

  private complete(): void {
    this.stage = 'complete';
    this.emit('complete', {
      collection_name: this.settings.collectionName,
      total_chunks: this.totalChunks,
      bytes: this.bytes,
      sha256: this.sha256,
    });
    this.finished(false);
  }

  private tooManyChunks(): void {
    this.fail(
      'too_many_chunks',
      `The file needs more than ${this.config.maxChunks} chunks at chunk_size ${this.settings.chunkSize}; send a larger chunk_size.`,
    );
  }

  private startGrace(): void {
    clearTimeout(this.graceTimer);
    const ms = this.config.reconnectGraceMs;
    this.graceTimer = setTimeout(() => this.cancel(`no client reconnected within ${ms} ms`), ms);
  }

  private stop(stage: 'cancelled' | 'error'): void {
    clearTimeout(this.timer);
    clearTimeout(this.graceTimer);
    this.stage = stage;
    this.intake.abort();
  }

  private finished(partialFile: boolean): void {
    // A reader that left mid-processing started the grace clock; nothing is left for it to cancel.
    clearTimeout(this.graceTimer);
    this.finishedAt = new Date();
    this.log.finish();
    // A file cut off mid-upload is of no use to anyone: drop it now.
    if (partialFile) void this.removeFile().catch((err: unknown) => this.config.onError(err));
    this.onFinish(this);
  }
}

/** Every user's upload sessions, running and recently finished. */
export class Sessions {
  private readonly sessions = new Map<string, UploadSession>();
  private readonly active: ActiveCounter;
  private readonly forgetTimers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly config: BackendConfig) {
    this.active = new ActiveCounter(config.maxActivePerUser);
  }

  /** Opens a session for a file part that is about to arrive; its `start` event exists at once. */
  create(owner: string, fileName: string, mimeType: string, settings: UploadSettings): UploadSession {
    this.active.acquire(owner);
    const id = newId();
    const session = new UploadSession(id, owner, fileName, mimeType, settings, join(this.config.uploadDir, `${id}.upload`), this.config, (done) =>
      this.finished(done),
    );
    this.sessions.set(id, session);
    return session;
  }

  /** The session `id` of `owner`; another user's session is as unknown as a missing one. */
  get(owner: string, id: string): UploadSession {
    const session = this.sessions.get(id);
    if (!session || session.owner !== owner) throw new BackendError('not_found', 'No such session for this user.');
    return session;
  }

  /** Forgets a finished session and deletes its file; a running one must be cancelled first (409). */
  async delete(owner: string, id: string): Promise<void> {
    const session = this.get(owner, id);
    if (session.running) throw new BackendError('session_running');
    await this.forget(session);
  }

  /** Cancels what runs, stops every timer, deletes every stored file (and the upload dir if the backend made it). */
  async close(): Promise<void> {
    for (const session of this.sessions.values()) session.cancel('the backend is shutting down');
    for (const timer of this.forgetTimers.values()) clearTimeout(timer);
    this.forgetTimers.clear();
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(sessions.map((session) => session.removeFile()));
    if (this.config.uploadDirIsOwn) await rm(this.config.uploadDir, { recursive: true, force: true });
  }

  private finished(session: UploadSession): void {
    this.active.release(session.owner);
    const timer = setTimeout(() => {
      this.forget(session).catch((err: unknown) => this.config.onError(err));
    }, this.config.retentionMs);
    timer.unref();
    this.forgetTimers.set(session.id, timer);
  }

  private async forget(session: UploadSession): Promise<void> {
    clearTimeout(this.forgetTimers.get(session.id));
    this.forgetTimers.delete(session.id);
    this.sessions.delete(session.id);
    await session.removeFile();
  }
}
