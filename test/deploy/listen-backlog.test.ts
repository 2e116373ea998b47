import { type Socket, connect } from 'node:net';
import { FixtureBackend } from '../support/fixture-backend';
import { RelayProcess } from '../support/relay-process';
import { delay, until } from '../support/until';

let backend: FixtureBackend;
let relay: RelayProcess | undefined;
const sockets: Socket[] = [];

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  if (relay?.alive === true) relay.signal('SIGCONT');
  await relay?.kill();
  await backend?.close();
});

// After a restart every client comes back within the drain's retry window, to a process busy
// answering the first of them. A connection the kernel does not queue for it has its SYN dropped,
// and its client tries again after 1, 3, 7, 15, 31 s.
test('connections that arrive while the relay cannot accept (a reconnect storm) are queued by the kernel, not left to SYN retransmits', async () => {
  backend = await new FixtureBackend().start();
  relay = await RelayProcess.start({ BACKEND_URL: backend.url });
  const count = 1500;
  // A relay too busy to accept: the kernel answers the handshake of those it queues for it, and
  // drops the SYNs of the rest, whose clients try again one second later at the earliest.
  relay.signal('SIGSTOP');
  let connected = 0;
  let answered = 0;
  for (let i = 0; i < count; i++) {
    const socket = connect({ host: '127.0.0.1', port: relay.port });
    socket.on('error', () => undefined);
    socket.once('connect', () => {
      connected += 1;
      socket.write('GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n');
    });
    socket.once('data', () => (answered += 1));
    sockets.push(socket);
  }
  await delay(500);
  const queued = connected;
  relay.signal('SIGCONT');
  expect(queued).toBe(count);
  await until(() => answered === count, 20_000, 'every connection answered');
}, 30_000);
