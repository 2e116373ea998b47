import { RecentCuts } from '../../src/admin/cuts';

test('the newest cuts come first, and the oldest go past the capacity', () => {
  const cuts = new RecentCuts(3);
  cuts.add('slow_client', 'a', undefined, 1000);
  cuts.add('token_expired', 'b', undefined, 2000);
  cuts.add('ended_by_app', 'c', undefined, 3000);
  cuts.add('limit', undefined, 'rate', 4000);
  expect(cuts.latest().map((cut) => `${cut.reason} ${cut.user ?? '-'}`)).toEqual(['limit -', 'ended_by_app c', 'token_expired b']);
  expect(cuts.latest(1)).toEqual([{ at: 4000, reason: 'limit', detail: 'rate', user: undefined, count: 1 }]);
});

test('alike cuts within 10 s of the last are one entry with a count; another user, detail or a pause starts a new one', () => {
  const cuts = new RecentCuts();
  for (let i = 0; i < 50; i += 1) cuts.add('limit', 'alice', 'perUser', 1000 + i * 100);
  cuts.add('limit', 'alice', 'perIp', 6000);
  cuts.add('limit', 'bob', 'perIp', 6100);
  cuts.add('limit', 'bob', 'perIp', 16_100);
  expect(cuts.latest()).toEqual([
    { at: 16_100, reason: 'limit', detail: 'perIp', user: 'bob', count: 1 },
    { at: 6100, reason: 'limit', detail: 'perIp', user: 'bob', count: 1 },
    { at: 6000, reason: 'limit', detail: 'perIp', user: 'alice', count: 1 },
    { at: 5900, reason: 'limit', detail: 'perUser', user: 'alice', count: 50 },
  ]);
});
