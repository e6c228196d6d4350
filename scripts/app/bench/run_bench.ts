/** The benchmark itself: forward and forward+backward of the layer against the naive version and a plain matMul. */
import * as tf from '@tensorflow/tfjs';
import * as os from 'os';
import {allowedAttentionThreads, checkStandardPathMemory, DEFAULT_BLOCK_SIZE, fusedAttentionLayerBytes, fusedKernelAvailable, fusedLayerTrainingBytes, fusedThreadsOfLastCall, fusedTrainingBytes, kernelVariant, memoryEfficientThreshold, planAttention, recordTwoThreadCalls, ScaledDotProductAttention, selectBackend, setAttentionThreads, ValueError} from '../tfjs_attention_node';
import type {AttentionPath, AttentionPlan, BackendName, TwoThreadCallTimes} from '../tfjs_attention_node';
import {AttentionSize, forwardFlops, matMulFlops, trainingFlops} from './flops';
import {BenchCall, median, peakBytes, timeInterleaved, vectorJacobianCall} from './measure';
import {naiveSelfAttention} from './naive_attention';
import {startCeilingCalls, twoThreadCeilingOf} from './two_thread_ceiling';
import type {CeilingCalls, TwoThreadCeiling} from './two_thread_ceiling';

/** A grid point (batch, T, dModel, heads) and the paths to time there. */
export interface GridPoint extends AttentionSize {
  /** 'default' (blockSize null: the layer picks), 'standard' (blockSize 0), 'memory-efficient'. */
  paths: PathName[];
  /** Block size of the 'memory-efficient' rows. Defaults to DEFAULT_BLOCK_SIZE. */
  blockSize?: number;
  /** A mask to run with (see MaskKind); each row is then timed against the same call unmasked. */
  mask?: MaskKind;
}

/**
 * The masks of the mask rows: 'padding', the padding mask of `embedding({maskZero: true})`
 * ([B, T], the last tenth padded; for self-attention it masks queries and keys); 'causal',
 * the layer's `causal`; 'explicit', an `attentionMask` [B, 1, S] (the same padding, given
 * as a mask that broadcasts over the queries).
 */
export type MaskKind = 'padding'|'causal'|'explicit';

export type PathName = 'default'|'standard'|'memory-efficient';
export type Pass = 'forward'|'forward+backward';

/** One measured (or refused, or skipped) row of the table. */
export interface BenchRow {
  batch: number;
  length: number;
  dModel: number;
  heads: number;
  /** The path asked for, and the one that ran ('fused', 'standard' or 'memory-efficient'). */
  path: PathName;
  ranPath: AttentionPath;
  /** Why the planner (planAttention) chose ranPath. */
  reason: string;
  /** Whether the layer takes this path with its default options (blockSize null). */
  isDefault: boolean;
  /** The mask the row runs with, or null. */
  mask: MaskKind|null;
  blockSize: number|null;
  pass: Pass;
  status: 'ok'|'refused'|'skipped';
  /** Why the row was refused or skipped. */
  note: string|null;
  reps: number;
  medianMs: number|null;
  /** Effective GFLOP/s: forwardFlops (or trainingFlops) / median time. */
  gflops: number|null;
  /**
   * Bytes added at the call's peak: tensors (see measure.peakBytes), plus on the fused path
   * the work buffers that its kernel takes from the wasm heap (fusedAttentionLayerBytes).
   */
  peakBytes: number|null;
  /** The naive literal version, timed interleaved with the layer; null when skipped. */
  naiveMedianMs: number|null;
  naivePeakBytes: number|null;
  /** naiveMedianMs / medianMs: > 1 means the layer is faster. */
  speedupVsNaive: number|null;
  /** The n×n matMul (n = matMulSize) timed interleaved with this row. */
  matMulGflops: number|null;
  matMulSize: number;
  /** gflops / matMulGflops. */
  fractionOfMatMul: number|null;
  /** Threads the layer ran on: 2 where the fused kernel takes its worker (see attention_threads.ts), else 1. */
  threads: 1|2;
  /** On two-thread rows, the same call kept on one thread (setAttentionThreads(1)), timed interleaved; else null. */
  oneThreadMedianMs: number|null;
  /** oneThreadMedianMs / medianMs: what the second thread gains. */
  speedupVsOneThread: number|null;
  /** The one-thread GFLOP/s over matMulGflops (the matMul runs on one thread); on one-thread rows, fractionOfMatMul. */
  oneThreadFractionOfMatMul: number|null;
  /** On two-thread rows, where a call's time went (medians over the timed calls); else null. */
  twoThreadParts: TwoThreadParts|null;
  /**
   * On two-thread rows, what two threads gave on this machine in the row's rounds, whatever the layer does: the same
   * kernel call made alone and on both threads at once (two_thread_ceiling.ts); else null.
   */
  twoThreadCeiling: TwoThreadCeiling|null;
  /** On mask rows: the same call without the mask, timed interleaved, and its peak; else null. */
  unmaskedMedianMs: number|null;
  /**
   * On unmasked memory-efficient forward rows of points that also run the standard path: the same call on the
   * standard path (blockSize 0), timed interleaved, which issue 5's time target divides by (report.ts); else null.
   */
  standardMedianMs: number|null;
  unmaskedPeakBytes: number|null;
  /**
   * On forward+backward rows, the layer's forward (layer.apply, nothing recorded) timed interleaved
   * with the row's calls, which the row's ratio to forward divides by (report.ts' trainingRatios); else null.
   */
  forwardMedianMs: number|null;
  /** numTensors after all the row's calls minus before (0 = no leak). */
  leakedTensors: number;
}

/**
 * Where the time of a call on two threads goes, in ms, each part the median over the timed
 * calls of its sum over the call's two-thread kernel calls (attention_threads.ts'
 * TwoThreadCallTimes): `outsideMs` is the call's time outside those kernel calls (the
 * projections, tfjs' ops and the gradients' plumbing, on one thread).
 */
export type TwoThreadParts = Omit<TwoThreadCallTimes, 'kernel'>&{kernelCalls: number; outsideMs: number};

export interface BackendResults {
  backend: string;
  /** Key length from which this backend takes the memory-efficient path by default; null: only past the memory budget. */
  memoryEfficientThreshold: number|null;
  /** Repetitions and warm-up used on this backend. */
  settings: {reps: number; largeReps: number; warmup: number; settleMs: number; quick: boolean};
  /** Median over the rows of the interleaved 1024×1024 matMul, GFLOP/s. */
  matMulGflops: number;
  rows: BenchRow[];
  /** Points left out on this backend, with the reason. */
  notes: string[];
}

export interface BenchResults {
  date: string;
  node: string;
  cpus: number;
  /**
   * Which build of the wasm kernels ran (kernel_module.ts' kernelVariant): 'relaxed-simd' (the
   * backward with fused multiply-adds), 'simd', or null (no wasm SIMD).
   */
  kernels: 'relaxed-simd'|'simd'|null;
  defaultBlockSize: number;
  backends: BackendResults[];
}

export interface BenchOptions {
  /** Backends to run, in order; empty = selectBackend('auto'). */
  backends?: BackendName[];
  /** Timed repetitions per row for T < 4096. Defaults to 15 (5 on cpu). */
  reps?: number;
  /** Timed repetitions per row for T >= 4096. Defaults to 5 (with 3, one slow or fast matMul moved a row's ratio by 15%). */
  largeReps?: number;
  /**
   * Untimed warm-up rounds before timing. Defaults to 5 (the JS loops of the wasm kernels
   * need a few calls to be optimised by V8; 2 on cpu, where calls take seconds), 1 for T >= 4096.
   */
  warmup?: number;
  /**
   * Before the warm-up rounds, each call of a row with T < 4096 runs alone for this long, so that
   * V8 has optimised the JavaScript around its kernels (longer rows' calls take seconds: their warm-up
   * round does it). Defaults to 300 ms (0 with `quick`).
   */
  settleMs?: number;
  /** The small grid of the tests. */
  quick?: boolean;
  /** Only the mask rows (MASK_GRID). */
  masks?: boolean;
  /** A grid to run instead of FULL_GRID / QUICK_GRID (for experiments). */
  grid?: GridPoint[];
  /** Only the grid's points of these lengths T (all when empty or unset). */
  lengths?: number[];
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/**
 * The mask rows: at T = 8192 on the memory-efficient path, each mask against the same call
 * unmasked (the issue's target: peak within 1.25×, time within 1.5×). Part of FULL_GRID;
 * `--masks` runs them alone.
 */
export const MASK_GRID: GridPoint[] = (['padding', 'causal', 'explicit'] as MaskKind[]).map(mask => (
  {batch: 1, length: 8192, dModel: 64, heads: 1, paths: ['memory-efficient'] as PathName[], mask}));

/**
 * The issue's grid: the small points, T = 1024 and 4096, and 8192 and 16384 for the
 * memory-efficient path. A 'default' row is left out where the default runs the same path
 * as a forced row of its point (which is then marked as the default).
 */
export const FULL_GRID: GridPoint[] = [
  {batch: 32, length: 16, dModel: 64, heads: 1, paths: ['default']},
  {batch: 8, length: 128, dModel: 64, heads: 4, paths: ['default']},
  {batch: 1, length: 1024, dModel: 64, heads: 1, paths: ['default']},
  {batch: 1, length: 4096, dModel: 64, heads: 1, paths: ['default', 'standard', 'memory-efficient']},
  {batch: 1, length: 8192, dModel: 64, heads: 1, paths: ['default', 'standard', 'memory-efficient']},
  {batch: 1, length: 16384, dModel: 64, heads: 1, paths: ['default', 'standard', 'memory-efficient']},
  ...MASK_GRID,
];


/** A tiny grid for the tests: both paths, a few ms per row. */
export const QUICK_GRID: GridPoint[] = [
  {batch: 2, length: 8, dModel: 16, heads: 2, paths: ['default']},
  {batch: 1, length: 40, dModel: 8, heads: 1, paths: ['standard', 'memory-efficient'], blockSize: 16},
];

/** cpu runs attention 20-55× slower than wasm: its grid stops at T = 1024. */
const CPU_MAX_LENGTH = 1024;

/**
 * Largest B·H·T·S for which the naive version is timed: its forward holds three [T, S]
 * tensors (768 MiB at T = 8192), and its backward is tfjs's autodiff, whose flagged
 * matMuls run in wasm's scalar loop (~1 GFLOP/s: some 10 s per call at T = 4096).
 */
const NAIVE_MAX_SCORES = {'forward': 8192 * 8192, 'forward+backward': 2048 * 2048};

/** Side of the reference matMul; the quick grid uses a smaller one (cpu takes seconds for 1024). */
export const MATMUL_SIZE = 1024;
const QUICK_MATMUL_SIZE = 128;

/** Runs the benchmark on each backend and returns all rows. The last backend stays active. */
export async function runBench(options: BenchOptions = {}): Promise<BenchResults> {
  const log = options.log ?? (() => {});
  const quick = options.quick ?? false;
  const names = options.backends == null || options.backends.length === 0 ? ['auto' as BackendName] : options.backends;
  const backends: BackendResults[] = [];
  // The two threads' ceiling calls, started at the first two-thread row (a worker thread), closed at the end.
  const started: {calls: Promise<CeilingCalls|null>|null} = {calls: null};
  const ceiling = () => (started.calls ??= startCeilingCalls());
  try {
    for (const name of names) {
      const backend = await selectBackend(name);
      const cpu = backend === 'cpu';
      const reps = options.reps ?? (quick ? 1 : cpu ? 5 : 15);
      const largeReps = options.largeReps ?? (quick ? 1 : 5);
      const warmup = options.warmup ?? (quick ? 1 : cpu ? 2 : 5);
      const settleMs = options.settleMs ?? (quick ? 0 : 300);
      const settings = {reps, largeReps, warmup, settleMs, quick};
      const lengths = options.lengths ?? [];
      const grid = (options.grid ?? (quick ? QUICK_GRID : options.masks ? MASK_GRID : FULL_GRID))
          .filter(point => lengths.length === 0 || lengths.includes(point.length));
      const notes: string[] = [];
      const rows: BenchRow[] = [];
      for (const point of grid) {
        if (cpu && point.length > CPU_MAX_LENGTH) {
          notes.push(`(${point.batch}, ${point.length}, ${point.dModel}, ${point.heads}) skipped on cpu: ` +
              `20 to 55 times slower than wasm, a single call at T=${point.length} would take minutes.`);
          continue;
        }
        const large = point.length >= 4096;
        for (const path of point.paths) {
          for (const pass of ['forward', 'forward+backward'] as Pass[]) {
            if (path === 'default' && point.paths.some(other => other !== 'default' && samePath(point, other, pass))) continue;
            const row = await benchRow(
                point, path, pass, large ? largeReps : reps, large ? Math.min(warmup, 1) : warmup, large ? 0 : settleMs,
                quick ? QUICK_MATMUL_SIZE : MATMUL_SIZE, ceiling);
            log(`${backend} ${describeRow(row)}`);
            rows.push(row);
          }
        }
      }
      const matMuls = rows.map(r => r.matMulGflops).filter((g): g is number => g != null);
      const threshold = memoryEfficientThreshold(backend);
      backends.push({
        backend, memoryEfficientThreshold: Number.isFinite(threshold) ? threshold : null, settings,
        matMulGflops: matMuls.length > 0 ? median(matMuls) : NaN, rows, notes,
      });
    }
  } finally {
    await (await started.calls)?.close();
  }
  return {date: new Date().toISOString(), node: process.version, cpus: cpuCount(), kernels: kernelVariant(), defaultBlockSize: DEFAULT_BLOCK_SIZE, backends};
}

/**
 * The medians of where the time of each timed call went (`times`, ms, and `recorded`, the
 * two-thread kernel calls each made, in the same order).
 */
export function twoThreadParts(times: number[], recorded: TwoThreadCallTimes[][]): TwoThreadParts|null {
  if (recorded.length !== times.length || recorded.some(calls => calls.length === 0)) return null;
  const sum = (calls: TwoThreadCallTimes[], part: keyof Omit<TwoThreadCallTimes, 'kernel'>) => calls.reduce((total, c) => total + c[part], 0);
  const partMedian = (part: keyof Omit<TwoThreadCallTimes, 'kernel'>) => median(recorded.map(calls => sum(calls, part)));
  const outside = recorded.map((calls, i) => times[i] - sum(calls, 'beforeMs') - sum(calls, 'mineMs') - sum(calls, 'waitMs') - sum(calls, 'afterMs'));
  return {
    kernelCalls: median(recorded.map(calls => calls.length)), outsideMs: median(outside), beforeMs: partMedian('beforeMs'),
    wakeMs: partMedian('wakeMs'), mineMs: partMedian('mineMs'), workerMs: partMedian('workerMs'), waitMs: partMedian('waitMs'),
    afterMs: partMedian('afterMs'),
  };
}

function cpuCount(): number {
  return os.cpus().length;
}

/** One line of progress. */
export function describeRow(row: BenchRow): string {
  const point = `(${row.batch}, ${row.length}, ${row.dModel}, ${row.heads}) ${row.path}/${row.ranPath}` +
      `${row.mask == null ? '' : `, ${row.mask} mask`} ${row.pass}`;
  if (row.status !== 'ok') return `${point}: ${row.status}: ${row.note}`;
  return `${point}: ${row.medianMs!.toFixed(2)} ms, ${row.gflops!.toFixed(1)} GFLOP/s` +
      (row.speedupVsNaive != null ? `, ${row.speedupVsNaive.toFixed(2)}× naive` : '') +
      (row.unmaskedMedianMs != null ? `, unmasked ${row.unmaskedMedianMs.toFixed(2)} ms` : '') +
      (row.standardMedianMs != null ? `, standard path in the same rounds ${row.standardMedianMs.toFixed(2)} ms` : '') +
      `, ${((row.fractionOfMatMul ?? NaN) * 100).toFixed(0)}% of matMul` +
      (row.threads === 2 ? ` (2 threads; 1 thread: ${row.oneThreadMedianMs!.toFixed(2)} ms, ` +
          `${((row.oneThreadFractionOfMatMul ?? NaN) * 100).toFixed(0)}%` +
          (row.twoThreadCeiling == null ? '' : `; machine ${row.twoThreadCeiling.ceiling.toFixed(2)}×`) + ')' : '') +
      `, leaked ${row.leakedTensors}`;
}

/** The planner's answer for the layer's call of a (point, path, pass) on the active backend. */
export function planOf(point: GridPoint, path: PathName, pass: Pass): AttentionPlan {
  const {batch, heads, length: T, dModel: d} = point;
  return planAttention({
    backend: tf.getBackend(), batch, heads, T, S: T, dk: d / heads, dv: d / heads,
    layer: {dq: d, dc: d, selfAttention: true}, blockSize: blockSizeOf(point, path),
    mask: point.mask === 'explicit', padding: point.mask === 'padding', causal: point.mask === 'causal',
    recording: pass === 'forward+backward', fusedKernelAvailable: fusedKernelAvailable(), threads: allowedAttentionThreads(),
  });
}

/** Whether the forced `path` runs what the default runs, with the same block size. */
function samePath(point: GridPoint, path: PathName, pass: Pass): boolean {
  const [forced, chosen] = [planOf(point, path, pass), planOf(point, 'default', pass)];
  return forced.path === chosen.path && forced.blockSize === chosen.blockSize;
}

/** The block size that a path gives the layer. */
function blockSizeOf(point: GridPoint, path: PathName): number|null {
  if (path === 'standard') return 0;
  if (path === 'memory-efficient') return point.blockSize ?? DEFAULT_BLOCK_SIZE;
  return null;
}

/**
 * Times one (point, path, pass): the layer, the naive version and the matMul, interleaved; on two threads also the
 * same call on one thread, and the ceiling's calls (`ceiling`: two_thread_ceiling.ts).
 */
async function benchRow(
    point: GridPoint, path: PathName, pass: Pass, reps: number, warmup: number, settleMs: number, matMulSize: number,
    ceiling: () => Promise<CeilingCalls|null>): Promise<BenchRow> {
  const {batch: B, length: T, dModel: d, heads: H} = point;
  const blockSize = blockSizeOf(point, path);
  const plan = planOf(point, path, pass);
  const ranPath = plan.path;
  const mask = point.mask ?? null;
  const row: BenchRow = {
    batch: B, length: T, dModel: d, heads: H, path, ranPath, reason: plan.reason, mask,
    isDefault: mask == null && (path === 'default' || samePath(point, path, pass)),
    blockSize: ranPath === 'memory-efficient' ? plan.blockSize! : ranPath === 'standard' ? 0 : null,
    pass, status: 'ok', note: null, reps, medianMs: null, gflops: null, peakBytes: null, naiveMedianMs: null,
    naivePeakBytes: null, speedupVsNaive: null, matMulGflops: null, matMulSize, fractionOfMatMul: null,
    threads: 1, oneThreadMedianMs: null, speedupVsOneThread: null, oneThreadFractionOfMatMul: null, twoThreadParts: null, twoThreadCeiling: null,
    unmaskedMedianMs: null, unmaskedPeakBytes: null, standardMedianMs: null, forwardMedianMs: null, leakedTensors: 0,
  };
  const before = tf.memory().numTensors;
  const layer = new ScaledDotProductAttention({numHeads: H, keyDim: d / H, blockSize, causal: mask === 'causal'});
  // Mask rows time the same layer without its mask (a second layer where the mask is `causal`).
  const unmaskedLayer = mask == null ? null : mask === 'causal' ? new ScaledDotProductAttention({numHeads: H, keyDim: d / H, blockSize}) : layer;
  // A memory-efficient forward row also times the standard path in its rounds, where its point runs that path and the
  // path takes the size: their ratio then untouched by the machine's drift between the two rows (T = 8192's calls take
  // seconds, minutes apart).
  const standardLayer = pass === 'forward' && mask == null && ranPath === 'memory-efficient' && point.paths.includes('standard') &&
      standardPathTakes(B, H, T) ? new ScaledDotProductAttention({numHeads: H, keyDim: d / H, blockSize: 0}) : null;
  const x = tf.randomNormal([B, T, d], 0, 1, 'float32', 1);
  const masks = maskArguments(mask, B, T);
  const a = tf.randomNormal([matMulSize, matMulSize], 0, 1, 'float32', 2) as tf.Tensor2D;
  const b = tf.randomNormal([matMulSize, matMulSize], 0, 1, 'float32', 3) as tf.Tensor2D;
  try {
    tf.tidy(() => {
      for (const l of new Set([layer, unmaskedLayer ?? layer, standardLayer ?? layer])) l.apply(tf.zeros([1, 1, d]));  // builds the weights
    });
    const training = pass === 'forward+backward';
    // Gradients for x and every weight: x as a variable, next to the layer's kernels; for the output gradient dy.
    const xVar = training ? tf.variable(x, true) : null;
    const dy = training ? tf.randomNormal([B, T, d], 0, 1, 'float32', 4) : null;
    const variables = [...(xVar ? [xVar] : []), ...layer.trainableWeights.map(w => w.read() as tf.Variable)];
    const withGrads = (f: () => tf.Tensor, vars = variables): BenchCall => vectorJacobianCall(f, vars, dy!);
    const input = xVar ?? x;
    const layerCall: BenchCall = training ?
        withGrads(() => layer.apply(input, masks) as tf.Tensor) : () => layer.apply(input, masks) as tf.Tensor;
    // A forward+backward row also times the forward in its rounds, their ratio then untouched by the machine's drift from
    // row to row; each after a 1024² matMul, as in its own row (after the step, warm, it runs 25-35% faster).
    const forwardCall: BenchCall|null = training ? () => layer.apply(x, masks) as tf.Tensor : null;
    const unmaskedVariables = unmaskedLayer == null || unmaskedLayer === layer ? variables :
        [...(xVar ? [xVar] : []), ...unmaskedLayer.trainableWeights.map(w => w.read() as tf.Variable)];
    const unmaskedCall: BenchCall|null = unmaskedLayer == null ? null : training ?
        withGrads(() => unmaskedLayer.apply(input) as tf.Tensor, unmaskedVariables) : () => unmaskedLayer.apply(input) as tf.Tensor;
    const standardCall: BenchCall|null = standardLayer == null ? null : () => standardLayer.apply(x) as tf.Tensor;
    const naiveCall: BenchCall = training ?
        withGrads(() => naiveSelfAttention(layer, input)) : () => naiveSelfAttention(layer, input);
    const matMulCall: BenchCall = () => tf.matMul(a, b);
    const matMulBeforeForward: BenchCall = () => tf.matMul(a, b);
    // The naive version has no masks: mask rows compare with the unmasked call instead.
    const naiveFits = mask == null && B * H * T * T <= NAIVE_MAX_SCORES[pass];
    const dHead = d / H;
    if (ranPath === 'fused') {  // one untimed call tells how many threads the kernel takes for this size
      tf.dispose(layerCall());
      row.threads = fusedThreadsOfLastCall();
    }
    const oneThreadCall: BenchCall = () => {
      const previous = setAttentionThreads(1);
      try {
        return layerCall();
      } finally {
        setAttentionThreads(previous);
      }
    };
    // On two threads, each call of the layer also records where its time went.
    const recorded: TwoThreadCallTimes[][] = [];
    const timedLayerCall: BenchCall = row.threads !== 2 ? layerCall : () => {
      recordTwoThreadCalls(true);
      try {
        return layerCall();
      } finally {
        recorded.push(recordTwoThreadCalls(false));
      }
    };
    // On two threads, the same kernel call alone and on both threads at once: what the machine allows in these rounds.
    const ceilingOfRow = row.threads === 2 ? await ceiling() : null;
    const [alone, together]: number[][] = [[], []];
    const ceilingCalls: BenchCall[] = ceilingOfRow == null ? [] : [
      () => (alone.push(ceilingOfRow.alone()), []),
      () => (together.push(ceilingOfRow.together()), []),
    ];
    try {
      const calls = [timedLayerCall, ...(naiveFits ? [naiveCall] : []), ...(row.threads === 2 ? [oneThreadCall] : []),
        ...(unmaskedCall ? [unmaskedCall] : []), ...(standardCall ? [standardCall] : []),
        ...(forwardCall ? [matMulBeforeForward, forwardCall] : []), matMulCall,
        ...ceilingCalls];
      const times = timeInterleaved(calls, reps, warmup, settleMs);
      const timesOf = (call: BenchCall) => times[calls.indexOf(call)];
      const flops = training ? trainingFlops(point) : forwardFlops(point);
      row.medianMs = median(times[0]);
      row.gflops = flops / row.medianMs / 1e6;
      const matMulMs = median(timesOf(matMulCall));
      row.matMulGflops = matMulFlops(matMulSize) / matMulMs / 1e6;
      row.fractionOfMatMul = row.gflops / row.matMulGflops;
      row.oneThreadFractionOfMatMul = row.fractionOfMatMul;
      if (forwardCall != null) row.forwardMedianMs = median(timesOf(forwardCall));
      if (standardCall != null) row.standardMedianMs = median(timesOf(standardCall));
      if (unmaskedCall != null) {
        row.unmaskedMedianMs = median(timesOf(unmaskedCall));
        row.unmaskedPeakBytes = await peakBytes(unmaskedCall);
      }
      if (row.threads === 2) {
        row.twoThreadParts = twoThreadParts(times[0], recorded.slice(-times[0].length));
        row.oneThreadMedianMs = median(timesOf(oneThreadCall));
        row.speedupVsOneThread = row.oneThreadMedianMs / row.medianMs;
        row.oneThreadFractionOfMatMul = flops / row.oneThreadMedianMs / 1e6 / row.matMulGflops;
      }
      if (ceilingOfRow != null) {  // the timed rounds' calls (the last reps; settling and warm-up made more)
        row.twoThreadCeiling = twoThreadCeilingOf(alone.slice(-reps), together.slice(-reps), ceilingOfRow.workerTimes.slice(-reps));
      }
      const heapWork = fusedAttentionLayerBytes({batch: B, T, S: T, dq: d, dc: d, heads: H, dk: dHead, dv: dHead, selfAttention: true});
      // The fused backward's work buffers (one pair's, freed after each call) when a gradient is recorded.
      const trainingWork = fusedTrainingBytes({T, S: T, dk: dHead, dv: dHead});
      const layerTrainingWork = fusedLayerTrainingBytes({batch: B, T, S: T, dq: d, dc: d, heads: H, dk: dHead, dv: dHead, selfAttention: true});
      const work = plan.kernel === 'gradient' ? trainingWork : plan.kernel === 'layer-gradient' ? layerTrainingWork : heapWork;
      row.peakBytes = await peakBytes(layerCall) + (ranPath !== 'fused' ? 0 : work);
      if (naiveFits) {
        row.naiveMedianMs = median(times[1]);
        row.speedupVsNaive = row.naiveMedianMs / row.medianMs;
        row.naivePeakBytes = await peakBytes(naiveCall);
      } else {
        row.note = mask != null ? 'naive version not timed: it has no masks' :
            `naive version not timed: B·H·T·S > ${NAIVE_MAX_SCORES[pass]}`;
      }
    } catch (error) {
      if (!(error instanceof ValueError)) throw error;
      row.status = 'refused';
      row.note = error.message;
    } finally {
      tf.dispose([...(xVar ? [xVar] : []), ...(dy ? [dy] : [])]);
    }
  } finally {
    tf.dispose([x, a, b, ...Object.values(masks)]);
    layer.dispose();
    if (unmaskedLayer != null && unmaskedLayer !== layer) unmaskedLayer.dispose();
    standardLayer?.dispose();
  }
  row.leakedTensors = tf.memory().numTensors - before;
  return row;
}

/** Whether the standard path takes self-attention of B×T with H heads: the layer's own check (it refuses the rest up front). */
function standardPathTakes(B: number, H: number, T: number): boolean {
  try {
    checkStandardPathMemory([B, H, T, T], '');
    return true;
  } catch (error) {
    if (error instanceof ValueError) return false;
    throw error;
  }
}

/** The call arguments of a mask row (see MaskKind): `mask` or `attentionMask`; none for causal. */
function maskArguments(mask: MaskKind|null, B: number, T: number): {[name: string]: tf.Tensor} {
  if (mask == null || mask === 'causal') return {};
  const padded = Math.ceil(T / 10);
  const real = tf.tidy(() => tf.tile(tf.less(tf.range(0, T, 1, 'int32'), T - padded).reshape([1, T]), [B, 1]));  // [B, T] bool
  if (mask === 'padding') return {mask: real};
  const attentionMask = real.reshape([B, 1, T]);  // [B, 1, S]
  real.dispose();
  return {attentionMask};
}
