import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES } from '../../src/errors';

const ROW = /^\| `([a-z_]+)` \| (\d{3}) \| `([^`]*)` \| [^|]+ \| [^|]+ \|$/;

/** code → "status message" for every row of the table in docs/errors.md. */
function documentedCodes(): Record<string, string> {
  const rows: Record<string, string> = {};
  for (const line of readFileSync(join(__dirname, '../../docs/errors.md'), 'utf8').split('\n')) {
    const match = ROW.exec(line);
    if (match) rows[match[1]!] = `${match[2]} ${match[3]}`;
  }
  return rows;
}

test('docs/errors.md lists every error code a client can get, with its status and message, and no other', () => {
  const registered = Object.fromEntries(Object.entries(ERROR_CODES).map(([code, { status, message }]) => [code, `${status} ${message}`]));
  expect(documentedCodes()).toEqual(registered);
});
