import { Writable } from 'node:stream';
import { pino } from 'pino';
import { UpstreamBudget } from '../../src/limits/upstream-budget';

function budget(max: number): { budget: UpstreamBudget; lines: Record<string, unknown>[]; refusals: () => number } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  let refused = 0;
  return { budget: new UpstreamBudget(max, pino(destination), () => (refused += 1)), lines, refusals: () => refused };
}

afterEach(() => jest.useRealTimers());

test('upstreams up to the budget are admitted, one more is a 503 over_capacity with a spread Retry-After', () => {
  const { budget: upstreams, refusals } = budget(10);
  expect(() => upstreams.admit(7, 3)).not.toThrow();
  expect(() => upstreams.admit(10, 0)).not.toThrow();
  let refusal: unknown;
  try {
    upstreams.admit(8, 3);
  } catch (err) {
    refusal = err;
  }
  expect(refusal).toMatchObject({ code: 'over_capacity', status: 503 });
  const retryAfter = Number((refusal as { headers: Record<string, string> }).headers['Retry-After']);
  expect(retryAfter).toBeGreaterThanOrEqual(5);
  expect(retryAfter).toBeLessThanOrEqual(14);
  expect(refusals()).toBe(1);
});

test('refusals are logged at once, then at most once per 10 s with how many there were', () => {
  jest.useFakeTimers({ now: 1_000_000 });
  const { budget: upstreams, lines } = budget(1);
  const refuse = (): void => expect(() => upstreams.admit(1, 1)).toThrow();
  refuse();
  refuse();
  refuse();
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({ level: 40, held: 1, needed: 1, maxUpstreams: 1, refused: 1 });
  jest.setSystemTime(1_010_000);
  refuse();
  expect(lines).toHaveLength(2);
  expect(lines[1]).toMatchObject({ refused: 3 });
});
