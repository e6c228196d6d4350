/** npm run compare's pure parts: its grid, command line, medians over rounds and table (the timing itself is never a test). */
import * as fs from 'fs';
import * as path from 'path';
import {forwardFlops, trainingFlops} from '../scripts/app/bench/flops';
import type {BenchResults, BenchRow} from '../scripts/app/bench/run_bench';
import {FULL_GRID} from '../scripts/app/bench/run_bench';
import {UsageError} from '../scripts/app/cli/arguments';
import {COMPARE_GRID, formatCompareTable, gridOf, Measurement, mergeRounds, parseCompareArgs, pointArgument, projectMeasurements} from '../scripts/compare/compare_report';

describe('the grid', () => {
  it("is the bench's grid up to T = 4096, and compare_attention.py's default", () => {
    const bench = FULL_GRID.filter(p => p.mask == null && p.length <= 4096).map(p => [p.batch, p.length, p.dModel, p.heads]);
    expect(COMPARE_GRID.map(p => [p.batch, p.length, p.dModel, p.heads])).toEqual(bench);
    const python = fs.readFileSync(path.join(__dirname, '..', 'scripts', 'compare', 'compare_attention.py'), 'utf8');
    expect(python).toContain('GRID = [(32, 16, 64, 1), (8, 128, 64, 4), (1, 1024, 64, 1), (1, 4096, 64, 1)]');
    expect(pointArgument(COMPARE_GRID)).toBe('32x16x64x1,8x128x64x4,1x1024x64x1,1x4096x64x1');
    expect(gridOf([16, 4096]).map(p => p.length)).toEqual([16, 4096]);
    expect(gridOf([])).toEqual(COMPARE_GRID);
  });
});

describe('the command line', () => {
  it('has defaults, and takes --python and --ort from the environment when not given', () => {
    expect(parseCompareArgs([])).toMatchObject({rounds: 3, reps: 5, largeReps: 2, warmup: 3, lengths: [],
      runtimes: ['tfjs-attention', 'onnxruntime-web', 'pytorch'], python: '/tmp/torchenv/bin/python', ort: '/tmp/ortweb', json: null});
    const env = {COMPARE_PYTHON: '/venv/bin/python', ORT_WEB_DIR: '/prefix'};
    expect(parseCompareArgs([], env)).toMatchObject({python: '/venv/bin/python', ort: '/prefix'});
    expect(parseCompareArgs(['--python', 'py', '--ort', 'o'], env)).toMatchObject({python: 'py', ort: 'o'});
  });

  it('reads counts, lengths and runtimes (comma-separated or repeated), in the order of the table', () => {
    const options = parseCompareArgs(['--rounds', '5', '--reps', '7', '--large-reps', '1', '--warmup', '0', '--lengths', '16,4096',
      '--runtime', 'pytorch', '--runtime', 'tfjs-attention', '--json', 'out.json']);
    expect(options).toMatchObject({rounds: 5, reps: 7, largeReps: 1, warmup: 0, lengths: [16, 4096],
      runtimes: ['tfjs-attention', 'pytorch'], json: 'out.json'});
  });

  it('rejects lengths off the grid, unknown runtimes, bad counts and unknown options', () => {
    expect(() => parseCompareArgs(['--lengths', '512'])).toThrow(/expected lengths of the grid \(16, 128, 1024, 4096\)\. Received: --lengths 512/);
    expect(() => parseCompareArgs(['--runtime', 'tensorflow'])).toThrow(/Received: --runtime tensorflow/);
    expect(() => parseCompareArgs(['--rounds', '0'])).toThrow(/`--rounds`, expected an integer >= 1/);
    expect(() => parseCompareArgs(['--fast'])).toThrow(UsageError);
  });
});

describe('the measurements', () => {
  const m = (runtime: Measurement['runtime'], threads: number, pass: Measurement['pass'], length: number, medianMs: number): Measurement =>
    ({runtime, threads, pass, batch: 1, length, dModel: 64, heads: 1, medianMs});

  it('take the median over the rounds, with GFLOP/s by the bench FLOP count', () => {
    const merged = mergeRounds([
      [m('pytorch', 1, 'forward', 1024, 4), m('pytorch', 1, 'forward+backward', 1024, 12)],
      [m('pytorch', 1, 'forward', 1024, 2), m('pytorch', 1, 'forward+backward', 1024, 10)],
      [m('pytorch', 1, 'forward', 1024, 3), m('pytorch', 1, 'forward+backward', 1024, 30)],
    ]);
    expect(merged.map(x => [x.pass, x.roundMs, x.medianMs])).toEqual([['forward', [4, 2, 3], 3], ['forward+backward', [12, 10, 30], 12]]);
    const size = {batch: 1, length: 1024, dModel: 64, heads: 1};
    expect(merged[0].gflops).toBeCloseTo(forwardFlops(size) / 3 / 1e6, 9);
    expect(merged[1].gflops).toBeCloseTo(trainingFlops(size) / 12 / 1e6, 9);
  });

  it("of this project are the bench's default rows: on one thread, and on two where the layer took them", () => {
    const row = (pass: BenchRow['pass'], threads: 1|2, medianMs: number, oneThreadMedianMs: number|null, extra: Partial<BenchRow> = {}) =>
      ({batch: 1, length: 1024, dModel: 64, heads: 1, pass, threads, medianMs, oneThreadMedianMs, status: 'ok', isDefault: true,
        mask: null, ...extra}) as unknown as BenchRow;
    const results = {backends: [{rows: [
      row('forward', 2, 5, 8), row('forward+backward', 1, 30, null),
      row('forward', 1, 9, null, {isDefault: false}), row('forward', 1, 9, null, {status: 'refused'}),
    ]}]} as unknown as BenchResults;
    expect(projectMeasurements(results).map(x => [x.runtime, x.pass, x.threads, x.medianMs])).toEqual([
      ['tfjs-attention', 'forward', 1, 8], ['tfjs-attention', 'forward', 2, 5], ['tfjs-attention', 'forward+backward', 1, 30]]);
  });

  it('make one line per point and pass, a column per runtime and thread count, "–" where none ran', () => {
    const merged = mergeRounds([[m('tfjs-attention', 1, 'forward', 1024, 10), m('onnxruntime-web', 2, 'forward', 1024, 5),
      m('pytorch', 2, 'forward+backward', 1024, 20)]]);
    const table = formatCompareTable(merged).split('\n');
    expect(table[0]).toBe('| B, T, d, H | pass | tfjs-attention wasm, 1 thread | tfjs-attention wasm, 2 threads | ' +
        'onnxruntime-web wasm, 1 thread | onnxruntime-web wasm, 2 threads | PyTorch CPU, 1 thread | PyTorch CPU, 2 threads |');
    const size = {batch: 1, length: 1024, dModel: 64, heads: 1};
    const gflops = (flops: number, ms: number) => (flops / ms / 1e6).toFixed(1);
    expect(table.slice(2)).toEqual([  // the points where nothing ran are left out
      `| 1, 1024, 64, 1 | forward | 10.00 (${gflops(forwardFlops(size), 10)}) | – | – | 5.00 (${gflops(forwardFlops(size), 5)}) | – | – |`,
      `| 1, 1024, 64, 1 | forward+backward | – | – | – | – | – | 20.00 (${gflops(trainingFlops(size), 20)}) |`,
    ]);
  });
});
