/** Memory-efficient scaled dot-product attention: key blocks, online softmax and a recomputing custom gradient. */

import * as tf from '@tensorflow/tfjs';

import {ValueError, checkPositiveFinite, checkPositiveInteger, formatValue, invalidArgument} from '../errors';
import {pickPerRow, sliceFast, splitMatrices} from '../backend/wasm_simd_kernels';
import {consume, MASKED_LOGIT, maskBias} from './masks';
import {transposeFlagsAreSlow} from './matmul';
import {checkHeadSizes, emptyAttention, isEmptyAttention} from './empty_attention';

/** Options of {@link memoryEfficientAttention}. */
export interface MemoryEfficientOptions {
  /** Key block size S_b: the number of keys processed at once. */
  blockSize: number;
  /** Multiplies Q·Kᵀ. */
  scale: number;
  /** Top-left-aligned causal mask: query t attends key s iff s <= t (also when S != T). */
  causal?: boolean;
  /** Optional mask broadcastable to [B, H, T, S] (rank 4, dims may be 1 for broadcasting; dtype bool or float 0/1), 1 = attend. */
  mask?: tf.Tensor;
}

/** The validated options, shared by the forward and the backward pass. */
interface BlockConfig {
  blockSize: number;
  scale: number;
  causal: boolean;
  /** Rank-4 mask, each dim 1 or the matching dim of [B, H, T, S]; null when there is none. */
  mask: tf.Tensor4D | null;
}

/** The online-softmax state carried from one key block to the next. */
type OnlineState = {
  /** Running row max of the (masked) logits. */
  m: tf.Tensor4D;
  /** Running softmax denominator, relative to m. */
  l: tf.Tensor4D;
  /** Running unnormalised output, relative to m. */
  acc: tf.Tensor4D;
};

/** One backward block's contribution. */
type BackwardStep = {dq: tf.Tensor4D; dk: tf.Tensor4D; dv: tf.Tensor4D};

/**
 * Scaled dot-product attention computed one key block at a time, so that no [T, S] tensor
 * ever exists in the forward or the backward pass (Rabe & Staats 2021; FlashAttention,
 * Dao et al. 2022). Peak memory is O(T·blockSize + T·d + S·d) instead of O(T·S).
 *
 * The result equals `softmax(mask ? q·kᵀ·scale : -∞)·v`: masked keys get weight 0 and a
 * query row whose keys are all masked (by `mask` and/or `causal`) outputs exact zeros, with
 * zero gradients. The gradient is a `tf.customGrad` that recomputes each block's
 * probabilities from the saved per-row logsumexp instead of keeping them.
 *
 * @param q Queries [B, H, T, dk], float32.
 * @param k Keys [B, H, S, dk], float32.
 * @param v Values [B, H, S, dv], float32.
 * @param options Block size, scale, causal flag and optional mask.
 * @returns The attention output [B, H, T, dv].
 * @throws ValueError on a bad rank, shape, dtype, block size, scale or mask.
 */
export function memoryEfficientAttention(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: MemoryEfficientOptions): tf.Tensor4D {
  const config = validate(q, k, v, options);
  if (isEmptyAttention(q, k)) return emptyAttention(q, k, v) as tf.Tensor4D;  // T = 0 or S = 0: [B, H, T, dv]
  const [B, H] = q.shape;
  // On wasm a batched matMul (B·H > 1) runs a scalar loop at ~1 GFLOP/s; one pair at a
  // time, every block product is a 2-D XNNPACK matMul (~20-40 GFLOP/s).
  const perPair = transposeFlagsAreSlow() && B * H > 1;
  const attention = tf.customGrad((...args: Array<tf.Tensor|tf.GradSaveFunc>) => {
    const [qIn, kIn, vIn] = args as tf.Tensor4D[];
    const save = args[3] as tf.GradSaveFunc;
    const {out, lse} = perPair ? forwardPairs(qIn, kIn, vIn, config) : forwardBlocks(qIn, kIn, vIn, config);
    // The mask is saved rather than read through the closure: a caller may dispose it
    // (e.g. inside the function given to tf.grads) before the backward pass runs.
    save(config.mask == null ? [qIn, kIn, vIn, out, lse] : [qIn, kIn, vIn, out, lse, config.mask]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [qS, kS, vS, outS, lseS, maskS] = saved as tf.Tensor4D[];
        const savedConfig = {...config, mask: maskS ?? null};
        return perPair ?
            backwardPairs(dy, qS, kS, vS, outS, lseS, savedConfig) :
            backwardBlocks(dy, qS, kS, vS, outS, lseS, savedConfig);
      },
    };
  });
  return attention(q, k, v);
}

/** x [B, H, L, d] -> the B·H pairs' [1, 1, L, d] (contiguous slices). */
function pairsOf(x: tf.Tensor4D): tf.Tensor4D[] {
  const [B, H, L, d] = x.shape;
  if (B * H === 1) return [x];
  return splitMatrices(x).map(t => t.reshape([1, 1, L, d]) as tf.Tensor4D);
}

/** Joins per-pair results [1, 1, L, d] back into [B, H, L, d]. */
function joinPairs(parts: tf.Tensor[], B: number, H: number): tf.Tensor4D {
  const [, , L, d] = parts[0].shape;
  return tf.concat(parts, 0).reshape([B, H, L, d]);  // [B, H, L, d]
}

/** The config of pair n = b·H + h: its slice [1, 1, mT, mS] of a broadcastable mask. */
function pairConfig(config: BlockConfig, n: number, H: number): BlockConfig {
  if (config.mask == null) return config;
  const [mB, mH, mT, mS] = config.mask.shape;
  const [b, h] = [Math.floor(n / H), n % H];
  return {...config, mask: sliceFast(config.mask, [mB === 1 ? 0 : b, mH === 1 ? 0 : h, 0, 0], [1, 1, mT, mS]) as tf.Tensor4D};
}

/** forwardBlocks one (batch, head) pair at a time. */
function forwardPairs(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, config: BlockConfig): {out: tf.Tensor4D; lse: tf.Tensor4D} {
  const [B, H] = q.shape;
  return tf.tidy(() => {
    const [qs, ks, vs] = [q, k, v].map(pairsOf);
    const results = qs.map((qi, n) => forwardBlocks(qi, ks[n], vs[n], pairConfig(config, n, H)));
    return {out: joinPairs(results.map(r => r.out), B, H), lse: joinPairs(results.map(r => r.lse), B, H)};
  });
}

/** backwardBlocks one (batch, head) pair at a time. */
function backwardPairs(
    dy: tf.Tensor4D, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, out: tf.Tensor4D, lse: tf.Tensor4D,
    config: BlockConfig): tf.Tensor4D[] {
  const [B, H] = q.shape;
  return tf.tidy(() => {
    const [dys, qs, ks, vs, outs, lses] = [dy, q, k, v, out, lse].map(pairsOf);
    const grads = qs.map((qi, n) => tf.tidy(() =>
      backwardBlocks(dys[n], qi, ks[n], vs[n], outs[n], lses[n], pairConfig(config, n, H))));
    return [0, 1, 2].map(i => joinPairs(grads.map(g => g[i]), B, H));  // dq, dk, dv
  });
}


/** The exclusive end of the key range that can be attended: causal queries never see keys s >= T. */
function keyLimit(T: number, S: number, causal: boolean): number {
  return causal ? Math.min(S, T) : S;
}

/**
 * The additive mask of keys [start, end) for all queries: 0 where the key may be attended,
 * -∞ where not, from the explicit mask and/or the causal rule (callers only ask when there is
 * one), built for this block only. Not transposed it broadcasts to [B, H, T, Sb]; transposed
 * (keys first, as the backward pass wants) to [B, H, Sb, T].
 *
 * Additive and float rather than a bool for tf.where: on wasm, broadcasting compares and the
 * Tile inside tf.where take ~30-90 ms per [1024, 128] block, a broadcast add/sub < 1 ms.
 */
function blockBias(
    config: BlockConfig, T: number, start: number, end: number, transposed: boolean, masked = -Infinity): tf.Tensor {
  const sb = end - start;
  const parts: tf.Tensor[] = [];
  if (config.mask != null) {
    const mask = config.mask;
    const [mB, mH, mT, mS] = mask.shape;
    // A mask with S dim 1 applies the same value to every key: broadcast instead of slicing.
    const blk = mS === 1 ? mask : sliceFast(mask, [0, 0, 0, start], [mB, mH, mT, sb]);  // [mB, mH, mT, Sb|1]
    const allowed = blk.dtype === 'bool' ? blk : tf.notEqual(blk, 0);  // [mB, mH, mT, Sb|1]
    const bias = consume(tf.cast(allowed, 'float32'), a => maskBias(a, masked));  // [mB, mH, mT, Sb|1]
    parts.push(transposed ?
        consume(bias, b => tf.transpose(b, [0, 1, 3, 2])) :  // [mB, mH, Sb|1, mT]
        bias);  // [mB, mH, mT, Sb|1]
  }
  if (config.causal) {
    // t - (s - 1) >= 1 exactly when s <= t; clipped to [0, 1] it is 1 there and 0 elsewhere (integers).
    const queries = tf.range(0, T, 1, 'float32');  // [T]
    const keysMinus1 = tf.range(start - 1, end - 1, 1, 'float32');  // [Sb]
    const gap = transposed ?
        tf.sub(tf.reshape(queries, [1, T]), tf.reshape(keysMinus1, [sb, 1])) :  // [Sb, T]
        tf.sub(tf.reshape(queries, [T, 1]), tf.reshape(keysMinus1, [1, sb]));  // [T, Sb]
    parts.push(consume(consume(gap, g => tf.clipByValue(g, 0, 1)), c => maskBias(c, masked)));  // [T, Sb] or [Sb, T]
  }
  const sum = parts.reduce((a, b) => tf.add(a, b));  // [mB|1, mH|1, T, Sb] or [mB|1, mH|1, Sb, T]
  // Two finite biases add up to 2·masked; clamp so that every masked logit is the same.
  return parts.length > 1 && Number.isFinite(masked) ? consume(sum, x => tf.maximum(x, masked)) : sum;
}



/** Sets the logits of keys that may not be attended to -∞ (consumes `scores`). */
function maskScores(
    scores: tf.Tensor, config: BlockConfig, T: number, start: number, end: number, transposed: boolean,
    masked = -Infinity): tf.Tensor {
  if (config.mask == null && !config.causal) return scores;  // [B, H, T, Sb] or [B, H, Sb, T]
  // [B, H, T, Sb] or [B, H, Sb, T]
  return consume(scores, s => tf.add(s, blockBias(config, T, start, end, transposed, masked)));
}

// Masked keys get MASKED_LOGIT (see masks.ts); a row is attended iff its running max stays
// above MASKED_LOGIT / 2.

/**
 * Forward pass: online softmax over key blocks. Returns the output and the per-row
 * logsumexp of the masked, scaled logits, which is +∞ (not -∞) on fully masked rows so that
 * the backward pass's exp(s - lse) is 0 there instead of NaN.
 *
 * Each block runs tf.softmax (XNNPACK's fused kernel on wasm) rather than exp(s - m) as
 * separate ops: on wasm tf.exp alone took 80 ms on a [8192, 512] block against 22 ms for
 * tf.softmax. The block's max m_b and sum Σ exp(s - m_b) = 1 / p_j are read at the row's
 * argmax j; the blocks combine as (m, l, acc) with acc = Σ exp(s - m)·v and
 * l = Σ exp(s - m), relative to the running max m.
 */
function forwardBlocks(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, config: BlockConfig): {out: tf.Tensor4D; lse: tf.Tensor4D} {
  const [B, H, T, dk] = q.shape;
  const S = k.shape[2];
  const dv = v.shape[3];
  const explicit = transposeFlagsAreSlow();
  // The scale multiplies q once rather than every block's scores.
  const qScaled = config.scale === 1 ? q : tf.mul(q, config.scale) as tf.Tensor4D;  // [B, H, T, dk]
  let state: OnlineState|null = null;
  const limit = keyLimit(T, S, config.causal);
  for (let start = 0; start < limit; start += config.blockSize) {
    const end = Math.min(start + config.blockSize, S);
    const sb = end - start;
    // One tidy per block frees the block's [B, H, T, Sb] intermediates right away.
    const block = tf.tidy(() => {
      const kBlk = sliceFast(k, [0, 0, start, 0], [B, H, sb, dk]);  // [B, H, Sb, dk]
      // On wasm the block of keys is transposed so that q·kᵀ is a plain matMul (slicing a
      // once-transposed kᵀ along its last axis took 3.5 ms a block at T = 8192).
      const raw = explicit ?
          tf.matMul(qScaled, tf.transpose(kBlk, [0, 1, 3, 2])) :  // [B, H, T, Sb]
          tf.matMul(qScaled, kBlk, false, true);  // [B, H, T, Sb]
      const scores = maskScores(raw, config, T, start, end, false, MASKED_LOGIT);  // [B, H, T, Sb]
      const p = tf.softmax(scores);  // [B, H, T, Sb]
      // At the row's argmax j, p_j = exp(m - lse) with m = s_j the row max: lse = s_j - log(p_j),
      // one reduction pass (ArgMax) instead of two (Max of s, Max of p; 6 ms each there).
      const at = tf.reshape(tf.argMax(p, -1), [-1]);  // [B·H·T] int32
      const m = tf.reshape(pickPerRow(tf.reshape(scores, [-1, sb]), at), [B, H, T, 1]) as tf.Tensor4D;  // [B, H, T, 1]
      scores.dispose();
      // Σ exp(s - m) = 1 / p_j.
      const l = tf.reshape(tf.reciprocal(pickPerRow(tf.reshape(p, [-1, sb]), at)), [B, H, T, 1]) as tf.Tensor4D;
      const vBlk = sliceFast(v, [0, 0, start, 0], [B, H, sb, dv]);  // [B, H, Sb, dv]
      const acc = tf.mul(consume(p, x => tf.matMul(x, vBlk)), l) as tf.Tensor4D;  // [B, H, T, dv]
      return {m, l, acc};
    });
    const prev: OnlineState|null = state;
    state = prev == null ? block : tf.tidy((): OnlineState => {
      const m = tf.maximum(prev.m, block.m);  // [B, H, T, 1]
      const alpha = tf.exp(tf.sub(prev.m, m));  // [B, H, T, 1]
      const beta = tf.exp(tf.sub(block.m, m));  // [B, H, T, 1]
      return {
        m: m as tf.Tensor4D,
        l: tf.add(tf.mul(prev.l, alpha), tf.mul(block.l, beta)) as tf.Tensor4D,  // [B, H, T, 1]
        acc: tf.add(tf.mul(prev.acc, alpha), tf.mul(block.acc, beta)) as tf.Tensor4D,  // [B, H, T, dv]
      };
    });
    if (prev != null) tf.dispose([prev.m, prev.l, prev.acc, block.m, block.l, block.acc]);
  }
  const result = tf.tidy(() => {
    if (state == null) {
      // No key at all (S = 0): every row is fully masked.
      return {out: tf.zeros([B, H, T, dv]) as tf.Tensor4D, lse: tf.fill([B, H, T, 1], Infinity) as tf.Tensor4D};
    }
    const average = tf.div(state.acc, state.l);  // [B, H, T, dv]
    const lseAll = tf.add(state.m, tf.log(state.l));  // [B, H, T, 1]
    if (config.mask == null && !config.causal) return {out: average as tf.Tensor4D, lse: lseAll as tf.Tensor4D};
    // Not "m > MASKED_LOGIT / 2": a NaN max (a NaN score) must keep its NaN lse, or the backward would give 0 for NaN.
    const attended = tf.logicalNot(tf.lessEqual(state.m, MASKED_LOGIT / 2));  // [B, H, T, 1]
    if (config.mask == null) {
      // Causal alone leaves every query key 0: a max at the masked logit means that every
      // score it may attend was -∞, whose softmax is NaN (as on the other paths), not zeros.
      const nanUnattended = tf.mul(tf.log(tf.cast(attended, 'float32')), 0);  // [B, H, T, 1]: NaN (log 0 · 0) or 0
      return {out: tf.add(average, nanUnattended) as tf.Tensor4D, lse: tf.add(lseAll, nanUnattended) as tf.Tensor4D};
    }
    // Fully masked rows averaged the values of masked keys: zero them (+ 0 turns -0 into 0).
    const out = tf.add(tf.mul(average, tf.cast(attended, 'float32')), 0) as tf.Tensor4D;  // [B, H, T, dv]
    const lse = tf.where(attended, lseAll, Infinity) as tf.Tensor4D;  // [B, H, T, 1]
    return {out, lse};
  });
  if (state != null) tf.dispose([state.m, state.l, state.acc]);
  if (qScaled !== q) qScaled.dispose();
  return result;
}

/**
 * Backward pass (FlashAttention): per key block, recompute P = exp(q·kᵀ·scale - lse), then
 * dV = Pᵀ·dy, dP = dy·vᵀ, dS = P ∘ (dP - D) with D = rowsum(dy ∘ out), dq += dS·k·scale and
 * dK = dSᵀ·q·scale. It works on the transposed block [B, H, Sb, T] (keys first) so that dV
 * and dK are plain matMuls and only dq needs a transposed operand.
 */
function backwardBlocks(
    dy: tf.Tensor4D, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, out: tf.Tensor4D, lse: tf.Tensor4D,
    config: BlockConfig): tf.Tensor4D[] {
  const [B, H, T, dk] = q.shape;
  const S = k.shape[2];
  const dv = v.shape[3];
  const explicit = transposeFlagsAreSlow();
  // D_t = Σ_j dy_tj·out_tj = Σ_s P_ts·dP_ts: the softmax Jacobian's row term, laid out along T.
  const dRow = tf.tidy(() => tf.reshape(tf.sum(tf.mul(dy, out), -1), [B, H, 1, T]));  // [B, H, 1, T]
  const lseRow = tf.reshape(lse, [B, H, 1, T]);  // [B, H, 1, T]
  // The scale multiplies q once, as in the forward: the recomputed scores are the forward's, bit for bit.
  const qs = config.scale === 1 ? q : tf.mul(q, config.scale) as tf.Tensor4D;  // [B, H, T, dk]
  const qT: tf.Tensor4D|null = explicit ? tf.transpose(qs, [0, 1, 3, 2]) : null;  // [B, H, dk, T]
  const dyT: tf.Tensor4D|null = explicit ? tf.transpose(dy, [0, 1, 3, 2]) : null;  // [B, H, dv, T]
  // Accumulated without the scale, which is applied once at the end.
  let dqAcc = tf.zeros([B, H, T, dk]) as tf.Tensor4D;  // [B, H, T, dk]
  const dkBlocks: tf.Tensor4D[] = [];
  const dvBlocks: tf.Tensor4D[] = [];
  const limit = keyLimit(T, S, config.causal);
  for (let start = 0; start < S; start += config.blockSize) {
    const end = Math.min(start + config.blockSize, S);
    const sb = end - start;
    if (start >= limit) {
      // Causal keys s >= T are attended by no query: their gradients are zero.
      dkBlocks.push(tf.zeros([B, H, sb, dk]));  // [B, H, Sb, dk]
      dvBlocks.push(tf.zeros([B, H, sb, dv]));  // [B, H, Sb, dv]
      continue;
    }
    const prevDq = dqAcc;
    const step = tf.tidy((): BackwardStep => {
      const kBlk = sliceFast(k, [0, 0, start, 0], [B, H, sb, dk]);  // [B, H, Sb, dk]
      const vBlk = sliceFast(v, [0, 0, start, 0], [B, H, sb, dv]);  // [B, H, Sb, dv]
      const scores = qT != null ? tf.matMul(kBlk, qT) : tf.matMul(kBlk, qs, false, true);  // [B, H, Sb, T]
      const masked = maskScores(scores, config, T, start, end, true);  // [B, H, Sb, T]
      // Masked logits are -∞ and fully masked rows have lse = +∞: both give exactly 0.
      const p = consume(masked, x => tf.exp(tf.sub(x, lseRow)));  // [B, H, Sb, T]
      const dvBlk = tf.matMul(p, dy);  // [B, H, Sb, dv]
      const dp = dyT != null ? tf.matMul(vBlk, dyT) : tf.matMul(vBlk, dy, false, true);  // [B, H, Sb, T]
      const ds = consume(dp, x => tf.mul(p, tf.sub(x, dRow)));  // [B, H, Sb, T]
      p.dispose();
      const dkBlk = tf.matMul(ds, qs);  // [B, H, Sb, dk]: dS·(scale·Q)
      const dqBlk = explicit ?
          consume(ds, x => tf.matMul(tf.transpose(x, [0, 1, 3, 2]), kBlk)) :  // [B, H, T, dk]
          consume(ds, x => tf.matMul(x, kBlk, true, false));  // [B, H, T, dk]
      return {
        dq: tf.add(prevDq, dqBlk) as tf.Tensor4D,  // [B, H, T, dk]
        dk: dkBlk as tf.Tensor4D,  // [B, H, Sb, dk]
        dv: dvBlk as tf.Tensor4D,  // [B, H, Sb, dv]
      };
    });
    prevDq.dispose();
    dqAcc = step.dq;
    dkBlocks.push(step.dk);
    dvBlocks.push(step.dv);
  }
  const dq = tf.mul(dqAcc, config.scale) as tf.Tensor4D;  // [B, H, T, dk]
  const dkAll = concatKeys(dkBlocks, [B, H, S, dk]);  // [B, H, S, dk]
  const dvAll = concatKeys(dvBlocks, [B, H, S, dv]);  // [B, H, S, dv]
  tf.dispose([dqAcc, dRow, lseRow, ...dkBlocks, ...dvBlocks]);
  if (qT != null) qT.dispose();
  if (dyT != null) dyT.dispose();
  if (qs !== q) qs.dispose();
  return [dq, dkAll, dvAll];
}

/** Concatenates per-block gradients along the key axis (zeros when S = 0 gave no block). */
function concatKeys(blocks: tf.Tensor4D[], shape: [number, number, number, number]): tf.Tensor4D {
  if (blocks.length === 0) return tf.zeros(shape);  // [B, H, 0, d]
  return tf.concat(blocks, 2);  // [B, H, S, d]
}

/** Checks the inputs and options; creates no tensor, so a throw leaks nothing. */
function validate(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: MemoryEfficientOptions): BlockConfig {
  const tensors: Array<[string, tf.Tensor, string]> =
      [['q', q, '[B, H, T, dk]'], ['k', k, '[B, H, S, dk]'], ['v', v, '[B, H, S, dv]']];
  for (const [name, t, layout] of tensors) {
    if (!(t instanceof tf.Tensor)) {
      throw invalidArgument(name, `a rank-4 float32 tensor ${layout}`, t);
    }
    if (t.rank !== 4) {
      throw new ValueError(
          `Received an invalid value for argument \`${name}\`, expected a rank-4 tensor ${layout}. ` +
          `Received: ${name}.shape=${formatValue(t.shape)}`);
    }
    if (t.dtype !== 'float32') {
      throw new ValueError(
          `Received an invalid value for argument \`${name}\`, expected dtype float32. ` +
          `Received: ${name}.dtype=${formatValue(t.dtype)}`);
    }
  }
  const shapes = `Received: q.shape=${formatValue(q.shape)}, k.shape=${formatValue(k.shape)}, ` +
      `v.shape=${formatValue(v.shape)}`;
  if (k.shape[0] !== q.shape[0] || v.shape[0] !== q.shape[0] || k.shape[1] !== q.shape[1] ||
      v.shape[1] !== q.shape[1]) {
    throw new ValueError(`Expected \`q\`, \`k\` and \`v\` to share the batch and head dims [B, H, ...]. ${shapes}`);
  }
  if (k.shape[2] !== v.shape[2]) {
    throw new ValueError(`Expected \`k\` and \`v\` to have the same number of keys S (axis 2). ${shapes}`);
  }
  if (q.shape[3] !== k.shape[3]) {
    throw new ValueError(`Expected \`q\` and \`k\` to have the same key dim dk (axis 3). ${shapes}`);
  }
  checkHeadSizes(q, v, shapes.replace(/^Received: /, ''));
  if (options == null || typeof options !== 'object') {
    throw invalidArgument('options', 'an object {blockSize, scale, causal?, mask?}', options);
  }
  checkPositiveInteger('blockSize', options.blockSize);
  checkPositiveFinite('scale', options.scale);
  if (options.causal != null && typeof options.causal !== 'boolean') {
    throw invalidArgument('causal', 'a boolean', options.causal);
  }
  return {
    blockSize: options.blockSize,
    scale: options.scale,
    causal: options.causal === true,
    mask: validateMask(options.mask, [q.shape[0], q.shape[1], q.shape[2], k.shape[2]]),
  };
}

/** Checks that `mask` is a bool/numeric rank-4 tensor broadcastable to [B, H, T, S]. */
function validateMask(mask: tf.Tensor|undefined, target: [number, number, number, number]): tf.Tensor4D|null {
  if (mask == null) return null;
  if (!(mask instanceof tf.Tensor)) {
    throw invalidArgument('mask', 'a tensor broadcastable to [B, H, T, S]', mask);
  }
  if (mask.dtype !== 'bool' && mask.dtype !== 'float32' && mask.dtype !== 'int32') {
    throw new ValueError(
        'Received an invalid value for argument `mask`, expected dtype bool or float32 (0/1). ' +
        `Received: mask.dtype=${formatValue(mask.dtype)}`);
  }
  if (mask.rank !== 4 || !mask.shape.every((d, i) => d === 1 || d === target[i])) {
    throw new ValueError(
        'Received an invalid value for argument `mask`, expected a rank-4 shape broadcastable to ' +
        `[B, H, T, S]=${formatValue(target)} (each dim equal or 1). Received: mask.shape=${formatValue(mask.shape)}`);
  }
  return mask as tf.Tensor4D;
}
