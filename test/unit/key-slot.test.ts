import { keySlot } from '../../src/cluster/key-slot';

test('keys hash to the slots Redis Cluster gives them (CLUSTER KEYSLOT examples)', () => {
  expect(keySlot('somekey')).toBe(11058);
  expect(keySlot('foo{hash_tag}')).toBe(2515);
  expect(keySlot('bar{hash_tag}')).toBe(2515);
  expect(keySlot('')).toBe(0);
});

test('only the first {…} with something in it is hashed, so every key of a topic shares a slot', () => {
  expect(keySlot('sse-relay:{download:x}:events')).toBe(keySlot('download:x'));
  expect(keySlot('sse-relay:{download:x}:appends')).toBe(keySlot('sse-relay:{download:x}:lease'));
  expect(keySlot('a{}b')).not.toBe(keySlot(''));
  expect(keySlot('{}x{y}')).not.toBe(keySlot('y'));
  expect(keySlot('x{{y}}')).toBe(keySlot('{y'));
  expect(keySlot('{ü}')).toBe(keySlot('ü'));
});
