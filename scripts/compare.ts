/** npm run compare: this project, PyTorch and onnxruntime-web side by side on the bench's grid; logic in scripts/compare/. */
import * as fs from 'fs';
import * as path from 'path';
import {runMain} from './app/cli/arguments';
import {COMPARE_USAGE, formatCompareTable, gridOf, parseCompareArgs} from './compare/compare_report';
import {runCompare} from './compare/run_compare';
import {TWO_THREAD_MIN_FLOPS} from './app/tfjs_attention_node';  // which also registers the wasm kernels, as an app would

async function main(): Promise<void> {
  const options = parseCompareArgs(process.argv.slice(2), process.env);
  if (options.help) {
    console.log(COMPARE_USAGE);
    return;
  }
  const results = await runCompare(options, line => process.stderr.write(`${line}\n`));
  const versions = Object.entries(results.versions).map(([runtime, version]) => `${runtime} ${version}`).join('; ');
  console.log([`Medians over ${options.rounds} rounds of each runtime's per-round median (${options.reps} timed calls per round, ` +
      `${options.largeReps} at T = 4096, after ${options.warmup} warm-up calls, 1 at T = 4096); ms (GFLOP/s). ` +
      `${results.cpus}; ${versions}; ${results.date}.`, '',
  formatCompareTable(results.merged, gridOf(options.lengths)), '',
  `tfjs-attention on 2 threads only where the layer takes its second thread (the fused calls from ${TWO_THREAD_MIN_FLOPS / 1e6} MFLOP); ` +
      'onnxruntime-web forward only.'].join('\n'));
  if (options.json != null) {
    fs.mkdirSync(path.dirname(path.resolve(options.json)), {recursive: true});
    fs.writeFileSync(options.json, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`\nWrote ${options.json}`);
  }
}

runMain(main, COMPARE_USAGE);
