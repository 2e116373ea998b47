import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEV_SECRET_FILE } from '../../config/dev-secret';

test('the Docker build context leaves out the development secret that npm start keeps in the repository folder', () => {
  const patterns = readFileSync(join(__dirname, '../../.dockerignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  expect(patterns).toContain(DEV_SECRET_FILE);
});
