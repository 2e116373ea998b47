import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configurationTable, withConfigurationTable } from '../../config/readme-table';
import { SETTINGS } from '../../config';

const readme = readFileSync(join(__dirname, '../../README.md'), 'utf8');

test("the README's configuration table is the one the settings tables make (npm run docs:config)", () => {
  expect(withConfigurationTable(readme)).toBe(readme);
});

test('the table has one row per setting, each naming its variable', () => {
  const rows = configurationTable().split('\n').slice(2);
  expect(rows.map((row) => /^\| `([A-Z_]+)` \|/.exec(row)?.[1])).toEqual(SETTINGS.map((setting) => setting.env));
});
