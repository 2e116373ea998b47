import { Readable } from 'node:stream';
import { checkToken } from '../../src/diagnostics/check-token';

const none = Readable.from([]);

test('the token comes from --token-file, then --token, then SSE_RELAY_TOKEN; only --token warns', async () => {
  expect(await checkToken({ tokenFile: '-' }, { SSE_RELAY_TOKEN: 'from-env' }, Readable.from(['from-', 'stdin\n']))).toEqual({ token: 'from-stdin' });
  expect(await checkToken({ token: 'from-argv' }, { SSE_RELAY_TOKEN: 'from-env' }, none)).toEqual({ token: 'from-argv', warning: expect.stringContaining('prefer SSE_RELAY_TOKEN or --token-file') as string });
  expect(await checkToken({}, { SSE_RELAY_TOKEN: ' from-env\n' }, none)).toEqual({ token: 'from-env' });
  expect(await checkToken({}, { SSE_RELAY_TOKEN: '  ' }, none)).toBeUndefined();
  expect(await checkToken({}, {}, none)).toBeUndefined();
});

test('both --token and --token-file, or an empty standard input, are refused', async () => {
  await expect(checkToken({ token: 'a', tokenFile: '-' }, {}, none)).rejects.toThrow('give --token or --token-file, not both');
  await expect(checkToken({ tokenFile: '-' }, {}, Readable.from(['\n']))).rejects.toThrow('the token file (standard input) is empty');
});
