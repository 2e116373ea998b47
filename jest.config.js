/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  // ts-jest transpiles only (isolatedModules in tsconfig.json); `npm run typecheck` checks types.
  transform: { '^.+\\.ts$': 'ts-jest' },
  testTimeout: 20000,
};
