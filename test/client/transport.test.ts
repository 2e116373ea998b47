import jwt from 'jsonwebtoken';
import { Transport } from '../../src/client/transport';

const fetchStub = (() => Promise.reject(new Error('not called'))) as typeof fetch;

test('tabs share by user: the cookie for all tabs, the token subject, never an opaque token', async () => {
  expect(await new Transport({ fetch: fetchStub }).credentialKey()).toBe('cookie');
  const alice = jwt.sign({ sub: 'alice-ü' }, 'x'.repeat(32));
  expect(await new Transport({ fetch: fetchStub, token: alice }).credentialKey()).toBe('sub alice-ü');
  expect(await new Transport({ fetch: fetchStub, token: async () => alice }).credentialKey()).toBe('sub alice-ü');
  expect(await new Transport({ fetch: fetchStub, token: 'opaque-token' }).credentialKey()).toBeUndefined();
  expect(await new Transport({ fetch: fetchStub, token: jwt.sign({ scope: 'x' }, 'x'.repeat(32)) }).credentialKey()).toBeUndefined();
  expect(await new Transport({ fetch: fetchStub, token: () => undefined }).credentialKey()).toBeUndefined();
});
