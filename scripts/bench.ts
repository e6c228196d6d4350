/** npm run bench: times the attention layer on the active backend(s) and prints a Markdown table; logic in scripts/app/bench/. */
import {runMain} from './app/cli/arguments';
import {BENCH_USAGE, parseBenchArgs} from './app/bench/options';
import {formatReport, writeJson} from './app/bench/report';
import {runBench} from './app/bench/run_bench';
import './app/tfjs_attention_node';  // registers the wasm kernels and file IO, as an app would

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
