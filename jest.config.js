/** Jest runs the TypeScript tests under test/ through ts-jest. */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*_test.ts'],
  testTimeout: 120000,
  setupFiles: ['<rootDir>/test/setup_tfjs.ts'],
  // Builds dist/ once for the tests that load the package in child Node processes.
  globalSetup: '<rootDir>/test/global_setup.js',
  transform: {'^.+\\.ts$': ['ts-jest', {tsconfig: 'tsconfig.json', diagnostics: {warnOnly: false}}]},
};
