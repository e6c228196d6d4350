/** npm run bench: times the attention layer on the active backend(s) and prints a Markdown table; logic in src/bench/. */
import {runMain} from '../src/cli/arguments';
import {BENCH_USAGE, parseBenchArgs} from '../src/bench/options';
import {formatReport, writeJson} from '../src/bench/report';
import {runBench} from '../src/bench/run_bench';
import '../src';  // registers the wasm kernels and file IO, as an app would

async function main(): Promise<void> {
  const options = parseBenchArgs(process.argv.slice(2));
  if (options.help) {
    console.log(BENCH_USAGE);
    return;
  }
  const results = await runBench({...options, log: line => process.stderr.write(`${line}\n`)});
  console.log(formatReport(results));
  if (options.json != null) console.log(`\nWrote ${writeJson(options.json, results)}`);
}

runMain(main, BENCH_USAGE);
