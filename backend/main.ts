import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, loadBackendConfig } from './config';
import { createBackend } from './app';

/** Starts the reference backend alone, as configured by `BACKEND_*` variables; stops on SIGTERM or SIGINT. */
function main(): void {
  let config;
  try {
    config = loadBackendConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`reference backend: ${err.message}`);
    process.exit(1);
  }
  const backend = createBackend(config.options);
  // Uploads can take longer than Node's default 300 s request timeout; streams are ended by their own logic.
  const server = createServer({ requestTimeout: 0 }, backend.app);
  server.listen(config.port, config.host, () => {
    const { address, port } = server.address() as AddressInfo;
    const host = address.includes(':') ? `[${address}]` : address;
    console.log(`reference backend listening on http://${host}:${port} (uploads in ${backend.config.uploadDir})`);
  });
  server.on('error', (err) => {
    console.error(`reference backend: ${err.message}`);
    process.exit(1);
  });

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      console.error(`reference backend: ${signal} again, exiting now`);
      process.exit(1);
    }
    stopping = true;
    console.log(`reference backend: ${signal}, stopping`);
    server.close();
    backend
      .close()
      .then(() => {
        // Streams are ended; idle keep-alive sockets go now, a file still being downloaded gets a few seconds.
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 5000).unref();
      })
      .catch((err: unknown) => {
        console.error('reference backend: error while stopping', err);
        process.exitCode = 1;
        server.closeAllConnections();
      });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
