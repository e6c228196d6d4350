/** Timing, peak tensor bytes and leak counting for the benchmark. */
import * as tf from '@tensorflow/tfjs';
import {setFlagsFromString} from 'node:v8';
import {runInNewContext} from 'node:vm';

/**
 * A full garbage collection, run before each timed call so that the garbage of the calls
 * before it (the matMul's 4 MiB read-back, the naive version's tensors) is not collected
 * during it: V8 collects on background threads, which take the second core from a call on
 * two threads. Measured at (1, 1024, 64, 1) on wasm, interleaved with the naive version and
 * the matMul as the benchmark runs them (31 calls each, medians): the two-thread forward took
 * 5.02 ms with V8's concurrent collector in one run, 3.67 in another, and 3.70 ms with
 * `--single-threaded-gc` (one thread: 6.2-6.4 ms either way). Node exposes `gc` only behind a
 * flag; the flag set here takes effect for a new context.
 */
const collectGarbage: () => void = (() => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

/**
 * How long the harness sleeps after that collection, in ms: V8 sweeps the collected memory
 * on background threads after `gc()` returns. Measured as above, gc() right before each call
 * made the two-thread forward slower (5.17 ms), gc() and then 5 ms of sleep 3.69 ms.
 */
const SETTLE_MS = 10;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** What one benchmarked call returns: its output tensor(s), disposed by the harness. */
export type BenchCall = () => tf.Tensor|tf.Tensor[];

/** The median of a non-empty list. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Runs `call` once, after a full garbage collection and SETTLE_MS of sleep, and returns its wall time in ms. The outputs are read back (dataSync),
 * so the time includes all the work also on backends that run asynchronously; on cpu and
 * wasm kernels run eagerly and the read is a copy of the output alone.
 */
export function timeOnce(call: BenchCall): number {
  collectGarbage();
  Atomics.wait(sleeper, 0, 0, SETTLE_MS);
  const start = performance.now();
  const out = call();
  for (const t of Array.isArray(out) ? out : [out]) t.dataSync();
  const ms = performance.now() - start;
  tf.dispose(out);
  return ms;
}

/**
 * Times several calls interleaved: after `warmup` untimed rounds, each of `reps` rounds
 * runs every call once, in order. Interleaving makes a slowdown of the shared machine hit
 * all the calls alike, so that their ratios stay meaningful. Returns each call's times.
 */
export function timeInterleaved(calls: BenchCall[], reps: number, warmup: number): number[][] {
  for (let i = 0; i < warmup; i++) calls.forEach(timeOnce);
  const times = calls.map(() => [] as number[]);
  for (let r = 0; r < reps; r++) calls.forEach((call, i) => times[i].push(timeOnce(call)));
  return times;
}

/**
 * The peak of tensor bytes that the call adds while it runs: tf.profile's peakBytes (the
 * most bytes held by all live tensors after any kernel of the call) minus the bytes that
 * were live before it, so inputs and weights are not counted. Run apart from the timings,
 * since profiling slows kernels down. Intermediate buffers inside a single kernel are
 * invisible to it, and wasm's heap, which never shrinks, may be larger.
 */
export async function peakBytes(call: BenchCall): Promise<number> {
  const before = tf.memory().numBytes;
  const info = await tf.profile(() => call());
  tf.dispose(info.result as tf.TensorContainer);
  return Math.max(0, info.peakBytes - before);
}
