/** Matrix products the fastest way per backend: explicit transposes where matMul's flags are slow, and a dense product for the layer's projections. */
import * as tf from '@tensorflow/tfjs';
import {denseFused, denseFusedFits} from '../backend/wasm_dense';
import {denseTrainable} from '../backend/wasm_dense_training';

/**
 * Backends on which matMul's transpose flags are slow. tfjs-backend-wasm 4.22 hands a
 * product to XNNPACK only when both operands have batch 1 and neither flag is set; every
 * other product runs a scalar triple loop at about 1 GFLOP/s, against about 20-40 GFLOP/s
 * for XNNPACK on this machine (`npm run bench`). There `matMul(q, k, false, true)` on
 * [1, 1024, 64] inputs takes 43 ms against 5.7 ms for `matMul(q, transpose(k))`, and in
 * the memory-efficient path at T = S = 1024, d = 16, causal, explicit transposes took the
 * forward from 84 to 31 ms and forward+backward from 261 to 69 ms. On cpu the flags are as
 * fast as or faster than an explicit transpose (one before transposeA costs ~2.5×).
 */
const TRANSPOSE_FIRST = new Set(['wasm']);

/** Whether the active backend wants explicit transposes and batch-1 products (see TRANSPOSE_FIRST). */
export function transposeFlagsAreSlow(): boolean {
  return TRANSPOSE_FIRST.has(tf.getBackend());
}


/** Swaps the last two axes: [..., N, K] -> [..., K, N]. */
export function swapLastAxes(x: tf.Tensor): tf.Tensor {
  const perm = x.shape.map((_, axis) => axis);
  perm[x.rank - 2] = x.rank - 1;
  perm[x.rank - 1] = x.rank - 2;
  return tf.transpose(x, perm);
}

/** The number of elements of a shape. */
export function sizeOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * op(a) · op(b) over the last two axes, where op transposes when its flag is set; the same
 * result as `tf.matMul(a, b, transposeA, transposeB)`, computed the fastest way for the
 * backend. Where the flags are slow (wasm) and the product has batch 1, the flags are
 * replaced by explicit transposes (`withExplicitTransposes`). Batched products keep the
 * flags there: wasm runs them in the same scalar loop either way.
 */
export function matMulFast(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor {
  const batch = sizeOf(a.shape.slice(0, -2));
  if (!transposeFlagsAreSlow() || (!transposeA && !transposeB) || batch !== 1 || sizeOf(b.shape.slice(0, -2)) !== 1) {
    return tf.matMul(a, b, transposeA, transposeB);
  }
  return withExplicitTransposes(a, b, transposeA, transposeB, (x, y) => tf.matMul(x, y));  // [..., M, N]
}

/**
 * op(a)·op(b) from `product`, which multiplies untransposed operands: as
 * product(op(a), op(b)) with explicit transposes, or as product(op(b)ᵀ, op(a)ᵀ)ᵀ, whichever
 * moves fewer elements (for Pᵀ·dO with P [T, S] and dO [T, dv] the second transposes two
 * [T, dv]-sized tensors instead of the [T, S] one).
 */
export function withExplicitTransposes(
    a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean, product: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor): tf.Tensor {
  if (!transposeA && !transposeB) return product(a, b);                         // [..., M, N]
  return tf.tidy(() => {
    const outRows = a.shape[a.rank - (transposeA ? 1 : 2)];
    const outCols = b.shape[b.rank - (transposeB ? 2 : 1)];
    const direct = (transposeA ? a.size : 0) + (transposeB ? b.size : 0);
    const swapped = (transposeA ? 0 : a.size) + (transposeB ? 0 : b.size) + sizeOf(a.shape.slice(0, -2)) * outRows * outCols;
    if (direct <= swapped) return product(transposeA ? swapLastAxes(a) : a, transposeB ? swapLastAxes(b) : b);  // [..., M, N]
    return swapLastAxes(product(transposeB ? b : swapLastAxes(b), transposeA ? a : swapLastAxes(a)));          // [..., M, N]
  });
}

/**
 * x·w (+ b) on 2-D x [N, dIn], w [dIn, dOut] with explicit-transpose gradients. tfjs's own
 * gradients of x·w are matMul(dy, w, false, true) and matMul(x, dy, true, false): on wasm
 * the scalar loop, so that a [1024, 64]·[64, 64] projection's backward took ~8 ms instead
 * of ~0.5 ms.
 */
const denseExplicit = tf.customGrad((...args: Array<tf.Tensor|tf.GradSaveFunc>) => {
  const [x, w] = args as tf.Tensor2D[];
  const hasBias = args.length === 4;
  const save = args[args.length - 1] as tf.GradSaveFunc;
  save([x, w]);
  const product = tf.matMul(x, w);  // [N, dOut]
  return {
    value: hasBias ? tf.add(product, args[2] as tf.Tensor1D) : product,  // [N, dOut]
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xS, wS] = saved;
      const dx = matMulFast(dy, wS, false, true);  // [N, dIn]
      const dw = matMulFast(xS, dy, true, false);  // [dIn, dOut]
      return hasBias ? [dx, dw, tf.sum(dy, 0)] : [dx, dw];
    },
  };
});

/**
 * x [..., dIn] · w [dIn, dOut] (+ b [dOut]) -> [..., dOut], as one 2-D product: on wasm the SIMD
 * kernel (`denseTrainable` while tfjs records gradients, its backward in the kernel too;
 * `denseFused` for inference) where w fits `denseFusedFits`, else `denseExplicit` while recording,
 * else tfjs' matMul.
 */
export function dense(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor|null): tf.Tensor {
  const [dIn, dOut] = w.shape;
  const outShape = [...x.shape.slice(0, -1), dOut];
  const x2 = x.reshape([-1, dIn]) as tf.Tensor2D;  // [N, dIn]
  let y: tf.Tensor;
  // The custom gradients only while tfjs records gradients: their wrappers cost ~0.1 ms a call.
  const [recording, fused] = [tf.engine().isTapeOn(), denseFusedFits(dIn, dOut)];
  if (recording && fused) {
    y = b == null ? denseTrainable(x2, w as tf.Tensor2D) : denseTrainable(x2, w as tf.Tensor2D, b as tf.Tensor1D);  // [N, dOut]
  } else if (recording && transposeFlagsAreSlow()) {
    y = b == null ? denseExplicit(x2, w) : denseExplicit(x2, w, b);  // [N, dOut]
  } else if (fused) {
    y = denseFused(x2, w, b);                                        // [N, dOut]
  } else {
    y = tf.matMul(x2, w as tf.Tensor2D);  // [N, dOut]
    if (b != null) y = tf.add(y, b);
  }
  return y.reshape(outShape);
}
