import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { MIN_SECRET_LENGTH } from '../src/jwt';

/** Where the development secret is kept, relative to the folder `npm start` runs in (git-ignored). */
export const DEV_SECRET_FILE = '.dev-secret';

/**
 * The development JWT secret: read from `file`, or made and written there (readable by its
 * owner only) the first time. Kept across restarts so a token printed yesterday still works.
 */
export function developmentSecret(file: string = DEV_SECRET_FILE): string {
  const path = resolve(file);
  try {
    const kept = readFileSync(path, 'utf8').trim();
    if (kept.length >= MIN_SECRET_LENGTH) return kept;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(path, `${secret}\n`, { mode: 0o600 });
  return secret;
}
