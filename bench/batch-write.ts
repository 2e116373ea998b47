/**
 * Micro-benchmark of how a multiplexed stream writes the events of one turn of the event
 * loop (one per topic) to its socket: `each`, one write per event (its `id:` line and the
 * shared envelope copied into one buffer); `cork`, the same writes between `cork()` and an
 * `uncork()` on the next tick (Node then sends them with one writev); `batch`, every part
 * copied into one buffer and written once (what `MultiplexStream` does). Loopback sockets,
 * read and discarded in the same process. Prints CPU (user+sys) per delivered event.
 *
 *   node dist/bench/batch-write.js [--sockets 100] [--topics 20] [--rounds 300] [--modes each,cork,batch]
 */
import { type Socket, connect, createServer } from 'node:net';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

type Mode = 'each' | 'cork' | 'batch';

const { values } = parseArgs({
  options: { sockets: { type: 'string' }, topics: { type: 'string' }, rounds: { type: 'string' }, modes: { type: 'string' } },
});
const sockets = Number(values.sockets ?? 100);
const topics = Number(values.topics ?? 20);
const rounds = Number(values.rounds ?? 300);
const modes = (values.modes ?? 'each,cork,batch').split(',') as Mode[];

// A bench event's envelope, and a 20-topic cursor with 2-digit ids: the sizes the multiplex scenario writes.
const envelope = Buffer.from('data: {"topic":"download:bench07","id":"12","data":"{\\"t\\":1733030000000,\\"seq\\":11}"}\n\n');
const cursor = `1~${Array.from({ length: topics }, (_, i) => `*abc${String(i).padStart(3, '0')}.12`).join('~')}`;

function writeTurn(socket: Socket, mode: Mode): void {
  switch (mode) {
    case 'each':
      for (let t = 0; t < topics; t++) {
        const own = `id: ${cursor}\n`;
        const bytes = Buffer.allocUnsafe(own.length + envelope.length);
        bytes.write(own, 0, 'latin1');
        envelope.copy(bytes, own.length);
        socket.write(bytes);
      }
      return;
    case 'cork':
      socket.cork();
      for (let t = 0; t < topics; t++) {
        socket.write(`id: ${cursor}\n`, 'latin1');
        socket.write(envelope);
      }
      process.nextTick(() => socket.uncork());
      return;
    case 'batch': {
      const parts: (string | Buffer)[] = [];
      for (let t = 0; t < topics; t++) parts.push(`id: ${cursor}\n`, envelope);
      let length = 0;
      for (const part of parts) length += part.length;
      const bytes = Buffer.allocUnsafe(length);
      let at = 0;
      for (const part of parts) at += typeof part === 'string' ? bytes.write(part, at, 'latin1') : part.copy(bytes, at);
      socket.write(bytes);
      return;
    }
  }
}

async function main(): Promise<void> {
  const server = createServer((peer) => peer.resume());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const open: Socket[] = [];
  for (let i = 0; i < sockets; i++) {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    open.push(socket);
  }
  // Each turn ends in setImmediate, after the corked writes were flushed on their tick.
  const turn = (mode: Mode): Promise<void> =>
    new Promise((done) => {
      for (const socket of open) writeTurn(socket, mode);
      setImmediate(done);
    });
  for (const mode of modes) {
    for (let i = 0; i < 30; i++) await turn(mode);
    const before = process.cpuUsage();
    for (let i = 0; i < rounds; i++) await turn(mode);
    const used = process.cpuUsage(before);
    const events = rounds * sockets * topics;
    console.log(`${mode}: ${((used.user + used.system) / events).toFixed(2)} µs CPU per delivered event (user ${(used.user / events).toFixed(2)}, sys ${(used.system / events).toFixed(2)})`);
  }
  for (const socket of open) socket.destroy();
  server.close();
}

void main();
