import express from 'express';
import { Chats, chatRoutes } from './chat';
import { Downloads, downloadRoutes } from './downloads';
import { BackendError, errorHandler, notFound } from './errors';
import { requireUser } from './identity';
import { type BackendConfig, type BackendOptions, resolveBackendOptions } from './options';
import { Sessions } from './sessions';
import { StreamSet } from './sse-stream';
import { uploadRoutes } from './uploads';

/** A running reference backend: mount or listen on `app`; `close()` when done. */
export interface Backend {
  readonly app: express.Express;
  /** The resolved options. */
  readonly config: BackendConfig;
  /**
   * Stops every job and timer, cancels running upload sessions (their live
   * streams get `cancelled`), ends every open stream and deletes the stored
   * files. Does not close the HTTP server, which the caller owns.
   */
  close(): Promise<void>;
}

/**
 * The reference backend of the relay: downloads with progress streams, document
 * uploads with processing streams, chat with token streams (routes and behaviour:
 * backend/README.md). The caller is the `X-User-Id`
 * header, trusted as set by the relay: do not expose this app to browsers.
 */
export function createBackend(options: Partial<BackendOptions> = {}): Backend {
  const config = resolveBackendOptions(options);
  const streams = new StreamSet(config.heartbeatMs, config.retryMs);
  const downloads = new Downloads(config);
  const sessions = new Sessions(config);
  const chats = new Chats(config, streams);

  let closing: Promise<void> | undefined;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((_req, _res, next) => {
    next(closing ? new BackendError('shutting_down') : undefined);
  });
  app.get('/health', (_req, res) => {
    res.set('Cache-Control', 'no-store').json({ status: 'ok' });
  });
  app.use(requireUser);
  app.use(downloadRoutes(downloads, streams));
  app.use(uploadRoutes(sessions, streams, config));
  app.use(chatRoutes(chats, config));
  app.use(notFound);
  app.use(errorHandler(config.onError));

  return {
    app,
    config,
    close() {
      closing ??= (async () => {
        downloads.close();
        chats.close();
        const removed = sessions.close();
        streams.endAll();
        await removed;
      })();
      return closing;
    },
  };
}
