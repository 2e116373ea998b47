import { DeadStreamError, RelayHeartbeat, SilenceWatch } from '../../src/client/dead-stream';
import { type StreamEvent, readEventStream } from '../../src/client/sse-body';

/**
 * A body that sends `chunks` (one every `everyMs`) and then nothing until `end()`; `cancelled`
 * resolves when its reader lets it go.
 */
function stalling(chunks: string[], everyMs = 10): { body: ReadableStream<Uint8Array>; cancelled: Promise<void>; end: () => void } {
  let cancel: () => void = () => undefined;
  const cancelled = new Promise<void>((resolve) => (cancel = resolve));
  const timers: ReturnType<typeof setTimeout>[] = [];
  let end: () => void = () => undefined;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      chunks.forEach((chunk, i) => timers.push(setTimeout(() => controller.enqueue(new TextEncoder().encode(chunk)), i * everyMs)));
      end = () => controller.close();
    },
    cancel() {
      timers.forEach(clearTimeout);
      cancel();
    },
  });
  return { body, cancelled, end: () => end() };
}

test('a stream silent for twice the heartbeat interval is called dead: the read rejects and the body is let go', async () => {
  // The heartbeat comes last: only if it restarts the clock is the stream called dead 50 ms after it.
  const { body, cancelled } = stalling(['data: a\n\n', 'data: b\n\n', ': hb\n\n'], 20);
  const events: StreamEvent[] = [];
  const watch = new SilenceWatch();
  watch.arm(25);
  const startedAt = Date.now();
  const read = readEventStream(body, (event) => events.push(event), { watch });
  await expect(read).rejects.toThrow(DeadStreamError);
  await expect(read).rejects.toThrow('no byte for 50 ms: the connection is dead');
  await cancelled;
  // Each chunk, the heartbeat too, restarted the clock: 50 ms after the heartbeat (at 40 ms), not
  // after the last event (which would be called dead at 70 ms).
  expect(Date.now() - startedAt).toBeGreaterThanOrEqual(85);
  expect(events.map((e) => e.data)).toEqual(['a', 'b']);
});

test('an unarmed watch never calls a stream dead, and a stream that ends is not dead', async () => {
  const { body, end } = stalling(['data: a\n\n']);
  let settled = false;
  const read = readEventStream(body, () => undefined, { watch: new SilenceWatch() }).finally(() => (settled = true));
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(settled).toBe(false);
  end();
  await expect(read).resolves.toBeUndefined();

  const whole = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('data: a\n\n'));
      controller.close();
    },
  });
  const watch = new SilenceWatch();
  watch.arm(10);
  await expect(readEventStream(whole, () => undefined, { watch })).resolves.toBeUndefined();
  await new Promise((resolve) => setTimeout(resolve, 40));
  expect(watch.error).toBeUndefined();
});

test("the relay's heartbeat interval: what a ready event said, else what the client was given", () => {
  const heartbeat = new RelayHeartbeat(5000);
  expect(heartbeat.ms).toBe(5000);
  expect(heartbeat.learn(undefined)).toBe(5000);
  expect(heartbeat.learn('300')).toBe(5000);
  expect(heartbeat.learn(0)).toBe(5000);
  expect(heartbeat.ms).toBe(5000);
  expect(heartbeat.learn(300)).toBe(300);
  expect(heartbeat.ms).toBe(300);
  expect(new RelayHeartbeat(undefined).ms).toBeUndefined();
});
