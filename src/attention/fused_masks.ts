/**
 * The masks of the op's fused route (wasm): an explicit mask, with the key padding, as the
 * additive bias that the fused kernels add to their scores, kept at the size the mask
 * broadcasts from; and the query rows that the masks leave with no key, which the op zeroes
 * after, as the standard path does.
 */
import * as tf from '@tensorflow/tfjs';
import {attendedQueries, causalMask, combineMasks, maskBias, toBoolMask} from './masks';

/**
 * An explicit mask, checked, as a bool mask of four axes [Bm, Hm, Tm, Sm] (dims of 1
 * broadcast): combineMasks' mask, which broadcasts to the scores [B, (H,) T, S], with its
 * missing leading axes added: [T, S] -> [1, 1, T, S]; [B, T, S] -> [B, 1, T, S] (every head,
 * and the one head of rank-3 inputs); rank 4 as it is. Throws, naming `mask`, on a mask that
 * does not broadcast.
 */
export function fusedMask(mask: tf.Tensor, scoresShape: number[]): tf.Tensor4D {
  return tf.tidy(() => {
    const allowed = combineMasks(mask, false, scoresShape)!;                // bool, [.., Tm, Sm]
    if (allowed.rank === 2) return allowed.reshape([1, 1, ...allowed.shape]) as tf.Tensor4D;  // [1, 1, Tm, Sm]
    if (allowed.rank === 3) return allowed.expandDims(1) as tf.Tensor4D;    // [Bm, 1, Tm, Sm]
    return allowed as tf.Tensor4D;                                          // [Bm, Hm, Tm, Sm]
  });
}

/**
 * The fused kernels' biases (float32, 0 where attended and MASKED_LOGIT where not), which
 * they add to their scores one after the other (src/backend/attention_bias.ts): `keyBias`
 * [B, S] from a key padding mask, a row for every query; `bias` from an explicit mask
 * (fusedMask's [Bm, Hm, Tm, Sm] bool), at the mask's own sizes in batch, head and query, its key axis expanded
 * when Sm is 1: [Bm, Hm, Tm, S]. Either is null without its mask. `S`: the keys. Causal stays
 * out: the kernels apply it themselves.
 */
export function fusedMaskBiases(mask: tf.Tensor|null, keyPadding: tf.Tensor|null, S: number):
    {keyBias: tf.Tensor|null; bias: tf.Tensor|null} {
  const keyBias = keyPadding == null ? null : maskBias(toBoolMask(keyPadding));  // [B, S]
  const bias = mask == null ? null : tf.tidy(() => {
    let allowed: tf.Tensor = mask;                                         // [Bm, Hm, Tm, Sm]
    const [Bm, Hm, Tm] = allowed.shape;
    if (allowed.shape[3] !== S) allowed = tf.broadcastTo(allowed, [Bm, Hm, Tm, S]);  // [Bm, Hm, Tm, S]
    return maskBias(allowed);                                              // [Bm, Hm, Tm, S] float32
  });
  return {keyBias, bias};
}

/**
 * 1 for the queries that attend at least one key under an explicit mask (fusedMask's), the key and query
 * padding and `causal` together, 0 for the others: [Br, Hr, Tr, 1] float32 for rank-4 inputs
 * (Br 1 or B, Hr 1 or H, Tr 1 or T), [Br, Tr, 1] for rank-3 ones, which broadcasts against the
 * output. `scoresShape`: [B, (H,) T, S]. Nothing larger than the mask (with causal, its query
 * axis expanded) is formed: the key padding's keys are counted by a product, not by a
 * [B, Hm, T, S] mask.
 */
export function fusedAttendedRows(
    mask: tf.Tensor, keyPadding: tf.Tensor|null, queryPadding: tf.Tensor|null, causal: boolean, scoresShape: number[]): tf.Tensor {
  const [T, S] = scoresShape.slice(-2);
  return tf.tidy(() => {
    let allowed: tf.Tensor = mask;                                         // [Bm, Hm, Tm, Sm]
    if (causal) allowed = tf.logicalAnd(allowed, causalMask(T, S));         // [Bm, Hm, T, S]
    let rows = keyPadding == null ? tf.cast(tf.any(allowed, -1, true), 'float32') :  // [Bm, Hm, Ta, 1]
        tf.cast(tf.greater(keysAttended(allowed, keyPadding), 0), 'float32');        // [B, Hm, Ta, 1]
    if (queryPadding != null) {
      rows = tf.mul(rows, tf.cast(toBoolMask(queryPadding), 'float32').reshape([queryPadding.shape[0], 1, T, 1]));  // [B, Hm, T, 1]
    }
    return scoresShape.length === 4 ? rows : rows.squeeze([1]);            // [Br, (Hr,) Tr, 1]
  });
}

/**
 * How many keys each query attends, [B, Hm, Ta, 1] float32, under `allowed` [Bm, Hm, Ta, Sa]
 * (bool, Sa 1 or S) and the key padding [B, S]: a product of the mask with the keys that are
 * not padding (exact: 0/1 sums below 2^24).
 */
function keysAttended(allowed: tf.Tensor, keyPadding: tf.Tensor): tf.Tensor {
  const [Bm, Hm, Ta, Sa] = allowed.shape;
  const [B, S] = keyPadding.shape;
  const keys = tf.cast(toBoolMask(keyPadding), 'float32');                 // [B, S]
  const attend = tf.cast(allowed, 'float32');                              // [Bm, Hm, Ta, Sa]
  if (Sa === 1) return tf.mul(attend, tf.sum(keys, 1).reshape([B, 1, 1, 1]));  // [B, Hm, Ta, 1]
  if (Bm === 1) {                                                          // every batch's keys against the one mask
    const counts = tf.matMul(attend.reshape([Hm * Ta, S]), keys, false, true);  // [Hm·Ta, B]
    return counts.transpose().reshape([B, Hm, Ta, 1]);                     // [B, Hm, Ta, 1]
  }
  return tf.matMul(attend.reshape([B, Hm * Ta, S]), keys.reshape([B, S, 1])).reshape([B, Hm, Ta, 1]);  // [B, Hm, Ta, 1]
}

/**
 * The masks of a layer's call on the fused layer kernels, whose output is [B, T, H·dv] (heads
 * side by side): the kernels' biases (fusedMaskBiases' `keyBias` from the key padding [B, S],
 * `bias` from the explicit mask [B, T, S], the same for every head, checked against
 * `scoresShape` [B, H, T, S] before any work), and `zeroUnattended`, which zeroes the output
 * rows of the queries that the masks and `causal` leave with no key, as the standard path does
 * (no -0 left). Called inside the layer call's tf.tidy, which frees the masks' tensors.
 */
export function layerKernelMasks(
    attentionMask: tf.Tensor|null, keyPadding: tf.Tensor|null, queryPadding: tf.Tensor|null, causal: boolean,
    scoresShape: [number, number, number, number]):
    {keyBias: tf.Tensor|null; bias: tf.Tensor|null; zeroUnattended: (attended: tf.Tensor) => tf.Tensor} {
  const [T, S] = scoresShape.slice(2);
  const allowed = attentionMask == null ? null : fusedMask(attentionMask, scoresShape);  // [Bm, 1, Tm, Sm] bool
  const {keyBias, bias} = fusedMaskBiases(allowed, keyPadding, S);                      // [B, S], [Bm, 1, Tm, S]
  const zeroUnattended = (attended: tf.Tensor): tf.Tensor => tf.tidy(() => {
    const rows = allowed == null ? attendedQueries(queryPadding, keyPadding, T, causal) :  // [B, T, 1] or null
        fusedAttendedRows(allowed, keyPadding, queryPadding, causal, scoresShape).squeeze([1]);  // [Br, 1, Tr, 1] -> [Br, Tr, 1]
    return rows == null ? attended : tf.add(tf.mul(attended, rows), 0);                  // + 0: no -0 in zeroed rows
  });
  return {keyBias, bias, zeroUnattended};
}
