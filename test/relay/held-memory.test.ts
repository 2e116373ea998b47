import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const DIST = join(__dirname, '../../dist/src');

/**
 * Opens one stream on a Subscriber in a fresh Node process (its heap small enough to snapshot
 * quickly), then looks in a heap snapshot for the response's header block as one flat string.
 * Node joins that block from dozens of pieces; held as the rope, every piece stays alive.
 */
const SCRIPT = `
const http = require('node:http');
const v8 = require('node:v8');
const { Subscriber } = require(process.argv[1] + '/relay/subscriber.js');
const { StreamPolicy } = require(process.argv[1] + '/stream-policy.js');
const { NodeInternals } = require(process.argv[1] + '/internals.js');
const { resolveOptions } = require(process.argv[1] + '/options.js');
const policy = new StreamPolicy(resolveOptions({ backendUrl: 'http://127.0.0.1:1', clientMaxBufferedBytes: 65536 }));
const internals = new NodeInternals({ enabled: process.argv[2] === '1', warn() {} });
const held = [];
const server = http.createServer((req, res) => {
  res.setHeader('X-Request-Id', 'req-' + Math.random().toString(36).slice(2));
  const subscriber = new Subscriber(res, policy, { onClose() {} }, internals);
  subscriber.open(2000);
  held.push(res);
});
server.listen(0, '127.0.0.1', () => {
  http.get({ host: '127.0.0.1', port: server.address().port, path: '/' }, (answer) => {
    answer.once('data', () => {
      const length = held[0]._header.length;
      const file = v8.writeHeapSnapshot(require('node:path').join(require('node:os').tmpdir(), 'held-' + process.pid + '.heapsnapshot'));
      const snapshot = JSON.parse(require('node:fs').readFileSync(file, 'utf8'));
      require('node:fs').rmSync(file);
      const { node_fields: fields, node_types: [types] } = snapshot.snapshot.meta;
      const type = fields.indexOf('type'), name = fields.indexOf('name');
      let flat = false;
      for (let i = 0; i < snapshot.nodes.length; i += fields.length) {
        const text = snapshot.strings[snapshot.nodes[i + name]];
        if (types[snapshot.nodes[i + type]] === 'string' && text.length === length && text.startsWith('HTTP/1.1 200')) flat = true;
      }
      process.stdout.write(JSON.stringify({ length, flat }));
      process.exit(0);
    });
  });
});
`;

async function headerBlock(internals: '1' | '0'): Promise<{ length: number; flat: boolean }> {
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', SCRIPT, DIST, internals], { timeout: 30_000 });
  return JSON.parse(stdout) as { length: number; flat: boolean };
}

test('an open stream holds its header block as one flat string, not the pieces Node joined it from', async () => {
  const result = await headerBlock('1');
  expect(result.length).toBeGreaterThan(100);
  expect(result.flat).toBe(true);
});

test('with nodeInternals 0 the header block is left as Node keeps it', async () => {
  const result = await headerBlock('0');
  expect(result.length).toBeGreaterThan(100);
  expect(result.flat).toBe(false);
});
