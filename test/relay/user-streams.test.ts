import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { UserStreams } from '../../src/relay/user-streams';

/** A real node:http response, not attached to any server: enough for its `close` event. */
function response(): ServerResponse {
  return new ServerResponse(new IncomingMessage(new Socket()));
}

beforeEach(() => {
  jest.useFakeTimers({ now: 1_000_000 });
});
afterEach(() => {
  jest.useRealTimers();
});

test('a thousand held streams wait for their tokens to run out on one timer, not one each', () => {
  const streams = new UserStreams();
  const ended: string[] = [];
  for (let i = 0; i < 1000; i += 1) {
    streams.track(`user${i}`, response(), 1_000_000 + 60_000 + (i % 3) * 1000, 100, (reason) => ended.push(reason));
  }
  expect(jest.getTimerCount()).toBe(1);
  expect(streams.userCount).toBe(1000);
  jest.advanceTimersByTime(62_000);
  expect(ended).toHaveLength(1000);
  expect(new Set(ended)).toEqual(new Set(['token_expired']));
});

test('each stream ends at its own expiry, never a millisecond before, with its own retry; streams that closed are not ended', () => {
  const streams = new UserStreams();
  const ended: { who: string; at: number; retryMs: number }[] = [];
  const track = (who: string, expiresAt: number, retryMs: number) => {
    const res = response();
    streams.track(who, res, expiresAt, retryMs, (_reason, retry) => ended.push({ who, at: Date.now(), retryMs: retry }));
    return res;
  };
  track('late', 1_003_000, 300);
  track('early', 1_001_000, 100);
  const gone = track('gone', 1_002_000, 200);
  track('same-instant', 1_001_000, 150);
  gone.emit('close');

  jest.advanceTimersByTime(999);
  expect(ended).toEqual([]);
  jest.advanceTimersByTime(1);
  expect(ended).toEqual([
    { who: 'early', at: 1_001_000, retryMs: 100 },
    { who: 'same-instant', at: 1_001_000, retryMs: 150 },
  ]);
  jest.advanceTimersByTime(1999);
  expect(ended).toHaveLength(2);
  jest.advanceTimersByTime(1);
  expect(ended.at(-1)).toEqual({ who: 'late', at: 1_003_000, retryMs: 300 });
});

test('a stream tracked with an earlier expiry than any held moves the timer forward; one already expired ends on the next turn', () => {
  const streams = new UserStreams();
  const ended: string[] = [];
  streams.track('later', response(), 1_010_000, 100, () => ended.push('later'));
  streams.track('sooner', response(), 1_002_000, 100, () => ended.push('sooner'));
  streams.track('past', response(), 999_000, 100, () => ended.push('past'));
  expect(ended).toEqual([]);
  jest.advanceTimersByTime(0);
  expect(ended).toEqual(['past']);
  jest.advanceTimersByTime(2000);
  expect(ended).toEqual(['past', 'sooner']);
  jest.advanceTimersByTime(8000);
  expect(ended).toEqual(['past', 'sooner', 'later']);
  expect(jest.getTimerCount()).toBe(0);
});

test('a user leaves once all their streams have closed; endUser ends only the streams still open', () => {
  const streams = new UserStreams();
  const ended: string[] = [];
  const first = response();
  streams.track('alice', first, undefined, 100, () => ended.push('first'));
  streams.track('alice', response(), undefined, 100, () => ended.push('second'));
  first.emit('close');
  expect(streams.endUser('alice', 50)).toBe(1);
  expect(ended).toEqual(['second']);
  expect(streams.userCount).toBe(1);
  expect(jest.getTimerCount()).toBe(0);
});

test('a stream is ended through its own endWithRetry when given as an object, with the reason and its retry', () => {
  const streams = new UserStreams();
  const calls: [string, number][] = [];
  streams.track('alice', response(), 1_001_000, 250, { endWithRetry: (reason, retryMs) => calls.push([reason, retryMs]) });
  jest.advanceTimersByTime(1000);
  expect(calls).toEqual([['token_expired', 250]]);
  expect(streams.endUser('alice', 40)).toBe(1);
  expect(calls.at(-1)).toEqual(['ended_by_app', 40]);
});

test('onCut hears each stream ended at its expiry or by the app, and each one that closed after a slow-client cut, with its user', () => {
  const cuts: string[] = [];
  const streams = new UserStreams((user, reason) => cuts.push(`${reason} ${user}`));
  streams.track('alice', response(), 1_001_000, 100, () => undefined);
  streams.track('bob', response(), undefined, 100, () => undefined);
  streams.track('bob', response(), undefined, 100, () => undefined);
  const slow = response();
  streams.track('carol', slow, undefined, 100, { endWithRetry: () => undefined, closeReason: 'slow_client' });
  const left = response();
  streams.track('dave', left, undefined, 100, { endWithRetry: () => undefined, closeReason: 'client_closed' });
  jest.advanceTimersByTime(1000);
  streams.endUser('bob', 100);
  slow.emit('close');
  left.emit('close');
  expect(cuts).toEqual(['token_expired alice', 'ended_by_app bob', 'ended_by_app bob', 'slow_client carol']);
});

test('forEachStream visits every open stream with its user and ender, and no closed one', () => {
  const streams = new UserStreams();
  const ender = (): void => undefined;
  const open = response();
  const closed = response();
  streams.track('alice', open, undefined, 100, ender);
  streams.track('bob', closed, undefined, 100, ender);
  closed.emit('close');
  const seen: unknown[] = [];
  streams.forEachStream((user, res, end) => seen.push([user, res === open, end === ender]));
  expect(seen).toEqual([['alice', true, true]]);
});
