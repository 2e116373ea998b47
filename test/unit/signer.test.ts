import { ClusterSigner } from '../../src/cluster/signer';

const signer = new ClusterSigner('a cluster secret that is long enough');

test('what one relay signs, another with the same secret verifies; any other parts, kind, secret or signature fail', () => {
  const parts = ['download:abc', 'k', 'v', 'i', '1', 'd', 'héllo 😀'];
  const signature = signer.sign('entry', parts);
  expect(new ClusterSigner('a cluster secret that is long enough').verify('entry', parts, signature)).toBe(true);
  expect(signer.verify('entry', [...parts.slice(0, -1), 'hello'], signature)).toBe(false);
  expect(signer.verify('end_user', parts, signature)).toBe(false);
  expect(new ClusterSigner('another cluster secret, as long as it').verify('entry', parts, signature)).toBe(false);
  expect(signer.verify('entry', parts, undefined)).toBe(false);
  expect(signer.verify('entry', parts, signature.slice(1))).toBe(false);
  expect(signer.verify('entry', parts, `${signature.slice(0, -1)}${signature.endsWith('A') ? 'B' : 'A'}`)).toBe(false);
});

test('parts are signed with their boundaries: moving bytes from one part to the next changes the signature', () => {
  expect(signer.sign('entry', ['ab', 'c'])).not.toBe(signer.sign('entry', ['a', 'bc']));
  expect(signer.sign('entry', ['1:a'])).not.toBe(signer.sign('entry', ['1', 'a']));
  expect(signer.sign('entry', ['topic', ''])).not.toBe(signer.sign('entry', ['topic']));
});

test('a secret shorter than 32 characters, spaces around it not counted, is refused', () => {
  expect(() => new ClusterSigner(`  ${'x'.repeat(31)}  `)).toThrow(/^redisSigningSecret must be at least 32 characters/);
  expect(() => new ClusterSigner('x'.repeat(32))).not.toThrow();
});
