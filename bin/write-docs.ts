import { readFileSync, writeFileSync } from 'node:fs';
import { withConfigurationTable } from '../config/readme-table';

// `npm run docs:config`: rewrites the configuration table of docs/configuration.md from the settings tables.
const path = 'docs/configuration.md';
const before = readFileSync(path, 'utf8');
const after = withConfigurationTable(before);
writeFileSync(path, after);
console.log(after === before ? `${path}: configuration table already current` : `${path}: configuration table updated`);
