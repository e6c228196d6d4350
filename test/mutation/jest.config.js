/**
 * Jest's configuration for mutation runs (stryker.config.mjs): the project's jest.config.js restricted to the test
 * files of one module (test/mutation/modules.js, chosen by the STRYKER_MODULE environment variable), and without
 * ts-jest's type check, which Stryker's TypeScript checker does once per mutant instead. The globalSetup stays: it
 * builds dist/ in Stryker's sandbox for the few tests that load it in a child process (they cover no mutant, so
 * Stryker runs them only in its initial run).
 */
const path = require('path');
const base = require('../../jest.config');
const modules = require('./modules');

const name = process.env.STRYKER_MODULE;
if (!(name in modules)) {
  throw new Error(`test/mutation/jest.config.js: STRYKER_MODULE must be one of ${Object.keys(modules).join(', ')}. ` +
                  `Received: STRYKER_MODULE=${JSON.stringify(name)}`);
}
const root = path.resolve(__dirname, '..', '..');

module.exports = {
  ...base,
  rootDir: root,
  testMatch: modules[name].tests.map(file => path.join(root, file)),
  transform: {'^.+\\.ts$': ['ts-jest', {tsconfig: 'tsconfig.json', diagnostics: false}]},
};
