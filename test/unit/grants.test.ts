import { MAX_GRANTS, TopicGrants } from '../../src/relay/grants';

function grants(claim: unknown): TopicGrants {
  const parsed = TopicGrants.parse(claim);
  if (!(parsed instanceof TopicGrants)) throw new Error(`refused: ${parsed}`);
  return parsed;
}

test('a topic admits that topic only', () => {
  const granted = grants(['download:abc', 'session:s1']);
  expect(granted.admits('download:abc')).toBe(true);
  expect(granted.admits('session:s1')).toBe(true);
  expect(granted.admits('download:abcd')).toBe(false);
  expect(granted.admits('download:ab')).toBe(false);
  expect(granted.admits('session:s2')).toBe(false);
});

test('a prefix ending in * admits every topic that starts with it, of its kind only', () => {
  const granted = grants(['download:*', 'session:tenant7-*']);
  expect(granted.admits('download:abc')).toBe(true);
  expect(granted.admits('download:x')).toBe(true);
  expect(granted.admits('session:tenant7-a')).toBe(true);
  expect(granted.admits('session:tenant8-a')).toBe(false);
  expect(granted.admits('downloads:abc')).toBe(false);
});

test('an empty list grants nothing', () => {
  expect(grants([]).admits('download:abc')).toBe(false);
});

test.each([
  ['a string, not an array', 'download:abc', /not an array/],
  ['an object', { download: ['abc'] }, /not an array/],
  ['more patterns than the cap', Array.from({ length: MAX_GRANTS + 1 }, (_, i) => `download:${i}`), /more than 100/],
  ['a number among the patterns', ['download:abc', 7], /not a string/],
  ['an empty pattern', [''], /empty or longer/],
  ['a pattern past 160 characters', [`download:${'a'.repeat(152)}`], /empty or longer than 160/],
  ['a space', ['download:a b'], /a character topics do not/],
  ['a control character', ['download:a\nb'], /a character topics do not/],
  ['a * before the end', ['download:*abc'], /a character topics do not/],
  ['* alone', ['*'], /names no kind/],
  ['a prefix without its kind', ['down*'], /names no kind/],
  ['one bad pattern among good ones', ['download:abc', '*'], /names no kind/],
])('%s voids the whole claim', (_what, claim, reason) => {
  const parsed = TopicGrants.parse(claim);
  expect(parsed).not.toBeInstanceOf(TopicGrants);
  expect(parsed).toMatch(reason);
});

test('patterns at the caps are accepted', () => {
  const longest = `download:${'a'.repeat(151)}`;
  expect(longest).toHaveLength(160);
  const granted = grants([...Array.from({ length: MAX_GRANTS - 1 }, (_, i) => `download:${i}`), longest]);
  expect(granted.admits(longest)).toBe(true);
  expect(granted.admits('download:98')).toBe(true);
});
