/** The functional op: scaled dot-product attention softmax(Q·Kᵀ·scale)·V on [B, T, d] or [B, H, T, d] tensors. */
import * as tf from '@tensorflow/tfjs';
import {checkPositiveFinite, checkPositiveInteger, checkRate, ValueError} from '../errors';
import {combineMasks} from './masks';
import {matMulTransposeB} from './matmul';
import {memoryEfficientAttention} from './memory_efficient_attention';

/**
 * Key length from which the op and the layer switch to the memory-efficient (blocked)
 * path by default, when nothing requires the full weight matrix.
 */
export const MEMORY_EFFICIENT_THRESHOLD = 2048;
/** Key block size of the memory-efficient path when it is switched on automatically. */
export const DEFAULT_BLOCK_SIZE = 512;

/**
 * Logit given to masked positions. Finite, so that a row whose keys are all masked gives a
 * softmax without NaN (which the mask then zeroes), and far below any real score.
 */
const MASKED_LOGIT = -1e30;

export interface DotProductAttentionOptions {
  /**
   * Which keys each query may attend, 1 (or true) = attend. Broadcastable to the scores
   * [B, T, S] (rank-3 inputs) or [B, H, T, S] (rank-4 inputs); a rank-3 mask [B, T, S] is
   * applied to every head. Defaults to none.
   */
  mask?: tf.Tensor|null;
  /** Query t attends key s only if s <= t (top-left aligned). Defaults to false. */
  causal?: boolean;
  /** Multiplies Q·Kᵀ. Defaults to 1/sqrt(dk). */
  scale?: number|null;
  /** Dropout rate on the attention weights, applied only when `training`. Defaults to 0. */
  dropout?: number;
  /** Whether dropout is active. Defaults to false. */
  training?: boolean;
  /** Return `[output, weights]` instead of the output alone. Defaults to false. */
  returnWeights?: boolean;
  /**
   * Key block size of the memory-efficient path. A number forces that path with this block
   * size; 0 forces the standard path; null/undefined (the default) picks the blocked path
   * with `DEFAULT_BLOCK_SIZE` when the key length is at least `MEMORY_EFFICIENT_THRESHOLD`
   * and neither the weights nor dropout are asked for.
   */
  blockSize?: number|null;
}

/**
 * Scaled dot-product attention, the four steps of the explainer:
 * S = Q·Kᵀ, S' = S·scale, A = softmax(S') over keys, R = A·V.
 *
 * Input shapes: query [B, T, dk] and key [B, S, dk], value [B, S, dv]; or with heads
 * [B, H, T, dk], [B, H, S, dk], [B, H, S, dv]. Output: [B, (H,) T, dv], and with
 * `returnWeights` also the weights A [B, (H,) T, S].
 *
 * A query whose keys are all masked outputs zeros and gets zero weights (never NaN), as
 * PyTorch's scaled_dot_product_attention does since 2024.
 */
export function dotProductAttention(
    query: tf.Tensor, key: tf.Tensor, value: tf.Tensor,
    options: DotProductAttentionOptions&{returnWeights: true}): [tf.Tensor, tf.Tensor];
export function dotProductAttention(
    query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, options?: DotProductAttentionOptions): tf.Tensor;
export function dotProductAttention(
    query: tf.Tensor, key: tf.Tensor, value: tf.Tensor,
    options: DotProductAttentionOptions = {}): tf.Tensor|[tf.Tensor, tf.Tensor] {
  checkAttentionInputs(query, key, value);
  const dk = query.shape[query.rank - 1];
  const scale = options.scale ?? 1 / Math.sqrt(dk);
  checkPositiveFinite('scale', scale);
  const dropout = options.dropout ?? 0;
  checkRate('dropout', dropout);
  const causal = options.causal ?? false;
  const dropoutActive = dropout > 0 && options.training === true;
  const keyLength = key.shape[key.rank - 2];

  const blockSize = resolveBlockSize(options.blockSize, keyLength, options.returnWeights === true, dropoutActive);
  if (blockSize > 0) {
    return memoryEfficientPath(query, key, value, {mask: options.mask, causal, scale, blockSize});
  }

  return tf.tidy(() => {
    const scoresShape = [...query.shape.slice(0, -1), keyLength];
    const allowed = combineMasks(options.mask, causal, scoresShape);  // broadcasts to [B, (H,) T, S]
    // The scale is folded into the smaller operand: Q [.., T, dk] when dk < S, else the scores.
    const scaled = dk <= keyLength ?
        matMulTransposeB(tf.mul(query, scale), key) :                 // [B, (H,) T, S]
        tf.mul(matMulTransposeB(query, key), scale);
    let weights = tf.softmax(allowed == null ? scaled : tf.where(allowed, scaled, MASKED_LOGIT));
    if (allowed != null) weights = tf.mul(weights, tf.cast(allowed, 'float32'));  // fully masked rows -> 0
    if (dropoutActive) weights = tf.dropout(weights, dropout);
    const output = tf.matMul(weights, value);                          // [B, (H,) T, dv]
    return options.returnWeights ? [output, weights] as [tf.Tensor, tf.Tensor] : output;
  });
}

function resolveBlockSize(
    blockSize: number|null|undefined, keyLength: number, returnWeights: boolean, dropoutActive: boolean): number {
  if (blockSize == null) {
    return keyLength >= MEMORY_EFFICIENT_THRESHOLD && !returnWeights && !dropoutActive ? DEFAULT_BLOCK_SIZE : 0;
  }
  if (blockSize === 0) return 0;
  checkPositiveInteger('blockSize', blockSize);
  if (returnWeights) {
    throw new ValueError(
        'The memory-efficient path never forms the attention weights, so it cannot return them. ' +
        `Use blockSize=0 (the standard path) with returnWeights. Received: blockSize=${blockSize}`);
  }
  if (dropoutActive) {
    throw new ValueError(
        'The memory-efficient path does not support dropout on the attention weights. ' +
        `Use blockSize=0 or dropout=0 while training. Received: blockSize=${blockSize}`);
  }
  return blockSize;
}

/** Runs the blocked kernel, which works on rank-4 tensors, on rank-3 or rank-4 inputs. */
function memoryEfficientPath(
    query: tf.Tensor, key: tf.Tensor, value: tf.Tensor,
    options: {mask?: tf.Tensor|null; causal: boolean; scale: number; blockSize: number}): tf.Tensor {
  return tf.tidy(() => {
    const hasHeads = query.rank === 4;
    const as4d = (x: tf.Tensor) => (hasHeads ? x : x.expandDims(1)) as tf.Tensor4D;  // [B, H, ., .]
    let mask: tf.Tensor|undefined;
    if (options.mask != null) {
      const scoresShape = [...query.shape.slice(0, -1), key.shape[key.rank - 2]];
      mask = combineMasks(options.mask, false, scoresShape) as tf.Tensor;  // right-aligned to the scores
      if (mask.rank === 2) mask = mask.reshape([1, 1, ...mask.shape]);     // [1, 1, T, S]
      else if (mask.rank === 3) mask = mask.expandDims(1);                 // [B, 1, T, S]
    }
    const output = memoryEfficientAttention(as4d(query), as4d(key), as4d(value), {
      blockSize: options.blockSize, scale: options.scale, causal: options.causal, mask,
    });                                                                     // [B, H, T, dv]
    return hasHeads ? output : output.squeeze([1]);
  });
}

/** Shape and dtype checks shared by the op and the layer's call. */
export function checkAttentionInputs(query: tf.Tensor, key: tf.Tensor, value: tf.Tensor): void {
  const named: Array<[string, tf.Tensor]> = [['query', query], ['key', key], ['value', value]];
  for (const [name, t] of named) {
    if (!(t instanceof tf.Tensor)) {
      throw new ValueError(`Argument \`${name}\` must be a tf.Tensor. Received: ${name}=${String(t)}`);
    }
    if (t.rank !== 3 && t.rank !== 4) {
      throw new ValueError(
          `Argument \`${name}\` must have rank 3 [B, T, d] or rank 4 [B, H, T, d]. ` +
          `Received: ${name}.shape=[${t.shape.join(', ')}]`);
    }
    if (t.dtype !== 'float32') {
      throw new ValueError(`Argument \`${name}\` must be float32. Received: ${name}.dtype=${t.dtype}`);
    }
  }
  const shape = (t: tf.Tensor) => `[${t.shape.join(', ')}]`;  // "[2, 3, 4]", as in every other message
  const shapes = `query.shape=${shape(query)}, key.shape=${shape(key)}, value.shape=${shape(value)}`;
  if (key.rank !== query.rank || value.rank !== query.rank) {
    throw new ValueError(`Arguments \`query\`, \`key\` and \`value\` must have the same rank. Received: ${shapes}`);
  }
  const lead = query.rank - 2;  // batch (and head) axes
  for (let axis = 0; axis < lead; axis++) {
    if (key.shape[axis] !== query.shape[axis] || value.shape[axis] !== query.shape[axis]) {
      throw new ValueError(
          `Arguments \`query\`, \`key\` and \`value\` must agree on the ${axis === 0 ? 'batch' : 'head'} axis. ` +
          `Received: ${shapes}`);
    }
  }
  if (key.shape[query.rank - 1] !== query.shape[query.rank - 1]) {
    throw new ValueError(`Arguments \`query\` and \`key\` must have the same last dimension. Received: ${shapes}`);
  }
  if (key.shape[query.rank - 2] !== value.shape[query.rank - 2]) {
    throw new ValueError(`Arguments \`key\` and \`value\` must have the same length (axis -2). Received: ${shapes}`);
  }
}
