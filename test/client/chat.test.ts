import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolveReconnect } from '../../src/client/backoff';
import { streamChat } from '../../src/client/chat';
import { Transport } from '../../src/client/transport';

let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  server = undefined;
});

test('an abort before the chat request went out (its token still coming) keeps it from going out', async () => {
  const requests: string[] = [];
  server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.writeHead(500).end();
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  let giveToken: (token: string) => void = () => undefined;
  const token = new Promise<string>((resolve) => (giveToken = resolve));
  const transport = new Transport({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: () => token });
  const reply = streamChat(transport, resolveReconnect(), { chatbotId: 'b', message: 'hi' }, {});
  reply.abort();
  expect(await reply.done).toBe('');
  giveToken('a-token');
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(requests).toEqual([]);
});
