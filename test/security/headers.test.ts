import { once } from 'node:events';
import { type IncomingMessage, type Server, createServer } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { type RunningRelay, authHeader, startRelay } from '../support/relay-server';

/** A backend that records the raw header lines (name case and order kept) of every request. */
let backend: Server;
let received: string[][];
let relay: RunningRelay;

beforeEach(async () => {
  received = [];
  backend = createServer((req: IncomingMessage, res) => {
    received.push(req.rawHeaders);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  }).listen(0, '127.0.0.1');
  await once(backend, 'listening');
  relay = await startRelay(`http://127.0.0.1:${(backend.address() as AddressInfo).port}`);
});

afterEach(async () => {
  await relay.close();
  backend.closeAllConnections();
  backend.close();
});

/** A GET written byte for byte, header names spelled exactly as given; resolves with the whole answer. */
function rawGet(path: string, headers: [string, string][]): Promise<string> {
  const { port } = new URL(relay.url);
  const head = [`GET ${path} HTTP/1.1`, 'Host: relay.test', `Authorization: ${authHeader('alice').authorization}`, ...headers.map(([n, v]) => `${n}: ${v}`), 'Connection: close', '', ''].join('\r\n');
  return new Promise((resolve, reject) => {
    let answer = '';
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(head));
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => resolve(answer));
  });
}

/** Pairs of [name, value] from a raw header list. */
function pairs(raw: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i] ?? '', raw[i + 1] ?? '']);
  return out;
}

const folded = (name: string): string => name.toLowerCase().replaceAll('_', '-');

test('identity and forwarding headers a client sends under any spelling (X_User_Id, x-user_id, Forwarded, X-Real-IP) never reach the backend', async () => {
  const spoofs: [string, string][] = [
    ['X_User_Id', 'admin'],
    ['x-user_id', 'admin'],
    ['X-USER-ID', 'admin'],
    ['X-User-Role', 'admin'],
    ['Forwarded', 'for=198.51.100.1;by=admin'],
    ['X-Real-IP', '198.51.100.1'],
    ['X_Real_IP', '198.51.100.1'],
    ['X_Forwarded_For', '198.51.100.1'],
    ['X-Forwarded-Port', '1'],
    ['X-Forwarded-Host', 'admin.example'],
    ['True-Client-IP', '198.51.100.1'],
    ['X-Remote-User', 'admin'],
  ];
  const answer = await rawGet('/api/things/1', [...spoofs, ['X-Custom', 'kept'], ['X_Trace_Tag', 'kept-too']]);
  expect(answer).toMatch(/^HTTP\/1\.1 200 /);
  expect(received).toHaveLength(1);
  const seen = pairs(received[0] ?? []);
  const names = seen.map(([name]) => folded(name));
  // The relay's own, exactly once each.
  for (const name of ['x-user-id', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']) expect([name, names.filter((n) => n === name).length]).toEqual([name, 1]);
  expect(Object.fromEntries(seen.map(([n, v]) => [folded(n), v]))).toMatchObject({ 'x-user-id': 'alice', 'x-forwarded-for': '127.0.0.1', 'x-forwarded-host': 'relay.test', 'x-custom': 'kept', 'x-trace-tag': 'kept-too' });
  for (const name of ['forwarded', 'x-real-ip', 'x-forwarded-port', 'true-client-ip', 'x-remote-user', 'x-user-role']) expect([name, names.includes(name)]).toEqual([name, false]);
  for (const [name, value] of seen) expect([name, value]).not.toEqual([name, expect.stringMatching(/admin|198\.51\.100\.1/)]);
});

test('the relay’s identity headers come first, so a backend that keeps only its first headers still sees them', async () => {
  const many: [string, string][] = Array.from({ length: 90 }, (_, i) => [`X-Extra-${i}`, String(i)]);
  expect(await rawGet('/api/things/1', many)).toMatch(/^HTTP\/1\.1 200 /);
  // undici writes Host and Connection itself, before anything it is given.
  const names = pairs(received[0] ?? [])
    .map(([name]) => name.toLowerCase())
    .filter((name) => name !== 'host' && name !== 'connection');
  expect(names.slice(0, 4)).toEqual(['x-user-id', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);
  expect(names).toContain('x-extra-89');
});

test('more than 100 forwarded headers, or more than 8 KiB of them, is a 431 JSON error and the backend is not called', async () => {
  const tooMany: [string, string][] = Array.from({ length: 101 }, (_, i) => [`X-Extra-${i}`, String(i)]);
  const tooBig: [string, string][] = [['X-Blob', 'b'.repeat(9 * 1024)]];
  for (const headers of [tooMany, tooBig]) {
    const answer = await rawGet('/api/things/1', headers);
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(answer).toMatch(/\{"error":\{"code":"headers_too_large","message":"[^"]{10,}"\}\}$/);
  }
  expect(received).toEqual([]);
  // Dropped headers do not count: a 12 KiB cookie is no reason to refuse.
  expect(await rawGet('/api/things/1', [['Cookie', `big=${'c'.repeat(12 * 1024)}`]])).toMatch(/^HTTP\/1\.1 200 /);
  expect(received).toHaveLength(1);
});
