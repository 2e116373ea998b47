import { judgeTicks } from '../../src/diagnostics/path-report';

const ticks = (arrivals: number[], interval: number) => arrivals.map((receivedAt, i) => ({ seq: i + 1, sentAt: (i + 1) * interval, receivedAt }));

test('ticks that arrive as they were sent are one by one, with what the path held measured from the fastest', () => {
  const report = judgeTicks(ticks([105, 203, 310, 402, 501], 100), 100);
  expect(report).toEqual({ delivery: 'one by one', bunched: 0, lateMs: { p50: 3, p99: 10, max: 10 }, heldMs: { p50: 2, p99: 9, max: 9 } });
});

test('ticks released together are bursts, and the held figures show how long the first waited', () => {
  const report = judgeTicks(ticks([400, 400, 401, 401, 800, 800, 801, 801], 100), 100);
  expect(report.delivery).toBe('bursts');
  expect(report.bunched).toBe(6);
  expect(report.heldMs.max).toBe(299);
});

test('one late tick is not a burst', () => {
  expect(judgeTicks(ticks([100, 200, 390, 400, 500, 600], 100), 100).delivery).toBe('one by one');
});
