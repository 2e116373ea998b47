import type { Config } from 'jest';

// Jest reads this file through ts-node (a development dependency) on Node 20.
const config: Config = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  // ts-jest transpiles only (isolatedModules in tsconfig.json); `npm run typecheck` checks types.
  transform: { '^.+\\.ts$': 'ts-jest' },
  testTimeout: 20000,
};

export default config;
