import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configurationTable, withConfigurationTable } from '../../config/readme-table';
import { SETTINGS } from '../../config';

const page = readFileSync(join(__dirname, '../../docs/configuration.md'), 'utf8');

test("docs/configuration.md's table is the one the settings tables make (npm run docs:config)", () => {
  expect(withConfigurationTable(page)).toBe(page);
});

test('the table has one row per setting, each naming its variable', () => {
  const rows = configurationTable().split('\n').slice(2);
  expect(rows.map((row) => /^\| `([A-Z_]+)` \|/.exec(row)?.[1])).toEqual(SETTINGS.map((setting) => setting.env));
});
