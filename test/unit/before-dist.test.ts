import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeDist } from '../../bench/lab';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'before-dist-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test('--before takes a built checkout or its dist/, and refuses a directory with no server.js, saying to build it', () => {
  mkdirSync(join(dir, 'dist'));
  expect(() => beforeDist(dir)).toThrow(/no dist\/server\.js there \(run npm run build in that checkout first\)/);
  writeFileSync(join(dir, 'dist', 'server.js'), '');
  expect(beforeDist(dir)).toBe(join(dir, 'dist'));
  expect(beforeDist(join(dir, 'dist'))).toBe(join(dir, 'dist'));
});
