/** Timing, peak tensor bytes and leak counting for the benchmark. */
import * as tf from '@tensorflow/tfjs';

/** What one benchmarked call returns: its output tensor(s), disposed by the harness. */
export type BenchCall = () => tf.Tensor|tf.Tensor[];

/** The median of a non-empty list. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Runs `call` once and returns its wall time in ms. The outputs are read back (dataSync),
 * so the time includes all the work also on backends that run asynchronously; on cpu and
 * wasm kernels run eagerly and the read is a copy of the output alone.
 */
export function timeOnce(call: BenchCall): number {
  const start = performance.now();
  const out = call();
  for (const t of Array.isArray(out) ? out : [out]) t.dataSync();
  const ms = performance.now() - start;
  tf.dispose(out);
  return ms;
}

/**
 * A forward+backward call: f's output and the gradients of `variables` for the output gradient
 * `dy` (a vector-Jacobian product, as PyTorch's `out.backward(dy)`). No loss: a loss's own
 * gradient is not the layer's work, and in tfjs it is not free (the gradient of a sum fills a
 * tensor of ones in JavaScript and multiplies: 0.34 ms at (32, 16, 64, 1) on wasm, a tenth of the
 * layer's step there).
 */
export function vectorJacobianCall(f: () => tf.Tensor, variables: tf.Variable[], dy: tf.Tensor): BenchCall {
  return () => {
    const {value, grads} = tf.valueAndGrads((..._variables: tf.Tensor[]) => f())(variables, dy);
    return [...grads, value];
  };
}

/**
 * Times several calls interleaved: first each call alone, again and again until `settleMs` has
 * passed (none with 0), so that V8 has optimised the JavaScript around its kernels (a row timed after a
 * few rounds alone ran JIT-cold: the forward at (32, 16, 64, 1) 2.3-2.5 ms where 100 rounds gave
 * 1.8); then, after `warmup` untimed rounds, each of `reps` rounds runs every call once, in order.
 * Interleaving makes a slowdown of the shared machine hit all the calls alike, so that their
 * ratios stay meaningful. Returns each call's times.
 */
export function timeInterleaved(calls: BenchCall[], reps: number, warmup: number, settleMs = 0): number[][] {
  for (const call of calls) {
    const start = performance.now();
    while (performance.now() - start < settleMs) timeOnce(call);
  }
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
