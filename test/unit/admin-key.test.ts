import { presentedKey } from '../../middleware/admin-key';

const basic = (credentials: string): string => `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`;

test('the key is the Bearer token, or the Basic password after the first colon, whatever the scheme spelling and user name', () => {
  expect(presentedKey({ authorization: 'Bearer the-key' })).toBe('the-key');
  expect(presentedKey({ authorization: 'bearer  the-key ' })).toBe('the-key');
  expect(presentedKey({ authorization: basic('admin:the-key') })).toBe('the-key');
  expect(presentedKey({ authorization: basic(':the:key:with:colons') })).toBe('the:key:with:colons');
  expect(presentedKey({ authorization: `BASIC ${Buffer.from('ops:é-key').toString('base64')}` })).toBe('é-key');
});

test('no key without an Authorization header, a scheme, a colon in Basic, or with another scheme', () => {
  expect(presentedKey({})).toBeUndefined();
  expect(presentedKey({ authorization: 'the-key' })).toBeUndefined();
  expect(presentedKey({ authorization: basic('no-colon') })).toBeUndefined();
  expect(presentedKey({ authorization: 'Digest username="admin"' })).toBeUndefined();
  expect(presentedKey({ 'x-api-key': 'the-key' })).toBeUndefined();
});
