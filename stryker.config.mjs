// StrykerJS configuration for `npm run mutate` (scripts/mutate.js runs it once per module of
// test/mutation/modules.js, naming the module in STRYKER_MODULE). Not part of .ci/run: see the README.
import {createRequire} from 'module';

const require = createRequire(import.meta.url);
const modules = require('./test/mutation/modules.js');
const name = process.env.STRYKER_MODULE;
if (!(name in modules)) {
  throw new Error(`stryker.config.mjs: STRYKER_MODULE must be one of ${Object.keys(modules).join(', ')}. ` +
                  `Received: STRYKER_MODULE=${JSON.stringify(name)}`);
}

export default {
  packageManager: 'npm',
  testRunner: 'jest',
  jest: {projectType: 'custom', configFile: 'test/mutation/jest.config.js', enableFindRelatedTests: false},
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  typescriptChecker: {prioritizePerformanceOverAccuracy: true},
  coverageAnalysis: 'perTest',
  mutate: modules[name].mutate,
  ignoreStatic: modules[name].ignoreStatic ?? false,
  concurrency: Number(process.env.STRYKER_CONCURRENCY ?? 1),
  // A mutant's run may take 1.5× its covering tests' time plus 20 s before it counts as timed out (a hang): enough
  // for a quiet 2-core machine; a hang is then 20 s, not a minute.
  timeoutMS: 20000,
  reporters: ['clear-text', 'progress-append-only', 'json'],
  clearTextReporter: {allowColor: false, logTests: false, reportScoreTable: true},
  jsonReporter: {fileName: `reports/mutation/${name}.json`},
  // A second run reuses the results of mutants whose code and covering tests did not change (a fresh clone has no
  // such file, so it runs every mutant).
  incremental: true,
  incrementalFile: `reports/mutation/${name}-incremental.json`,
  tempDirName: `.stryker-tmp-${name}`,  // one per module, so two modules can run at once
  // Not copied into the sandbox: the Python environment (its lib64 link breaks Stryker's copy) and the other
  // git-ignored installs and outputs, which no mutant's tests read.
  ignorePatterns: ['.venv-keras', '.tfjs-node', 'dist', 'reports', 'trained', 'coverage', 'test-artifacts', 'demo/build'],
  cleanTempDir: 'always',
  thresholds: {high: 90, low: 85, break: null},
};
