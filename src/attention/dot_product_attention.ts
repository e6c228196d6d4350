/** The functional op: scaled dot-product attention softmax(Q·Kᵀ·scale)·V on [B, T, d] or [B, H, T, d] tensors. */
import * as tf from '@tensorflow/tfjs';
import {checkPositiveFinite, checkRate, ValueError} from '../errors';
import {attendedQueries, checkMaskShape, checkPaddingMask, combineMasks, consume, MASKED_LOGIT, maskBias, paddingMask} from './masks';
import {simdBatchMatMul, simdFits, splitMatrices} from '../backend/wasm_simd_kernels';
import {fusedAttention, fusedKernelAvailable} from '../backend/wasm_fused_attention';
import {fusedAttentionTraining} from '../backend/wasm_fused_attention_backward';
import {allowedAttentionThreads} from '../backend/attention_threads';
import {AttentionPlan, checkStandardPathMemory, planAttention} from './attention_plan';
import {matMulFast, sizeOf, transposeFlagsAreSlow} from './matmul';
import {memoryEfficientAttention} from './memory_efficient_attention';
import {checkHeadSizes, emptyAttention, isEmptyAttention} from './empty_attention';
import {fusedAttendedRows, fusedMask, fusedMaskBiases} from './fused_masks';

export interface DotProductAttentionOptions {
  /**
   * Which keys each query may attend, 1 (or true) = attend. Broadcastable to the scores
   * [B, T, S] (rank-3 inputs) or [B, H, T, S] (rank-4 inputs); a rank-3 mask [B, T, S] is
   * applied to every head. Defaults to none.
   */
  mask?: tf.Tensor|null;
  /**
   * Key padding [B, S] (bool, or numbers with 0 = padding): a padded key is attended by no
   * query (of any head). Combines with `mask` and `causal` by AND. Unlike a [B, T, S] `mask`,
   * the memory-efficient path keeps it a [B, S] vector. Defaults to none.
   */
  keyPaddingMask?: tf.Tensor|null;
  /**
   * Query padding [B, T] (bool, or numbers with 0 = padding): a padded query attends no key,
   * so its output row is zeros (and gets zero gradients). Defaults to none.
   */
  queryPaddingMask?: tf.Tensor|null;
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
   * size; 0 forces the standard path; null/undefined (the default) lets `planAttention`
   * choose: the fused kernel on wasm (masks included, as biases; for training with its fused
   * backward), and otherwise the blocked
   * path with `DEFAULT_BLOCK_SIZE` when the key length is at least the backend's
   * `memoryEfficientThreshold` (4096 on wasm and cpu; on tensorflow only past the memory
   * budget) and neither the weights nor dropout are asked for.
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
 * PyTorch's scaled_dot_product_attention does since 2024. T = 0 gives an empty output
 * [.., 0, dv] and S = 0 zeros [.., T, dv] (as PyTorch), on every path (`emptyAttention`).
 *
 * NaN and ±∞ in the query, key or value propagate as in the IEEE arithmetic of
 * softmax(Q·Kᵀ·scale)·V, the same on every path and backend: a NaN or +∞ score makes its
 * query's row NaN, a -∞ score gives its key weight 0, and a non-finite value reaches every
 * output whose weight of it is not 0 (0·∞ and 0·NaN being NaN). A non-finite number in a key
 * or value that a query may not attend (masked, or after it with `causal`) is the exception:
 * whether it reaches that query depends on the path, as between PyTorch's math and flash
 * kernels (the fused kernel and the blocked path skip keys that no query of a block attends);
 * so is, with a `mask`, a query whose every attended score is -∞, and on the blocked path a
 * query whose scores over one whole key block are all -∞ (NaN there).
 *
 * Three paths compute it: on wasm, the fused kernel (for training with its fused backward,
 * padding and explicit masks included); the standard path, which forms the weights; and for
 * long keys the memory-efficient one.
 * `planAttention` (attention_plan.ts) chooses, and says why (see `blockSize`).
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
  const scoresShape = [...query.shape.slice(0, -1), keyLength];  // [B, (H,) T, S]

  const [T, dv] = [query.shape[query.rank - 2], value.shape[value.rank - 1]];
  const keyPadding = checkPaddingMask('keyPaddingMask', options.keyPaddingMask, query.shape[0], keyLength, 'S');
  const queryPadding = checkPaddingMask('queryPaddingMask', options.queryPaddingMask, query.shape[0], T, 'T');
  const plan = planOp(query, keyLength, dv, options, {padding: keyPadding != null || queryPadding != null, dropoutActive});  // throws on contradicting options
  if (isEmptyAttention(query, key)) {
    tf.tidy(() => void combineMasks(options.mask, false, scoresShape));  // throws on a mask that does not broadcast
    return emptyAttention(query, key, value, options.returnWeights === true);  // [B, (H,) T, dv] (zeros), [B, (H,) T, S]
  }
  const unmasked = options.mask == null && keyPadding == null && queryPadding == null;
  if (plan.path === 'fused') {
    const masks = {mask: options.mask ?? null, keyPadding, queryPadding, causal, scale, scoresShape};
    return fusedPath(query, key, value, masks, plan.kernel === 'gradient');  // [B, (H,) T, dv]
  }
  if (plan.path === 'memory-efficient') {
    return memoryEfficientPath(query, key, value, {mask: options.mask, keyPadding, queryPadding, causal, scale, blockSize: plan.blockSize!});
  }
  checkStandardPathMemory(scoresShape, `query.shape=[${query.shape.join(', ')}], key.shape=[${key.shape.join(', ')}]`);

  return tf.tidy(() => {
    let allowed = combineMasks(options.mask, causal, scoresShape);  // bool, broadcasts to [B, (H,) T, S]
    // This path forms [T, S] scores anyway, so the padding may become a [B, T, S] mask here.
    let padding = paddingMask(queryPadding, keyPadding, T, keyLength);  // [B, T|1, S|1] bool or null
    if (padding != null && query.rank === 4) padding = padding.expandDims(1);  // [B, 1, T|1, S|1]: every head
    if (padding != null) allowed = allowed == null ? padding : tf.logicalAnd(allowed, padding);
    // Causal alone never leaves a query without keys: its masked scores get -∞ (exp gives the
    // same exact 0), so that a query whose every attended score is -∞ is NaN, as IEEE softmax
    // and the other paths have it, instead of averaging the masked values.
    const bias = allowed == null ? null : maskBias(allowed, unmasked ? -Infinity : MASKED_LOGIT);  // same shape
    // Only an explicit mask or padding can leave a row with no key (causal always keeps key 0).
    const rows = unmasked || allowed == null ? null : attendedRows(allowed);  // [.., T, 1] 0/1
    // The custom-gradient kernel pays where tfjs's own matMul gradients are slow (wasm); on
    // cpu its backward measured 12% slower than tfjs's at (8, 128, 64, 4), whose broadcasts
    // differ, so there gradients keep to the plain ops below.
    const customKernel = transposeFlagsAreSlow() || !tf.engine().isTapeOn();
    if (!options.returnWeights && !dropoutActive && customKernel) {
      return attendStandard(query, key, value, {bias, rows, scale});  // [B, (H,) T, dv]
    }
    // The weights are an output (or dropped out), or tfjs differentiates: plain ops.
    // The scale goes to the smaller operand: Q [.., T, dk] when dk <= S, else the scores.
    const scaleQuery = dk <= keyLength;
    const q = scaleQuery && scale !== 1 ? tf.mul(query, scale) : query;  // [B, (H,) T, dk]
    let scores = matMulFast(q, key, false, true);                       // [B, (H,) T, S]
    if (!scaleQuery) scores = tf.mul(scores, scale);
    let weights = tf.softmax(bias == null ? scores : tf.add(scores, bias));
    if (rows != null) weights = tf.mul(weights, rows);                  // fully masked rows -> 0
    if (dropoutActive) weights = tf.dropout(weights, dropout);
    const output = matMulFast(weights, value);                          // [B, (H,) T, dv]
    return options.returnWeights ? [output, weights] as [tf.Tensor, tf.Tensor] : output;
  });
}


/** 1 for the query rows that attend at least one key, 0 for fully masked rows: [.., T, 1]. */
function attendedRows(allowed: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.cast(tf.any(allowed, -1, true), 'float32'));  // [.., T, 1]
}

/**
 * The op's plan (see attention_plan.ts) for query [B, (H,) T, dk] against `keyLength` keys,
 * with the active backend, whether a gradient is recorded, and the fused kernel's availability
 * and threads here.
 */
function planOp(
    query: tf.Tensor, keyLength: number, dv: number, options: DotProductAttentionOptions,
    flags: {padding: boolean; dropoutActive: boolean}): AttentionPlan {
  const [T, dk] = query.shape.slice(-2) as [number, number];
  return planAttention({
    backend: tf.getBackend(), batch: query.shape[0], heads: query.rank === 4 ? query.shape[1] as number : 1, T, S: keyLength, dk, dv,
    blockSize: options.blockSize, mask: options.mask != null, padding: flags.padding, causal: options.causal ?? false,
    returnWeights: options.returnWeights === true, dropoutActive: flags.dropoutActive, recording: tf.engine().isTapeOn(),
    fusedKernelAvailable: fusedKernelAvailable(), threads: allowedAttentionThreads(),
  });
}

/**
 * Below this many FLOPs per (batch, head) pair, wasm runs the two products of a batched
 * input as one batched matMul (its scalar loop, ~1 GFLOP/s, no per-call cost); above it,
 * as one XNNPACK matMul per pair (~20-40 GFLOP/s, but ~0.1 ms per call to pack the
 * operand). Measured per pair, Q·Kᵀ, softmax and P·V with 2·T·S·(dk+dv) FLOPs:
 * T=S=16, d=64 (65 kFLOP): batched 2.1 ms, per pair 12 ms for 32 pairs; T=S=128, d=16
 * (1 MFLOP): 21 ms vs 15 ms; T=S=256, d=32 (8 MFLOP): 42 ms vs 10 ms.
 */
const PER_PAIR_MIN_FLOPS = 500_000;

/** Options of the standard path's kernel. */
interface StandardConfig {
  /** Additive mask, broadcastable to the scores, or null. */
  bias: tf.Tensor|null;
  /** 0/1 per query row [.., T, 1] (0 = all keys masked), broadcastable, or null. */
  rows: tf.Tensor|null;
  /** Multiplies Q·Kᵀ. */
  scale: number;
}


/** A matrix product scale·op(a)·op(b), like tf.mul(tf.matMul(a, b, transposeA, transposeB), scale). */
type MatMul = (a: tf.Tensor, b: tf.Tensor, transposeA?: boolean, transposeB?: boolean, scale?: number) => tf.Tensor;

/** matMulFast with the scale as a separate multiply. */
function scaledMatMulFast(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false, scale = 1): tf.Tensor {
  const product = matMulFast(a, b, transposeA, transposeB);
  return scale === 1 ? product : consume(product, x => tf.mul(x, scale));
}

/** Forward of one (batch of) pair(s): output R and weights P. Works on [T, d] or [.., T, d]. */
function forwardPair(
    mm: MatMul, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, bias: tf.Tensor|null, rows: tf.Tensor|null,
    scoreScale: number): {out: tf.Tensor; p: tf.Tensor} {
  let scores = mm(q, k, false, true, scoreScale);                             // [.., T, S]
  if (bias != null) scores = consume(scores, s => tf.add(s, bias));
  const p = consume(scores, s => tf.softmax(s));                              // [.., T, S]
  let out = mm(p, v);                                                         // [.., T, dv]
  // Fully masked rows -> 0; adding 0 turns the -0 of (negative output)·0 into 0.
  if (rows != null) out = consume(out, o => tf.tidy(() => tf.add(tf.mul(o, rows), 0)));  // [.., T, dv]
  return {out, p};
}

/**
 * Backward of one (batch of) pair(s), given the weights P of the forward: with dO' = dO
 * (times the attended rows), dV = Pᵀ·dO', dP = dO'·Vᵀ, dS = P ∘ (dP - rowsum(dO' ∘ O)) and
 * dQ = dS·K, dK = dSᵀ·Q. rowsum(dO' ∘ O) equals rowsum(dP ∘ P) with [T, dv] work instead
 * of [T, S] (FlashAttention's D).
 */
function backwardPair(
    mm: MatMul, dy: tf.Tensor, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, out: tf.Tensor, p: tf.Tensor,
    rows: tf.Tensor|null, scoreScale: number): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    const dOut = rows == null ? dy : tf.mul(dy, rows);                        // [.., T, dv]
    const dv = mm(p, dOut, true, false);                                      // [.., S, dv]
    const rowTerm = tf.sum(tf.mul(dOut, out), -1, true);                      // [.., T, 1]
    const dp = mm(dOut, v, false, true);                                      // [.., T, S]
    const ds = consume(consume(dp, x => tf.sub(x, rowTerm)), x => tf.mul(x, p));  // [.., T, S]
    // The scale of the scores goes to dQ and dK, smaller than dS (and free in the SIMD kernel).
    const dq = mm(ds, k, false, false, scoreScale);                           // [.., T, dk]
    const dk = mm(ds, q, true, false, scoreScale);                            // [.., S, dk]
    return [dq, dk, dv];
  });
}

/** x [L..., R, C] -> the [R, C] slice of each of the prod(L) pairs (contiguous, so cheap). */
function splitPairs(x: tf.Tensor): tf.Tensor[] {
  const [rows, cols] = x.shape.slice(-2);
  if (x.size === rows * cols) return [x.reshape([rows, cols])];               // [R, C]
  return splitMatrices(x);                                                    // pairs x [R, C]
}

/**
 * The piece of a broadcastable tensor (bias or rows, rank <= the scores' rank) that goes
 * with each pair of the leading dims `lead`: pairs whose dims the tensor broadcasts share
 * one piece.
 */
function pairPieces(x: tf.Tensor|null, lead: number[]): Array<tf.Tensor|null> {
  const pairs = sizeOf(lead);
  if (x == null) return new Array<null>(pairs).fill(null);
  const full = [...new Array<number>(lead.length + 2 - x.rank).fill(1), ...x.shape];  // rank of the scores
  const xLead = full.slice(0, lead.length);
  const pieces = splitPairs(x.reshape(full));
  return Array.from({length: pairs}, (_, n) => {
    let index = 0;
    let rest = n;
    let stride = 1;
    for (let axis = lead.length - 1; axis >= 0; axis--) {
      const i = rest % lead[axis];
      rest = Math.floor(rest / lead[axis]);
      if (xLead[axis] !== 1) index += i * stride;
      stride *= xLead[axis];
    }
    return pieces[index];
  });
}

/** How the standard path runs its products (see `chooseMode`). */
type Mode = 'batched'|'simd'|'pairs';

/**
 * Where matMul's flags are slow (wasm): one pair (B·H = 1) runs as 2-D products, which go
 * to XNNPACK; several pairs run on the SIMD kernel while they fit SIMD_MAX_BYTES, else as
 * one XNNPACK product per pair when each is large enough (PER_PAIR_MIN_FLOPS), else as
 * wasm's batched matMul. Elsewhere (cpu, webgl, tensorflow) as tf.matMul with flags.
 */
function chooseMode(pairs: number, T: number, S: number, dk: number, dv: number): Mode {
  if (!transposeFlagsAreSlow()) return 'batched';
  if (pairs === 1) return 'pairs';
  const d = Math.max(dk, dv);
  if (simdFits(pairs, T, d, S) && simdFits(pairs, S, T, d)) return 'simd';
  return 2 * T * S * (dk + dv) >= PER_PAIR_MIN_FLOPS ? 'pairs' : 'batched';
}

/**
 * The standard path: softmax(Q·Kᵀ + bias)·V with a custom gradient, on [B, (H,) T, d]
 * inputs, its products run as `chooseMode` says. The custom gradient keeps the backward on
 * the same fast products, where tfjs's own gradients of matMul use the transpose flags.
 */
function attendStandard(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, config: StandardConfig): tf.Tensor {
  const lead = q.shape.slice(0, -2);
  const [T, dk] = q.shape.slice(-2);
  const [S, dv] = v.shape.slice(-2);
  const pairs = sizeOf(lead);
  const mode = chooseMode(pairs, T, S, dk, dv);
  const mm: MatMul = mode === 'simd' ? simdBatchMatMul : scaledMatMulFast;
  const {bias, rows, scale} = config;
  // The SIMD kernel scales its products for free. Elsewhere the scale goes to the smaller
  // operand: Q [.., T, dk] when dk <= S (differentiated by tfjs, outside the custom
  // gradient), else the products whose size is [.., T, S] or smaller.
  const scaleQuery = mode !== 'simd' && dk <= S && scale !== 1;
  const query = scaleQuery ? tf.mul(q, scale) : q;                           // [B, (H,) T, dk]
  const scoreScale = scaleQuery ? 1 : scale;
  const forward = (qIn: tf.Tensor, kIn: tf.Tensor, vIn: tf.Tensor): {out: tf.Tensor; weights: tf.Tensor[]} => {
    if (mode !== 'pairs') {
      const {out, p} = forwardPair(mm, qIn, kIn, vIn, bias, rows, scoreScale);
      return {out, weights: [p]};                                              // [B, (H,) T, dv], [B, (H,) T, S]
    }
    const qs = splitPairs(qIn);
    const ks = splitPairs(kIn);
    const vs = splitPairs(vIn);
    const biases = pairPieces(bias, lead);
    const rowsOf = pairPieces(rows, lead);
    const results = qs.map((qi, n) => forwardPair(mm, qi, ks[n], vs[n], biases[n], rowsOf[n], scoreScale));
    const out = results.length === 1 ?
        results[0].out.reshape([...lead, T, dv]) :
        tf.concat(results.map(r => r.out), 0).reshape([...lead, T, dv]);      // [B, (H,) T, dv]
    return {out, weights: results.map(r => r.p)};                              // pairs x [T, S]
  };
  // Without a gradient tape the custom gradient's wrapper (~0.1 ms) is not needed.
  if (!tf.engine().isTapeOn()) return forward(query, k, v).out;
  const run = tf.customGrad((...args: Array<tf.Tensor|tf.GradSaveFunc>) => {
    const [qIn, kIn, vIn] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const {out, weights} = forward(qIn, kIn, vIn);
    // Saved (not read through the closure): the op's tidy disposes rows before any backward.
    save([qIn, kIn, vIn, out, ...(rows == null ? [] : [rows]), ...weights]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [qS, kS, vS, outS] = saved;
        const rowsS = rows == null ? null : saved[4];
        const ps = saved.slice(rows == null ? 4 : 5);
        if (mode !== 'pairs') return backwardPair(mm, dy, qS, kS, vS, outS, ps[0], rowsS, scoreScale);
        return tf.tidy(() => {
          const [qs, ks, vs, outs, dys] = [qS, kS, vS, outS, dy].map(splitPairs);
          const rowsOf = pairPieces(rowsS, lead);
          const grads = qs.map((qi, n) => backwardPair(mm, dys[n], qi, ks[n], vs[n], outs[n], ps[n], rowsOf[n], scoreScale));
          const join = (i: number, shape: number[]) =>
              (grads.length === 1 ? grads[0][i] : tf.concat(grads.map(g => g[i]), 0)).reshape(shape);
          return [join(0, qS.shape), join(1, kS.shape), join(2, vS.shape)];  // dq, dk, dv
        });
      },
    };
  });
  return run(query, k, v);
}

/**
 * Runs the blocked kernel, which works on rank-4 tensors, on rank-3 or rank-4 inputs. The
 * masks go as they are, never expanded, converted or even reshaped (a reshaped view counts
 * its bytes again in tf.memory()): the kernel slices and converts one block at a time, and
 * keeps the padding as vectors.
 */
function memoryEfficientPath(
    query: tf.Tensor, key: tf.Tensor, value: tf.Tensor,
    options: {mask?: tf.Tensor|null; keyPadding: tf.Tensor|null; queryPadding: tf.Tensor|null; causal: boolean;
              scale: number; blockSize: number}): tf.Tensor {
  return tf.tidy(() => {
    const hasHeads = query.rank === 4;
    const as4d = (x: tf.Tensor) => (hasHeads ? x : x.expandDims(1)) as tf.Tensor4D;  // [B, H, ., .]
    // The kernel takes [B, H, T, S], [B, T, S] (every head) and [T, S] masks as they are.
    const mask = options.mask ?? undefined;
    if (mask != null) checkMaskShape(mask, [...query.shape.slice(0, -1), key.shape[key.rank - 2]], 'mask');
    const output = memoryEfficientAttention(as4d(query), as4d(key), as4d(value), {
      blockSize: options.blockSize, scale: options.scale, causal: options.causal, mask,
      keyPaddingMask: options.keyPadding ?? undefined, queryPaddingMask: options.queryPadding ?? undefined,
    });                                                                     // [B, H, T, dv]
    return hasHeads ? output : output.squeeze([1]);
  });
}

/**
 * The fused kernel, with its fused backward when `training` (a gradient is recorded on wasm):
 * masked keys get MASKED_LOGIT in their scores, in the kernel, from biases at the size their
 * masks broadcast from (fused_masks.ts: [B, S] for key padding, [Bm, Hm, Tm, S] for an
 * explicit mask; causal is the kernel's own); queries left with no key (padded, or every key
 * they may attend masked) are zeroed after, as on the standard path, which gives them zero
 * gradients.
 */
function fusedPath(
    query: tf.Tensor, key: tf.Tensor, value: tf.Tensor,
    masks: {mask: tf.Tensor|null; keyPadding: tf.Tensor|null; queryPadding: tf.Tensor|null; causal: boolean; scale: number;
            scoresShape: number[]},
    training: boolean): tf.Tensor {
  const {mask, keyPadding, queryPadding, causal, scale, scoresShape} = masks;
  const [T, S] = scoresShape.slice(-2);
  return tf.tidy(() => {
    const allowed = mask == null ? null : fusedMask(mask, scoresShape);    // [Bm, Hm, Tm, Sm] bool; checked before any work
    const biases = fusedMaskBiases(allowed, keyPadding, S);                 // [B, S] and [Bm, Hm, Tm, S], or null
    const output = training ?
        fusedAttentionTraining(query, key, value, {scale, causal, ...biases}) :  // [B, (H,) T, dv]
        fusedAttention(query, key, value, scale, causal, biases);
    let rows = allowed != null ? fusedAttendedRows(allowed, keyPadding, queryPadding, causal, scoresShape) :  // [Br, (Hr,) Tr, 1]
        attendedQueries(queryPadding, keyPadding, T, causal);              // [B, T, 1] or null
    if (rows == null) return output;
    if (mask == null && query.rank === 4) rows = rows.expandDims(1);        // [B, 1, T, 1]
    return tf.add(tf.mul(output, rows), 0);                                 // + 0: no -0 in zeroed rows
  });
}

/** Shape and dtype checks of the op's inputs. */
function checkAttentionInputs(query: tf.Tensor, key: tf.Tensor, value: tf.Tensor): void {
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
  checkHeadSizes(query, value, shapes);
}
