/**
 * `npm run bench` (correctness only, never timing): the naive twin computes what the layer
 * computes, the FLOP formula, a --quick run's results, the standard path's refusal of huge
 * inputs, the JSON file and the command line. The wasm kernels of the fast paths are tested
 * in test/wasm_kernels_test.ts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {Worker} from 'worker_threads';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {dotProductAttention, scaledDotProductAttention, ValueError} from '../src';
import {checkStandardPathMemory, planAttention, STANDARD_PATH_MAX_SCORE_BYTES} from '../src/attention/attention_plan';
import {forwardFlops, matMulFlops, trainingFlops} from '../scripts/app/bench/flops';
import {timeInterleaved, vectorJacobianCall} from '../scripts/app/bench/measure';
import {naiveSelfAttention} from '../scripts/app/bench/naive_attention';
import {parseBenchArgs} from '../scripts/app/bench/options';
import {evaluateTargets, evaluateTrainingTargets, formatReport, formatTwoThreadTable, trainingRatios, writeJson} from '../scripts/app/bench/report';
import {BackendResults, BenchResults, BenchRow, MASK_GRID, MaskKind, QUICK_GRID, runBench, twoThreadParts} from '../scripts/app/bench/run_bench';
import {CEILING_CALL, startCeilingCalls, twoThreadCeilingOf} from '../scripts/app/bench/two_thread_ceiling';
import {UsageError} from '../scripts/app/cli/arguments';
import {maxAbsDiff, runTestsOn} from './helpers/tensors';

runTestsOn('wasm');

describe('the naive literal version', () => {
  const cases = [
    {name: 'one head', args: {numHeads: 1, keyDim: 8}, shape: [3, 5, 8]},
    {name: 'four heads', args: {numHeads: 4, keyDim: 4}, shape: [2, 7, 16]},
    {name: 'biases, an output projection and a custom scale', args: {numHeads: 2, keyDim: 3, valueDim: 5, useBias: true,
      outputDim: 6, scale: 0.3, biasInitializer: 'glorotUniform'}, shape: [2, 6, 10]},
  ];
  for (const backend of ['wasm', 'cpu']) {
    it.each(cases)(`matches the layer on ${backend}: $name`, async ({args, shape}) => {
      await tf.setBackend(backend);
      try {
        const before = tf.memory().numTensors;
        const layer = scaledDotProductAttention(args);
        const x = tf.randomNormal(shape, 0, 1, 'float32', 5);
        tf.tidy(() => {
          const fromLayer = layer.apply(x) as tf.Tensor;
          expect(maxAbsDiff(naiveSelfAttention(layer, x), fromLayer).diff).toBeLessThan(1e-5);
        });
        x.dispose();
        layer.dispose();
        expect(tf.memory().numTensors).toBe(before);
      } finally {
        await tf.setBackend('wasm');
      }
    });
  }

  it('refuses a causal layer, which it does not model', () => {
    const layer = scaledDotProductAttention({causal: true});
    const x = tf.zeros([1, 2, 4]);
    tf.tidy(() => {
      layer.apply(x);
    });
    expect(() => naiveSelfAttention(layer, x)).toThrow(/plain self-attention only/);
    x.dispose();
    layer.dispose();
  });
});

describe('FLOP counts', () => {
  it('counts projections and the two attention products (hand-computed)', () => {
    // B=2, T=3, d=4, H=2, dk=dv=2: projections 2·2·3·4·2·(2+2+2) = 576, attention
    // 2·2·2·3·3·(2+2) = 288; with outputDim 5 also 2·2·3·(2·2)·5 = 240.
    expect(forwardFlops({batch: 2, length: 3, dModel: 4, heads: 2})).toBe(864);
    expect(forwardFlops({batch: 2, length: 3, dModel: 4, heads: 2, outputDim: 5})).toBe(1104);
    // dk=3, dv=1: 2·1·2·4·1·(3+3+1) = 112 and 2·1·1·2·2·(3+1) = 32.
    expect(forwardFlops({batch: 1, length: 2, dModel: 4, heads: 1, keyDim: 3, valueDim: 1})).toBe(144);
    expect(trainingFlops({batch: 2, length: 3, dModel: 4, heads: 2})).toBe(3 * 864);
    expect(matMulFlops(1024)).toBe(2 ** 31);
  });
});

describe('npm run bench --quick', () => {
  let results: BenchResults;

  beforeAll(async () => {
    results = await runBench({backends: ['wasm'], quick: true, reps: 1});
  });

  it('times every row of the small grid on wasm, with finite numbers and no leaked tensor', () => {
    expect(results.backends.map(b => b.backend)).toEqual(['wasm']);
    const rows = results.backends[0].rows;
    const expectedRows = QUICK_GRID.reduce((n, p) => n + 2 * p.paths.length, 0);
    expect(rows).toHaveLength(expectedRows);
    for (const row of rows) {
      expect(row.status).toBe('ok');
      for (const value of [row.medianMs, row.gflops, row.naiveMedianMs, row.speedupVsNaive, row.matMulGflops, row.fractionOfMatMul]) {
        expect(Number.isFinite(value)).toBe(true);
        expect(value).toBeGreaterThan(0);
      }
      expect(row.peakBytes).toBeGreaterThan(0);
      expect(row.leakedTensors).toBe(0);
    }
    // On wasm the default path is the fused kernel, for training with its fused backward.
    expect(new Set(rows.map(r => r.ranPath))).toEqual(new Set(['fused', 'standard', 'memory-efficient']));
    expect(rows.filter(r => r.ranPath === 'fused').map(r => [r.path, r.pass])).toEqual([['default', 'forward'], ['default', 'forward+backward']]);
    expect(new Set(rows.map(r => r.pass))).toEqual(new Set(['forward', 'forward+backward']));
    // The memory-efficient forward row times the standard call in its rounds (issue 5's time target); no other row does.
    const withStandard = rows.filter(r => r.standardMedianMs != null);
    expect(withStandard.map(r => [r.ranPath, r.pass])).toEqual([['memory-efficient', 'forward']]);
    expect(withStandard[0].standardMedianMs).toBeGreaterThan(0);
  });

  it('prints a Markdown table and the targets, and writes valid JSON', () => {
    const report = formatReport(results);
    expect(report).toContain('| B, T, d, H | path | pass | median ms |');
    expect(report).toContain('5. no benchmarked path leaks tensors');
    const checks = evaluateTargets(results.backends[0]);
    expect(checks.map(c => c.target.slice(0, 2))).toEqual(['1.', '2.', '3.', '4.', '5.', '6.', '7.', '8.', '9.']);
    expect(checks[4].met).toBe(true);  // no leak; the others need the full grid
    // The quick grid has none of the rows targets 1-4 and 6-9 need (T = 16 and 128, >= 1024,
    // 8192, 16384): they are reported as not run, never as MISSED.
    expect(checks.map(c => c.status)).toEqual(['not run', 'not run', 'not run', 'not run', 'met', 'not run', 'not run', 'not run', 'not run']);
    expect(report).not.toContain('MISSED');
    expect(report.split('\n').filter(l => l.startsWith('- not run: '))).toHaveLength(8);

    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bench-')), 'out', 'results.json');
    writeJson(file, results);
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as BenchResults;
    expect(parsed.backends[0].rows).toHaveLength(results.backends[0].rows.length);
    expect(parsed.backends[0].rows[0].medianMs).toBe(results.backends[0].rows[0].medianMs);
    expect(parsed.backends[0].memoryEfficientThreshold).toBe(4096);  // wasm
  });
});

describe('timing calls interleaved', () => {
  it('runs each call alone until settleMs has passed, then the warm-up rounds and the timed rounds in order', () => {
    let clock = 0;  // a fake clock: each call takes 10 ms
    const now = jest.spyOn(performance, 'now').mockImplementation(() => clock);
    try {
      const ran: string[] = [];
      const call = (name: string) => () => {
        ran.push(name);
        clock += 10;
        return tf.scalar(0);
      };
      const times = timeInterleaved([call('a'), call('b')], 2, 1, 25);
      // 25 ms alone: three calls of 10 ms each; then one warm-up round and two timed ones.
      expect(ran.join('')).toBe('aaabbb' + 'ab' + 'abab');
      expect(times).toEqual([[10, 10], [10, 10]]);
      ran.length = 0;
      timeInterleaved([call('a'), call('b')], 1, 0);  // no settling, no warm-up: the timed round alone
      expect(ran.join('')).toBe('ab');
    } finally {
      now.mockRestore();
    }
  });
});

describe('forward+backward: the output and the gradients for a given output gradient', () => {
  it('gives f\'s value and dx = dy·Wᵀ, dW = xᵀ·dy for y = x·W (plain-array products), leaking nothing', () => {
    const [xs, ws, dys] = [[[1, 2, 3], [-1, 0.5, 4]], [[1, -2], [0.5, 3], [-1, 1]], [[2, -1], [0.25, 3]]];  // x [2, 3], W [3, 2], dy [2, 2]
    const [x, w] = [tf.variable(tf.tensor2d(xs)), tf.variable(tf.tensor2d(ws))];
    const dy = tf.tensor2d(dys);
    const before = tf.memory().numTensors;
    const out = vectorJacobianCall(() => tf.matMul(x, w), [x, w], dy)() as tf.Tensor[];
    const product = (a: number[][], b: number[][]) => a.map(row => b[0].map((_, j) => row.reduce((sum, v, k) => sum + v * b[k][j], 0)));
    const transpose = (a: number[][]) => a[0].map((_, j) => a.map(row => row[j]));
    expect(out.map(t => t.shape)).toEqual([[2, 3], [3, 2], [2, 2]]);  // dx, dW, then the value
    expect(out[0].arraySync()).toEqual(product(dys, transpose(ws)));
    expect(out[1].arraySync()).toEqual(product(transpose(xs), dys));
    expect(out[2].arraySync()).toEqual(product(xs, ws));
    tf.dispose(out);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, w, dy]);
  });
});

describe('forward+backward against forward', () => {
  let results: BenchResults;

  beforeAll(async () => {
    results = await runBench({backends: ['wasm'], quick: true, reps: 1});
  });

  it('pairs each forward row with the forward+backward row of its point and path, and divides by the forward timed with it', () => {
    const backend = results.backends[0];
    const ratios = trainingRatios(backend);
    // QUICK_GRID: the default at T = 8, standard and memory-efficient at T = 40.
    expect(ratios.map(p => [p.forward.length, p.asked, p.forward.pass, p.training.pass])).toEqual([
      [8, 'default', 'forward', 'forward+backward'], [40, 'standard', 'forward', 'forward+backward'],
      [40, 'memory-efficient', 'forward', 'forward+backward']]);
    for (const {forward, training, forwardMs, ratio, oneThreadRatio} of ratios) {
      expect(forward.ranPath === 'memory-efficient').toBe(training.ranPath === 'memory-efficient');
      expect(forward.forwardMedianMs).toBeNull();
      expect(training.forwardMedianMs).toBeGreaterThan(0);  // the forward, timed in the forward+backward row's rounds
      expect(forwardMs).toBe(training.forwardMedianMs);
      expect(ratio).toBeCloseTo(training.medianMs! / training.forwardMedianMs!, 12);
      expect(oneThreadRatio).toBeGreaterThan(0);  // the quick grid's calls are all on one thread
      if (forward.threads === 1 && training.threads === 1) expect(oneThreadRatio).toBe(ratio);
    }
    const report = formatReport(results);
    expect(report).toContain('| B, T, d, H | asked | forward: path | forward ms | forward+backward: path | forward+backward ms | × forward |');
    const line = report.split('\n').find(l => l.startsWith('| 2, 8, 16, 2 | default | fused'))!;
    expect(line).toContain(`| ${ratios[0].forwardMs.toFixed(2)} | fused | ${ratios[0].training.medianMs!.toFixed(2)} | ${ratios[0].ratio.toFixed(2)} |`);
  });

  it('gives every row its share of the one-thread matMul, forward+backward rows included', () => {
    const report = formatReport(results);
    const rows = results.backends[0].rows;
    for (const row of rows.filter(r => r.pass === 'forward+backward')) {
      expect(row.threads).toBe(1);
      expect(row.oneThreadFractionOfMatMul).toBe(row.fractionOfMatMul);
      const cells = report.split('\n').find(l => l.startsWith(`| ${row.batch}, ${row.length}, ${row.dModel}, ${row.heads} | `) &&
          l.includes(`| ${row.pass} |`) && l.includes(row.ranPath === 'memory-efficient' ? 'memory-efficient' : row.ranPath))!.split(' | ');
      // ... | % of matMul | 1 thread ms | % of matMul, 1 thread | leaked |: no one-thread twin, the row's own share.
      expect(cells[cells.length - 3]).toBe('–');
      expect(cells[cells.length - 2]).toBe((row.fractionOfMatMul! * 100).toFixed(0));
    }
  });
});

describe('targets', () => {
  /** A row that ran, with only the fields the targets read. */
  const row = (batch: number, length: number, speedupVsNaive: number) => ({
    batch, length, dModel: 64, heads: 1, path: 'default', ranPath: 'fused', pass: 'forward', status: 'ok',
    isDefault: true, speedupVsNaive, leakedTensors: 0,
  }) as unknown as BenchRow;

  it('a target whose rows ran and fell short is MISSED; one with a row missing is not run', () => {
    const backend = {backend: 'wasm', rows: [row(32, 16, 1.5), row(8, 128, 3)], notes: []} as unknown as BackendResults;
    expect(evaluateTargets(backend)[0]).toMatchObject({status: 'missed', met: false, detail: '1.50×, 3.00×'});
    const half = {backend: 'wasm', rows: [row(8, 128, 3)], notes: []} as unknown as BackendResults;
    expect(evaluateTargets(half)[0]).toMatchObject({status: 'not run', met: false, detail: 'not run, 3.00×'});
    const met = {backend: 'wasm', rows: [row(32, 16, 2.5), row(8, 128, 3)], notes: []} as unknown as BackendResults;
    expect(evaluateTargets(met)[0]).toMatchObject({status: 'met', met: true});
  });

  it('issue 5: at T = 8192 the memory-efficient forward\'s time is divided by the standard call timed in its rounds (target 3)', () => {
    const at8k = (path: 'standard'|'memory-efficient', medianMs: number, peakBytes: number, standardMedianMs: number|null = null) => ({
      batch: 1, length: 8192, dModel: 64, heads: 1, path, ranPath: path, mask: null, pass: 'forward', status: 'ok', isDefault: false,
      medianMs, peakBytes, standardMedianMs, leakedTensors: 0,
    }) as unknown as BenchRow;
    const target3 = (rows: BenchRow[]) => evaluateTargets({backend: 'wasm', rows, notes: []} as unknown as BackendResults)[2];
    // Rows minutes apart: 140 against the standard row's 100 ms (1.40×, missed); in the same rounds the standard call took 120 (1.17×).
    expect(target3([at8k('standard', 100, 800), at8k('memory-efficient', 140, 80)])).toMatchObject({status: 'missed',
      detail: 'peak 10.0% of standard (0 vs 0 MiB), time 1.40×'});
    expect(target3([at8k('standard', 100, 800), at8k('memory-efficient', 140, 80, 120)])).toMatchObject({status: 'met',
      detail: 'peak 10.0% of standard (0 vs 0 MiB), time 1.17× (the standard call timed in the same rounds: 120 ms; its own row 100 ms)'});
  });

  /** A default row of issue 13's grid (d = 64) with what targets 7-9 read. */
  const timed = (batch: number, length: number, pass: 'forward'|'forward+backward', ms: number,
      extra: {threads?: 1|2; oneThreadMedianMs?: number; fractionOfMatMul?: number; path?: string} = {}) => ({
    batch, length, dModel: 64, heads: 1, path: extra.path ?? 'default', ranPath: pass === 'forward' ? 'fused' : 'standard',
    mask: null, pass, status: 'ok', isDefault: true, medianMs: ms, threads: extra.threads ?? 1,
    oneThreadMedianMs: extra.oneThreadMedianMs ?? null,
    speedupVsOneThread: extra.oneThreadMedianMs == null ? null : extra.oneThreadMedianMs / ms,
    fractionOfMatMul: extra.fractionOfMatMul ?? 0.5, oneThreadFractionOfMatMul: extra.fractionOfMatMul ?? 0.5,
    twoThreadParts: null, leakedTensors: 0,
  }) as unknown as BenchRow;
  const grid = (ratio: number, training: {threads?: 1|2; oneThreadMedianMs?: number; fractionOfMatMul?: number} = {}) =>
    ({backend: 'wasm', notes: [], rows: [[32, 16], [8, 128], [1, 1024], [1, 4096]].flatMap(([B, T]) => [
      timed(B, T, 'forward', 10, T >= 1024 ? {threads: 2, oneThreadMedianMs: 19} : {}),
      timed(B, T, 'forward+backward', 10 * ratio, T >= 1024 ? {fractionOfMatMul: 1.2, ...training} : {}),
    ])}) as unknown as BackendResults;

  it('issue 13: forward+backward at most 3.5× forward at every point of its grid (target 8)', () => {
    expect(evaluateTrainingTargets(grid(3.4))[1]).toMatchObject({status: 'met', detail: 'T=16: 3.40×, T=128: 3.40×, T=1024: 3.40×, T=4096: 3.40×'});
    expect(evaluateTrainingTargets(grid(3.6))[1]).toMatchObject({status: 'missed', met: false});
    const partial = grid(3);
    partial.rows = partial.rows.filter(r => r.length !== 128);
    expect(evaluateTrainingTargets(partial)[1]).toMatchObject({status: 'not run', detail: 'T=16: 3.00×, T=128: not run, T=1024: 3.00×, T=4096: 3.00×'});
    // At T = 4096 the default forward+backward is the forced memory-efficient row, marked as the default: still paired.
    const forced = grid(3);
    forced.rows[7] = {...forced.rows[7], path: 'memory-efficient'};
    expect(trainingRatios(forced).map(p => [p.asked, p.training.path])).toEqual([
      ['default', 'default'], ['default', 'default'], ['default', 'default'], ['default', 'memory-efficient']]);
    expect(evaluateTrainingTargets(forced)[1].status).toBe('met');
    // A forward+backward row that timed its forward in its own rounds is divided by that forward, not the forward row's.
    const interleaved = grid(3.6);
    interleaved.rows = interleaved.rows.map(r => (r.pass === 'forward+backward' ? {...r, forwardMedianMs: 12} : r));
    expect(evaluateTrainingTargets(interleaved)[1]).toMatchObject({status: 'met', detail: 'T=16: 3.00×, T=128: 3.00×, T=1024: 3.00×, T=4096: 3.00×'});
  });

  it('issue 13: forward+backward >= 100% of the one-thread matMul at T >= 1024 (7), two threads >= 1.8× one (9)', () => {
    expect(evaluateTrainingTargets(grid(3))[0]).toMatchObject({status: 'met', detail: 'T=1024 standard: 120%, T=4096 standard: 120%'});
    expect(evaluateTrainingTargets(grid(3, {fractionOfMatMul: 0.99}))[0].status).toBe('missed');
    // Forward on two threads at 1.9×, forward+backward on one: target 9 missed, and says why.
    expect(evaluateTrainingTargets(grid(3))[2]).toMatchObject({status: 'missed',
      detail: 'T=1024 forward: 1.90×, T=1024 forward+backward: one thread, T=4096 forward: 1.90×, T=4096 forward+backward: one thread'});
    expect(evaluateTrainingTargets(grid(3, {threads: 2, oneThreadMedianMs: 60}))[2].status).toBe('met');
    expect(evaluateTrainingTargets(grid(3, {threads: 2, oneThreadMedianMs: 50}))[2].status).toBe('missed');  // 1.67×
  });
});

describe('two threads: where a call\'s time goes', () => {
  const kernelCall = (beforeMs: number, mineMs: number, workerMs: number, waitMs: number, afterMs: number) =>
    ({kernel: 'attend_4x8', beforeMs, wakeMs: 0.05, mineMs, workerMs, waitMs, afterMs});

  it('sums each call\'s kernel calls and takes the median of each part over the calls; "outside" is the rest of the call', () => {
    // Three timed calls of 10, 12 and 30 ms, the middle one with two kernel calls (a forward and a backward).
    const parts = twoThreadParts([10, 12, 30], [
      [kernelCall(1, 4, 5, 1, 0.5)],
      [kernelCall(0.5, 3, 3, 0, 0.5), kernelCall(0.5, 3, 2, 1, 0.5)],
      [kernelCall(2, 10, 12, 2, 1)],
    ]);
    // Per call, before + mine + waiting + after: 6.5, 9, 15; outside: 10 - 6.5, 12 - 9, 30 - 15 = 3.5, 3, 15.
    expect(parts).toEqual({
      kernelCalls: 1, outsideMs: 3.5, beforeMs: 1, wakeMs: 0.05, mineMs: 6, workerMs: 5, waitMs: 1, afterMs: 1,
    });
  });

  it('gives nothing when a call recorded no two-thread kernel call or the counts differ', () => {
    expect(twoThreadParts([10, 12], [[kernelCall(1, 4, 5, 1, 0.5)], []])).toBeNull();
    expect(twoThreadParts([10, 12], [[kernelCall(1, 4, 5, 1, 0.5)]])).toBeNull();
  });

  it('the report shows a row per two-thread row, and no table when none ran on two threads', () => {
    const row = {
      batch: 1, length: 1024, dModel: 64, heads: 1, pass: 'forward', status: 'ok', medianMs: 7.76, oneThreadMedianMs: 11.29,
      speedupVsOneThread: 11.29 / 7.76, twoThreadParts: {kernelCalls: 1, outsideMs: 1.5, beforeMs: 0.3, wakeMs: 0.04, mineMs: 5.5,
        workerMs: 5.9, waitMs: 0.4, afterMs: 0.1},
    } as unknown as BenchRow;
    const table = formatTwoThreadTable({backend: 'wasm', rows: [row]} as unknown as BackendResults);
    // No ceiling timed: its four cells are dashes.
    expect(table).toContain('| 1, 1024, 64, 1 | forward | 7.76 | 11.29 | 1.45 | 1 | 1.50 | 0.30 | 5.50 | 5.90 | 0.040 | 0.40 | 0.10 | – | – | – | – |');
    expect(formatTwoThreadTable({backend: 'wasm', rows: [{...row, twoThreadParts: null}]} as unknown as BackendResults)).toBeNull();
  });
});

describe('two threads on this machine, whatever the layer does (the ceiling of target 9)', () => {
  it('is both threads\' calls per second over this thread\'s alone: aloneMs / togetherMs + aloneMs / workerMs (medians)', () => {
    const ceiling = twoThreadCeilingOf([10, 12, 11], [11, 13, 11], [22, 20, 21]);
    expect(ceiling).toEqual({aloneMs: 11, togetherMs: 11, workerMs: 21, ceiling: 1 + 11 / 21});
    expect(twoThreadCeilingOf([10, 12], [10, 14], [12, 12]).ceiling).toBeCloseTo(11 / 12 + 11 / 12, 12);  // even counts: the mean of the middle two
    expect(() => twoThreadCeilingOf([], [1], [1])).toThrow('twoThreadCeilingOf: alone needs positive times, received []');
    expect(() => twoThreadCeilingOf([1], [1, 0], [1])).toThrow('together needs positive times, received [1, 0]');
    expect(() => twoThreadCeilingOf([1], [1], [NaN])).toThrow('worker needs positive times, received [NaN]');
  });

  it('makes one attention call on each thread, the same bits on both, whose output sums to the plain-array attention\'s', async () => {
    const calls = (await startCeilingCalls())!;
    try {
      expect(calls.alone()).toBeGreaterThan(0);
      const aloneSum = calls.sums().mine;
      expect(calls.together()).toBeGreaterThan(0);
      expect(calls.together()).toBeGreaterThan(0);
      expect(calls.workerTimes).toHaveLength(2);
      expect(calls.workerTimes.every(ms => ms > 0)).toBe(true);
      const {mine, worker} = calls.sums();
      expect(worker).toBe(mine);
      expect(mine).toBe(aloneSum);
      // The reference: the memory's floats, sin(0.37·i)/2 from 1 MiB on, read as Q packed by fours, K by eights and V
      // rows (their layouts in two_thread_ceiling.ts); the output's sum is Σ_t Σ_j softmax_j(Q[t]·K[j]/8)·(Σ_c V[j][c]).
      const {queries: T, keys: S, depth: d} = CEILING_CALL;
      const at = (mib: number, i: number) => Math.fround(Math.sin(0.37 * (mib * 262144 + i)) / 2);
      const q = (t: number, c: number) => at(1, (t >> 2) * d * 4 + c * 4 + (t & 3));
      const k = (j: number, c: number) => at(2, (j >> 3) * d * 8 + c * 8 + (j & 7));
      const vRowSums = Array.from({length: S}, (_, j) => Array.from({length: d}, (_, c) => at(3, j * d + c)).reduce((a, b) => a + b, 0));
      const keys = Array.from({length: S}, (_, j) => Float64Array.from({length: d}, (_, c) => k(j, c)));
      let expected = 0;
      const scores = new Float64Array(S);
      for (let t = 0; t < T; t++) {
        const row = Float64Array.from({length: d}, (_, c) => q(t, c));
        let max = -Infinity;
        for (let j = 0; j < S; j++) {
          let dot = 0;
          for (let c = 0; c < d; c++) dot += row[c] * keys[j][c];
          scores[j] = dot / Math.sqrt(d);
          max = Math.max(max, scores[j]);
        }
        let [total, weighted] = [0, 0];
        for (let j = 0; j < S; j++) {
          const p = Math.exp(scores[j] - max);
          total += p;
          weighted += p * vRowSums[j];
        }
        expected += weighted / total;
      }
      expect(Math.abs(mine - expected)).toBeLessThan(1e-3 * Math.max(1, Math.abs(expected)));
    } finally {
      await calls.close();
    }
  });

  it('is not measured (null) where the worker does not start or cannot make the call', async () => {
    expect(await startCeilingCalls(() => {
      throw new Error('no threads here');
    })).toBeNull();
    // A worker that starts but says that it could not make the call.
    const failing = `const {workerData} = require('worker_threads');
      Atomics.store(workerData.control, 1, -1);
      Atomics.notify(workerData.control, 1);`;
    expect(await startCeilingCalls((_source, workerData) => new Worker(failing, {eval: true, workerData}))).toBeNull();
  });

  it('throws, naming the worker, where the worker\'s call throws (the bench stops instead of timing a call not made)', async () => {
    const throwing = `const {workerData} = require('worker_threads');
      Atomics.store(workerData.control, 1, 1);
      Atomics.notify(workerData.control, 1);
      Atomics.wait(workerData.control, 0, 0);
      Atomics.store(workerData.control, 0, -1);
      Atomics.notify(workerData.control, 0);`;
    const calls = (await startCeilingCalls((_source, workerData) => new Worker(throwing, {eval: true, workerData})))!;
    try {
      expect(calls.alone()).toBeGreaterThan(0);
      expect(() => calls.together()).toThrow('two_thread_ceiling: the worker\'s call threw');
      expect(calls.workerTimes).toEqual([]);
    } finally {
      await calls.close();
    }
  });

  it('is timed in the rounds of each two-thread row, and the report shows it beside the row\'s own gain', async () => {
    // (2, 256, 64, 1): 33.6 MFLOP, over twoThreadsPay's 16: both passes on two threads where Node gives a worker.
    const results = await runBench({backends: ['wasm'], quick: true, grid: [{batch: 2, length: 256, dModel: 64, heads: 1, paths: ['default']}]});
    const rows = results.backends[0].rows;
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      expect(row.threads).toBe(2);
      const c = row.twoThreadCeiling!;
      expect(c.aloneMs).toBeGreaterThan(0);
      expect(c.ceiling).toBeCloseTo(c.aloneMs / c.togetherMs + c.aloneMs / c.workerMs, 12);
      expect(row.leakedTensors).toBe(0);
    }
    const report = formatReport(results);
    expect(report).toContain('| machine × | alone ms | together ms | worker ms |');
    const line = report.split('\n').find(l => l.startsWith('| 2, 256, 64, 1 | forward |') && l.split('|').length > 18)!;
    const cells = line.split(' | ');
    expect(cells.slice(-4).join(' | ')).toBe(`${rows[0].twoThreadCeiling!.ceiling.toFixed(2)} | ${rows[0].twoThreadCeiling!.aloneMs.toFixed(2)} | ` +
      `${rows[0].twoThreadCeiling!.togetherMs.toFixed(2)} | ${rows[0].twoThreadCeiling!.workerMs.toFixed(2)} |`);
  });

  it('target 9 names the machine\'s ceiling beside each two-thread row\'s gain', () => {
    const twoThreadRow = (pass: 'forward'|'forward+backward', ceiling: number|null) => ({
      batch: 1, length: 1024, dModel: 64, heads: 1, path: 'default', ranPath: 'fused', mask: null, pass, status: 'ok', isDefault: true,
      medianMs: 10, threads: 2, oneThreadMedianMs: 16, speedupVsOneThread: 1.6, fractionOfMatMul: 1.1, oneThreadFractionOfMatMul: 1.1,
      twoThreadParts: null, leakedTensors: 0,
      twoThreadCeiling: ceiling == null ? null : {aloneMs: 20, togetherMs: 21, workerMs: 30, ceiling},
    }) as unknown as BenchRow;
    const backend = {backend: 'wasm', notes: [], rows: [twoThreadRow('forward', 1.62), twoThreadRow('forward+backward', null)]} as unknown as BackendResults;
    expect(evaluateTrainingTargets(backend)[2]).toMatchObject({status: 'missed',
      detail: 'T=1024 forward: 1.60× (machine 1.62×), T=1024 forward+backward: 1.60×'});
  });
});

describe('two backends in one run', () => {
  it('--lengths keeps only those points; the report puts the backends side by side, each with the path it chose', async () => {
    const results = await runBench({backends: ['wasm', 'cpu'], quick: true, lengths: [8], warmup: 0});
    for (const backend of results.backends) {
      expect(backend.rows.map(r => [r.length, r.pass])).toEqual([[8, 'forward'], [8, 'forward+backward']]);
    }
    expect(results.backends.map(b => b.memoryEfficientThreshold)).toEqual([4096, 4096]);
    const report = formatReport(results);
    expect(report).toContain('## Side by side (same run)');
    expect(report).toContain('| B, T, d, H | asked | pass | wasm: path | wasm ms | cpu: path | cpu ms | fastest |');
    // wasm runs its fused kernel (training: with its fused backward), cpu the standard path.
    expect(report).toMatch(/\| 2, 8, 16, 2 \| default \| forward \| fused \| [0-9.]+ \| standard \| [0-9.]+ \| (wasm|cpu), [0-9.]+× (wasm|cpu) \|/);
    expect(report).toMatch(/\| 2, 8, 16, 2 \| default \| forward\+backward \| fused \| [0-9.]+ \| standard \| [0-9.]+ \|/);
    expect(report).toContain('memory-efficient by default: wasm from S >= 4096, cpu from S >= 4096');
  });
});

describe('the command line', () => {
  it('takes repeated and comma-separated backends, counts and --json', () => {
    const options = parseBenchArgs(['--backend', 'wasm', '--backend', 'cpu,wasm', '--reps', '3', '--json', 'out.json', '--quick']);
    expect(options.backends).toEqual(['wasm', 'cpu', 'wasm']);
    expect(options.reps).toBe(3);
    expect(options.json).toBe('out.json');
    expect(options.quick).toBe(true);
    expect(parseBenchArgs([]).backends).toEqual([]);
  });

  it('--backend tensorflow,wasm names both; --lengths picks the grid points of those lengths', () => {
    expect(parseBenchArgs(['--backend', 'tensorflow,wasm']).backends).toEqual(['tensorflow', 'wasm']);
    expect(parseBenchArgs(['--lengths', '16,4096', '--lengths', '128']).lengths).toEqual([16, 4096, 128]);
    expect(parseBenchArgs([]).lengths).toEqual([]);
    expect(() => parseBenchArgs(['--lengths', '16,x'])).toThrow(/option `--lengths`, expected an integer >= 1.*Received: --lengths x/);
    expect(() => parseBenchArgs(['--lengths', '0'])).toThrow(UsageError);
  });

  it('rejects unknown backends, bad counts and unknown options', () => {
    expect(() => parseBenchArgs(['--backend', 'gpu'])).toThrow(UsageError);
    expect(() => parseBenchArgs(['--reps', '0'])).toThrow(/expected an integer >= 1/);
    expect(() => parseBenchArgs(['--fast'])).toThrow(UsageError);
  });
});

describe('the standard path refuses score tensors over its budget', () => {
  it('says how much memory it would need, without allocating', () => {
    const before = tf.memory();
    let error: Error|undefined;
    try {
      checkStandardPathMemory([1, 1, 16384, 16384], 'query.shape=[1, 1, 16384, 64], key.shape=[1, 1, 16384, 64]');
    } catch (e) {
      error = e as Error;
    }
    expect(error).toBeInstanceOf(ValueError);
    expect(error!.message).toMatch(/score tensors of shape \[1, 1, 16384, 16384\], 1\.00 GiB each/);
    expect(error!.message).toMatch(/2\.00 GiB for the forward pass/);
    expect(error!.message).toMatch(/memory-efficient path/);
    expect(error!.message).toMatch(/Received: query\.shape=\[1, 1, 16384, 64\]/);
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(() => checkStandardPathMemory([1, 1, 8192, 8192], '')).not.toThrow();  // 256 MiB
    expect(STANDARD_PATH_MAX_SCORE_BYTES).toBe(512 * 2 ** 20);
  });

  it('in the op and the layer, before any score tensor exists; by default the long input goes to a path linear in T', () => {
    const T = 20000;  // [1, 1, 20000, 20000] scores: 1.49 GiB; the inputs are 80 kB
    const q = tf.zeros([1, 1, T, 1]);
    const x = tf.zeros([1, T, 1]);
    const layer = scaledDotProductAttention({blockSize: 0});
    tf.tidy(() => {
      layer.apply(tf.zeros([1, 2, 1]));  // builds the weights
    });
    const before = tf.memory();
    expect(() => dotProductAttention(q, q, q, {blockSize: 0})).toThrow(/1\.49 GiB each/);
    expect(() => dotProductAttention(q, q, q, {returnWeights: true})).toThrow(/standard attention path would need/);
    expect(() => layer.apply(x)).toThrow(/Received: inputs\.shape=\[1, 20000, 1\]/);
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(tf.memory().numBytes).toBe(before.numBytes);
    // Training without the fused kernels (no wasm SIMD; with them, the fused backward runs, linear in T).
    const training = (batch: number, heads: number, length: number) =>
      planAttention({backend: 'wasm', batch, heads, T: length, S: length, dk: 1, dv: 1, recording: true, fusedKernelAvailable: false}).path;
    expect(planAttention({backend: 'wasm', batch: 1, heads: 1, T, S: T, dk: 1, dv: 1, recording: true}).path).toBe('fused');
    expect(training(1, 1, T)).toBe('memory-efficient');
    // Short keys, but too many batches·heads for the standard path: also memory-efficient by default.
    expect(training(64, 16, 512)).toBe('memory-efficient');
    expect(training(8, 4, 128)).toBe('standard');
    tf.dispose([q, x]);
    layer.dispose();
  });
});

describe('the mask rows', () => {
  it('time each mask against the same call unmasked, with peaks, no leak, and a table of their own', async () => {
    const grid = (['padding', 'causal', 'explicit'] as MaskKind[]).map(mask =>
      ({batch: 2, length: 24, dModel: 8, heads: 2, paths: ['memory-efficient' as const], blockSize: 8, mask}));
    const results = await runBench({backends: ['wasm'], grid, quick: true, warmup: 0});
    const rows = results.backends[0].rows;
    expect(rows.map(r => [r.mask, r.pass])).toEqual([
      ['padding', 'forward'], ['padding', 'forward+backward'], ['causal', 'forward'], ['causal', 'forward+backward'],
      ['explicit', 'forward'], ['explicit', 'forward+backward']]);
    for (const row of rows) {
      expect(row.status).toBe('ok');
      expect(row.ranPath).toBe('memory-efficient');
      expect(row.isDefault).toBe(false);
      for (const value of [row.medianMs, row.unmaskedMedianMs]) expect(value).toBeGreaterThan(0);
      expect(row.peakBytes).toBeGreaterThan(0);
      expect(row.unmaskedPeakBytes).toBeGreaterThan(0);
      expect(row.naiveMedianMs).toBeNull();  // the naive version has no masks
      expect(row.leakedTensors).toBe(0);
    }
    const report = formatReport(results);
    expect(report).toContain('| 2, 24, 8, 2 | padding | forward |');
    expect(report).toContain('memory-efficient (8), causal mask');
    // Target 6 is about T = 8192 only.
    expect(evaluateTargets(results.backends[0])[5]).toMatchObject({met: false, detail: 'not run'});
    expect(MASK_GRID.map(p => [p.length, p.mask])).toEqual([[8192, 'padding'], [8192, 'causal'], [8192, 'explicit']]);
    expect(parseBenchArgs(['--masks']).masks).toBe(true);
  });

  it('target 6 holds when every mask keeps peak <= 1.25x and time <= 1.5x of its unmasked twin, in both passes', () => {
    const row = (mask: MaskKind, pass: 'forward'|'forward+backward', ms: number, peak: number): BenchRow => ({
      batch: 1, length: 8192, dModel: 64, heads: 1, path: 'memory-efficient', ranPath: 'memory-efficient', reason: 'forced', isDefault: false,
      mask, blockSize: 512, pass, status: 'ok', note: null, reps: 5, medianMs: ms, gflops: 1, peakBytes: peak,
      naiveMedianMs: null, naivePeakBytes: null, speedupVsNaive: null, matMulGflops: 1, matMulSize: 1024,
      fractionOfMatMul: 1, threads: 1, oneThreadMedianMs: null, speedupVsOneThread: null, oneThreadFractionOfMatMul: null,
      twoThreadParts: null, twoThreadCeiling: null, unmaskedMedianMs: 100, unmaskedPeakBytes: 1000, standardMedianMs: null,
      forwardMedianMs: null,
      leakedTensors: 0,
    });
    const backend = (rows: BenchRow[]): BackendResults =>
      ({backend: 'wasm', memoryEfficientThreshold: 4096, settings: {reps: 5, largeReps: 5, warmup: 1, settleMs: 0, quick: false}, matMulGflops: 1, rows, notes: []});
    const good = (['padding', 'causal', 'explicit'] as MaskKind[]).flatMap(m =>
      [row(m, 'forward', 150, 1250), row(m, 'forward+backward', 80, 900)]);
    expect(evaluateTargets(backend(good))[5].met).toBe(true);
    expect(evaluateTargets(backend([...good.slice(0, 5), row('explicit', 'forward+backward', 151, 1000)]))[5].met).toBe(false);
    const tooBig = evaluateTargets(backend([row('padding', 'forward', 100, 1251), ...good.slice(1)]))[5];
    expect(tooBig.met).toBe(false);
    expect(tooBig.detail).toContain('padding forward: peak 1.25×');
    expect(evaluateTargets(backend(good.slice(1)))[5].met).toBe(false);  // a mask row missing
  });
});
