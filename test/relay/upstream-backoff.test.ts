import { Agent } from 'undici';
import { resolveOptions } from '../../src/options';
import { Upstream } from '../../src/relay/upstream';
import { freePort } from '../support/free-port';

/** A loopback port with nothing listening: every connect is refused at once. */
afterEach(() => {
  jest.useRealTimers();
  jest.restoreAllMocks();
});

test('reconnects use full jitter under an exponentially growing cap, then give up', async () => {
  // Nothing listens there: every connect is refused.
  const port = await freePort();
  jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
  // A different draw per attempt: a delay that ignored random() (or the cap) could not match them all.
  jest.spyOn(Math, 'random').mockReturnValueOnce(0.1).mockReturnValueOnce(0.9).mockReturnValueOnce(0.5).mockReturnValueOnce(0.25);
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
    onFinish: () => undefined,
    onRefused: () => undefined,
    onGiveUp: (reason) => (gaveUp = reason),
    onRetry: (_attempt, delayMs) => delays.push(delayMs),
  });
  upstream.start();

  const waitForRetries = async (n: number): Promise<void> => {
    while (delays.length < n) await new Promise((resolve) => setImmediate(resolve));
  };
  await waitForRetries(1);
  expect(delays).toEqual([100]);
  // Nothing happens before the delay has passed.
  await jest.advanceTimersByTimeAsync(99);
  expect(delays).toHaveLength(1);
  await jest.advanceTimersByTimeAsync(1);
  await waitForRetries(2);
  await jest.advanceTimersByTimeAsync(1800);
  await waitForRetries(3);
  await jest.advanceTimersByTimeAsync(2000);
  await waitForRetries(4);
  // Caps 1000, 2000, 4000, then 5000 (the maximum), each scaled by its draw.
  expect(delays).toEqual([100, 1800, 2000, 1250]);
  await jest.advanceTimersByTimeAsync(1250);
  while (gaveUp === undefined) await new Promise((resolve) => setImmediate(resolve));
  expect(gaveUp).toBe('upstream_unavailable');
  upstream.close();
  await agent.close();
});
