import { pipeline } from 'node:stream/promises';
import express, { type Router } from 'express';
import { BackendError } from './errors';
import { EXPORT_HEADER, exportRowsBytes, exportStream } from './export-file';
import { newId, pathId } from './ids';
import { forwardedPrefix } from './forwarded-prefix';
import { userOf } from './identity';
import type { BackendConfig } from './options';
import { ActiveCounter } from './active-counter';
import { EventLog, type StreamSet } from './sse-stream';

type DownloadStatus = 'IN_PROGRESS' | 'COMPLETED' | 'FAILED';

/** What `POST /downloads` accepts. */
export interface DownloadRequest {
  /** The file's base name (`<name>.csv`). */
  readonly name?: string;
  /** Rows of the CSV. */
  readonly rows?: number;
  /** Makes the job fail at the first step whose progress is at least this (0-100): for demos and tests. */
  readonly failAt?: number;
}

/** The state of a job, as the status route answers it. */
interface DownloadState {
  readonly code: string;
  readonly name: string;
  readonly status: DownloadStatus;
  readonly progress: number;
  readonly url?: string;
  readonly message?: string;
  readonly rows: number;
  /** Size of the file, known once it is complete. */
  readonly bytes?: number;
  readonly lastEventId: string;
  readonly createdAt: string;
  readonly finishedAt?: string;
}

const STEP = 10;
// Each step measures its rows by generating them (~2.4 ms per 1,000 on a 2-core machine): a cap keeps one step
// from blocking every other stream of the backend for long.
const MAX_ROWS = 100_000;
const NAME = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$/;

/**
 * One export job. It runs on its own timer whether anyone listens or not: one
 * step per tick, progress 0, 10, … 100 (each step "exports" a tenth of the rows
 * and measures them), then COMPLETED; or FAILED at `failAt`.
 */
class DownloadJob {
  readonly log = new EventLog();
  readonly createdAt = new Date();
  status: DownloadStatus = 'IN_PROGRESS';
  progress = 0;
  bytes = Buffer.byteLength(EXPORT_HEADER);
  message: string | undefined;
  finishedAt: Date | undefined;
  timer: NodeJS.Timeout | undefined;

  constructor(
    readonly code: string,
    readonly owner: string,
    readonly name: string,
    readonly rows: number,
    readonly failAt: number | undefined,
    /** Path prefix of the client that made the job (see `forwardedPrefix`); its URLs start with it. */
    readonly prefix: string,
  ) {}

  get url(): string {
    return `${this.prefix}/downloads/${this.code}/file`;
  }

  /** Runs the step for `progress`; returns true when the job is finished. */
  step(progress: number): boolean {
    if (this.failAt !== undefined && progress >= this.failAt) {
      this.status = 'FAILED';
      this.message = `The export failed at ${progress}%: the data source stopped answering (requested with failAt).`;
      this.log.append({ status: 'FAILED', message: this.message });
      return true;
    }
    if (progress > 100) {
      this.status = 'COMPLETED';
      this.log.append({ status: 'COMPLETED', url: this.url });
      return true;
    }
    if (progress > 0) {
      const rowsPerStep = this.rows / (100 / STEP);
      this.bytes += exportRowsBytes(this.code, Math.round(rowsPerStep * (progress / STEP - 1)), Math.round(rowsPerStep * (progress / STEP)));
    }
    this.progress = progress;
    this.log.append({ status: 'IN_PROGRESS', progress });
    return false;
  }

  state(): DownloadState {
    return {
      code: this.code,
      name: this.name,
      status: this.status,
      progress: this.progress,
      ...(this.status === 'COMPLETED' ? { url: this.url, bytes: this.bytes } : {}),
      ...(this.message !== undefined ? { message: this.message } : {}),
      rows: this.rows,
      lastEventId: String(this.log.lastId),
      createdAt: this.createdAt.toISOString(),
      ...(this.finishedAt ? { finishedAt: this.finishedAt.toISOString() } : {}),
    };
  }
}

/** Every user's export jobs, running and recently finished. */
export class Downloads {
  private readonly jobs = new Map<string, DownloadJob>();
  private readonly active: ActiveCounter;
  private readonly forgetTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly config: BackendConfig) {
    this.active = new ActiveCounter(config.maxActivePerUser);
  }

  /** Starts a job for `owner`; its first event (progress 0) exists at once. */
  start(owner: string, request: DownloadRequest, prefix = ''): DownloadJob {
    this.active.acquire(owner);
    const code = newId();
    const job = new DownloadJob(code, owner, request.name ?? `export-${code.slice(0, 8)}`, request.rows ?? this.config.downloadRows, request.failAt, prefix);
    this.jobs.set(code, job);
    this.run(job, 0);
    return job;
  }

  /** The job `code` of `owner`; another user's job is as unknown as a missing one. */
  get(owner: string, code: string): DownloadJob {
    const job = this.jobs.get(code);
    if (!job || job.owner !== owner) throw new BackendError('not_found', 'No such download for this user.');
    return job;
  }

  /** Stops every job's timer. */
  close(): void {
    for (const job of this.jobs.values()) clearTimeout(job.timer);
    for (const timer of this.forgetTimers) clearTimeout(timer);
    this.forgetTimers.clear();
    this.jobs.clear();
  }

  private run(job: DownloadJob, progress: number): void {
    job.timer = undefined;
    if (!job.step(progress)) {
      job.timer = setTimeout(() => this.run(job, progress + STEP), this.config.tickMs);
      return;
    }
    job.finishedAt = new Date();
    job.log.finish();
    this.active.release(job.owner);
    const forget = setTimeout(() => {
      this.forgetTimers.delete(forget);
      this.jobs.delete(job.code);
    }, this.config.retentionMs);
    forget.unref();
    this.forgetTimers.add(forget);
  }
}

/** `POST /downloads`, `GET /downloads/:code/events|status|file`. */
export function downloadRoutes(downloads: Downloads, streams: StreamSet): Router {
  const router = express.Router();

  router.post('/downloads', express.json({ limit: '16kb' }), (req, res) => {
    const job = downloads.start(userOf(res), parseDownloadRequest(req.body), forwardedPrefix(req));
    res.status(201).location(`${job.prefix}/downloads/${job.code}/status`).json({ code: job.code });
  });

  router.get('/downloads/:code/events', (req, res) => {
    const job = downloads.get(userOf(res), pathId(req, 'code'));
    streams.serveLog(req, res, job.log);
  });

  router.get('/downloads/:code/status', (req, res) => {
    res.set('Cache-Control', 'no-store').json(downloads.get(userOf(res), pathId(req, 'code')).state());
  });

  router.get('/downloads/:code/file', async (req, res) => {
    const job = downloads.get(userOf(res), pathId(req, 'code'));
    if (job.status === 'FAILED') throw new BackendError('export_failed');
    if (job.status !== 'COMPLETED') throw new BackendError('not_ready');
    res.status(200).attachment(`${job.name}.csv`).set({
      'Content-Type': 'text/csv; charset=utf-8',
      'Content-Length': String(job.bytes),
      'Cache-Control': 'private, no-store',
    });
    try {
      await pipeline(exportStream(job.code, job.rows), res);
    } catch (err) {
      // The client went away mid-file: nothing to answer, nothing to report.
      if ((err as { code?: unknown }).code !== 'ERR_STREAM_PREMATURE_CLOSE') throw err;
    }
  });

  return router;
}

/** Validates the optional JSON body of `POST /downloads`; no body means defaults. */
function parseDownloadRequest(body: unknown): DownloadRequest {
  if (body === undefined) return {};
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BackendError('bad_request', 'The body must be a JSON object like {"name":"orders","failAt":50}.');
  }
  const { name, rows, failAt } = body as Record<string, unknown>;
  if (name !== undefined && (typeof name !== 'string' || !NAME.test(name))) {
    throw new BackendError('bad_request', 'name must be 1-100 characters of A-Z, a-z, 0-9, space, ".", "_" or "-", starting with a letter or digit.');
  }
  if (rows !== undefined && (!Number.isSafeInteger(rows) || (rows as number) < 0 || (rows as number) > MAX_ROWS)) {
    throw new BackendError('bad_request', `rows must be an integer from 0 to ${MAX_ROWS}.`);
  }
  if (failAt !== undefined && (!Number.isSafeInteger(failAt) || (failAt as number) < 0 || (failAt as number) > 100)) {
    throw new BackendError('bad_request', 'failAt must be an integer from 0 to 100.');
  }
  return { name: name as string | undefined, rows: rows as number | undefined, failAt: failAt as number | undefined };
}
