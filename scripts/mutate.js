#!/usr/bin/env node
/**
 * `npm run mutate [-- <module> ...]`: mutation testing of the library's core with StrykerJS. Runs Stryker
 * (stryker.config.mjs) once per module of test/mutation/modules.js, each with only that module's test files, one
 * after another, then prints the mutation score of each file from the JSON reports (reports/mutation/<module>.json;
 * Stryker's clear-text report, with every surviving mutant, is in its own output above). With no module named it
 * runs them all. Runs are incremental: mutants whose code and covering tests are unchanged since the module's last run
 * (reports/mutation/<module>-incremental.json) keep their result; `--force` tests them all again.
 * STRYKER_CONCURRENCY sets Stryker's test-runner processes (default 1: this is a 2-core machine).
 *
 * Score = (killed + timed out) / (killed + timed out + survived + no coverage); mutants the TypeScript checker
 * rejects (compile errors), mutants that crash the test run (runtime errors) and static mutants left out (ignored) are
 * not counted, as in Stryker's own score. Survivors judged equivalent are listed, with
 * the reason, in test/mutation/equivalent_mutants.md.
 */
const {spawnSync} = require('child_process');
const fs = require('fs');
const path = require('path');
const modules = require('../test/mutation/modules');

const ROOT = path.resolve(__dirname, '..');

/** Counts of each mutant status per file of a Stryker JSON report. */
function fileScores(report) {
  return Object.entries(report.files).map(([file, {mutants}]) => {
    const count = status => mutants.filter(m => m.status === status).length;
    const detected = count('Killed') + count('Timeout');
    const undetected = count('Survived') + count('NoCoverage');
    return {
      file: path.relative(ROOT, path.resolve(ROOT, file)),
      killed: count('Killed'), timeout: count('Timeout'), survived: count('Survived'), noCoverage: count('NoCoverage'),
      errors: count('CompileError') + count('RuntimeError'), ignored: count('Ignored'),
      score: detected + undetected === 0 ? NaN : 100 * detected / (detected + undetected),
    };
  });
}

function main(argv) {
  // --force: test every mutant again, ignoring the previous run's results (Stryker's incremental mode).
  const force = argv.includes('--force');
  argv = argv.filter(arg => arg !== '--force');
  const names = argv.length > 0 ? argv : Object.keys(modules);
  for (const name of names) {
    if (!(name in modules)) {
      console.error(`mutate: Received an invalid value for argument \`module\`, expected one of ` +
                    `${Object.keys(modules).join(', ')}. Received: module=${JSON.stringify(name)}`);
      return 2;
    }
  }
  const rows = [];
  let status = 0;
  for (const name of names) {
    console.log(`\nmutate: ${name}: ${modules[name].mutate.join(', ')} against ${modules[name].tests.join(', ')}`);
    const reportFile = path.join(ROOT, 'reports', 'mutation', `${name}.json`);
    fs.rmSync(reportFile, {force: true});  // an old report must not pass for this run's
    const started = Date.now();
    const result = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', '@stryker-mutator', 'core', 'bin', 'stryker.js'), 'run', 'stryker.config.mjs', ...(force ? ['--force'] : [])],
                             {cwd: ROOT, stdio: 'inherit', env: {...process.env, STRYKER_MODULE: name}});
    const minutes = (Date.now() - started) / 60000;
    if (result.status !== 0 || !fs.existsSync(reportFile)) {
      console.error(`mutate: ${name}: Stryker failed (status ${result.status}${result.error ? `, ${result.error}` : ''})`);
      status = 1;
      continue;
    }
    for (const row of fileScores(JSON.parse(fs.readFileSync(reportFile, 'utf8')))) rows.push({module: name, minutes, ...row});
  }
  console.log('\nmutate: mutation score per file (killed + timed out of all counted mutants)');
  console.log('| file | score | killed | timed out | survived | no coverage | errors | ignored | module run (min) |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.file} | ${r.score.toFixed(1)}% | ${r.killed} | ${r.timeout} | ${r.survived} | ${r.noCoverage} | ` +
                `${r.errors} | ${r.ignored} | ${r.minutes.toFixed(1)} |`);
  }
  return status;
}

process.exitCode = main(process.argv.slice(2));
