/** `npm run compare`: this project, PyTorch and onnxruntime-web on the same grid, by rounds, in one run. */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {GridPoint, runBench} from '../app/bench/run_bench';
import {ValueError} from '../app/tfjs_attention_node';
import {CompareOptions, gridOf, Measurement, mergeRounds, MergedMeasurement, pointArgument, projectMeasurements, Runtime} from './compare_report';

export interface CompareResults {
  date: string;
  node: string;
  cpus: string;
  options: Omit<CompareOptions, 'help'>;
  versions: {[runtime: string]: string};
  /** Each round's medians, all runtimes. */
  rounds: Measurement[][];
  /** The medians over the rounds. */
  merged: MergedMeasurement[];
}

/** Runs a child process to the end; its stdout lines go to `log`, and a failure is an error with its stderr. */
function run(command: string, args: string[], log: (line: string) => void): void {
  const result = spawnSync(command, args, {encoding: 'utf8', maxBuffer: 64 * 2 ** 20});
  if (result.error != null || result.status !== 0) {
    throw new ValueError(`\`${command} ${args.join(' ')}\` failed (exit ${result.status}): ` +
        `${result.error?.message ?? result.stderr.trim().split('\n').slice(-5).join('\n')}`);
  }
  for (const line of result.stdout.trim().split('\n')) if (line !== '') log(line);
}

interface ChildResults {
  version: string;
  rows: Measurement[];
}

function readChild(file: string, runtime: Runtime): ChildResults {
  const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as {version: string; rows: Array<Omit<Measurement, 'runtime'>>};
  return {version: parsed.version, rows: parsed.rows.map(r => ({runtime, threads: r.threads, pass: r.pass, batch: r.batch,
    length: r.length, dModel: r.dModel, heads: r.heads, medianMs: r.medianMs}))};
}

/** Fails before any timing when PyTorch (and its ONNX exporter) or onnxruntime-web is missing, saying how to install it. */
function checkTools(options: CompareOptions): void {
  if (options.runtimes.includes('onnxruntime-web')) {
    // An npm prefix holding the package, or the package's own folder (as compare_onnxruntime.mjs takes them).
    const isPackage = (file: string) => fs.existsSync(file) && (JSON.parse(fs.readFileSync(file, 'utf8')) as {name?: string}).name === 'onnxruntime-web';
    if (!isPackage(path.join(options.ort, 'node_modules', 'onnxruntime-web', 'package.json')) && !isPackage(path.join(options.ort, 'package.json'))) {
      throw new ValueError(`onnxruntime-web is not installed in ${options.ort}: run \`npm install --prefix ${options.ort} onnxruntime-web\`, ` +
          `or pass its prefix with --ort (or ORT_WEB_DIR). Received: --ort ${options.ort}`);
    }
  }
  if (options.runtimes.includes('pytorch') || options.runtimes.includes('onnxruntime-web')) {
    const modules = options.runtimes.includes('onnxruntime-web') ? 'torch, onnx, onnxscript' : 'torch';
    const result = spawnSync(options.python, ['-c', `import ${modules}`], {encoding: 'utf8'});
    if (result.error != null || result.status !== 0) {
      throw new ValueError(`${options.python} cannot import ${modules}: create a venv with them ` +
          `(python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install ${modules.replace(/,/g, '')}) ` +
          `and pass its python with --python (or COMPARE_PYTHON). Received: --python ${options.python}`);
    }
  }
}

/**
 * Exports the ONNX models once (PyTorch), warms this project up with one untimed pass, then
 * runs `options.rounds` rounds; each round times
 * this project (npm run bench's default rows on wasm, in this process), PyTorch (one process,
 * 1 and 2 threads interleaved call by call) and onnxruntime-web (one process per thread count),
 * in that order, each on the whole grid.
 */
export async function runCompare(options: CompareOptions, log: (line: string) => void): Promise<CompareResults> {
  const here = __dirname;
  const points = gridOf(options.lengths);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'compare-'));
  const versions: {[runtime: string]: string} = {};
  const timing = ['--reps', String(options.reps), '--large-reps', String(options.largeReps), '--warmup', String(options.warmup)];
  try {
    checkTools(options);
    const modelDir = path.join(work, 'onnx');
    if (options.runtimes.includes('onnxruntime-web')) {
      log(`exporting the ONNX models to ${modelDir}`);
      run(options.python, ['-W', 'ignore', path.join(here, 'compare_attention.py'), '--points', pointArgument(points),
        '--export-onnx', modelDir], () => {});
    }
    const grid: GridPoint[] = points.map(p => ({...p, paths: ['default']}));
    if (options.runtimes.includes('tfjs-attention')) {
      // Round 0, untimed: the first calls of a process run V8's baseline tier (onnxruntime-web's
      // script warms up the same way, for 3 s; PyTorch's kernels are native).
      log('tfjs-attention: warming up (one untimed pass over the grid)');
      await runBench({backends: ['wasm'], grid, reps: 1, largeReps: 1, warmup: options.warmup});
    }
    const rounds: Measurement[][] = [];
    for (let round = 1; round <= options.rounds; round++) {
      const measurements: Measurement[] = [];
      const roundLog = (line: string) => log(`round ${round}/${options.rounds}: ${line}`);
      if (options.runtimes.includes('tfjs-attention')) {
        const results = await runBench({backends: ['wasm'], grid, reps: options.reps, largeReps: options.largeReps,
          warmup: options.warmup, log: line => roundLog(`tfjs-attention ${line}`)});
        versions['tfjs-attention'] = `Node ${results.node}, tfjs-backend-wasm`;
        measurements.push(...projectMeasurements(results));
      }
      if (options.runtimes.includes('pytorch')) {
        const file = path.join(work, `pytorch_${round}.json`);
        run(options.python, ['-W', 'ignore', path.join(here, 'compare_attention.py'), '--points', pointArgument(points),
          '--threads', '1,2', ...timing, '--json', file], roundLog);
        const child = readChild(file, 'pytorch');
        versions.pytorch = child.version;
        measurements.push(...child.rows);
      }
      if (options.runtimes.includes('onnxruntime-web')) {
        for (const threads of [1, 2]) {
          const file = path.join(work, `onnxruntime_${threads}_${round}.json`);
          run(process.execPath, [path.join(here, 'compare_onnxruntime.mjs'), '--models', modelDir, '--threads', String(threads),
            ...timing, '--ort', options.ort, '--json', file], roundLog);
          const child = readChild(file, 'onnxruntime-web');
          versions['onnxruntime-web'] = child.version;
          measurements.push(...child.rows);
        }
      }
      rounds.push(measurements);
    }
    const {help: _help, ...shown} = options;
    return {date: new Date().toISOString(), node: process.version, cpus: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown'}`,
      options: shown, versions, rounds, merged: mergeRounds(rounds)};
  } finally {
    fs.rmSync(work, {recursive: true, force: true});
  }
}
