/**
 * npm run bench: times the attention layer on the active backend(s) and prints a Markdown table; logic in scripts/app/bench/.
 * It runs as `node --single-threaded-gc`: with V8's concurrent collector, the garbage of the calls timed before (the
 * matMul's 4 MiB read-back, the naive version's tensors) was collected on the second core while a two-thread call ran.
 * Measured at (1, 1024, 64, 1) on wasm, the layer, the naive version and the matMul interleaved (31 calls each, medians):
 * the two-thread forward took 5.02 ms in one run and 3.67 in another with the concurrent collector, 3.70 with this flag;
 * one thread 6.2-6.4 ms either way. A full gc() before each call made it worse (5.17 ms: V8 sweeps after gc() returns).
 */
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
