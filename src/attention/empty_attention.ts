/** Attention with no query or no key (T = 0 or S = 0): one answer for every path, computed without a kernel. */
import * as tf from '@tensorflow/tfjs';
import {ValueError} from '../errors';

/**
 * Throws unless the head sizes dk (the last dimension of query and key) and dv (of value)
 * are at least 1: with dk = 0 there are no scores to scale (the default scale 1/√dk is
 * infinite), and dv = 0 leaves nothing to attend to. `received` names the inputs' shapes.
 */
export function checkHeadSizes(query: tf.Tensor, value: tf.Tensor, received: string): void {
  if (query.shape[query.rank - 1] === 0) {
    throw new ValueError(`The query and key vectors must have at least one element (dk >= 1). Received: ${received}`);
  }
  if (value.shape[value.rank - 1] === 0) {
    throw new ValueError(`The value vectors must have at least one element (dv >= 1). Received: ${received}`);
  }
}

/**
 * Whether queries [.., T, dk] and keys [.., S, dk] (dk >= 1) leave nothing to attend: T = 0,
 * S = 0, or an empty batch or head axis.
 */
export function isEmptyAttention(query: tf.Tensor, key: tf.Tensor): boolean {
  return query.size === 0 || key.size === 0;
}

/**
 * The result of attention with T = 0 or S = 0 (or an empty batch), as PyTorch's scaled_dot_product_attention
 * gives it: T = 0, an empty output [.., 0, dv]; S = 0, zeros [.., T, dv] (the product of
 * empty weights [.., T, 0] with values [.., 0, dv], and what a query whose keys are all
 * masked gets on every path here). With `returnWeights` also the weights [.., T, S], empty.
 * The gradients with respect to query, key and value are zeros. No kernel runs: wasm's
 * XNNPACK prints a status line to stderr for a product with an empty dimension.
 */
export function emptyAttention(query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, returnWeights: true): [tf.Tensor, tf.Tensor];
export function emptyAttention(query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, returnWeights?: boolean): tf.Tensor;
export function emptyAttention(
    query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, returnWeights = false): tf.Tensor|[tf.Tensor, tf.Tensor] {
  const lead = query.shape.slice(0, -2);
  const T = query.shape[query.rank - 2];
  const S = key.shape[key.rank - 2];
  const dv = value.shape[value.rank - 1];
  const zeros = tf.customGrad((...args: Array<tf.Tensor|tf.GradSaveFunc>) => {
    const [q, k, v] = args as tf.Tensor[];
    return {
      value: tf.zeros([...lead, T, dv]),                                   // [.., T, dv]
      gradFunc: () => [tf.zerosLike(q), tf.zerosLike(k), tf.zerosLike(v)],
    };
  });
  // Without a gradient tape the custom gradient's wrapper is not needed.
  const output = tf.engine().isTapeOn() ? zeros(query, key, value) : tf.zeros([...lead, T, dv]);
  return returnWeights ? [output, tf.zeros([...lead, T, S])] : output;    // [.., T, dv], [.., T, S]
}
