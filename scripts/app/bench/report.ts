/** The benchmark's output: a Markdown table per backend, the issue's targets checked, and the JSON file. */
import * as fs from 'fs';
import * as path from 'path';
import type {BackendResults, BenchResults, BenchRow} from './run_bench';
import {CEILING_CALL} from './two_thread_ceiling';

const MIB = 2 ** 20;

function fixed(value: number|null, digits: number): string {
  return value == null || !Number.isFinite(value) ? '–' : value.toFixed(digits);
}

/** The Markdown table of one backend's rows. */
export function formatTable(results: BackendResults): string {
  const lines = [
    '| B, T, d, H | path | pass | median ms | GFLOP/s | peak MiB | naive ms | × naive | % of matMul | 1 thread ms | % of matMul, 1 thread | leaked |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const row of results.rows) {
    const point = `${row.batch}, ${row.length}, ${row.dModel}, ${row.heads}`;
    const pathName = (row.ranPath === 'memory-efficient' ? `memory-efficient (${row.blockSize})` : row.ranPath) +
        (row.mask == null ? '' : `, ${row.mask} mask`);
    const shown = row.isDefault ? `${pathName}, default` : pathName;
    if (row.status !== 'ok') {
      lines.push(`| ${point} | ${shown} | ${row.pass} | ${row.status} | | | | | | | | ${row.leakedTensors} |`);
      continue;
    }
    lines.push(`| ${point} | ${shown} | ${row.pass} | ${fixed(row.medianMs, 2)} | ${fixed(row.gflops, 1)} | ` +
        `${fixed(row.peakBytes == null ? null : row.peakBytes / MIB, 1)} | ${fixed(row.naiveMedianMs, 2)} | ` +
        `${fixed(row.speedupVsNaive, 2)} | ${fixed(row.fractionOfMatMul == null ? null : row.fractionOfMatMul * 100, 0)} | ` +
        `${fixed(row.oneThreadMedianMs, 2)} | ${fixed(row.oneThreadFractionOfMatMul == null ? null : row.oneThreadFractionOfMatMul * 100, 0)} | ` +
        `${row.leakedTensors} |`);
  }
  return lines.join('\n');
}

/** The whole report: per backend a heading, its matMul speed, the table, the notes and the targets. */
export function formatReport(results: BenchResults): string {
  const parts: string[] = [];
  for (const backend of results.backends) {
    const n = backend.rows[0]?.matMulSize ?? 1024;
    const {reps, largeReps, warmup, settleMs} = backend.settings;
    parts.push(`## ${backend.backend}: plain ${n}×${n} matMul ${fixed(backend.matMulGflops, 1)} GFLOP/s ` +
        `(median over the rows; each row's ratio uses the matMul timed with it)`, '',
        `Medians of ${reps} timed calls (${largeReps} for T >= 4096) after ` +
        (settleMs > 0 ? `each call alone for ${settleMs} ms (T < 4096; V8 optimises the JavaScript around the kernels) and ` : '') +
        `${warmup} warm-up rounds (1 for T >= 4096), ` +
        'the layer, the naive version and the matMul interleaved, in a Node whose garbage collector runs on the calling ' +
        'thread (`npm run bench` passes `--single-threaded-gc`: V8\'s background collector took the second core from ' +
        'two-thread calls).' + (backend.backend === 'tensorflow' ? '' :
          ' The matMul runs on one thread; "1 thread ms" is the same call kept on one thread where the row ran on two ' +
          '("% of matMul, 1 thread" is then its share; on one-thread rows it is "% of matMul").'));
    parts.push('', formatTable(backend), '');
    const training = formatTrainingTable(backend);
    if (training != null) parts.push(training, '');
    const masked = formatMaskTable(backend);
    if (masked != null) parts.push(masked, '');
    const twoThreads = formatTwoThreadTable(backend);
    if (twoThreads != null) parts.push(twoThreads, '');
    const refused = backend.rows.filter(r => r.status !== 'ok');
    for (const row of refused) parts.push(`- (${row.batch}, ${row.length}, ${row.dModel}, ${row.heads}) ${row.path} ${row.pass}: ${row.note}`);
    for (const note of backend.notes) parts.push(`- ${note}`);
    parts.push('', `Targets (issues 5 and 13 set them for wasm; a target whose rows this grid did not run is "not run"):`,
        ...evaluateTargets(backend).map(t => `- ${t.status === 'missed' ? 'MISSED' : t.status}: ${t.target}: ${t.detail}`), '');
  }
  if (results.backends.length > 1) parts.push(formatSideBySide(results), '', formatSpeedups(results));
  const thresholds = results.backends.map(b => `${b.backend} ` +
      (b.memoryEfficientThreshold == null ? 'only past the memory budget' : `from S >= ${b.memoryEfficientThreshold}`));
  const kernels = results.kernels == null ? 'none (no wasm SIMD)' : results.kernels === 'relaxed-simd' ?
      'relaxed SIMD (the backward with fused multiply-adds)' : 'SIMD (relaxed SIMD not available here)';
  parts.push(`Node ${results.node}, ${results.cpus} CPUs; wasm kernels: ${kernels}; memory-efficient by default: ${thresholds.join(', ')}; ` +
      `block ${results.defaultBlockSize}.`);
  return parts.join('\n');
}

/**
 * The mask rows (MASK_GRID), each against the same call without its mask, timed
 * interleaved; null when none ran.
 */
export function formatMaskTable(results: BackendResults): string|null {
  const rows = results.rows.filter(r => r.mask != null && r.status === 'ok');
  if (rows.length === 0) return null;
  const ratio = (a: number|null, b: number|null) => (a == null || b == null ? null : a / b);
  const mib = (bytes: number|null) => (bytes == null ? null : bytes / MIB);
  return ['Masks on the memory-efficient path, against the same call unmasked (timed interleaved):', '',
    '| B, T, d, H | mask | pass | median ms | unmasked ms | time × | peak MiB | unmasked peak MiB | peak × |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map(r => `| ${r.batch}, ${r.length}, ${r.dModel}, ${r.heads} | ${r.mask} | ${r.pass} | ${fixed(r.medianMs, 2)} | ` +
        `${fixed(r.unmaskedMedianMs, 2)} | ${fixed(ratio(r.medianMs, r.unmaskedMedianMs), 2)} | ${fixed(mib(r.peakBytes), 1)} | ` +
        `${fixed(mib(r.unmaskedPeakBytes), 1)} | ${fixed(ratio(r.peakBytes, r.unmaskedPeakBytes), 2)} |`),
  ].join('\n');
}

/** A forward row and the forward+backward row of the same point, path asked and mask. */
export interface TrainingRatio {
  forward: BenchRow;
  training: BenchRow;
  /** 'default', or the path forced ('standard', 'memory-efficient'). */
  asked: string;
  /**
   * The forward's median that the ratio divides by: the forward timed interleaved with the
   * forward+backward row (its forwardMedianMs), else (rows of an older run) the forward row's.
   */
  forwardMs: number;
  /** training.medianMs / forwardMs, each on the threads it ran on (the FLOP count is 3×). */
  ratio: number;
  /** The same with both calls on one thread (the one-thread twin where a row ran on two: the forward row's, timed apart). */
  oneThreadRatio: number;
}

/** The median of a row kept on one thread: its one-thread twin on two-thread rows, else its own. */
function oneThreadMs(row: BenchRow): number|null {
  return row.threads === 2 ? row.oneThreadMedianMs : row.medianMs;
}

/** The keys a row is found by: its path asked, and 'default' too for a forced row that the default runs. */
function pairKeys(row: BenchRow): string[] {
  const key = (path: string) => `${row.batch},${row.length},${row.dModel},${row.heads},${path},${row.mask}`;
  return row.isDefault && row.path !== 'default' ? [key('default'), key(row.path)] : [key(row.path)];
}

/** forward+backward against forward, per point, path asked and mask: rows that ran in both passes. */
export function trainingRatios(results: BackendResults): TrainingRatio[] {
  const ok = results.rows.filter(r => r.status === 'ok' && r.medianMs != null);
  const ratios: TrainingRatio[] = [];
  for (const forward of ok.filter(r => r.pass === 'forward')) {
    for (const key of pairKeys(forward)) {
      const training = ok.find(r => r.pass === 'forward+backward' && pairKeys(r).includes(key));
      if (training == null || ratios.some(p => p.forward === forward && p.training === training)) continue;
      const forwardMs = training.forwardMedianMs ?? forward.medianMs!;
      // The forward on one thread: the one timed with the row where the forward runs on one thread, else its row's twin.
      const [f1, t1] = [forward.threads === 2 ? forward.oneThreadMedianMs : forwardMs, oneThreadMs(training)];
      ratios.push({forward, training, asked: key.split(',')[4], forwardMs, ratio: training.medianMs! / forwardMs,
        oneThreadRatio: f1 == null || t1 == null ? NaN : t1 / f1});
    }
  }
  return ratios;
}

/** The training table: forward+backward ÷ forward per point (issue 13's target: at most 3.5×); null when no pair ran. */
export function formatTrainingTable(results: BackendResults): string|null {
  const ratios = trainingRatios(results);
  if (ratios.length === 0) return null;
  const pathOf = (r: BenchRow) => (r.ranPath === 'memory-efficient' ? `memory-efficient (${r.blockSize})` : r.ranPath) +
      (r.threads === 2 ? ', 2 threads' : '');
  return ['Forward+backward against forward (the FLOP count is 3×). "forward ms": the forward timed interleaved with the ' +
    'forward+backward row, in the same rounds, which "× forward" divides by; "× forward, 1 thread": the rows\' one-thread medians.', '',
    '| B, T, d, H | asked | forward: path | forward ms | forward+backward: path | forward+backward ms | × forward | × forward, 1 thread | forward+backward % of matMul | forward+backward % of matMul, 1 thread |',
    '| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |',
    ...ratios.map(({forward: f, training: t, asked, forwardMs, ratio, oneThreadRatio}) =>
      `| ${f.batch}, ${f.length}, ${f.dModel}, ${f.heads} | ${asked}${f.mask == null ? '' : `, ${f.mask} mask`} | ` +
      `${pathOf(f)} | ${fixed(forwardMs, 2)} | ${pathOf(t)} | ${fixed(t.medianMs, 2)} | ${fixed(ratio, 2)} | ` +
      `${fixed(oneThreadRatio, 2)} | ${fixed((t.fractionOfMatMul ?? NaN) * 100, 0)} | ${fixed((t.oneThreadFractionOfMatMul ?? NaN) * 100, 0)} |`),
  ].join('\n');
}

/**
 * Where the time of the two-thread rows goes (issue 13's "why are two threads not twice as
 * fast"); null when no row ran on two threads.
 */
export function formatTwoThreadTable(results: BackendResults): string|null {
  const rows = results.rows.filter(r => r.status === 'ok' && r.twoThreadParts != null);
  if (rows.length === 0) return null;
  return ['Two threads: where a call\'s time goes (ms, medians over the timed calls; the kernel calls\' parts summed per call). ' +
    '"outside": the call\'s time outside its two-thread kernel calls (projections, tfjs ops; one thread); "before"/"after": ' +
    'this thread alone, copying into the shared memory and packing / copying out and adding the threads\' parts; ' +
    '"wake-up": hand-over to the worker\'s start; "waiting": this thread idle after its share. Ideal: outside, before and ' +
    'after near 0, the two shares equal, waiting near 0. "machine ×": what two threads gave on this machine in the ' +
    `row's rounds, whatever the layer does: one kernel call (attend_4x8 of one ${CEILING_CALL.queries}×${CEILING_CALL.keys}×` +
    `${CEILING_CALL.depth} pair, each thread its own memory) made on both threads at once, their calls per second over ` +
    'this thread\'s alone ("alone ms", "together ms": this thread\'s; "worker ms": the other\'s, meanwhile). A row cannot ' +
    'gain more than that from splitting its work.', '',
    '| B, T, d, H | pass | call ms | 1 thread ms | × | kernel calls | outside | before | this thread\'s share | worker\'s share | wake-up | waiting | after | machine × | alone ms | together ms | worker ms |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map(r => {
      const p = r.twoThreadParts!;
      const c = r.twoThreadCeiling;
      return `| ${r.batch}, ${r.length}, ${r.dModel}, ${r.heads} | ${r.pass} | ${fixed(r.medianMs, 2)} | ${fixed(r.oneThreadMedianMs, 2)} | ` +
        `${fixed(r.speedupVsOneThread, 2)} | ${p.kernelCalls} | ${fixed(p.outsideMs, 2)} | ${fixed(p.beforeMs, 2)} | ${fixed(p.mineMs, 2)} | ` +
        `${fixed(p.workerMs, 2)} | ${fixed(p.wakeMs, 3)} | ${fixed(p.waitMs, 2)} | ${fixed(p.afterMs, 2)} | ` +
        `${fixed(c?.ceiling ?? null, 2)} | ${fixed(c?.aloneMs ?? null, 2)} | ${fixed(c?.togetherMs ?? null, 2)} | ${fixed(c?.workerMs ?? null, 2)} |`;
    }),
  ].join('\n');
}

/**
 * Every backend's median for each row, side by side (the path each ran, and its time), and
 * the fastest: rows are matched by point, path asked for, mask and pass. The 'default' line
 * of a point compares what each backend chooses by itself: its default row, or the forced row
 * that ran the same path (marked as the default, the default row itself being left out).
 */
export function formatSideBySide(results: BenchResults): string {
  const names = results.backends.map(b => b.backend);
  const lines = ['## Side by side (same run)', '',
    `| B, T, d, H | asked | pass | ${names.map(n => `${n}: path | ${n} ms`).join(' | ')} | fastest |`,
    `| --- | --- | --- | ${names.map(() => '--- | ---:').join(' | ')} | --- |`];
  const keyOf = (r: BenchRow, path: string = r.path) => `${r.batch},${r.length},${r.dModel},${r.heads},${path},${r.mask},${r.pass}`;
  const keysOf = (r: BenchRow) => (r.isDefault && r.path !== 'default' ? [keyOf(r, 'default'), keyOf(r)] : [keyOf(r)]);
  const keys: string[] = [];
  for (const backend of results.backends) {
    for (const row of backend.rows) for (const key of keysOf(row)) if (!keys.includes(key)) keys.push(key);
  }
  // The 'default' line of each point first, then the forced paths, in the order the grid runs them.
  const point = (key: string) => key.split(',').slice(0, 4).join(',');
  keys.sort((a, b) => (point(a) !== point(b) ? 0 : Number(!a.includes(',default,')) - Number(!b.includes(',default,'))));
  for (const key of keys) {
    const asked = key.split(',')[4];
    const rows = results.backends.map(b => b.rows.find(r => keysOf(r).includes(key)));
    const any = rows.find(r => r != null)!;
    const cells = rows.map(r => (r == null ? '– | –' : r.status !== 'ok' ? `${r.ranPath} | ${r.status}` :
        `${r.ranPath === 'memory-efficient' ? `memory-efficient (${r.blockSize})` : r.ranPath} | ${fixed(r.medianMs, 2)}`));
    const timed = rows.map((r, i) => ({i, ms: r?.status === 'ok' ? r.medianMs : null})).filter(t => t.ms != null) as Array<{i: number; ms: number}>;
    timed.sort((a, b) => a.ms - b.ms);
    const fastest = timed.length < 2 ? '–' : `${names[timed[0].i]}, ${fixed(timed[1].ms / timed[0].ms, 2)}× ${names[timed[1].i]}`;
    lines.push(`| ${any.batch}, ${any.length}, ${any.dModel}, ${any.heads} | ${asked}${any.mask == null ? '' : `, ${any.mask} mask`} | ` +
        `${any.pass} | ${cells.join(' | ')} | ${fastest} |`);
  }
  return lines.join('\n');
}

/**
 * How many times faster the first backend ran each row than every other backend, for the
 * rows both ran: the layer, and the naive version.
 */
export function formatSpeedups(results: BenchResults): string {
  const [first, ...others] = results.backends;
  const lines: string[] = [];
  for (const other of others) {
    lines.push(`## ${first.backend} over ${other.backend} (same run)`, '',
        '| B, T, d, H | path | pass | layer × | naive × |', '| --- | --- | --- | ---: | ---: |');
    for (const row of first.rows) {
      const twin = other.rows.find(r => r.batch === row.batch && r.length === row.length && r.dModel === row.dModel &&
          r.heads === row.heads && r.path === row.path && r.mask === row.mask && r.pass === row.pass && r.status === 'ok');
      if (twin == null || row.status !== 'ok') continue;
      const ratio = (a: number|null, b: number|null) => (a == null || b == null ? null : a / b);
      lines.push(`| ${row.batch}, ${row.length}, ${row.dModel}, ${row.heads} | ${row.ranPath} | ${row.pass} | ` +
          `${fixed(ratio(twin.medianMs, row.medianMs), 1)} | ${fixed(ratio(twin.naiveMedianMs, row.naiveMedianMs), 1)} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

/** A target of the issue and whether this run met it. */
export interface TargetCheck {
  target: string;
  /** True only when the rows were run and met the target. */
  met: boolean;
  /** 'not run' when this run's grid lacks a row the target needs (e.g. --quick), so it says nothing of it. */
  status: 'met'|'missed'|'not run';
  detail: string;
}

/** The check, with `status` from whether its rows were run and `met`. */
function check(target: string, ran: boolean, met: boolean, detail: string): TargetCheck {
  return {target, met: ran && met, status: !ran ? 'not run' : met ? 'met' : 'missed', detail};
}

function find(rows: BenchRow[], length: number, batch: number, pass: string, ran?: string, path?: string): BenchRow|undefined {
  return rows.find(r => r.mask == null && r.length === length && r.batch === batch && r.pass === pass &&
      (ran == null || r.ranPath === ran) && (path == null || r.path === path));
}

/**
 * Checks the targets against one backend's rows: issue 5's (1-6) and issue 13's for training
 * (7-9); a target whose rows were not run is 'not run'.
 */
export function evaluateTargets(results: BackendResults): TargetCheck[] {
  const rows = results.rows;
  const checks: TargetCheck[] = [];
  const small = [find(rows, 16, 32, 'forward'), find(rows, 128, 8, 'forward')];
  checks.push(check(
      '1. forward >= 2× naive at (32, 16, 64, 1) and (8, 128, 64, 4)',
      small.every(r => r != null),
      small.every(r => r?.speedupVsNaive != null && r.speedupVsNaive >= 2),
      small.map(r => (r == null ? 'not run' : `${fixed(r.speedupVsNaive, 2)}×`)).join(', ')));
  const long = rows.filter(r => r.length >= 1024 && r.pass === 'forward' && r.status === 'ok' && r.isDefault);
  // Judged on one thread, like the matMul it is compared with; the two-thread figure is shown beside it.
  checks.push(check(
      '2. forward >= 85% of the plain matMul GFLOP/s at T >= 1024 (default path, one thread)',
      long.length > 0,
      long.every(r => (r.oneThreadFractionOfMatMul ?? 0) >= 0.85),
      long.length === 0 ? 'not run' :
          long.map(r => `T=${r.length} ${r.ranPath}: ${fixed((r.oneThreadFractionOfMatMul ?? NaN) * 100, 0)}%` +
              (r.threads === 2 ? ` (${fixed((r.fractionOfMatMul ?? NaN) * 100, 0)}% on two threads)` : '')).join(', ')));
  const std8k = find(rows, 8192, 1, 'forward', 'standard', 'standard');
  const me8k = find(rows, 8192, 1, 'forward', 'memory-efficient', 'memory-efficient');
  const ok8k = std8k?.status === 'ok' && me8k?.status === 'ok';
  const peakRatio = ok8k ? me8k!.peakBytes! / std8k!.peakBytes! : NaN;
  // The standard call timed in the memory-efficient row's rounds where it was (runs before 2026-12-01: the row's).
  const sameRounds = me8k?.standardMedianMs != null;
  const timeRatio = ok8k ? me8k!.medianMs! / (sameRounds ? me8k!.standardMedianMs! : std8k!.medianMs!) : NaN;
  checks.push(check(
      '3. at T = 8192 memory-efficient peak <= 1/8 of standard and time <= 1.3× standard (forward)',
      std8k != null && me8k != null,
      ok8k && peakRatio <= 1 / 8 && timeRatio <= 1.3,
      ok8k ? `peak ${fixed(peakRatio * 100, 1)}% of standard (${fixed(me8k!.peakBytes! / MIB, 0)} vs ` +
          `${fixed(std8k!.peakBytes! / MIB, 0)} MiB), time ${fixed(timeRatio, 2)}×` +
          (sameRounds ? ` (the standard call timed in the same rounds: ${fixed(me8k!.standardMedianMs!, 0)} ms; its own row ` +
              `${fixed(std8k!.medianMs, 0)} ms)` : '') :
          std8k == null || me8k == null ? 'not run' : `standard: ${std8k.status}, memory-efficient: ${me8k.status}`));
  const me16k = find(rows, 16384, 1, 'forward+backward', 'memory-efficient', 'memory-efficient');
  const std16k = find(rows, 16384, 1, 'forward+backward', 'standard', 'standard');
  checks.push(check(
      '4. forward+backward at T = 16384 completes with the memory-efficient path; standard works or is refused up front',
      me16k != null && std16k != null,
      me16k?.status === 'ok' && std16k != null && std16k.status !== 'skipped',
      `memory-efficient: ${me16k == null ? 'not run' : me16k.status === 'ok' ? `${fixed(me16k.medianMs! / 1000, 1)} s` : me16k.status}; ` +
          `standard: ${std16k == null ? 'not run' : std16k.status}`));
  const leaks = rows.filter(r => r.leakedTensors !== 0);
  checks.push(check(
      '5. no benchmarked path leaks tensors',
      rows.length > 0,
      leaks.length === 0,
      leaks.length === 0 ? `0 tensors leaked in ${rows.length} rows` :
          leaks.map(r => `(${r.batch}, ${r.length}) ${r.path} ${r.pass}: ${r.leakedTensors}`).join(', ')));
  const maskRows = rows.filter(r => r.mask != null && r.length === 8192);
  const maskOk = (r: BenchRow) => r.status === 'ok' && r.peakBytes! <= 1.25 * r.unmaskedPeakBytes! &&
      r.medianMs! <= 1.5 * r.unmaskedMedianMs!;
  checks.push(check(
      '6. at T = 8192 masks (padding, causal, explicit) keep the memory-efficient peak <= 1.25× and time <= 1.5× of the unmasked call (forward and forward+backward)',
      maskRows.length > 0,
      maskRows.length === 6 && maskRows.every(maskOk),
      maskRows.length === 0 ? 'not run' : maskRows.map(r => `${r.mask} ${r.pass}: ` + (r.status !== 'ok' ? r.status :
          `peak ${fixed(r.peakBytes! / r.unmaskedPeakBytes!, 2)}×, time ${fixed(r.medianMs! / r.unmaskedMedianMs!, 2)}×`)).join(', ')));
  checks.push(...evaluateTrainingTargets(results));
  return checks;
}

/** The issue's grid, where issue 13 sets its training targets: (B, T) with d = 64. */
const ISSUE_GRID: Array<[number, number]> = [[32, 16], [8, 128], [1, 1024], [1, 4096]];

/**
 * Issue 13's targets for training (7-9), on the default path: forward+backward at T >= 1024
 * at least 100% of the one-thread matMul's GFLOP/s (the row on its default threads); at
 * most 3.5× the forward time at each point of the issue's grid; and two threads at least
 * 1.8× one thread at T >= 1024, forward and forward+backward.
 */
export function evaluateTrainingTargets(results: BackendResults): TargetCheck[] {
  const rows = results.rows.filter(r => r.mask == null && r.isDefault);
  const checks: TargetCheck[] = [];
  const long = rows.filter(r => r.pass === 'forward+backward' && r.length >= 1024);
  checks.push(check(
      '7. forward+backward >= 100% of the one-thread matMul GFLOP/s at T >= 1024 (default path, default threads; issue 13)',
      long.length > 0,
      long.every(r => r.status === 'ok' && (r.fractionOfMatMul ?? 0) >= 1),
      long.length === 0 ? 'not run' : long.map(r => `T=${r.length} ${r.ranPath}: ` + (r.status !== 'ok' ? r.status :
          `${fixed((r.fractionOfMatMul ?? NaN) * 100, 0)}%` +
          (r.threads === 2 ? ` (${fixed((r.oneThreadFractionOfMatMul ?? NaN) * 100, 0)}% on one thread)` : ''))).join(', ')));
  const ratios = trainingRatios(results).filter(p => p.asked === 'default' && p.forward.mask == null);
  const onGrid = ISSUE_GRID.map(([B, T]) => ratios.find(p => p.forward.batch === B && p.forward.length === T && p.forward.dModel === 64));
  checks.push(check(
      '8. forward+backward <= 3.5× forward at (32, 16, 64, 1), (8, 128, 64, 4), (1, 1024, 64, 1), (1, 4096, 64, 1) (default paths; issue 13)',
      onGrid.every(p => p != null),
      onGrid.every(p => p != null && p.ratio <= 3.5),
      onGrid.map((p, i) => `T=${ISSUE_GRID[i][1]}: ${p == null ? 'not run' : `${fixed(p.ratio, 2)}×`}`).join(', ')));
  const twoThreads = rows.filter(r => r.length >= 1024);
  checks.push(check(
      '9. two threads >= 1.8× one thread at T >= 1024, forward and forward+backward (default path; issue 13)',
      twoThreads.some(r => r.pass === 'forward') && twoThreads.some(r => r.pass === 'forward+backward'),
      twoThreads.every(r => r.status === 'ok' && r.threads === 2 && (r.speedupVsOneThread ?? 0) >= 1.8),
      twoThreads.length === 0 ? 'not run' : twoThreads.map(r => `T=${r.length} ${r.pass}: ` + (r.status !== 'ok' ? r.status :
          r.threads !== 2 ? 'one thread' : `${fixed(r.speedupVsOneThread, 2)}×` +
          (r.twoThreadCeiling == null ? '' : ` (machine ${fixed(r.twoThreadCeiling.ceiling, 2)}×)`))).join(', ')));
  return checks;
}

/** Writes the results as JSON (creating the folder); returns the path written. */
export function writeJson(file: string, results: BenchResults): string {
  fs.mkdirSync(path.dirname(path.resolve(file)), {recursive: true});
  fs.writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  return file;
}
