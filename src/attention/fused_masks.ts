/**
 * The masks of the op's fused route (wasm): an explicit mask, with the key padding, as the
 * additive bias that the fused kernels add to their scores, kept at the size the mask
 * broadcasts from; and the query rows that the masks leave with no key, which the op zeroes
 * after, as the standard path does.
 */
import * as tf from '@tensorflow/tfjs';
import {causalMask, maskBias, toBoolMask} from './masks';

/**
 * An explicit mask (checked: see checkMaskShape) aligned to [Bm, Hm, Tm, Sm], bool: rank 2
 * [T, S] -> [1, 1, T, S]; rank 3 [B, T, S] -> [B, 1, T, S] (every head, and the one head of
 * rank-3 inputs); rank 4 as it is.
 */
function alignedMask(mask: tf.Tensor): tf.Tensor4D {
  const bool = toBoolMask(mask);
  if (mask.rank === 2) return bool.reshape([1, 1, ...mask.shape]);        // [1, 1, Tm, Sm]
  if (mask.rank === 3) return bool.expandDims(1) as tf.Tensor4D;           // [Bm, 1, Tm, Sm]
  return bool as tf.Tensor4D;                                              // [Bm, Hm, Tm, Sm]
}

/**
 * The fused kernels' bias (float32, 0 where attended and MASKED_LOGIT where not) for an
 * explicit mask and a key padding mask [B, S] (either may be null; null when both are):
 * the key padding alone stays a [B, S] row for every query; with a mask [Bm, Hm, Tm, Sm] it
 * is [Bb, Hb, Tb, S], the mask's own sizes in batch (B with a key padding), head and query,
 * and its key axis expanded when Sm is 1 (see src/backend/attention_bias.ts). `S`: the keys.
 * Causal stays out: the kernels apply it themselves.
 */
export function fusedMaskBias(mask: tf.Tensor|null, keyPadding: tf.Tensor|null, S: number): tf.Tensor|null {
  if (mask == null && keyPadding == null) return null;
  return tf.tidy(() => {
    if (mask == null) return maskBias(toBoolMask(keyPadding!));            // [B, S]
    let allowed: tf.Tensor = alignedMask(mask);                            // [Bm, Hm, Tm, Sm]
    if (keyPadding != null) {
      const keys = toBoolMask(keyPadding).reshape([keyPadding.shape[0], 1, 1, S]);  // [B, 1, 1, S]
      allowed = tf.logicalAnd(allowed, keys);                              // [B, Hm, Tm, S]
    }
    const [Bb, Hb, Tb] = allowed.shape;
    if (allowed.shape[3] !== S) allowed = tf.broadcastTo(allowed, [Bb, Hb, Tb, S]);  // [Bb, Hb, Tb, S]
    return maskBias(allowed);                                              // [Bb, Hb, Tb, S] float32
  });
}

/**
 * 1 for the queries that attend at least one key under an explicit mask, the key and query
 * padding and `causal` together, 0 for the others: [Br, Hr, Tr, 1] float32 for rank-4 inputs
 * (Br 1 or B, Hr 1 or H, Tr 1 or T), [Br, Tr, 1] for rank-3 ones, which broadcasts against the
 * output. `scoresShape`: [B, (H,) T, S].
 */
export function fusedAttendedRows(
    mask: tf.Tensor, keyPadding: tf.Tensor|null, queryPadding: tf.Tensor|null, causal: boolean, scoresShape: number[]): tf.Tensor {
  const [T, S] = scoresShape.slice(-2);
  return tf.tidy(() => {
    let allowed: tf.Tensor = alignedMask(mask);                            // [Bm, Hm, Tm, Sm]
    if (keyPadding != null) {
      allowed = tf.logicalAnd(allowed, toBoolMask(keyPadding).reshape([keyPadding.shape[0], 1, 1, S]));  // [B, Hm, Tm, S]
    }
    if (causal) allowed = tf.logicalAnd(allowed, causalMask(T, S));         // [Bb, Hm, T, S]
    let rows = tf.cast(tf.any(allowed, -1, true), 'float32');              // [Bb, Hm, Tb, 1]
    if (queryPadding != null) {
      rows = tf.mul(rows, tf.cast(toBoolMask(queryPadding), 'float32').reshape([queryPadding.shape[0], 1, T, 1]));  // [B, Hm, T, 1]
    }
    return scoresShape.length === 4 ? rows : rows.squeeze([1]);            // [Br, (Hr,) Tr, 1]
  });
}
