/** Attention masks: causal masks, padding masks and the rule that combines them (1 = attend). */
import * as tf from '@tensorflow/tfjs';
import {formatValue, invalidArgument, ValueError} from '../errors';

/**
 * Logit given to masked keys by every attention path. Finite, because tf.softmax gives NaN
 * on a row of -∞ (a row whose keys are all masked then comes out uniform, and is zeroed
 * after); in float32 s + MASKED_LOGIT rounds to MASKED_LOGIT for any |s| < 1e22, so a masked
 * key gets weight exactly 0 next to any real one.
 */
export const MASKED_LOGIT = -1e30;

/**
 * The causal mask [T, S]: query t may attend key s iff s <= t. It is aligned top-left, like
 * PyTorch's `is_causal` and Keras' `use_causal_mask`, also when S != T.
 */
export function causalMask(queryLength: number, keyLength: number): tf.Tensor2D {
  return tf.tidy(() => {
    const rows = tf.range(0, queryLength, 1, 'int32').reshape([queryLength, 1]);  // [T, 1]
    const cols = tf.range(0, keyLength, 1, 'int32').reshape([1, keyLength]);      // [1, S]
    return tf.greaterEqual(rows, cols) as tf.Tensor2D;                             // [T, S] bool
  });
}

/** Casts a 0/1 or boolean mask to bool. */
export function toBoolMask(mask: tf.Tensor): tf.Tensor {
  return mask.dtype === 'bool' ? mask : tf.notEqual(mask, 0);
}

/**
 * Checks that `mask` broadcasts against `target` (the shape of the scores): rank 2 up to the
 * target's rank, right-aligned, except that a mask of rank 3 [B, T, S] given to multi-head
 * scores [B, H, T, S] applies to every head. `name` is the argument's name in errors.
 */
export function checkMaskShape(mask: tf.Tensor, target: number[], name: string): void {
  // A [B, T, S] mask for multi-head scores [B, H, T, S] applies to every head.
  const perHead = mask.rank === 3 && target.length === 4;
  const checked = perHead ? [target[0], target[2], target[3]] : target;
  if (mask.rank > checked.length || mask.rank < 2) {
    throw new ValueError(
        `Argument \`${name}\` must have rank 2 to ${target.length} and broadcast to the ` +
        `attention scores [${target.join(', ')}]. Received: ${name}.shape=[${mask.shape.join(', ')}]`);
  }
  const offset = checked.length - mask.rank;
  mask.shape.forEach((size, axis) => {
    const want = checked[axis + offset];
    if (size !== want && size !== 1) {
      throw new ValueError(
          `Argument \`${name}\` of shape [${mask.shape.join(', ')}] does not broadcast to the ` +
          `attention scores of shape [${target.join(', ')}]: axis ${axis} has ${size}, expected ${want} or 1.`);
    }
  });
}

/**
 * Checks `mask` (see checkMaskShape) and returns it right-aligned to the target's rank: a
 * mask of rank 3 [B, T, S] given to multi-head scores [B, H, T, S] gains a head axis,
 * [B, 1, T, S].
 */
function alignMask(mask: tf.Tensor, target: number[], name: string): tf.Tensor {
  checkMaskShape(mask, target, name);
  return mask.rank === 3 && target.length === 4 ? mask.expandDims(1) : mask;  // [B, 1, T, S] when per head
}

/**
 * Combines an explicit mask and the causal mask into one bool mask that broadcasts to the
 * scores' shape, or returns null when nothing is masked. All masks combine with AND.
 */
export function combineMasks(
    mask: tf.Tensor|null|undefined, causal: boolean, scoresShape: number[], name = 'mask'): tf.Tensor|null {
  const [queryLength, keyLength] = scoresShape.slice(-2);
  let combined: tf.Tensor|null = mask == null ? null : toBoolMask(alignMask(mask, scoresShape, name));
  if (causal) {
    const triangle = causalMask(queryLength, keyLength);  // [T, S]
    combined = combined == null ? triangle : tf.logicalAnd(combined, triangle);
  }
  return combined;
}

/**
 * Checks a padding mask, before any work: null/undefined passes as null; otherwise a bool,
 * float32 or int32 tensor of shape [batch, length] (nonzero = a real position, 0 = padding).
 * `axis` names the length in the message ('T' for queries, 'S' for keys).
 */
export function checkPaddingMask(
    name: string, mask: tf.Tensor|null|undefined, batch: number, length: number, axis: string): tf.Tensor2D|null {
  if (mask == null) return null;
  if (!(mask instanceof tf.Tensor)) throw invalidArgument(name, `a tensor [B, ${axis}]`, mask);
  if (mask.dtype !== 'bool' && mask.dtype !== 'float32' && mask.dtype !== 'int32') {
    throw new ValueError(
        `Received an invalid value for argument \`${name}\`, expected dtype bool, float32 or int32 (0 = padding). ` +
        `Received: ${name}.dtype=${formatValue(mask.dtype)}`);
  }
  if (mask.rank !== 2 || mask.shape[0] !== batch || mask.shape[1] !== length) {
    throw new ValueError(
        `Received an invalid value for argument \`${name}\`, expected shape [B, ${axis}]=${formatValue([batch, length])}. ` +
        `Received: ${name}.shape=${formatValue(mask.shape)}`);
  }
  return mask as tf.Tensor2D;
}

/**
 * Builds the [B, T, S] mask implied by padding masks of the query [B, T] and the keys [B, S]:
 * a pair attends when neither side is padding. Either may be null.
 */
export function paddingMask(
    queryMask: tf.Tensor|null, keyMask: tf.Tensor|null, queryLength: number, keyLength: number): tf.Tensor|null {
  if (queryMask == null && keyMask == null) return null;
  return tf.tidy(() => {
    const rows = queryMask == null ?
        tf.ones([1, queryLength, 1], 'bool') : toBoolMask(queryMask).expandDims(2);  // [B, T, 1]
    const cols = keyMask == null ?
        tf.ones([1, 1, keyLength], 'bool') : toBoolMask(keyMask).expandDims(1);      // [B, 1, S]
    return tf.logicalAnd(rows, cols);                                                // [B, T, S]
  });
}

/**
 * 1 for the queries that attend at least one key, 0 for the others, [B, T, 1] float32, from
 * padding masks: query t of batch b attends key s when queryMask[b, t] and keyMask[b, s]
 * (and s <= t with `causal`). Null when every query attends a key (no mask, or causal
 * without a key mask, where key 0 is always there).
 */
export function attendedQueries(
    queryMask: tf.Tensor|null, keyMask: tf.Tensor|null, queryLength: number, causal: boolean): tf.Tensor|null {
  if (queryMask == null && keyMask == null) return null;
  return tf.tidy(() => {
    let rows = queryMask == null ? null : tf.cast(toBoolMask(queryMask), 'float32');  // [B, T]
    if (keyMask != null) {
      const keys = tf.cast(toBoolMask(keyMask), 'float32');                           // [B, S]
      const keyLength = keys.shape[1] as number;
      let anyKey: tf.Tensor;                                                           // [B, T] or [B, 1]
      if (causal) {  // query t has a key among s <= min(t, S - 1)
        const upTo = tf.cumsum(keys, 1);                                               // [B, S]
        const last = tf.minimum(tf.range(0, queryLength, 1, 'int32'), tf.scalar(keyLength - 1, 'int32'));  // [T]
        anyKey = tf.cast(tf.greater(tf.gather(upTo, last, 1), 0), 'float32');          // [B, T]
      } else {
        anyKey = tf.cast(tf.greater(tf.sum(keys, 1, true), 0), 'float32');             // [B, 1]
      }
      rows = rows == null ? anyKey : tf.mul(rows, anyKey);
    }
    return rows!.expandDims(2);                                                        // [B, T, 1]
  });
}

/**
 * The additive form of a mask (bool, or float 0/1): 0 where attended, `masked` where not
 * (MASKED_LOGIT by default; -Infinity gives exact zeros after exp). Added to the scores it
 * masks them like tf.where(mask, scores, masked), but tf.where with broadcasting is very
 * slow on wasm (its compare and Tile took 30-90 ms per [1024, 128] block) while a broadcast
 * add takes under 1 ms.
 */
export function maskBias(mask: tf.Tensor, masked = MASKED_LOGIT): tf.Tensor {
  return tf.tidy(() => {
    const allowed = tf.cast(mask, 'float32');                                  // 0/1, same shape
    return masked === -Infinity ? tf.log(allowed) : tf.mul(tf.sub(allowed, 1), -masked);
  });
}

/**
 * Returns f(x) and disposes x: in a chain of score-sized ops each input is freed as soon as
 * its successor exists, so at most two such tensors live at once. f runs in a tidy.
 */
export function consume<R extends tf.Tensor>(x: tf.Tensor, f: (x: tf.Tensor) => R): R {
  const result = tf.tidy(() => f(x));
  x.dispose();
  return result;
}

