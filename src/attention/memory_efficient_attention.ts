/** Memory-efficient scaled dot-product attention: key blocks, online softmax and a recomputing custom gradient. */

import * as tf from '@tensorflow/tfjs';

import {ValueError, checkPositiveFinite, checkPositiveInteger, formatValue, invalidArgument} from '../errors';
import {pickPerRow, sliceFast, splitMatrices} from '../backend/wasm_simd_kernels';
import {checkPaddingMask, consume, MASKED_LOGIT, maskBias, toBoolMask} from './masks';
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
  /**
   * Optional mask, nonzero (or true) = attend; dtype bool, float32 or int32. Rank 4 [B, H, T, S],
   * rank 3 [B, T, S] (the same for every head) or rank 2 [T, S], each dim equal or 1 to
   * broadcast. It is sliced per block as it is: its dims of 1 are never expanded.
   */
  mask?: tf.Tensor;
  /**
   * Optional key padding [B, S] (bool, or numbers with nonzero = a real key): a padded key is
   * attended by no query of any head. It stays a [B, S] vector, cut per key block.
   */
  keyPaddingMask?: tf.Tensor;
  /**
   * Optional query padding [B, T] (bool, or numbers with nonzero = a real query): a padded
   * query attends no key, so it outputs zeros and gets zero gradients, like a fully masked row.
   */
  queryPaddingMask?: tf.Tensor;
}

/** The validated options, shared by the forward and the backward pass. */
interface BlockConfig {
  blockSize: number;
  scale: number;
  causal: boolean;
  /** The explicit mask; null when there is none. */
  mask: MaskView | null;
  /** Running one (batch, head) pair [b, h] (see forwardPairs): the mask's entries of that pair; else null. */
  pair: [number, number] | null;
  /** Key padding [B, S], nonzero = a real key; null when there is none. */
  keyMask: tf.Tensor2D | null;
  /** Query padding [B, T], nonzero = a real query; null when there is none. */
  queryMask: tf.Tensor2D | null;
}

/** An explicit mask as given (rank 2, 3 or 4) and its dims on the axes [B, H, T, S], each 1 or full. */
interface MaskView {
  tensor: tf.Tensor;
  dims: [number, number, number, number];
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
 * Dao et al. 2022). Peak memory is O(T·blockSize + T·d + S·d) instead of O(T·S), masks
 * included: the key and query padding stay vectors, the causal mask is built from indices
 * for the diagonal tile of each block only, and an explicit mask is sliced per block from
 * the tensor given (its broadcast dims are never expanded).
 *
 * The result equals `softmax(mask ? q·kᵀ·scale : -∞)·v`: masked keys get weight 0 and a
 * query row whose keys are all masked (by `mask`, the padding and/or `causal`) outputs exact
 * zeros, with zero gradients. The gradient is a `tf.customGrad` that recomputes each block's
 * probabilities from the saved per-row logsumexp instead of keeping them.
 *
 * @param q Queries [B, H, T, dk], float32.
 * @param k Keys [B, H, S, dk], float32.
 * @param v Values [B, H, S, dv], float32.
 * @param options Block size, scale, causal flag and optional masks.
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
  // Whether a gradient is being recorded (inside the custom gradient's forward the tape reads as off).
  const recording = tf.engine().isTapeOn();
  const attention = tf.customGrad((...args: Array<tf.Tensor|tf.GradSaveFunc>) => {
    const [qIn, kIn, vIn] = args as tf.Tensor4D[];
    const save = args[3] as tf.GradSaveFunc;
    const {out, lse} = perPair ? forwardPairs(qIn, kIn, vIn, config) : forwardBlocks(qIn, kIn, vIn, config);
    // The masks are saved rather than read through the closure: a caller may dispose them
    // (e.g. inside the function given to tf.grads) before the backward pass runs. The query
    // padding is not needed there: its rows have lse = +∞, so they get no gradient. tfjs
    // saves a copy (on wasm), so a numeric explicit mask is saved as bool: 1 byte an entry.
    const explicitMask = config.mask == null || !recording ? null :
        config.mask.tensor.dtype === 'bool' ? config.mask.tensor : toBoolMask(config.mask.tensor);
    const masks = [explicitMask, config.keyMask].filter((m): m is tf.Tensor => m != null);
    save([qIn, kIn, vIn, out, lse, ...masks]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [qS, kS, vS, outS, lseS, ...savedMasks] = saved as tf.Tensor4D[];
        const maskS = config.mask == null ? null : {...config.mask, tensor: savedMasks.shift()!};
        const keyMaskS = config.keyMask == null ? null : savedMasks.shift()! as tf.Tensor as tf.Tensor2D;
        const savedConfig = {...config, mask: maskS, keyMask: keyMaskS, queryMask: null};
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

/** The config of pair n = b·H + h: its entries of the mask, and batch b's padding. */
function pairConfig(config: BlockConfig, n: number, H: number): BlockConfig {
  const [b, h] = [Math.floor(n / H), n % H];
  const row = (x: tf.Tensor2D | null) => (x == null || x.shape[0] === 1 ? x : sliceFast(x, [b, 0], [1, x.shape[1]]) as tf.Tensor2D);
  return {...config, pair: [b, h], keyMask: row(config.keyMask), queryMask: row(config.queryMask)};  // [1, S], [1, T]
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

/** The query rows [r0, r1) that one key block is computed for; `diagonal`: the causal rule masks part of them. */
interface Tile {
  r0: number;
  r1: number;
  diagonal: boolean;
}

/**
 * The query rows that key block [start, end) is computed for. Without `causal`, all T rows
 * at once. With it, rows t < start attend no key of the block and are skipped (half of the
 * work over all blocks); rows [start, end) cross the diagonal, the only ones that need the
 * causal mask, an [Sb, Sb] tile built from indices; rows t >= end attend the whole block.
 */
function rowTiles(T: number, start: number, end: number, causal: boolean): Tile[] {
  if (!causal) return [{r0: 0, r1: T, diagonal: false}];
  const tiles = [{r0: start, r1: Math.min(end, T), diagonal: true}];
  if (end < T) tiles.push({r0: end, r1: T, diagonal: false});
  return tiles;
}

/** Rows [r0, r1) of x [B, H, T, d] (the whole x when they are all of them). */
function rowsOf(x: tf.Tensor4D, r0: number, r1: number): tf.Tensor4D {
  const [B, H, T, d] = x.shape;
  return r0 === 0 && r1 === T ? x : sliceFast(x, [0, 0, r0, 0], [B, H, r1 - r0, d]) as tf.Tensor4D;  // [B, H, r1 - r0, d]
}

/** Columns [c0, c1) of x [B, H, d, T] (the whole x when they are all of them). */
function columnsOf(x: tf.Tensor4D, c0: number, c1: number): tf.Tensor4D {
  const [B, H, d, T] = x.shape;
  return c0 === 0 && c1 === T ? x : sliceFast(x, [0, 0, 0, c0], [B, H, d, c1 - c0]) as tf.Tensor4D;  // [B, H, d, c1 - c0]
}

/**
 * Masks the logits of the pairs (query rows [tile.r0, tile.r1), keys [start, end)) that may
 * not be attended (consumes `scores`), adding `masked` to them: -∞ in the backward pass,
 * MASKED_LOGIT in the forward (see masks.ts). Each mask is cut to the tile from what it is,
 * and added on its own, broadcasting: the key padding as [B, 1, 1, Sb], the explicit mask
 * as its slice [mB, mH, Tr|1, Sb|1] (dims of 1 are never expanded), and on diagonal tiles
 * the causal rule as a [Tr, Sb] bias from indices. The scores are [B, H, Tr, Sb], or
 * transposed (keys first, as the backward pass wants) [B, H, Sb, Tr].
 *
 * Additive and float rather than a bool for tf.where: on wasm, broadcasting compares and the
 * Tile inside tf.where take ~30-90 ms per [1024, 128] block, a broadcast add/sub < 1 ms.
 * Two masks give 2·masked, which is still masked (exp(2·MASKED_LOGIT - m) = 0 as well).
 */
function maskTile(
    scores: tf.Tensor, config: BlockConfig, tile: Tile, start: number, end: number, transposed: boolean,
    masked = -Infinity): tf.Tensor {
  const sb = end - start;
  const tr = tile.r1 - tile.r0;
  // Adds bias(), built and disposed in the add's tidy, to the scores, which are freed right after.
  const addBias = (x: tf.Tensor, bias: () => tf.Tensor) => consume(x, s => tf.add(s, bias()));
  let out = scores;  // [B, H, Tr, Sb] or [B, H, Sb, Tr]
  if (config.keyMask != null) {
    const keyMask = config.keyMask;
    const kB = keyMask.shape[0];
    out = addBias(out, () => {
      const bias = maskBias(toBoolMask(sliceFast(keyMask, [0, start], [kB, sb])), masked);  // [B, Sb]
      return tf.reshape(bias, transposed ? [kB, 1, sb, 1] : [kB, 1, 1, sb]);  // [B, 1, Sb, 1] or [B, 1, 1, Sb]
    });
  }
  if (config.mask != null) {
    const view = config.mask;
    out = addBias(out, () => {
      const bias = maskTileBias(view, config.pair, tile, start, end, masked);  // [mB|1, mH|1, Tr|1, Sb|1]
      return transposed ? consume(bias, b => tf.transpose(b, [0, 1, 3, 2])) : bias;  // [.., Sb|1, Tr|1] or not
    });
  }
  if (config.causal && tile.diagonal) {
    // t - (s - 1) >= 1 exactly when s <= t; clipped to [0, 1] it is 1 there and 0 elsewhere (integers).
    out = addBias(out, () => {
      const queries = tf.range(tile.r0, tile.r1, 1, 'float32');  // [Tr]
      const keysMinus1 = tf.range(start - 1, end - 1, 1, 'float32');  // [Sb]
      const gap = transposed ?
          tf.sub(tf.reshape(queries, [1, tr]), tf.reshape(keysMinus1, [sb, 1])) :  // [Sb, Tr]
          tf.sub(tf.reshape(queries, [tr, 1]), tf.reshape(keysMinus1, [1, sb]));  // [Tr, Sb]
      return maskBias(tf.clipByValue(gap, 0, 1), masked);  // [Tr, Sb] or [Sb, Tr]
    });
  }
  return out;
}

/**
 * The explicit mask's bias for a tile (query rows [tile.r0, tile.r1), keys [start, end)):
 * `masked` where it forbids a pair, else 0, [mB|1, mH|1, Tr|1, Sb|1]. Only the mask's own
 * dims are cut (a dim of 1 stays 1), and with `pair` [b, h] only that pair's entries. Only
 * the slice is converted, never the mask, which also keeps its rank: even a reshaped view of
 * it counts its bytes again in tf.memory(). Each step frees its input, so that at most two
 * tile-sized float tensors live at once.
 */
function maskTileBias(
    view: MaskView, pair: [number, number] | null, tile: Tile, start: number, end: number, masked: number): tf.Tensor {
  const [mB, mH, mT, mS] = view.dims;
  const begin = [pair != null && mB > 1 ? pair[0] : 0, pair != null && mH > 1 ? pair[1] : 0,
    mT === 1 ? 0 : tile.r0, mS === 1 ? 0 : start];
  const size = [pair != null ? 1 : mB, pair != null ? 1 : mH, mT === 1 ? 1 : tile.r1 - tile.r0, mS === 1 ? 1 : end - start];
  // The axes of [B, H, T, S] that the mask has: rank 3 has no head axis, rank 2 only [T, S].
  const mask = view.tensor;
  const axes = mask.rank === 4 ? [0, 1, 2, 3] : mask.rank === 3 ? [0, 2, 3] : [2, 3];
  const whole = axes.every((a, i) => begin[a] === 0 && size[a] === mask.shape[i]);
  const blk = whole ? mask : sliceFast(mask, axes.map(a => begin[a]), axes.map(a => size[a]));  // the tile's entries
  const bools = toBoolMask(blk);  // bool, the tile's entries
  if (blk !== mask && blk !== bools) blk.dispose();
  const allowed = tf.reshape(bools, size);  // [mB|1, mH|1, Tr|1, Sb|1] bool
  if (bools !== mask) bools.dispose();
  const bias = masked === -Infinity ?
      consume(tf.cast(allowed, 'float32'), a => tf.log(a)) :  // log 1 = 0, log 0 = -∞
      consume(tf.tidy(() => tf.cast(tf.logicalNot(allowed), 'float32')), a => tf.mul(a, masked));  // 0 or masked
  allowed.dispose();
  return bias;  // [mB|1, mH|1, Tr|1, Sb|1]
}

// Masked keys get MASKED_LOGIT (see masks.ts); a row is attended iff its running max stays
// above MASKED_LOGIT / 2.

/** Combines the states of two sets of key blocks over the same query rows. */
function combineStates(a: OnlineState, b: OnlineState): OnlineState {
  return tf.tidy((): OnlineState => {
    const m = tf.maximum(a.m, b.m);  // [B, H, Tr, 1]
    const alpha = tf.exp(tf.sub(a.m, m));  // [B, H, Tr, 1]
    const beta = tf.exp(tf.sub(b.m, m));  // [B, H, Tr, 1]
    return {
      m: m as tf.Tensor4D,
      l: tf.add(tf.mul(a.l, alpha), tf.mul(b.l, beta)) as tf.Tensor4D,  // [B, H, Tr, 1]
      acc: tf.add(tf.mul(a.acc, alpha), tf.mul(b.acc, beta)) as tf.Tensor4D,  // [B, H, Tr, dv]
    };
  });
}

/** Folds a key block's state, which covers query rows [from, T), into the running state of all T rows. */
function mergeState(prev: OnlineState, block: OnlineState, from: number): OnlineState {
  if (from === 0) return combineStates(prev, block);
  return tf.tidy((): OnlineState => {
    const T = prev.m.shape[2];
    const tail = combineStates(
        {m: rowsOf(prev.m, from, T), l: rowsOf(prev.l, from, T), acc: rowsOf(prev.acc, from, T)}, block);
    // Rows before `from` attend no key of the block: they keep their state.
    const join = (x: tf.Tensor4D, y: tf.Tensor4D) => tf.concat([rowsOf(x, 0, from), y], 2) as tf.Tensor4D;  // [B, H, T, .]
    return {m: join(prev.m, tail.m), l: join(prev.l, tail.l), acc: join(prev.acc, tail.acc)};
  });
}

/**
 * Forward pass: online softmax over key blocks. Returns the output and the per-row
 * logsumexp of the masked, scaled logits, which is +∞ (not -∞) on fully masked rows (and
 * padded queries) so that the backward pass's exp(s - lse) is 0 there instead of NaN.
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
    const tiles = rowTiles(T, start, end, config.causal);
    // One tidy per block frees the block's [B, H, Tr, Sb] intermediates right away.
    const block = tf.tidy((): OnlineState => {
      const kBlk = sliceFast(k, [0, 0, start, 0], [B, H, sb, dk]);  // [B, H, Sb, dk]
      // On wasm the block of keys is transposed so that q·kᵀ is a plain matMul (slicing a
      // once-transposed kᵀ along its last axis took 3.5 ms a block at T = 8192).
      const kT = explicit ? tf.transpose(kBlk, [0, 1, 3, 2]) : null;  // [B, H, dk, Sb]
      const vBlk = sliceFast(v, [0, 0, start, 0], [B, H, sb, dv]);  // [B, H, Sb, dv]
      const states = tiles.map(tile => tf.tidy((): OnlineState => {
        const tr = tile.r1 - tile.r0;
        const qRows = rowsOf(qScaled, tile.r0, tile.r1);  // [B, H, Tr, dk]
        const raw = kT != null ? tf.matMul(qRows, kT) : tf.matMul(qRows, kBlk, false, true);  // [B, H, Tr, Sb]
        const scores = maskTile(raw, config, tile, start, end, false, MASKED_LOGIT);  // [B, H, Tr, Sb]
        const p = tf.softmax(scores);  // [B, H, Tr, Sb]
        // At the row's argmax j, p_j = exp(m - lse) with m = s_j the row max: lse = s_j - log(p_j),
        // one reduction pass (ArgMax) instead of two (Max of s, Max of p; 6 ms each there).
        const at = tf.reshape(tf.argMax(p, -1), [-1]);  // [B·H·Tr] int32
        const m = tf.reshape(pickPerRow(tf.reshape(scores, [-1, sb]), at), [B, H, tr, 1]) as tf.Tensor4D;  // [B, H, Tr, 1]
        scores.dispose();
        // Σ exp(s - m) = 1 / p_j.
        const l = tf.reshape(tf.reciprocal(pickPerRow(tf.reshape(p, [-1, sb]), at)), [B, H, tr, 1]) as tf.Tensor4D;  // [B, H, Tr, 1]
        const acc = tf.mul(consume(p, x => tf.matMul(x, vBlk)), l) as tf.Tensor4D;  // [B, H, Tr, dv]
        return {m, l, acc};
      }));
      if (states.length === 1) return states[0];
      // The tiles cover rows [tiles[0].r0, T) in order.
      const join = (part: (s: OnlineState) => tf.Tensor4D) => tf.concat(states.map(part), 2) as tf.Tensor4D;
      return {m: join(s => s.m), l: join(s => s.l), acc: join(s => s.acc)};  // [B, H, T - r0, .]
    });
    const prev: OnlineState|null = state;
    state = prev == null ? block : mergeState(prev, block, tiles[0].r0);
    if (prev != null) tf.dispose([prev.m, prev.l, prev.acc, block.m, block.l, block.acc]);
  }
  const result = tf.tidy(() => {
    if (state == null) {
      // No key at all (S = 0): every row is fully masked.
      return {out: tf.zeros([B, H, T, dv]) as tf.Tensor4D, lse: tf.fill([B, H, T, 1], Infinity) as tf.Tensor4D};
    }
    const average = tf.div(state.acc, state.l);  // [B, H, T, dv]
    const lseAll = tf.add(state.m, tf.log(state.l));  // [B, H, T, 1]
    const onlyCausal = config.mask == null && config.keyMask == null && config.queryMask == null;
    if (onlyCausal && !config.causal) return {out: average as tf.Tensor4D, lse: lseAll as tf.Tensor4D};
    // Not "m > MASKED_LOGIT / 2": a NaN max (a NaN score) must keep its NaN lse, or the backward would give 0 for NaN.
    let attended = tf.logicalNot(tf.lessEqual(state.m, MASKED_LOGIT / 2));  // [B, H, T, 1]
    if (onlyCausal) {
      // Causal alone leaves every query key 0: a max at the masked logit means that every
      // score it may attend was -∞, whose softmax is NaN (as on the other paths), not zeros.
      const nanUnattended = tf.mul(tf.log(tf.cast(attended, 'float32')), 0);  // [B, H, T, 1]: NaN (log 0 · 0) or 0
      return {out: tf.add(average, nanUnattended) as tf.Tensor4D, lse: tf.add(lseAll, nanUnattended) as tf.Tensor4D};
    }
    if (config.queryMask != null) {
      // A padded query attends nothing: zero output, and lse = +∞ gives it no gradient.
      const real = tf.reshape(toBoolMask(config.queryMask), [config.queryMask.shape[0], 1, T, 1]);  // [B, 1, T, 1]
      attended = tf.logicalAnd(attended, real);  // [B, H, T, 1]
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
 * dK = dSᵀ·q·scale. It works on the transposed block [B, H, Sb, Tr] (keys first) so that dV
 * and dK are plain matMuls and only dq needs a transposed operand. The query rows of a
 * block are the forward's tiles (`rowTiles`): with `causal`, rows before the block are skipped.
 */
function backwardBlocks(
    dy: tf.Tensor4D, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, out: tf.Tensor4D, lse: tf.Tensor4D,
    config: BlockConfig): tf.Tensor4D[] {
  const [B, H, T, dk] = q.shape;
  const S = k.shape[2];
  const dv = v.shape[3];
  const explicit = transposeFlagsAreSlow();
  // D_t = Σ_j dy_tj·out_tj = Σ_s P_ts·dP_ts: the softmax Jacobian's row term, laid out along T.
  const dRow = tf.tidy(() => tf.reshape(tf.sum(tf.mul(dy, out), -1), [B, H, 1, T])) as tf.Tensor4D;  // [B, H, 1, T]
  const lseRow = tf.reshape(lse, [B, H, 1, T]) as tf.Tensor4D;  // [B, H, 1, T]
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
    const tiles = rowTiles(T, start, end, config.causal);
    const from = tiles[0].r0;
    const prevDq = dqAcc;
    const step = tf.tidy((): BackwardStep => {
      const kBlk = sliceFast(k, [0, 0, start, 0], [B, H, sb, dk]);  // [B, H, Sb, dk]
      const vBlk = sliceFast(v, [0, 0, start, 0], [B, H, sb, dv]);  // [B, H, Sb, dv]
      const parts = tiles.map(tile => tf.tidy(() => {
        const {r0, r1} = tile;
        const qRows = rowsOf(qs, r0, r1);  // [B, H, Tr, dk]
        const dyRows = rowsOf(dy, r0, r1);  // [B, H, Tr, dv]
        const scores = qT != null ? tf.matMul(kBlk, columnsOf(qT, r0, r1)) : tf.matMul(kBlk, qRows, false, true);  // [B, H, Sb, Tr]
        const masked = maskTile(scores, config, tile, start, end, true);  // [B, H, Sb, Tr]
        // Masked logits are -∞ and fully masked rows have lse = +∞: both give exactly 0.
        const p = consume(masked, x => tf.exp(tf.sub(x, columnsOf(lseRow, r0, r1))));  // [B, H, Sb, Tr]
        const dvPart = tf.matMul(p, dyRows);  // [B, H, Sb, dv]
        const dp = dyT != null ? tf.matMul(vBlk, columnsOf(dyT, r0, r1)) : tf.matMul(vBlk, dyRows, false, true);  // [B, H, Sb, Tr]
        const ds = consume(dp, x => tf.mul(p, tf.sub(x, columnsOf(dRow, r0, r1))));  // [B, H, Sb, Tr]
        p.dispose();
        const dkPart = tf.matMul(ds, qRows);  // [B, H, Sb, dk]: dS·(scale·Q)
        const dqPart = explicit ?
            consume(ds, x => tf.matMul(tf.transpose(x, [0, 1, 3, 2]), kBlk)) :  // [B, H, Tr, dk]
            consume(ds, x => tf.matMul(x, kBlk, true, false));  // [B, H, Tr, dk]
        return {dq: dqPart as tf.Tensor4D, dk: dkPart as tf.Tensor4D, dv: dvPart as tf.Tensor4D};
      }));
      const sum = (part: (p: BackwardStep) => tf.Tensor4D) => parts.map(part).reduce((a, b) => tf.add(a, b) as tf.Tensor4D);
      const dqRows = parts.length === 1 ? parts[0].dq : tf.concat(parts.map(p => p.dq), 2) as tf.Tensor4D;  // [B, H, T - from, dk]
      // Rows before `from` got nothing from this block.
      const dq = from === 0 ? tf.add(prevDq, dqRows) :
          tf.concat([rowsOf(prevDq, 0, from), tf.add(rowsOf(prevDq, from, T), dqRows)], 2);  // [B, H, T, dk]
      return {
        dq: dq as tf.Tensor4D,  // [B, H, T, dk]
        dk: sum(p => p.dk),  // [B, H, Sb, dk]
        dv: sum(p => p.dv),  // [B, H, Sb, dv]
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
    throw invalidArgument('options', 'an object {blockSize, scale, causal?, mask?, keyPaddingMask?, queryPaddingMask?}', options);
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
    pair: null,
    keyMask: checkPaddingMask('keyPaddingMask', options.keyPaddingMask, q.shape[0], k.shape[2], 'S'),
    queryMask: checkPaddingMask('queryPaddingMask', options.queryPaddingMask, q.shape[0], q.shape[2], 'T'),
  };
}

/** Checks that `mask` is a bool/numeric tensor [B, H, T, S], [B, T, S] or [T, S] (dims 1 broadcast). */
function validateMask(mask: tf.Tensor|undefined, target: [number, number, number, number]): MaskView|null {
  if (mask == null) return null;
  if (!(mask instanceof tf.Tensor)) {
    throw invalidArgument('mask', 'a tensor broadcastable to [B, H, T, S]', mask);
  }
  if (mask.dtype !== 'bool' && mask.dtype !== 'float32' && mask.dtype !== 'int32') {
    throw new ValueError(
        'Received an invalid value for argument `mask`, expected dtype bool or float32 (0/1). ' +
        `Received: mask.dtype=${formatValue(mask.dtype)}`);
  }
  const s = mask.shape;
  const dims = mask.rank === 4 ? s : mask.rank === 3 ? [s[0], 1, s[1], s[2]] : mask.rank === 2 ? [1, 1, s[0], s[1]] : null;
  if (dims == null || !dims.every((d, i) => d === 1 || d === target[i])) {
    throw new ValueError(
        'Received an invalid value for argument `mask`, expected a shape broadcastable to ' +
        `[B, H, T, S]=${formatValue(target)}: rank 4, or rank 3 [B, T, S] for every head, or rank 2 [T, S], ` +
        `each dim equal or 1. Received: mask.shape=${formatValue(mask.shape)}`);
  }
  return {tensor: mask, dims: dims as [number, number, number, number]};
}
