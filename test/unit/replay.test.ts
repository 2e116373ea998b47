import { HistoryBudget } from '../../src/relay/history-budget';
import { MemoryReplayBuffer, type StoredEvent } from '../../src/relay/replay';

/** An event whose frame is `size` bytes. */
function event(id: string | undefined, size = 10): StoredEvent {
  return { id, frame: Buffer.alloc(size, id ?? '-') };
}

const ids = (events: readonly StoredEvent[] | undefined): (string | undefined)[] | undefined => events?.map((e) => e.id);

describe('MemoryReplayBuffer', () => {
  test('keeps the newest events in order when the ring wraps around several times', () => {
    const ring = new MemoryReplayBuffer(3);
    for (let i = 1; i <= 10; i++) ring.push(event(String(i)));
    expect(ids(ring.all())).toEqual(['8', '9', '10']);
    expect(ids(ring.after('8'))).toEqual(['9', '10']);
    expect(ids(ring.after('10'))).toEqual([]);
    expect(ring.after('7')).toBeUndefined();
    expect(ring.has('7')).toBe(false);
    expect(ring.has('9')).toBe(true);
  });

  test('is not truncated until the first eviction', () => {
    const ring = new MemoryReplayBuffer(2);
    ring.push(event('1'));
    ring.push(event('2'));
    expect(ring.truncated).toBe(false);
    ring.push(event('3'));
    expect(ring.truncated).toBe(true);
  });

  test('resumes from the first event of a repeated id, and forgets the id once that first event is evicted', () => {
    // Events without an id are filed under the last id, so one id can cover several events.
    const ring = new MemoryReplayBuffer(3);
    ring.push(event('a'));
    ring.push(event('a'));
    ring.push(event('b'));
    expect(ids(ring.after('a'))).toEqual(['a', 'b']);
    ring.push(event('c'));
    // The first 'a' is gone: a client holding 'a' may have missed the second one, so it is a gap.
    expect(ring.after('a')).toBeUndefined();
    expect(ring.has('a')).toBe(false);
    expect(ids(ring.after('b'))).toEqual(['c']);
  });

  test('counts the bytes it holds, and evicts the oldest events past its byte budget', () => {
    const ring = new MemoryReplayBuffer(100, 100);
    ring.push(event('1', 40));
    ring.push(event('2', 40));
    expect(ring.bytes).toBe(80);
    ring.push(event('3', 40));
    expect(ids(ring.all())).toEqual(['2', '3']);
    expect(ring.bytes).toBe(80);
    expect(ring.truncated).toBe(true);
    ring.push(event('4', 100));
    expect(ids(ring.all())).toEqual(['4']);
    expect(ring.bytes).toBe(100);
  });

  test('keeps no event bigger than its byte budget, yet a client holding that event has missed nothing', () => {
    const ring = new MemoryReplayBuffer(10, 50);
    ring.push(event('1', 20));
    ring.push(event('2', 80));
    expect(ring.all()).toEqual([]);
    expect(ring.bytes).toBe(0);
    expect(ring.truncated).toBe(true);
    expect(ring.after('2')).toEqual([]);
    expect(ring.after('1')).toBeUndefined();
    expect(ring.has('2')).toBe(true);
  });

  test('release drops everything and leaves a truncated history', () => {
    const ring = new MemoryReplayBuffer(10);
    ring.push(event('1'));
    ring.push(event('2'));
    ring.release();
    expect(ring.all()).toEqual([]);
    expect(ring.bytes).toBe(0);
    expect(ring.truncated).toBe(true);
    expect(ring.after('1')).toBeUndefined();
  });
});

describe('HistoryBudget', () => {
  test('adds up the bytes of every ring and gets them back when rings evict or are released', () => {
    const budget = new HistoryBudget(1000);
    const a = new MemoryReplayBuffer(2, 1000, budget);
    const b = new MemoryReplayBuffer(10, 1000, budget);
    a.push(event('1', 100));
    a.push(event('2', 100));
    a.push(event('3', 100));
    b.push(event('x', 50));
    expect(budget.bytes).toBe(250);
    b.release();
    expect(budget.bytes).toBe(200);
    expect(budget.evictedBytes).toBe(0);
  });

  test('a topic that closed while idle leaves nothing in the budget, under the cap as over it', () => {
    const budget = new HistoryBudget(1000);
    const ring = new MemoryReplayBuffer(10, 1000, budget);
    ring.push(event('1', 100));
    ring.setIdle(true);
    const idle = (budget as unknown as { idle: Set<unknown> }).idle;
    expect(idle.has(ring)).toBe(true);
    ring.release();
    expect(idle.size).toBe(0);
    expect(budget.bytes).toBe(0);
  });

  test('over its cap, evicts the oldest events of the process whichever topic holds them', () => {
    const budget = new HistoryBudget(300);
    const a = new MemoryReplayBuffer(100, 1000, budget);
    const b = new MemoryReplayBuffer(100, 1000, budget);
    a.push(event('a1', 100));
    b.push(event('b1', 100));
    a.push(event('a2', 100));
    b.push(event('b2', 100));
    expect(ids(a.all())).toEqual(['a2']);
    expect(ids(b.all())).toEqual(['b1', 'b2']);
    a.push(event('a3', 100));
    expect(ids(a.all())).toEqual(['a2', 'a3']);
    expect(ids(b.all())).toEqual(['b2']);
    expect(budget.bytes).toBe(300);
    expect(budget.evictedBytes).toBe(200);
  });

  test('evicts idle histories before live ones, the one idle longest first', () => {
    const budget = new HistoryBudget(400);
    const live = new MemoryReplayBuffer(100, 1000, budget);
    const idleFirst = new MemoryReplayBuffer(100, 1000, budget);
    const idleLater = new MemoryReplayBuffer(100, 1000, budget);
    live.push(event('l1', 100));
    idleFirst.push(event('f1', 100));
    idleLater.push(event('s1', 100));
    idleFirst.setIdle(true);
    idleLater.setIdle(true);
    live.push(event('l2', 100));
    live.push(event('l3', 100));
    // The live topic's own oldest event is older than both idle ones, yet they go first.
    expect(idleFirst.all()).toEqual([]);
    expect(ids(idleLater.all())).toEqual(['s1']);
    expect(ids(live.all())).toEqual(['l1', 'l2', 'l3']);
    live.push(event('l4', 100));
    expect(idleLater.all()).toEqual([]);
    expect(ids(live.all())).toEqual(['l1', 'l2', 'l3', 'l4']);
    live.push(event('l5', 100));
    expect(ids(live.all())).toEqual(['l2', 'l3', 'l4', 'l5']);
  });

  test('a history that gets a reader again is no longer evicted first', () => {
    const budget = new HistoryBudget(200);
    const a = new MemoryReplayBuffer(100, 1000, budget);
    const b = new MemoryReplayBuffer(100, 1000, budget);
    b.push(event('b1', 100));
    a.setIdle(true);
    a.push(event('a1', 100));
    a.setIdle(false);
    b.push(event('b2', 100));
    expect(ids(a.all())).toEqual(['a1']);
    expect(ids(b.all())).toEqual(['b2']);
  });

  test('keeps its queue of events within twice the events held while rings evict on their own', () => {
    const budget = new HistoryBudget(1024 ** 3);
    const ring = new MemoryReplayBuffer(10, 1000, budget);
    for (let i = 0; i < 100_000; i++) ring.push(event(String(i)));
    expect(ring.length).toBe(10);
    expect(budget.bytes).toBe(100);
    expect((budget as unknown as { order: unknown[]; start: number }).order.length).toBeLessThanOrEqual(2048);
  });
});
