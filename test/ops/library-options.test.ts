import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, type Socket, createServer } from 'node:net';
import { type CreateRelayOptions, createRelay } from '../../index';
import { delay } from '../support/until';

const backendUrl = 'http://127.0.0.1:1';
const SECRET = 'a-library-secret-that-is-long-enough-for-hs256';

/** What `createRelay` throws for `options`: its class and message. */
function refusal(options: Partial<CreateRelayOptions>): { type: string; message: string } {
  try {
    createRelay({ backendUrl, ...options } as CreateRelayOptions);
  } catch (err) {
    return { type: (err as Error).constructor.name, message: (err as Error).message };
  }
  throw new Error('createRelay accepted the options');
}

test('createRelay without a key says which option to set, as the server names its variable', () => {
  expect(refusal({})).toEqual({
    type: 'TypeError',
    message: 'jwt must be set: { secret } (HS256) or { publicKey } (RS256, ES256), got undefined',
  });
  expect(refusal({ jwt: {} })).toEqual({
    type: 'TypeError',
    message: 'jwt.secret (HS256, at least 32 characters) or jwt.publicKey (PEM, RS256 or ES256) must be set, exactly one of them; got neither',
  });
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  expect(refusal({ jwt: { secret: SECRET, publicKey } }).message).toMatch(/^jwt\.secret \(.*\) or jwt\.publicKey \(.*\) must be set, exactly one of them; got both$/);
});

test('an unusable key, token cache or redirect origin is refused naming its option', () => {
  expect(refusal({ jwt: { secret: 'short' } }).message).toBe('jwt.secret must be at least 32 characters, got 5');
  expect(refusal({ jwt: { publicKey: 'not a key' } }).message).toMatch(/^jwt\.publicKey must be a PEM public key \(-----BEGIN PUBLIC KEY-----\), got one Node cannot read: /);
  const { publicKey } = generateKeyPairSync('ed25519', { publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  expect(refusal({ jwt: { publicKey } }).message).toBe('jwt.publicKey must be an RSA or EC P-256 key, got ed25519');
  expect(refusal({ jwt: { secret: SECRET, cacheSize: -1 } }).message).toBe('jwt.cacheSize must be an integer of 0 or more, got -1');
  expect(refusal({ jwt: { secret: SECRET }, upstreamRedirectOrigins: ['cdn.example.com'] }).message).toBe(
    'upstreamRedirectOrigins must be origins like https://cdn.example.com, got "cdn.example.com"',
  );
  expect(refusal({ jwt: { secret: SECRET }, backendUrl: 'localhost:8081' } as Partial<CreateRelayOptions>).message).toBe(
    'backendUrl must be http or https, got localhost:',
  );
  expect(refusal({ jwt: { secret: SECRET }, backendUrl: 'not a url' } as Partial<CreateRelayOptions>).message).toBe(
    'backendUrl must be your backend\'s http(s) URL, got "not a url"',
  );
});

test('a relay refused for its key has opened nothing: no Redis connection is left behind it', async () => {
  // A listener in Redis's place: it sees whether the relay connected before refusing.
  const connections: Socket[] = [];
  const redis = createServer((socket) => connections.push(socket));
  redis.listen(0, '127.0.0.1');
  await once(redis, 'listening');
  try {
    expect(refusal({ jwt: {}, redisUrl: `redis://127.0.0.1:${(redis.address() as AddressInfo).port}` }).message).toMatch(/^jwt\.secret/);
    await delay(200);
    expect(connections.length).toBe(0);
  } finally {
    for (const socket of connections) socket.destroy();
    redis.close();
  }
});
