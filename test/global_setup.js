/**
 * Jest globalSetup: builds the package (`npm run build`, i.e. scripts/build_package.js: tsc into
 * dist/cjs, esbuild into dist/esm) so that tests which spawn child Node processes can load the built package the way an
 * app does. The build is skipped when dist/ is newer than every input (src/, package.json,
 * tsconfig*.json, scripts/build_package.js) and the previous build succeeded, as `make` would.
 *
 * The result is recorded in dist/build-result.json rather than thrown, so that a half-edited
 * file elsewhere in src/ does not stop every test file from running; test/package_test.ts
 * asserts that the build succeeded.
 */
const {spawnSync} = require('child_process');
const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');
const RECORD = path.join(ROOT, 'dist', 'build-result.json');

/** Newest modification time (ms) of the files under `entry` (a file or a folder). */
function newestMtime(entry) {
  if (!fs.existsSync(entry)) return 0;
  const stat = fs.statSync(entry);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return fs.readdirSync(entry).reduce((newest, name) => Math.max(newest, newestMtime(path.join(entry, name))), stat.mtimeMs);
}

function upToDate() {
  const outputs = ['cjs/index.js', 'cjs/node.js', 'esm/index.js', 'esm/node.js'].map(name => path.join(ROOT, 'dist', name));
  if (!fs.existsSync(RECORD) || !outputs.every(file => fs.existsSync(file))) return false;
  let previous;
  try {
    previous = JSON.parse(fs.readFileSync(RECORD, 'utf8'));
  } catch {
    return false;
  }
  if (previous.status !== 0) return false;
  const inputs = ['src', 'package.json', 'tsconfig.json', 'tsconfig.build.json', 'scripts/build_package.js']
      .map(name => path.join(ROOT, name));
  // Against the time the build started: a file saved while tsc ran counts as newer.
  return typeof previous.started === 'number' && Math.max(...inputs.map(newestMtime)) < previous.started;
}

module.exports = async function globalSetup() {
  if (upToDate()) return;
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const started = Date.now();
  const result = spawnSync(npm, ['run', 'build', '--silent'], {cwd: ROOT, encoding: 'utf8'});
  const record = {
    started,
    status: result.status,
    error: result.error ? String(result.error) : null,
    output: `${result.stdout ?? ''}${result.stderr ?? ''}`,
    ms: Date.now() - started,
  };
  fs.mkdirSync(path.dirname(RECORD), {recursive: true});
  fs.writeFileSync(RECORD, JSON.stringify(record, null, 2));
  if (record.status !== 0) {
    process.stderr.write(`\nglobalSetup: \`npm run build\` failed (status ${record.status}):\n${record.output}\n`);
  }
};
