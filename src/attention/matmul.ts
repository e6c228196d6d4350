/** Matrix products with the per-backend choices that measurement showed to be fastest. */
import * as tf from '@tensorflow/tfjs';

/**
 * Backends on which `matMul(a, b, false, true)` is slower than transposing b first: wasm's
 * transposed-operand kernel runs about 7x slower than its plain one (see `npm run bench`).
 */
const TRANSPOSE_FIRST = new Set(['wasm']);

/** a · bᵀ over the last two axes: a [..., M, K], b [..., N, K] -> [..., M, N]. */
export function matMulTransposeB(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (TRANSPOSE_FIRST.has(tf.getBackend())) {
    return tf.matMul(a, swapLastAxes(b));
  }
  return tf.matMul(a, b, false, true);
}

/** Swaps the last two axes: [..., N, K] -> [..., K, N]. */
export function swapLastAxes(x: tf.Tensor): tf.Tensor {
  const perm = x.shape.map((_, axis) => axis);
  perm[x.rank - 2] = x.rank - 1;
  perm[x.rank - 1] = x.rank - 2;
  return tf.transpose(x, perm);
}

/** x [..., dIn] · w [dIn, dOut] (+ b [dOut]) -> [..., dOut], as one 2-D matMul. */
export function dense(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor|null): tf.Tensor {
  const [dIn, dOut] = w.shape;
  const outShape = [...x.shape.slice(0, -1), dOut];
  let y = tf.matMul(x.reshape([-1, dIn]), w as tf.Tensor2D);  // [N, dOut]
  if (b != null) y = tf.add(y, b);
  return y.reshape(outShape);
}
