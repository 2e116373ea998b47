import { basename } from 'node:path';
import busboy from 'busboy';
import express, { type Request, type Response, type Router } from 'express';
import { DEFAULT_CHUNKING, MAX_CHUNK_SIZE } from './chunking';
import { BackendError } from './errors';
import { pathId } from './ids';
import { userOf } from './identity';
import type { BackendConfig } from './options';
import type { Sessions, UploadSession, UploadSettings } from './sessions';
import { type StreamSet, whenClosed } from './sse-stream';

const COLLECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const INTEGER = /^\d{1,9}$/;

/**
 * The upload and its session's routes: `POST /documents/upload-sse`,
 * `GET /documents/upload-sse/reconnect/:sessionId`, and `GET /sessions/:sessionId`,
 * `POST /sessions/:sessionId/cancel`, `DELETE /sessions/:sessionId`.
 *
 * Cancel answers 202 when it stopped a running session, 200 when the session was
 * already cancelled (cancelling twice is not an error), and 409 when it had
 * already completed or failed. Delete answers 204 for a finished session (its
 * file is deleted) and 409 while it runs.
 */
export function uploadRoutes(sessions: Sessions, streams: StreamSet, config: BackendConfig): Router {
  const router = express.Router();

  router.post('/documents/upload-sse', (req, res, next) => {
    receiveUpload(req, res, next, sessions, streams, config);
  });

  router.get('/documents/upload-sse/reconnect/:sessionId', (req, res) => {
    sessions.get(userOf(res), pathId(req, 'sessionId')).resume(req, res, streams);
  });

  router.get('/sessions/:sessionId', (req, res) => {
    res.set('Cache-Control', 'no-store').json(sessions.get(userOf(res), pathId(req, 'sessionId')).state());
  });

  router.post('/sessions/:sessionId/cancel', (req, res) => {
    const session = sessions.get(userOf(res), pathId(req, 'sessionId'));
    if (session.cancel('cancelled by the user')) {
      res.status(202).json(session.state());
    } else if (session.stage === 'cancelled') {
      res.status(200).json(session.state());
    } else {
      throw new BackendError('session_finished', `The session already ended (stage "${session.stage}"); there is nothing to cancel.`);
    }
  });

  router.delete('/sessions/:sessionId', async (req, res) => {
    await sessions.delete(userOf(res), pathId(req, 'sessionId'));
    res.status(204).end();
  });

  return router;
}

/**
 * Takes a multipart upload: a `file` part plus the fields `collection_name`
 * (default "default"), `chunk_size` (bytes, default 1000) and `chunk_overlap`
 * (bytes, default 200, less than `chunk_size`).
 *
 * Send the fields before the file. The event stream starts the moment the `file`
 * part begins, before a byte of the file is read, so a client sees `start` and
 * `file_saving` while it is still sending. Fields read before that point are
 * checked first: a bad one is a plain 400 JSON answer. A field after the file
 * is still used, but once the stream has started a bad value can only end it
 * with an `error` event.
 */
function receiveUpload(req: Request, res: Response, next: (err: unknown) => void, sessions: Sessions, streams: StreamSet, config: BackendConfig): void {
  const owner = userOf(res);
  if (!req.is('multipart/form-data')) throw new BackendError('unsupported_media_type');
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: req.headers,
      limits: { files: 1, fileSize: config.maxUploadBytes, fields: 16, fieldSize: 1024, fieldNameSize: 100, parts: 32 },
    });
  } catch (err) {
    throw new BackendError('bad_request', `The multipart request is malformed: ${(err as Error).message}.`);
  }
  const fields = new UploadFields();
  let session: UploadSession | undefined;
  let refused = false;

  // Not parser.destroy(): this often runs inside one of busboy's own callbacks, which
  // goes on using its state afterwards. Detached, the parser just gets no more input.
  const stopReading = (): void => {
    req.unpipe(parser);
    // Discard whatever the client still sends rather than leaving it stuck on a full socket.
    req.resume();
  };
  const refuse = (error: BackendError): void => {
    if (refused) return;
    refused = true;
    stopReading();
    res.set('Connection', 'close');
    next(error);
  };
  const reject = (message: string): void => {
    if (session) session.fail('bad_request', message);
    else refuse(new BackendError('bad_request', message));
  };

  parser.on('field', (name, value, info) => {
    if (refused) return;
    if (info.valueTruncated) return reject(`The field ${name} is longer than 1024 bytes.`);
    const problem = fields.set(name, value);
    if (problem !== undefined) reject(problem);
  });

  parser.on('file', (name, file, info) => {
    if (refused || session !== undefined) return void file.resume();
    if (name !== 'file') {
      file.resume();
      return reject('The file part must be named "file".');
    }
    let settings: UploadSettings;
    try {
      settings = fields.settings();
      session = sessions.create(owner, displayName(info.filename), info.mimeType, settings);
    } catch (err) {
      file.resume();
      return refuse(err instanceof BackendError ? err : new BackendError('bad_request', String(err)));
    }
    const started = session;
    streams.start(res);
    started.log.attach(res, 0);
    started.intake.signal.addEventListener('abort', stopReading, { once: true });
    whenClosed(res, () => {
      if (started.awaitingBody) started.cancel('the upload connection closed before the file was complete');
    });
    file.once('limit', () => started.fail('payload_too_large', `The file is larger than ${config.maxUploadBytes} bytes.`));
    started.receive(file);
  });

  parser.on('filesLimit', () => reject('Send one file per upload.'));
  parser.on('fieldsLimit', () => reject('Too many fields; send collection_name, chunk_size and chunk_overlap.'));
  parser.on('partsLimit', () => reject('Too many parts in the form.'));

  parser.on('close', () => {
    if (refused) return;
    if (!session) return refuse(new BackendError('bad_request', 'The form has no part named "file".'));
    const problem = fields.problem();
    if (problem !== undefined) return session.fail('bad_request', problem);
    session.bodyReceived(fields.settings());
  });

  parser.on('error', (err: Error) => {
    if (refused || (session && !session.awaitingBody)) return;
    reject(`The multipart body is malformed: ${err.message}.`);
  });

  req.pipe(parser);
}

/** The form fields of an upload, checked one by one as they arrive. */
class UploadFields {
  private collectionName = 'default';
  private chunkSize = DEFAULT_CHUNKING.chunkSize;
  private chunkOverlap = DEFAULT_CHUNKING.chunkOverlap;

  /** Takes one field; returns what is wrong with it, if anything. Unknown fields are ignored. */
  set(name: string, value: string): string | undefined {
    switch (name) {
      case 'collection_name':
        if (!COLLECTION_NAME.test(value)) return 'collection_name must be 1-64 characters of A-Z, a-z, 0-9, ".", "_" or "-", starting with a letter or digit.';
        this.collectionName = value;
        return undefined;
      case 'chunk_size': {
        const n = INTEGER.test(value.trim()) ? Number(value.trim()) : Number.NaN;
        if (!(n >= 1 && n <= MAX_CHUNK_SIZE)) return `chunk_size must be an integer from 1 to ${MAX_CHUNK_SIZE} (bytes).`;
        this.chunkSize = n;
        return undefined;
      }
      case 'chunk_overlap': {
        const n = INTEGER.test(value.trim()) ? Number(value.trim()) : Number.NaN;
        if (!(n >= 0 && n < MAX_CHUNK_SIZE)) return `chunk_overlap must be an integer from 0 to ${MAX_CHUNK_SIZE - 1} (bytes), less than chunk_size.`;
        this.chunkOverlap = n;
        return undefined;
      }
      default:
        return undefined;
    }
  }

  /** What is wrong with the fields taken together, if anything. */
  problem(): string | undefined {
    if (this.chunkOverlap >= this.chunkSize) {
      return `chunk_overlap (${this.chunkOverlap}) must be less than chunk_size (${this.chunkSize}).`;
    }
    return undefined;
  }

  settings(): UploadSettings {
    const problem = this.problem();
    if (problem !== undefined) throw new BackendError('bad_request', problem);
    return { collectionName: this.collectionName, chunkSize: this.chunkSize, chunkOverlap: this.chunkOverlap };
  }
}

/** The client's file name for display only (it never becomes a path): base name, printable, bounded. */
function displayName(filename: string | undefined): string {
  const printable = [...basename((filename ?? '').replace(/\\/g, '/'))].filter((c) => c >= ' ' && c !== '\u007f');
  const name = printable.join('').slice(0, 255);
  return name === '' ? 'upload' : name;
}
