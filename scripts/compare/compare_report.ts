/** `npm run compare`'s pure parts: the grid, the command line, the medians over rounds and the table. */
import {parseArgs} from 'util';
import {parseIntegerOption, UsageError} from '../app/cli/arguments';
import {AttentionSize, forwardFlops, trainingFlops} from '../app/bench/flops';
import type {BenchResults} from '../app/bench/run_bench';

/** The grid (B, T, d, H), self-attention with dk = dv = d / H: the bench's points up to T = 4096. */
export const COMPARE_GRID: AttentionSize[] = [
  {batch: 32, length: 16, dModel: 64, heads: 1},
  {batch: 8, length: 128, dModel: 64, heads: 4},
  {batch: 1, length: 1024, dModel: 64, heads: 1},
  {batch: 1, length: 4096, dModel: 64, heads: 1},
];

export type Runtime = 'tfjs-attention'|'onnxruntime-web'|'pytorch';
export const RUNTIMES: Runtime[] = ['tfjs-attention', 'onnxruntime-web', 'pytorch'];
export type Pass = 'forward'|'forward+backward';

/** One runtime's median for one (point, pass, threads) in one round. */
export interface Measurement {
  runtime: Runtime;
  threads: number;
  pass: Pass;
  batch: number;
  length: number;
  dModel: number;
  heads: number;
  medianMs: number;
}

/** The medians over the rounds, with GFLOP/s by the bench's FLOP count. */
export interface MergedMeasurement extends Measurement {
  /** This measurement's median from each round, in round order. */
  roundMs: number[];
  gflops: number;
}

export interface CompareOptions {
  rounds: number;
  /** Timed calls per round and row for T < 4096, and for T >= 4096. */
  reps: number;
  largeReps: number;
  /** Untimed calls per round and row before timing (at most 1 for T >= 4096). */
  warmup: number;
  lengths: number[];
  runtimes: Runtime[];
  /** The Python with torch, onnx and onnxscript. */
  python: string;
  /** Where onnxruntime-web is installed (an npm prefix, or the package folder). */
  ort: string;
  json: string|null;
  help: boolean;
}

export const COMPARE_USAGE = `Usage: npm run compare -- [options]

Times the layer's self-attention on the issue's grid, (B, T, d, H) = (32, 16, 64, 1), (8, 128, 64, 4),
(1, 1024, 64, 1), (1, 4096, 64, 1), in three runtimes, by rounds (each round runs every runtime once,
in turn, after an untimed warm-up of each), and prints the medians over the rounds:
  tfjs-attention   this project on wasm (npm run bench's default rows, in this process): forward and
                   forward+backward, on one thread and, where the layer takes it, two;
  pytorch          scripts/compare/compare_attention.py: nn.Linear projections and
                   F.scaled_dot_product_attention, forward and forward+backward, 1 and 2 threads;
  onnxruntime-web  scripts/compare/compare_onnxruntime.mjs: the same module exported to ONNX by PyTorch,
                   on onnxruntime-web's wasm backend in Node, forward, 1 and 2 threads.

Options:
  --rounds <n>            rounds (default: 3)
  --reps <n>              timed calls per round and row for T < 4096 (default: 5)
  --large-reps <n>        timed calls per round and row for T >= 4096 (default: 2)
  --warmup <n>            untimed calls per round and row before timing, 1 at most for T >= 4096 (default: 3)
  --lengths <T>[,<T>]     only the grid's points of these lengths
  --runtime <name>[,...]  ${RUNTIMES.join(', ')} (default: all three)
  --python <path>         Python with torch, onnx and onnxscript (default: $COMPARE_PYTHON or /tmp/torchenv/bin/python)
  --ort <dir>             onnxruntime-web's npm prefix (default: $ORT_WEB_DIR or /tmp/ortweb;
                          npm install --prefix /tmp/ortweb onnxruntime-web)
  --json <file>           also write every round's medians to this JSON file
  --help                  show this help`;

function list(values: string[]|undefined): string[] {
  return (values ?? []).flatMap(v => v.split(',')).map(v => v.trim()).filter(v => v !== '');
}

/** Parses the arguments after the script's name; `env` gives the defaults of --python and --ort. */
export function parseCompareArgs(argv: string[], env: {[name: string]: string|undefined} = {}): CompareOptions {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: false, strict: true,
      options: {
        'rounds': {type: 'string'}, 'reps': {type: 'string'}, 'large-reps': {type: 'string'}, 'warmup': {type: 'string'},
        'lengths': {type: 'string', multiple: true}, 'runtime': {type: 'string', multiple: true},
        'python': {type: 'string'}, 'ort': {type: 'string'}, 'json': {type: 'string'}, 'help': {type: 'boolean'},
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const values = parsed.values as {[name: string]: string|string[]|boolean|undefined};
  const integer = (name: string, fallback: number, min: number) =>
    (values[name] == null ? fallback : parseIntegerOption(name, values[name] as string, {min}));
  const runtimes = list(values.runtime as string[]|undefined);
  for (const name of runtimes) {
    if (!RUNTIMES.includes(name as Runtime)) {
      throw new UsageError(`Received an invalid value for option \`--runtime\`, expected one of ${RUNTIMES.join(', ')}. Received: --runtime ${name}`);
    }
  }
  const lengths = list(values.lengths as string[]|undefined).map(l => parseIntegerOption('lengths', l, {min: 1}));
  for (const length of lengths) {
    if (!COMPARE_GRID.some(p => p.length === length)) {
      throw new UsageError(`Received an invalid value for option \`--lengths\`, expected lengths of the grid ` +
          `(${COMPARE_GRID.map(p => p.length).join(', ')}). Received: --lengths ${length}`);
    }
  }
  return {
    rounds: integer('rounds', 3, 1), reps: integer('reps', 5, 1), largeReps: integer('large-reps', 2, 1),
    warmup: integer('warmup', 3, 0), lengths,
    runtimes: runtimes.length === 0 ? [...RUNTIMES] : RUNTIMES.filter(r => runtimes.includes(r)),
    python: (values.python as string|undefined) ?? env.COMPARE_PYTHON ?? '/tmp/torchenv/bin/python',
    ort: (values.ort as string|undefined) ?? env.ORT_WEB_DIR ?? '/tmp/ortweb',
    json: (values.json as string|undefined) ?? null, help: values.help === true,
  };
}

/** The grid's points of `lengths` (all when empty). */
export function gridOf(lengths: number[]): AttentionSize[] {
  return COMPARE_GRID.filter(p => lengths.length === 0 || lengths.includes(p.length));
}

/** A point as compare_attention.py's --points reads it: BxTxdxH. */
export function pointArgument(points: AttentionSize[]): string {
  return points.map(p => `${p.batch}x${p.length}x${p.dModel}x${p.heads}`).join(',');
}

/**
 * This project's measurements from one `runBench` run of the default rows: every row on one
 * thread (its one-thread twin where it ran on two), and on two where the layer takes them.
 */
export function projectMeasurements(results: BenchResults): Measurement[] {
  const measurements: Measurement[] = [];
  for (const row of results.backends.flatMap(b => b.rows)) {
    if (row.status !== 'ok' || !row.isDefault || row.mask != null) continue;
    const base = {runtime: 'tfjs-attention' as const, pass: row.pass, batch: row.batch, length: row.length, dModel: row.dModel, heads: row.heads};
    if (row.threads === 2) {
      measurements.push({...base, threads: 1, medianMs: row.oneThreadMedianMs!}, {...base, threads: 2, medianMs: row.medianMs!});
    } else {
      measurements.push({...base, threads: 1, medianMs: row.medianMs!});
    }
  }
  return measurements;
}

function keyOf(m: Measurement): string {
  return `${m.runtime}|${m.threads}|${m.pass}|${m.batch},${m.length},${m.dModel},${m.heads}`;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The median over the rounds of each (runtime, threads, pass, point), in the order first seen. */
export function mergeRounds(rounds: Measurement[][]): MergedMeasurement[] {
  const merged = new Map<string, MergedMeasurement>();
  for (const round of rounds) {
    for (const m of round) {
      const key = keyOf(m);
      const entry = merged.get(key) ?? {...m, roundMs: [], gflops: NaN};
      entry.roundMs.push(m.medianMs);
      merged.set(key, entry);
    }
  }
  return [...merged.values()].map(m => {
    const medianMs = median(m.roundMs);
    const flops = m.pass === 'forward' ? forwardFlops(m) : trainingFlops(m);
    return {...m, medianMs, gflops: flops / medianMs / 1e6};
  });
}

/** The table's columns: each runtime on one and two threads. */
const COLUMNS: Array<{runtime: Runtime; threads: number; title: string}> = RUNTIMES.flatMap(runtime => [1, 2].map(threads => ({
  runtime, threads, title: `${runtime === 'tfjs-attention' ? 'tfjs-attention wasm' : runtime === 'onnxruntime-web' ? 'onnxruntime-web wasm' : 'PyTorch CPU'}, ${threads} thread${threads > 1 ? 's' : ''}`,
})));

/**
 * The Markdown table: one line per point and pass, one column per runtime and thread count,
 * each cell "median ms (GFLOP/s)"; '–' where that runtime has no such measurement.
 */
export function formatCompareTable(merged: MergedMeasurement[], points: AttentionSize[] = COMPARE_GRID): string {
  const lines = [`| B, T, d, H | pass | ${COLUMNS.map(c => c.title).join(' | ')} |`,
    `| --- | --- | ${COLUMNS.map(() => '---:').join(' | ')} |`];
  for (const point of points) {
    for (const pass of ['forward', 'forward+backward'] as Pass[]) {
      const cells = COLUMNS.map(({runtime, threads}) => {
        const m = merged.find(x => x.runtime === runtime && x.threads === threads && x.pass === pass &&
            x.batch === point.batch && x.length === point.length && x.dModel === point.dModel && x.heads === point.heads);
        return m == null ? '–' : `${m.medianMs.toFixed(2)} (${m.gflops.toFixed(1)})`;
      });
      if (cells.every(c => c === '–')) continue;
      lines.push(`| ${point.batch}, ${point.length}, ${point.dModel}, ${point.heads} | ${pass} | ${cells.join(' | ')} |`);
    }
  }
  return lines.join('\n');
}
