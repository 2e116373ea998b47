import { request, type Server, type ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import express from 'express';
import pino from 'pino';
import { limitConnections } from '../../middleware/limits';
import { requestLog } from '../../middleware/request-log';
import { MemoryConnectionCounter } from '../../src/limits/connections';
import { until } from '../support/until';

let server: Server;
const held: ServerResponse[] = [];
const lines: Record<string, unknown>[] = [];
const counter = new MemoryConnectionCounter({ total: 10, perUser: 10, perIp: 10 });

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const app = express();
  app.use(requestLog(pino({ level: 'info' }, sink)));
  app.use((_req, res, next) => {
    res.locals.user = 'alice';
    next();
  });
  app.use(limitConnections(counter));
  // A held stream: headers out, the response kept open.
  app.get('/held', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    res.write(':\n\n');
    held.push(res);
  });
  server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
});
afterAll(() => {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
});

function open(): Promise<() => void> {
  const { port } = server.address() as { port: number };
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/held' }, (answer) => answer.once('data', () => resolve(() => req.destroy())));
    req.end();
  });
}

test('held streams share one close listener for their log line and one for their slot, and each still logs and frees its slot when it closes', async () => {
  const leave = [await open(), await open()];
  await until(() => held.length === 2, 5000, 'two held streams');
  const [first, second] = held as [ServerResponse, ServerResponse];
  const shared = first.listeners('close').filter((listener) => second.listeners('close').includes(listener));
  // The request log's and the slot's: no closure per stream for either.
  expect(shared.length).toBeGreaterThanOrEqual(2);
  expect(counter.snapshot().total).toBe(2);

  for (const close of leave) close();
  await until(() => counter.snapshot().total === 0, 5000, 'both slots freed');
  await until(() => lines.filter((line) => line.msg === 'request closed').length === 2, 5000, 'two log lines');
  for (const line of lines) {
    expect(line).toMatchObject({ req: { method: 'GET', url: '/held' }, res: { statusCode: 200 }, user: 'alice' });
    expect(typeof line.responseTime).toBe('number');
  }
});
