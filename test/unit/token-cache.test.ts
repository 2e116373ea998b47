import { TokenCache } from '../../middleware/token-cache';

const at = 1_000_000;

test('a remembered token is given back until its exp and never at or after it', () => {
  const cache = new TokenCache(10);
  cache.set('t', { user: 'alice', expiresAtMs: at + 1000 }, at);
  expect(cache.get('t', at + 999)?.user).toBe('alice');
  expect(cache.get('t', at + 1000)).toBeUndefined();
  expect(cache.get('t', at + 999)).toBeUndefined();
});

test('a token already past its exp is not remembered', () => {
  const cache = new TokenCache(10);
  cache.set('t', { user: 'alice', expiresAtMs: at }, at);
  expect(cache.size).toBe(0);
});

test('at most max tokens are held, the least recently used going first', () => {
  const cache = new TokenCache(2);
  const later = { user: 'u', expiresAtMs: at + 60_000 };
  cache.set('a', later, at);
  cache.set('b', later, at);
  cache.get('a', at);
  cache.set('c', later, at);
  expect(cache.size).toBe(2);
  expect(cache.get('b', at)).toBeUndefined();
  expect(cache.get('a', at)).toBeDefined();
  expect(cache.get('c', at)).toBeDefined();
});

test('size 0 remembers nothing', () => {
  const cache = new TokenCache(0);
  cache.set('a', { user: 'u', expiresAtMs: at + 60_000 }, at);
  expect(cache.get('a', at)).toBeUndefined();
});
