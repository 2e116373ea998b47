import { RateHistory } from '../../src/admin/rates';

test('each point is the growth per second since the previous sample, and the window keeps the newest', () => {
  const totals = { events: 0, deliveries: 0, opens: 0 };
  const rates = new RateHistory(() => ({ ...totals }), 3);
  rates.sample(0);
  expect(rates.series()).toEqual({ events: [], deliveries: [], opens: [] });
  totals.events = 10;
  totals.deliveries = 30;
  rates.sample(1000);
  // A late timer: 2 s since the last sample, so half the growth per second.
  totals.events = 30;
  totals.deliveries = 90;
  totals.opens = 1;
  rates.sample(3000);
  totals.events = 31;
  rates.sample(4000);
  totals.events = 34;
  rates.sample(5000);
  expect(rates.series()).toEqual({ events: [10, 1, 3], deliveries: [30, 0, 0], opens: [0.5, 0, 0] });
});

test('a total that went down gives 0 for that second, not a negative rate', () => {
  const totals = { events: 100, deliveries: 100, opens: 100 };
  const rates = new RateHistory(() => ({ ...totals }));
  rates.sample(0);
  totals.events = 5;
  rates.sample(1000);
  expect(rates.series().events).toEqual([0]);
});
