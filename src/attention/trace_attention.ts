/** traceAttention: the explainer's four steps of a layer's computation, as tensors to print and plot. */
import * as tf from '@tensorflow/tfjs';
import {ValueError} from '../errors';
import {combineMasks} from './masks';
import {matMulFast} from './matmul';
import {emptyAttention, isEmptyAttention} from './empty_attention';
import {ScaledDotProductAttention, ScaledDotProductAttentionOptions, splitInputs} from './scaled_dot_product_attention';

/**
 * The intermediate tensors of one attention call. B batch, H heads, T queries, S keys.
 * (A type alias, not an interface, so that it is a tf.TensorContainer: `tf.dispose(trace)`.)
 */
export type AttentionTrace = {
  /** Q = x·Wq (+bq), split into heads: [B, H, T, dk]. */
  query: tf.Tensor4D;
  /** K = c·Wk (+bk): [B, H, S, dk]. */
  key: tf.Tensor4D;
  /** V = c·Wv (+bv): [B, H, S, dv]. */
  value: tf.Tensor4D;
  /** Step 1, S = Q·Kᵀ: [B, H, T, S]. */
  scores: tf.Tensor4D;
  /** Step 2, S·scale (1/√dk by default): [B, H, T, S]. Masked entries keep their value. */
  scaled: tf.Tensor4D;
  /** Step 3, A = softmax(scaled) over keys, masked keys at 0: [B, H, T, S]. */
  weights: tf.Tensor4D;
  /** Step 4, R = A·V per head, before heads are merged and projected: [B, H, T, dv]. */
  output: tf.Tensor4D;
  /** The multiplier used in step 2. */
  scaleFactor: number;
};

/**
 * Runs the layer's computation as the four literal steps and returns every intermediate
 * tensor. The caller owns (and must dispose) the returned tensors; `tf.dispose(trace)`
 * does it. `inputs` is x or [query, context], as for `layer.apply`; `options` takes the
 * same `attentionMask` and padding `mask` as a call. The layer is built if it is not yet.
 */
export function traceAttention(
    layer: ScaledDotProductAttention, inputs: tf.Tensor|tf.Tensor[],
    options: ScaledDotProductAttentionOptions = {}): AttentionTrace {
  if (!(layer instanceof ScaledDotProductAttention)) {
    throw new ValueError(`Argument \`layer\` must be a ScaledDotProductAttention layer. Received: layer=${String(layer)}`);
  }
  const [query, context] = splitInputs(inputs);
  if (!layer.built) layer.apply(inputs);  // builds the weights, like a first call
  return tf.tidy(() => {
    const heads = layer.projectHeads(query, context);
    const dk = heads.query.shape[3];
    const scaleFactor = layer.scale ?? 1 / Math.sqrt(dk);
    if (isEmptyAttention(heads.query, heads.key)) {  // T = 0 or S = 0: no kernel runs (see emptyAttention)
      const [batch, numHeads, T] = heads.query.shape;
      const S = heads.key.shape[2];
      const empty = () => tf.zeros([batch, numHeads, T, S]) as tf.Tensor4D;  // [B, H, T, S], empty
      const output = emptyAttention(heads.query, heads.key, heads.value) as tf.Tensor4D;  // [B, H, T, dv]
      return {...heads, scores: empty(), scaled: empty(), weights: empty(), output, scaleFactor};
    }
    const scores = matMulFast(heads.query, heads.key, false, true);  // [B, H, T, S]
    const scaled = tf.mul(scores, scaleFactor);                        // [B, H, T, S]
    const mask = combineMasks(layer.attentionMaskFor(query, context, options), layer.causal, scaled.shape);
    // Masked scores become -∞ (exact zeros after exp; a row whose allowed scores are all -∞ is
    // NaN, as IEEE softmax has it), and a row with no allowed key gets zero weights.
    const weights = mask == null ? tf.softmax(scaled) :
        tf.where(tf.any(mask, -1, true), tf.softmax(tf.where(mask, scaled, -Infinity)), 0);  // [B, H, T, S]
    const output = tf.matMul(weights, heads.value);                   // [B, H, T, dv]
    return {
      query: heads.query, key: heads.key, value: heads.value,
      scores: scores as tf.Tensor4D, scaled: scaled as tf.Tensor4D, weights: weights as tf.Tensor4D,
      output: output as tf.Tensor4D, scaleFactor,
    };
  });
}
