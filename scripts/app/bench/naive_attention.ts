/** The seed's four steps written literally, with the layer's own weights: the benchmark's baseline. */
import * as tf from '@tensorflow/tfjs';
import type {ScaledDotProductAttention} from '../tfjs_attention';
import {ValueError} from '../tfjs_attention';

/** The layer's kernels and biases by their short names (wq, wk, wv, bq, bk, bv, wo, bo). */
export function layerWeights(layer: ScaledDotProductAttention): Map<string, tf.Variable> {
  const weights = new Map<string, tf.Variable>();
  for (const w of layer.trainableWeights) {
    const short = w.originalName.split('/').pop()!.replace(/_\d+$/, '');
    weights.set(short, w.read() as tf.Variable);
  }
  if (!weights.has('wq')) {
    throw new ValueError(`The layer must be built before its naive twin can run. Received: layer.built=${layer.built}`);
  }
  return weights;
}

/**
 * Self-attention on x [B, T, d] as a plain reading of the formula, with no optimisation:
 * three separate projections x·Wq (+bq), x·Wk (+bk), x·Wv (+bv); heads split by reshape and
 * transpose (also for one head); then the explainer's four steps: K transposed explicitly,
 * S = Q·Kᵀ, S / √dk (or the layer's scale), softmax, ·V; heads merged; then ·Wo (+bo) if
 * the layer has an output projection. No mask, causal or dropout: the benchmark uses none.
 * It computes what `layer.apply(x)` computes (test/bench_test.ts checks it), so the
 * benchmark's speed ratio compares the same work.
 */
export function naiveSelfAttention(layer: ScaledDotProductAttention, x: tf.Tensor): tf.Tensor {
  if (layer.causal || layer.returnAttentionScores) {
    throw new ValueError(
        'The naive twin covers plain self-attention only. ' +
        `Received: causal=${layer.causal}, returnAttentionScores=${layer.returnAttentionScores}`);
  }
  const w = layerWeights(layer);
  const [B, T, d] = x.shape as [number, number, number];
  const H = layer.numHeads;
  return tf.tidy(() => {
    const project = (kernel: string, bias: string) => {
      let y: tf.Tensor2D = tf.matMul(x.reshape([B * T, d]) as tf.Tensor2D, w.get(kernel)! as tf.Tensor2D);  // [B*T, H*dh]
      if (w.has(bias)) y = tf.add(y, w.get(bias)!);
      const dh = y.shape[1] / H;
      return y.reshape([B, T, H, dh]).transpose([0, 2, 1, 3]);                  // [B, H, T, dh]
    };
    const q = project('wq', 'bq');                                               // [B, H, T, dk]
    const k = project('wk', 'bk');                                               // [B, H, T, dk]
    const v = project('wv', 'bv');                                               // [B, H, T, dv]
    const dk = q.shape[3] as number;
    const kT = tf.transpose(k, [0, 1, 3, 2]);                                    // [B, H, dk, T]
    const scores = tf.matMul(q, kT);                                             // [B, H, T, T]
    const scaled = layer.scale == null ? tf.div(scores, Math.sqrt(dk)) : tf.mul(scores, layer.scale);
    const weights = tf.softmax(scaled);                                          // [B, H, T, T]
    const heads = tf.matMul(weights, v);                                         // [B, H, T, dv]
    const merged = heads.transpose([0, 2, 1, 3]).reshape([B, T, -1]);           // [B, T, H*dv]
    if (!w.has('wo')) return merged;
    let out = tf.matMul(merged.reshape([B * T, -1]), w.get('wo')! as tf.Tensor2D);  // [B*T, outputDim]
    if (w.has('bo')) out = tf.add(out, w.get('bo')!);
    return out.reshape([B, T, -1]);                                              // [B, T, outputDim]
  });
}
