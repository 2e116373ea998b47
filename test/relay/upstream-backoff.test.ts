import { createServer } from 'node:net';
import { Agent } from 'undici';
import { resolveOptions } from '../../src/options';
import { Upstream } from '../../src/relay/upstream';

/** A loopback port with nothing listening: every connect is refused at once. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

afterEach(() => {
  jest.useRealTimers();
  jest.restoreAllMocks();
});

test('reconnects use full jitter under an exponentially growing cap, then give up', async () => {
  const port = await closedPort();
  jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
  jest.spyOn(Math, 'random').mockReturnValue(0.5);
  const config = resolveOptions({
    backendUrl: `http://127.0.0.1:${port}`,
    reconnectBaseDelayMs: 1000,
    reconnectMaxDelayMs: 5000,
    reconnectMaxAttempts: 4,
  });
  const agent = new Agent();
  const delays: number[] = [];
  let gaveUp: string | undefined;
  const upstream = new Upstream({ url: new URL(`http://127.0.0.1:${port}/events`), headers: {} }, agent, config, {
    onOpen: () => undefined,
    onEvent: () => undefined,
    onEnd: () => undefined,
    onRefused: () => undefined,
    onGiveUp: (reason) => (gaveUp = reason),
    onRetry: (_attempt, delayMs) => delays.push(delayMs),
  });
  upstream.start();

  const waitForRetries = async (n: number): Promise<void> => {
    while (delays.length < n) await new Promise((resolve) => setImmediate(resolve));
  };
  await waitForRetries(1);
  expect(delays).toEqual([500]);
  // Nothing happens before the delay has passed.
  await jest.advanceTimersByTimeAsync(499);
  expect(delays).toHaveLength(1);
  await jest.advanceTimersByTimeAsync(1);
  await waitForRetries(2);
  await jest.advanceTimersByTimeAsync(1000);
  await waitForRetries(3);
  await jest.advanceTimersByTimeAsync(2000);
  await waitForRetries(4);
  // Caps 1000, 2000, 4000, then 5000 (the maximum), each halved by random() = 0.5.
  expect(delays).toEqual([500, 1000, 2000, 2500]);
  await jest.advanceTimersByTimeAsync(2500);
  while (gaveUp === undefined) await new Promise((resolve) => setImmediate(resolve));
  expect(gaveUp).toBe('upstream_unavailable');
  upstream.close();
  await agent.close();
});
