/**
 * The attention planner: which path one attention call takes (the fused wasm kernels, the
 * standard path or the memory-efficient blocked path), with its block size, its threads and
 * why. One pure function, `planAttention`, decides it from the backend's name, the sizes, the
 * options and whether a gradient is recorded; the op (dot_product_attention.ts), the layer
 * (scaled_dot_product_attention.ts), the benchmark and the tests all ask it. The per-backend
 * choices below come from `npm run bench` (README, Performance). Browser-safe: no Node built-in.
 */
import {checkPositiveInteger, invalidArgument, ValueError} from '../errors';
import {allowedAttentionThreads, twoThreadsPay} from '../backend/attention_threads';
import {FUSED_KEY_BLOCK, fusedAttentionLayerSizesFit, fusedAttentionSizesFit} from '../backend/wasm_fused_attention';
import type {AttentionSizes} from '../backend/wasm_fused_attention';
import {fusedTrainingSizesFit} from '../backend/wasm_fused_attention_backward';
import {fusedLayerTrainingSizesFit} from '../backend/wasm_fused_layer_training';

/** The three ways attention can run. */
export type AttentionPath = 'fused'|'standard'|'memory-efficient';

/**
 * Key length from which the op and the layer switch to the memory-efficient (blocked) path
 * by default on wasm, cpu and the backends not measured (webgl, webgpu), when nothing requires
 * the full weight matrix and the fused kernels do not run (padding masks for the op's inference,
 * sizes they do not fit, or a backend other than wasm). Measured on wasm (2-core machine, B = H = 1, d = 64, forward,
 * block 512): the blocked path takes 1.24× the standard path's time at S = 1024, 1.18× at
 * 2048, 1.11× at 4096 and 1.19× at 8192, while the standard path holds two [T, S] score
 * tensors: 8 MiB at 1024, 32 MiB at 2048, 128 MiB at 4096 (224 MiB with gradients) and 512 MiB
 * at 8192. From 4096 keys on, the memory saved (over 100 MiB per batch·head) is worth the ~10%
 * of time; below, speed wins. See MEMORY_EFFICIENT_THRESHOLDS for the other backends.
 */
export const MEMORY_EFFICIENT_THRESHOLD = 4096;

/**
 * The memory-efficient threshold per backend (see MEMORY_EFFICIENT_THRESHOLD; a backend not
 * listed uses it). On `tensorflow` (tfjs-node, native TensorFlow) the blocked path is slower
 * than the standard one at every length measured, by more than it is on wasm, and native
 * memory has no 4 GiB heap limit, so only the memory budget (STANDARD_PATH_MAX_SCORE_BYTES)
 * switches it on. Measured with `npm run bench -- --backend tensorflow,wasm` (2-core machine,
 * B = H = 1, d = 64, 2026-11-30), standard against memory-efficient (512), ms:
 * forward 3.2 vs 5.7 at T = 1024, 37 vs 58 at 4096, 145 vs 223 at 8192; forward+backward
 * 8.3 vs 12.4, 109 vs 148, 413 vs 549 (peak 1580 vs 114 MiB at 8192); a second run at 4096:
 * 44 vs 57 forward, 136 vs 141 forward+backward. The issue that asked for this measured 78-89
 * against 132-164 ms at 4096 on a busier machine. Same first run on wasm: the blocked path
 * 1.15× (forward) and 1.15× (forward+backward) the standard's time at 4096.
 */
export const MEMORY_EFFICIENT_THRESHOLDS: Readonly<{[backend: string]: number}> = Object.freeze({
  wasm: MEMORY_EFFICIENT_THRESHOLD,
  cpu: MEMORY_EFFICIENT_THRESHOLD,
  tensorflow: Infinity,
});

/** The key length from which `backend` takes the memory-efficient path by default. */
export function memoryEfficientThreshold(backend: string): number {
  return MEMORY_EFFICIENT_THRESHOLDS[backend] ?? MEMORY_EFFICIENT_THRESHOLD;
}

/**
 * Key block size of the memory-efficient path when it is switched on automatically.
 * Measured at S = 8192 on wasm: blocks of 256, 512 and 1024 keys take 1.27×, 1.19× and
 * 1.16× the standard path's time, and the forward's peak is about 2·T·blockSize floats:
 * 512 keeps it near 1/9 of the standard path's (61 vs 528 MiB), 1024 doubles it for 3%.
 */
export const DEFAULT_BLOCK_SIZE = 512;

/**
 * The most bytes that one score tensor [B, (H,) T, S] of the standard path may take:
 * 512 MiB, T = S = 11,585 for one head. The standard path holds two such tensors in the
 * forward pass (scores, then weights) and up to five with gradients (weights, dP, dS and
 * temporaries), so at this limit it stays under wasm's 4 GiB heap, the smallest memory of
 * the Node backends. Beyond it the default switches to the memory-efficient path, and a
 * forced standard path is refused up front (checkStandardPathMemory) instead of failing
 * inside a kernel (a failed wasm allocation can leave the backend unusable). The same on
 * every backend.
 */
export const STANDARD_PATH_MAX_SCORE_BYTES = 512 * 2 ** 20;

/** One attention call, as the planner sees it: its sizes (batch B, heads H, queries T, keys S, head sizes dk and dv) and options. */
export interface AttentionCall extends AttentionSizes {
  /** The tfjs backend's name, as `tf.getBackend()` gives it: 'wasm', 'cpu', 'tensorflow', 'webgl', … */
  backend: string;
  /** The `blockSize` option: null/undefined lets the planner choose, 0 forces the standard path, N > 0 the blocked one. */
  blockSize?: number|null;
  /** An explicit mask (the op's `mask`, the layer's `attentionMask`). Defaults to false. */
  mask?: boolean;
  /** Padding masks (the op's `keyPaddingMask`/`queryPaddingMask`, the layer's `mask` from tfjs). Defaults to false. */
  padding?: boolean;
  /** `causal`; every path supports it, so it never changes the path. Defaults to false. */
  causal?: boolean;
  /** The weights are asked for (`returnWeights`, `returnAttentionScores`). Defaults to false. */
  returnWeights?: boolean;
  /** Dropout on the weights is active (a rate > 0 while training). Defaults to false. */
  dropoutActive?: boolean;
  /** A gradient is being recorded (inside tf.grad, tf.variableGrads, model.fit). Defaults to false. */
  recording?: boolean;
  /**
   * For a layer call: the widths of its query and context inputs, and whether it is
   * self-attention. The layer runs its projections in the fused kernel too, and applies
   * padding masks there when that kernel fits. Unset for the op.
   */
  layer?: {dq: number; dc: number; selfAttention?: boolean};
  /** Whether the fused kernels can run here (wasm with SIMD; see `fusedKernelAvailable`). Defaults to backend === 'wasm'. */
  fusedKernelAvailable?: boolean;
  /** Threads the fused kernel may use (`setAttentionThreads`; 1 in browsers). Defaults to 1. */
  threads?: 1|2;
}

/** The planner's answer. */
export interface AttentionPlan {
  path: AttentionPath;
  /** Keys per block: the memory-efficient path's blocks, or the fused kernel's (FUSED_KEY_BLOCK). Unset on the standard path. */
  blockSize?: number;
  /**
   * On the fused path: the threads it runs on (2: this thread and the worker; the kernel keeps to
   * 1 if the worker cannot start). With the 'gradient' kernel, the forward's and the backward's.
   */
  threads?: 1|2;
  /**
   * On the fused path: 'layer' (projections and attention in one call), 'attention' (attention
   * alone), 'gradient' (a gradient is recorded: the attention's forward and its fused
   * backward, `fusedAttentionTraining`, with tfjs' products for the projections), or
   * 'layer-gradient' (a gradient is recorded for a layer call: the projections too, forward
   * and backward, in the kernels, `fusedAttentionLayerTraining`).
   */
  kernel?: 'layer'|'attention'|'gradient'|'layer-gradient';
  /** Why, in words. */
  reason: string;
}

/**
 * Which path an attention call takes, and why. Pure: everything it depends on is in `call`.
 *
 * - `blockSize` 0 forces the standard path, N > 0 the memory-efficient one with blocks of N
 *   keys (an error with `returnWeights` or active dropout, which it cannot do).
 * - By default (`blockSize` null), attention on wasm takes the fused kernels, unless the weights
 *   or dropout are asked for, or the sizes do not fit the kernel. Masks go into the kernels as
 *   biases (an explicit mask at its own size, the key padding as a row per batch): the layer's
 *   kernel ('layer') where a layer call's weights fit it, otherwise the attention's ('attention';
 *   a layer call then runs its projections, then that kernel through the op).
 *   When a gradient is recorded, the fused forward and backward ('gradient'), masks included,
 *   on two threads where inference would be; for a layer call whose weights fit the projection
 *   kernel, the projections and their gradients in the kernels too ('layer-gradient'). Otherwise the memory-efficient path
 *   runs from `memoryEfficientThreshold(backend)` keys on, or when one score tensor would pass
 *   STANDARD_PATH_MAX_SCORE_BYTES, unless the weights or dropout need the standard path.
 *
 * `dotProductAttention` and the layer call it with the active backend, whether the tape is on,
 * and the fused kernel's availability and threads; `planAttention` lets you ask the same ahead
 * of a call, e.g. `planAttention({backend: tf.getBackend(), batch: 1, heads: 8, T: 4096, S: 4096,
 * dk: 64, dv: 64, recording: true}).path`.
 */
export function planAttention(call: AttentionCall): AttentionPlan {
  checkCall(call);
  const {backend, T, S} = call;
  const returnWeights = call.returnWeights ?? false;
  const dropoutActive = call.dropoutActive ?? false;
  const blockSize = call.blockSize;
  if (blockSize === 0) return {path: 'standard', reason: 'blockSize=0 forces the standard path'};
  if (blockSize != null) {
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
    return {path: 'memory-efficient', blockSize, reason: `blockSize=${blockSize} forces the memory-efficient path`};
  }
  const fused = fusedChoice(call);
  const flops = 2 * call.batch * call.heads * T * S * (call.dk + call.dv);
  const threads: 1|2 = (call.threads ?? 1) === 2 && twoThreadsPay(flops, T) ? 2 : 1;
  const withMask = call.mask ? ' with the explicit mask as a bias' : '';
  const andMask = withMask && `,${withMask}`;  // after the layer's kernels' words
  if (fused.kernel === 'gradient') {
    return {
      path: 'fused', blockSize: FUSED_KEY_BLOCK, threads, kernel: 'gradient',
      reason: `training on wasm: the fused kernel and its fused backward${withMask}${threads === 2 ? ', on two threads' : ''}`,
    };
  }
  if (fused.kernel === 'layer-gradient') {
    return {
      path: 'fused', blockSize: FUSED_KEY_BLOCK, threads, kernel: 'layer-gradient',
      reason: `training on wasm: the fused kernel with the projections and its fused backward with theirs${andMask}${threads === 2 ? ', on two threads' : ''}`,
    };
  }
  if (fused.kernel != null) {
    const masked = call.mask || call.padding;
    const what = fused.kernel === 'layer' ? ' with the projections' :
        masked && call.layer != null ? ' after the layer\'s projections, through the op,' : '';
    const withPadding = call.padding && fused.kernel === 'attention' && !call.mask ? ' with the key padding as a bias' : '';
    return {
      path: 'fused', blockSize: FUSED_KEY_BLOCK, threads, kernel: fused.kernel,
      reason: `inference on wasm: the fused kernel${what}${fused.kernel === 'layer' ? andMask : withMask}${withPadding}` + (threads === 2 ? ', on two threads' : ''),
    };
  }
  const threshold = memoryEfficientThreshold(backend);
  const bytes = scoreBytes(scoresShapeOf(call));
  const tooBig = bytes > STANDARD_PATH_MAX_SCORE_BYTES;
  const why = fused.whyNot == null ? '' : `${fused.whyNot}; `;
  const needsWeights = returnWeights ? 'the weights are asked for' : dropoutActive ? 'dropout is active' : null;
  if (needsWeights != null) {
    return {path: 'standard', reason: `${why}${needsWeights}, which only the standard path forms`};
  }
  if (tooBig) {
    return {
      path: 'memory-efficient', blockSize: DEFAULT_BLOCK_SIZE,
      reason: `${why}one score tensor would take ${formatBytes(bytes)}, over the standard path's budget of ` +
          formatBytes(STANDARD_PATH_MAX_SCORE_BYTES),
    };
  }
  if (S >= threshold) {
    return {path: 'memory-efficient', blockSize: DEFAULT_BLOCK_SIZE, reason: `${why}S=${S} >= ${threshold}, the memory-efficient threshold on ${backend}`};
  }
  const below = Number.isFinite(threshold) ? `S=${S} < ${threshold}, the memory-efficient threshold on ${backend}` :
      `${backend} takes the standard path at every length within the memory budget`;
  return {path: 'standard', reason: `${why}${below}`};
}

/** The fused kernel the call takes by default, or why none. */
function fusedChoice(call: AttentionCall): {kernel?: AttentionPlan['kernel']; whyNot?: string} {
  const {backend, batch, heads, T, S, dk, dv, layer} = call;
  if (backend !== 'wasm') return {};  // nothing to say: the fused kernel exists on wasm only
  if (!(call.fusedKernelAvailable ?? true)) return {whyNot: 'the fused kernel needs wasm SIMD, not available here'};
  if (call.returnWeights) return {whyNot: 'the fused kernel never forms the weights'};
  if (call.dropoutActive) return {whyNot: 'the fused kernel has no dropout'};
  if (call.recording) {
    if (!fusedTrainingSizesFit({T, S, dk, dv})) return {whyNot: 'the sizes do not fit the fused backward\'s work buffers'};
    // The layer's training kernels run its heads side by side, on two threads where they pay (then within the
    // worker's shared memory rather than the heap's budget).
    const twoThreads = twoThreadsPay(2 * batch * heads * T * S * (dk + dv), T) && allowedAttentionThreads() === 2;
    const layerSizes = layer == null ? null : {batch, T, S, dq: layer.dq, dc: layer.dc, heads, dk, dv, selfAttention: layer.selfAttention};
    const layerFits = layerSizes != null && fusedLayerTrainingSizesFit(layerSizes, twoThreads);
    return {kernel: layerFits ? 'layer-gradient' : 'gradient'};
  }
  if (!fusedAttentionSizesFit(T, S, dk, dv)) return {whyNot: 'the sizes do not fit the fused kernel\'s work buffers'};
  // Masks (an explicit one as a bias, the key padding as another): in the layer's kernel where its weights fit,
  // otherwise (and for the op) in the attention's kernel (a layer call then runs it through the op, after its projections).
  const layerFits = layer != null &&
      fusedAttentionLayerSizesFit({batch, T, S, dq: layer.dq, dc: layer.dc, heads, dk, dv, selfAttention: layer.selfAttention});
  return {kernel: layerFits ? 'layer' : 'attention'};
}

/** The shape of one score tensor: [B, H, T, S]. */
function scoresShapeOf(call: AttentionCall): number[] {
  return [call.batch, call.heads, call.T, call.S];
}

function checkCall(call: AttentionCall): void {
  if (call == null || typeof call !== 'object') throw invalidArgument('call', 'an object', call);
  if (typeof call.backend !== 'string' || call.backend === '') throw invalidArgument('backend', 'a backend name', call.backend);
  for (const name of ['batch', 'heads', 'T', 'S', 'dk', 'dv'] as const) {
    const value = call[name];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw invalidArgument(name, 'an integer >= 0', value);
  }
  if (call.threads != null && call.threads !== 1 && call.threads !== 2) throw invalidArgument('threads', '1 or 2', call.threads);
}

/** Bytes of a float32 score tensor of this shape. */
export function scoreBytes(scoresShape: number[]): number {
  return scoresShape.reduce((a, b) => a * b, 1) * 4;
}

/** "1.00 GiB" / "512 MiB". */
function formatBytes(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

/** Score-sized tensors alive at once in the standard path: forward, and forward+backward. */
const SCORE_TENSORS_FORWARD = 2;
const SCORE_TENSORS_TRAINING = 5;

/**
 * Throws, without allocating anything, when the standard path's score tensor
 * `scoresShape` = [B, (H,) T, S] would exceed STANDARD_PATH_MAX_SCORE_BYTES. `received`
 * names the caller's inputs for the message ("query.shape=[...], key.shape=[...]").
 */
export function checkStandardPathMemory(scoresShape: number[], received: string): void {
  const bytes = scoreBytes(scoresShape);
  if (bytes <= STANDARD_PATH_MAX_SCORE_BYTES) return;
  throw new ValueError(
      `The standard attention path would need score tensors of shape [${scoresShape.join(', ')}], ` +
      `${formatBytes(bytes)} each: about ${formatBytes(SCORE_TENSORS_FORWARD * bytes)} for the forward pass and ` +
      `${formatBytes(SCORE_TENSORS_TRAINING * bytes)} with gradients, over its budget of ` +
      `${formatBytes(STANDARD_PATH_MAX_SCORE_BYTES)} per score tensor (wasm memory stops at 4 GiB). ` +
      'Use the memory-efficient path (blockSize=null, the default, or a positive blockSize), ' +
      `which needs neither the attention weights nor dropout. Received: ${received}`);
}
