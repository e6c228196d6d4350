/**
 * The whole attention forward, softmax(scale·Q·Kᵀ)·V, as one kernel for tfjs' wasm backend
 * (`attend_4x8`, src/backend/kernels/attend_4x8_wasmsimd.c). Four queries at a time, it computes their
 * scores against a block of keys into a small scratch buffer, takes an online softmax there
 * and adds the weighted values: the T×S score matrix never exists, so memory stays linear in
 * T, and the four steps cost one kernel call instead of five ops. `fusedAttentionLayer`
 * adds the layer's projections to the same call. Large calls run on two threads in Node
 * (attention_threads.ts). Inference only: no gradient is registered.
 */
import * as tf from '@tensorflow/tfjs';
import {
  getSecondThread, noteTwoThreadCall, runStepsOnBothThreads, SHARED_DATA_START, SHARED_MAX_BYTES, sharedFloats, tableEntries,
  tableStep, tileChunks, twoThreadCallStart, twoThreadsPay, withWorkerAwake,
} from './attention_threads';
import type {JobStep, SecondThread, TileChunk} from './attention_threads';
import {biasAddressOfPair, copyBiases, heapBiases, maskRowArgs, placedBiasFloats} from './attention_bias';
import type {PlacedBiases} from './attention_bias';
import {denseFusedSizesFit, packRows, projectPacked} from './wasm_dense';
import {copyRows, heapAddress, heapFloats, heapModule, roundUp, withHeapBuffer} from './wasm_heap_module';
import {addRowsArgs, packedByFours} from './kernels/kernel_module';
import type {KernelExports} from './kernels/kernel_module';
import {runWasmKernel} from './wasm_kernel_registry';
import type {WasmBackendLike, WasmKernelArgs} from './wasm_kernel_registry';

/** Sizes of one attention call: B batches of H heads, T queries, S keys, head sizes dk (queries, keys) and dv (values). */
export interface AttentionSizes {
  batch: number;
  heads: number;
  T: number;
  S: number;
  dk: number;
  dv: number;
}
type FusedSizes = AttentionSizes;

/** How one call attends: the scale of the scores, and whether query t attends only keys s <= t. */
interface Attending {
  scale: number;
  causal: boolean;
}

/**
 * Keys per block of the kernel's online softmax: 256 keys of K and V (64 KiB each at d = 64)
 * stay in cache while every tile of four queries goes through them, and one tile's scores
 * for a block, 4 KiB, stay in L1. Measured on wasm at T = S = 4096, d = 64, one thread
 * (medians of 5, this shared machine): blocks of 128 keys 218 ms, 256 167-179 ms, 384
 * 211 ms, 512 157-172 ms, 1024 204 ms; all keys in one pass (the kernel before blocks)
 * 217-252 ms. At T = 1024 the block size made no difference beyond the noise.
 */
export const FUSED_KEY_BLOCK = 256;

/** Where one call's work buffers lie, in floats from the start of their allocation. */
interface Layout {
  tiles: number;
  panels: number;
  dvp: number;
  /** Keys per block: FUSED_KEY_BLOCK, or S rounded up to 8 when smaller. */
  block: number;
  /** One pair's queries packed by 4 and keys packed by 8. */
  q: number;
  k: number;
  /** One pair's values [S, dvp] and output [tiles·4, dvp], when not used in place (else -1). */
  v: number;
  out: number;
  /** One tile's scores for a block, and its α; the running max and sum of each tile. */
  scratch: number;
  state: number;
  /** Floats in all. */
  total: number;
}

function layoutOf({T, S, dk, dv}: {T: number; S: number; dk: number; dv: number}): Layout {
  const tiles = Math.ceil(T / 4);
  const panels = Math.ceil(S / 8);
  const dvp = roundUp(dv, 8);
  const block = Math.min(FUSED_KEY_BLOCK, panels * 8);
  const padV = dvp !== dv;
  const padOut = padV || tiles * 4 !== T;
  const q = 0;
  const k = q + tiles * dk * 4;
  const v = k + panels * dk * 8;
  const out = v + (padV ? S * dvp : 0);
  const scratch = out + (padOut ? tiles * 4 * dvp : 0);
  const state = scratch + scratchFloats(block);
  return {tiles, panels, dvp, block, q, k, v: padV ? v : -1, out: padOut ? out : -1, scratch, state, total: state + tiles * 8};
}

/** Floats of one thread's scratch for blocks of `block` keys (16-float aligned). */
function scratchFloats(block: number): number {
  return roundUp(block * 4 + 4, 16);
}

/**
 * Most bytes of work buffers that one call takes from the wasm heap, freed after the call:
 * one pair's packed Q and K, V and output when their rows need padding, one block's scores
 * and the running max and sum of each tile. 64 MiB is about 64 Ki queries and keys with
 * d = 64: the kernel is linear in T and S.
 */
export const FUSED_MAX_BYTES = 64 * 2 ** 20;

/** Bytes of work buffers of one call (see FUSED_MAX_BYTES), besides the output. */
export function fusedAttentionBytes(T: number, S: number, dk: number, dv: number): number {
  return 4 * layoutOf({T, S, dk, dv}).total;
}

/**
 * Whether the fused kernels can run here: the active backend is wasm (unthreaded) in a
 * runtime with wasm SIMD. The planner (attention_plan.ts) takes it as an input.
 */
export function fusedKernelAvailable(): boolean {
  return tf.getBackend() === 'wasm' && heapModule(tf.backend() as unknown as WasmBackendLike) != null;
}

/** Whether sizes suit `fusedAttention`: non-empty operands and at most FUSED_MAX_BYTES of work buffers. */
export function fusedAttentionSizesFit(T: number, S: number, dk: number, dv: number): boolean {
  return Math.min(T, S, dk, dv) > 0 && fusedAttentionBytes(T, S, dk, dv) <= FUSED_MAX_BYTES;
}

/** Whether `fusedAttention` can run: `fusedKernelAvailable` and `fusedAttentionSizesFit`. */
export function fusedAttentionFits(T: number, S: number, dk: number, dv: number): boolean {
  return fusedKernelAvailable() && fusedAttentionSizesFit(T, S, dk, dv);
}

const FUSED_KERNEL_NAME = 'TfjsAttentionFusedAttention';
const FUSED_LAYER_KERNEL_NAME = 'TfjsAttentionFusedLayer';

/**
 * An operand in the heap: `rows` rows of `width` floats at byte address `at`; head h's
 * queries (keys, values) are the d columns from `column + h·d` of each row, and batch b's
 * rows are b·T (b·S) to (b + 1)·T (S) - 1.
 */
interface Operand {
  at: number;
  width: number;
  rows: number;
  column: number;
}

/**
 * Q, K and V, and the masks as biases in the heap (attention_bias.ts: a key padding mask [B, S] and an explicit mask),
 * whose pair n is batch ⌊n / biasHeads⌋ and head n % biasHeads, where pair n is the call's pair b·H + h.
 */
interface Operands {
  q: Operand;
  k: Operand;
  v: Operand;
  biases: PlacedBiases;
  biasHeads: number;
}

/**
 * Attention of every (batch, head) pair of `operands` into the output [B, T, H·dv] at
 * byte `outAt`: per pair, Q and K are packed into a work buffer of the heap and `attend_4x8`
 * runs on the heap in place; large calls go to two threads (attendOnTwoThreads).
 */
function attendHeads(
    backend: WasmBackendLike, module: KernelExports, operands: Operands, sizes: FusedSizes&Attending, outAt: number): void {
  const {batch, heads, T, S, dk, dv, scale} = sizes;
  const causal = sizes.causal ? 1 : 0;
  const {q, k, v} = operands;
  if (attendOnTwoThreadsIfTheyPay(backend, operands, sizes, outAt)) return;
  lastCallThreads = 1;
  const layout = layoutOf(sizes);
  const {tiles, dvp, block} = layout;
  const {biases, biasHeads} = operands;
  const {stride: biasStride, rows: biasRows} = maskRowArgs(biases);
  withHeapBuffer(backend, layout.total, base => {
    const heap = heapFloats(backend);
    const at = (floats: number) => base + 4 * floats;                      // byte address in the heap
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        module.pack_rows(q.at + 4 * (b * T * q.width + q.column + h * dk), 4 * q.width, at(layout.q), T, dk, 4);  // [T, dk] -> [tiles][dk][4]
        module.pack_rows(k.at + 4 * (b * S * k.width + k.column + h * dk), 4 * k.width, at(layout.k), S, dk, 8);  // [S, dk] -> [panels][dk][8]
        let [vHere, rowV] = [v.at + 4 * (b * S * v.width + v.column + h * dv), 4 * v.width];
        if (layout.v >= 0) {                                               // [S, dv] -> [S, dvp]
          copyRows(heap, (base >>> 2) + layout.v, dvp, heap, vHere >>> 2, v.width, S, dv);
          [vHere, rowV] = [at(layout.v), 4 * dvp];
        }
        const outHere = outAt + 4 * (b * T * heads * dv + h * dv);
        const keyBiasAt = biasAddressOfPair(biases.key, b * heads + h, biasHeads);
        const biasAt = biasAddressOfPair(biases.mask, b * heads + h, biasHeads);
        if (layout.out < 0) {
          module.attend_4x8(at(layout.q), at(layout.k), vHere, rowV, outHere, 4 * heads * dv, at(layout.scratch), at(layout.state),
                        tiles, S, block, dk, dvp, scale, causal, 0, keyBiasAt, biasAt, biasStride, biasRows);
          continue;
        }
        module.attend_4x8(at(layout.q), at(layout.k), vHere, rowV, at(layout.out), 4 * dvp, at(layout.scratch), at(layout.state),
                      tiles, S, block, dk, dvp, scale, causal, 0, keyBiasAt, biasAt, biasStride, biasRows);
        copyRows(heap, outHere >>> 2, heads * dv, heap, (base >>> 2) + layout.out, dvp, T, dv);  // [tiles·4, dvp] -> T rows of dv
      }
    }
  });
}

/**
 * `attendHeads` on two threads (attendOnTwoThreads), where they pay (`twoThreadsPay`), the worker
 * runs and the call fits the shared memory; `lseAt`: also each query's log-sum-exp [B·H, T] at
 * that byte address. Returns false, having done nothing, where the call stays on one thread.
 */
function attendOnTwoThreadsIfTheyPay(
    backend: WasmBackendLike, operands: Operands, sizes: FusedSizes&Attending, outAt: number, lseAt?: number): boolean {
  const {batch, heads, T, S, dk, dv} = sizes;
  if (!twoThreadsPay(2 * batch * heads * T * S * (dk + dv), T)) return false;
  const layout = layoutOf(sizes);
  const shared = sharedLayoutOf(operands, sizes, layout);
  const thread = 4 * shared.end <= SHARED_MAX_BYTES ? getSecondThread() : null;
  if (thread == null) return false;
  lastCallThreads = 2;
  const call = {...sizes, outAt, lseAt, layout, shared};
  withWorkerAwake(thread, () => attendOnTwoThreads(thread, backend, operands, call));
  return true;
}

/**
 * The attention of `pairs` pairs laid out one after the other, q [P, T, dk], k [P, S, dk],
 * v [P, S, dv], with their masks' biases (pair n is head n % heads of batch ⌊n / heads⌋), on two
 * threads where they pay: the output [P, T, dv] at byte `outAt` and each query's
 * log-sum-exp [P, T] at byte `lseAt` (for the training forward of
 * wasm_fused_attention_backward.ts). Returns false, having done nothing, where the call stays
 * on one thread.
 */
export function attendPairsOnTwoThreads(
    backend: WasmBackendLike, inputs: {[name: string]: tf.TensorInfo|undefined},
    sizes: {heads: number; scale: number; causal: boolean}, outAt: number, lseAt: number): boolean {
  const {q, v} = inputs as {[name: string]: tf.TensorInfo};
  const [P, T, dk] = q.shape as [number, number, number];
  const [S, dv] = v.shape.slice(1) as [number, number];
  const operands = operandsOf(backend, inputs, {qColumn: 0, kColumn: 0, vColumn: 0, biasHeads: sizes.heads});
  const attending = {batch: P, heads: 1, T, S, dk, dv, scale: sizes.scale, causal: sizes.causal};
  return attendOnTwoThreadsIfTheyPay(backend, operands, attending, outAt, lseAt);
}

/** The operands of q [B, T, Cq], k, v (head h's columns from `column + h·d`) and the masks' biases in the heap. */
function operandsOf(
    backend: WasmBackendLike, inputs: {[name: string]: tf.TensorInfo|undefined},
    at: {qColumn: number; kColumn: number; vColumn: number; biasHeads: number}): Operands {
  const {q, k, v, keyBias, bias} = inputs as {[name: string]: tf.TensorInfo};
  const operand = (x: tf.TensorInfo, column: number): Operand =>
      ({at: heapAddress(backend, x), width: x.shape[2] as number, rows: (x.shape[0] as number) * (x.shape[1] as number), column});
  return {
    q: operand(q, at.qColumn), k: operand(k, at.kColumn), v: operand(v, at.vColumn),
    biases: heapBiases(backend, keyBias, bias), biasHeads: at.biasHeads,
  };
}

/**
 * The kernel function of `fusedAttention` and `fusedMultiHeadAttention`. Inputs q [B, T, Cq],
 * k [B, S, Ck], v [B, S, Cv] (possibly one tensor); head h's queries are the dk columns of
 * q from column `qColumn + h·dk`, its keys and values likewise. Output [B, T, H·dv], the
 * heads side by side.
 */
function fusedKernelFunc(args: WasmKernelArgs): tf.TensorInfo {
  const backend = args.backend;
  const attrs = args.attrs as unknown as FusedSizes&Attending&{qColumn: number; kColumn: number; vColumn: number; biasHeads: number};
  const output = backend.makeOutput([attrs.batch, attrs.T, attrs.heads * attrs.dv], 'float32');
  const operands = operandsOf(backend, args.inputs, attrs);
  attendHeads(backend, heapModule(backend)!, operands, attrs, heapAddress(backend, output));
  return output;
}

/**
 * The kernel function of `fusedAttentionLayer`: x [B, T, dq] and, for cross-attention,
 * c [B, S, dc]; the projections wq, wk, wv and the biases bq, bk, bv if given. x (and c)
 * are packed once, projected into work buffers of the heap, and attended there: output
 * [B, T, H·dv].
 */
function fusedLayerKernelFunc(args: WasmKernelArgs): tf.TensorInfo {
  const backend = args.backend;
  const module = heapModule(backend)!;
  const {x, c, wq, wk, wv, bq, bk, bv, keyBias, bias} = args.inputs;
  const {heads, dk, dv, scale, causal} = args.attrs as unknown as Attending&{heads: number; dk: number; dv: number};
  const context = c ?? x;
  const [batch, T, dq] = x.shape as [number, number, number];
  const [S, dc] = context.shape.slice(1) as [number, number];
  const place = projectionLayoutOf({batch, T, S, dq, dc, heads, dk, dv, selfAttention: c == null});
  const {widths} = place;
  const output = backend.makeOutput([batch, T, heads * dv], 'float32');
  const attending = {batch, heads, T, S, dk, dv, scale, causal};
  if (projectAndAttendOnTwoThreads(backend, {x, c, wq, wk, wv, bq, bk, bv, keyBias, bias}, attending, heapAddress(backend, output))) {
    return output;
  }
  withHeapBuffer(backend, place.total, base => {
    const at = (floats: number) => base + 4 * floats;
    const xPacked = packRows(backend, module, x, at(place.x));
    const cPacked = c == null ? xPacked : packRows(backend, module, c, at(place.c));
    const [qAt, kAt, vAt] = [at(place.q), at(place.k), at(place.v)];
    projectPacked(backend, module, xPacked, wq, bq, qAt, widths[0]);
    projectPacked(backend, module, cPacked, wk, bk, kAt, widths[1]);
    projectPacked(backend, module, cPacked, wv, bv, vAt, widths[2]);
    const operands = {
      q: {at: qAt, width: widths[0], rows: batch * T, column: 0},
      k: {at: kAt, width: widths[1], rows: batch * S, column: 0},
      v: {at: vAt, width: widths[2], rows: batch * S, column: 0},
      biases: heapBiases(backend, keyBias, bias), biasHeads: heads,
    };
    attendHeads(backend, module, operands, {batch, heads, T, S, dk, dv, scale, causal}, heapAddress(backend, output));
  });
  return output;
}

/**
 * Byte addresses in the heap where the layer's training forward (wasm_fused_layer_training.ts)
 * keeps what its gradient needs: q [B, T, H·dk], k [B, S, H·dk], v [B, S, H·dv] and each
 * query's log-sum-exp [B·H, T].
 */
export interface KeptForTraining {
  q: number; k: number; v: number; lse: number;
}

/**
 * One product of `projectAndAttendOnTwoThreads`: `input` [rows, d] times its weights side by
 * side (and their biases), into an operand of `rows` rounded up to 4 and `width` columns
 * (the weights' columns rounded up to 8).
 */
interface SharedProduct {
  input: tf.TensorInfo;
  weights: tf.TensorInfo[];
  biases: Array<tf.TensorInfo|undefined>;
  /** The operand's `at`: a tag that tells the products apart (they never lie in the heap). */
  tag: number;
  rows: number;
  width: number;
}

/**
 * The layer's forward on two threads, when its attention is large enough for them
 * (`twoThreadsPay`): x (and c) and the weights are copied into the shared memory, x packed
 * there, and the two threads share the projection's calls (`project_4x8` by tiles of rows,
 * `projectionChunks`), which write straight into the attention's operands, heads side by
 * side: one product x·[Wq | Wk | Wv] for self-attention, x·Wq and c·[Wk | Wv] for
 * cross-attention. Then the attention runs on both threads as in `attendOnTwoThreads`,
 * without copying Q, K and V in, with the masks' biases (`keyBias`, and `bias` for an explicit
 * mask) as the attention's. For training (`keep`), Q, K and V are also copied out, and each
 * query's log-sum-exp. Returns false (and does nothing) where the call stays on one thread.
 */
export function projectAndAttendOnTwoThreads(
    backend: WasmBackendLike, inputs: {[name: string]: tf.TensorInfo|undefined}, sizes: FusedSizes&Attending, outAt: number,
    keep?: KeptForTraining): boolean {
  const {batch, heads, T, S, dk, dv} = sizes;
  if (!twoThreadsPay(2 * batch * heads * T * S * (dk + dv), T)) return false;
  const {x, c, wq, wk, wv, bq, bk, bv, keyBias, bias: maskBias} = inputs as {[name: string]: tf.TensorInfo};
  const [wQ, wV] = [heads * dk, heads * dv];
  const products: SharedProduct[] = c == null ?
      [{input: x, weights: [wq, wk, wv], biases: [bq, bk, bv], tag: 1, rows: roundUp(batch * T, 4), width: roundUp(2 * wQ + wV, 8)}] :
      [{input: x, weights: [wq], biases: [bq], tag: 1, rows: roundUp(batch * T, 4), width: roundUp(wQ, 8)},
       {input: c, weights: [wk, wv], biases: [bk, bv], tag: 2, rows: roundUp(batch * S, 4), width: roundUp(wQ + wV, 8)}];
  const [forQ, forKV] = [products[0], products[products.length - 1]];
  const operand = (product: SharedProduct, column: number): Operand => ({at: product.tag, width: product.width, rows: product.rows, column});
  const operands: Operands = {
    q: operand(forQ, 0), k: operand(forKV, c == null ? wQ : 0), v: operand(forKV, c == null ? 2 * wQ : wQ),
    biases: heapBiases(backend, keyBias, maskBias), biasHeads: heads,
  };
  const layout = layoutOf(sizes);
  const place = sharedLayoutOf(operands, sizes, layout);
  // After the attention's place: the tables of the steps before it (each input packed by fours in two calls, the
  // projection's calls) and after it (Q, K and V gathered, for training), then per product its input's rows, packed,
  // the weights [d, width] and the biases [width].
  const chunks = products.map(product => projectionChunks(product.rows / 4));
  const calls = chunks.reduce((sum, list) => sum + list.length, 0);
  const table = roundUp(place.end, 16);
  const packTable = roundUp(table + tableEntries('project_4x8') * calls, 16);
  const gatherTable = roundUp(packTable + tableEntries('pack_rows') * 2 * products.length, 16);
  let end = roundUp(gatherTable + tableEntries('add_rows') * 3, 16);
  const inputsAt = products.map(product => {
    const d = product.input.shape[2] as number;
    const [raw, packed, weights] = [end, end + product.rows * d, end + 2 * product.rows * d];
    const bias = product.biases[0] == null ? -1 : weights + d * product.width;
    end = roundUp(weights + d * product.width + (bias < 0 ? 0 : product.width), 16);
    return {d, raw, packed, weights, bias};
  });
  // For training, where Q, K and V are put side by side (each contiguous) before they are copied out.
  const keptAt = end;
  if (keep != null) end = roundUp(end + batch * T * wQ + batch * S * (wQ + wV), 16);
  const thread = 4 * end <= SHARED_MAX_BYTES ? getSecondThread() : null;
  if (thread == null) return false;
  lastCallThreads = 2;
  withWorkerAwake(thread, () => {
    const started = twoThreadCallStart();
    const shared = sharedFloats(thread, 4 * end);
    const heap = heapFloats(backend);
    const [packCalls, projectCalls, gatherCalls]: number[][][] = [[], [], []];
    products.forEach((product, i) => {
      const {d, raw, packed, weights, bias} = inputsAt[i];
      const n = (product.input.shape[0] as number) * (product.input.shape[1] as number);
      const from = heapAddress(backend, product.input) >>> 2;
      shared.set(heap.subarray(from, from + n * d), raw);
      const half = Math.min(n, 4 * Math.ceil(n / 8));                      // [N, d] -> [tiles][d][4] in two calls (rows from
      packCalls.push([4 * raw, 4 * d, 4 * packed, half, d, 4]);            // a multiple of 4), the padding rows zero
      if (half < n) packCalls.push([4 * (raw + half * d), 4 * d, 4 * (packed + half * d), n - half, d, 4]);
      shared.fill(0, weights, bias < 0 ? weights + d * product.width : bias + product.width);
      let column = 0;
      product.weights.forEach((w, j) => {                                 // [d, wj] -> columns column .. of [d, width]
        const wj = w.shape[1] as number;
        copyRows(shared, weights + column, product.width, heap, heapAddress(backend, w) >>> 2, wj, d, wj);
        const b = product.biases[j];
        if (b != null) shared.set(heap.subarray(heapAddress(backend, b) >>> 2).subarray(0, wj), bias + column);
        column += wj;
      });
      const out = place.copies.find(copy => copy.operand.at === product.tag)!.offset;
      for (const {first, count} of chunks[i]) {                            // rows 4·first .. 4·(first + count) - 1
        projectCalls.push([
          4 * (packed + first * 4 * d), ...packedByFours(d), 4 * weights, 4 * product.width, bias < 0 ? 0 : 4 * bias,
          4 * (out + first * 4 * product.width), 4 * product.width, count, d, product.width]);
      }
    });
    // For training, Q, K and V gathered from the products' columns, each contiguous: copied out whole after the job.
    const kept = keep == null ? [] : [[operands.q, keep.q, batch * T, wQ], [operands.k, keep.k, batch * S, wQ], [operands.v, keep.v, batch * S, wV]] as const;
    let gathered = keptAt;
    const copiesOut = kept.map(([operand, heapAt, rows, width]) => {
      const from = place.copies.find(copy => copy.operand.at === operand.at)!.offset + operand.column;
      gatherCalls.push(addRowsArgs(gathered, width, from, null, operand.width, rows, width));
      gathered += rows * width;
      return {at: gathered - rows * width, heapAt, floats: rows * width};
    });
    const attention = attentionSteps(thread, backend, shared, operands, {...sizes, outAt, lseAt: keep?.lse, layout, shared: place});
    const steps: JobStep[] = [
      tableStep(thread, 4 * packTable, 'pack_rows', packCalls),
      tableStep(thread, 4 * table, 'project_4x8', projectCalls),
      ...attention.steps,
      ...(gatherCalls.length > 0 ? [tableStep(thread, 4 * gatherTable, 'add_rows', gatherCalls)] : []),
    ];
    const flops = products.reduce((sum, {rows, width}, i) => sum + 2 * rows * inputsAt[i].d * width, attention.flops);
    runStepsOnBothThreads(thread, steps, flops);
    attention.finish();
    const to = heapFloats(backend);
    for (const {at, heapAt, floats} of copiesOut) to.set(shared.subarray(at, at + floats), heapAt >>> 2);
    noteTwoThreadCall('project_4x8, attend_4x8', started);
  });
  return true;
}

/**
 * Where a two-thread call puts things in the shared memory, in floats from its start: the
 * job's table (attend_4x8's arguments per call: `chunks`), the biases (copyBiases), one copy
 * of each distinct operand, each pair's packed Q and K, V padded to dvp columns (when dv is
 * not a multiple of 8), the output, each call's scratch and each pair's tiles' state.
 * `direct`: the output is written in its final layout [B, T, H·dv] (T % 4 = 0 and dv % 8 = 0).
 */
interface SharedLayout {
  direct: boolean;
  /** The calls that the two threads share (`attentionChunks`). */
  chunks: readonly TileChunk[];
  table: number;
  /** The tables of the steps before the attention's: each pair's Q and K packed (pack_rows), V padded to dvp (add_rows). */
  packTable: number;
  padTable: number;
  /** Where the biases' copies start (copyBiases: one after the other, each from a multiple of 4). */
  biases: number;
  /** The operands copied, one entry per distinct address. */
  copies: Array<{operand: Operand; offset: number}>;
  qSize: number; kSize: number; vSize: number; outSize: number;
  q: number; k: number; v: number; out: number;
  /** The first call's scratch, the others' after it (scratchFloats apart); pair p's state at state + p·tiles·8. */
  scratch: number;
  state: number;
  /** Floats in all, from the start of the memory. */
  end: number;
}

/**
 * Least work of one call of a two-thread attention, in tile-keys (a tile of four queries
 * against one key): 2·4·2048·(dk + dv) FLOPs, 2 MFLOP at dk = dv = 64, some 50 µs, so that
 * the calls' own costs stay small.
 */
const LEAST_CALL_TILE_KEYS = 2048;
/** Least row tiles (of four rows) of one call of a two-thread projection. */
const LEAST_CALL_ROW_TILES = 8;

/**
 * The calls of an attention on two threads: each pair's query tiles in chunks
 * (attention_threads.ts' tileChunks), weighed by the keys each tile attends.
 */
export function attentionChunks(pairs: number, T: number, S: number, causal: boolean): readonly TileChunk[] {
  return remembered(`a${pairs},${T},${S},${causal ? 1 : 0}`,
                    () => tileChunks(pairs, Math.ceil(T / 4), causal ? tile => Math.min(S, 4 * tile + 4) : () => S, LEAST_CALL_TILE_KEYS));
}

/** The calls of a projection's `tiles` row tiles on two threads (`tileChunks`, each tile the same work). */
export function projectionChunks(tiles: number): readonly TileChunk[] {
  return remembered(`p${tiles}`, () => tileChunks(1, tiles, () => 1, LEAST_CALL_ROW_TILES));
}

/**
 * The chunk lists of the last sizes asked (a training step asks the same four or five each
 * time; each takes 10-30 µs to cut), by a key of their arguments. Lists are shared: never changed.
 */
const rememberedChunks = new Map<string, readonly TileChunk[]>();
const REMEMBERED_CHUNK_LISTS = 64;

function remembered(key: string, cut: () => TileChunk[]): readonly TileChunk[] {
  let chunks = rememberedChunks.get(key);
  if (chunks == null) {
    if (rememberedChunks.size >= REMEMBERED_CHUNK_LISTS) rememberedChunks.clear();
    chunks = Object.freeze(cut().map(chunk => Object.freeze(chunk)));
    rememberedChunks.set(key, chunks);
  }
  return chunks;
}

function sharedLayoutOf(operands: Operands, {batch, heads, T, S, dk, dv, causal}: FusedSizes&Attending, layout: Layout): SharedLayout {
  const {tiles, panels, dvp, block} = layout;
  const pairs = batch * heads;
  const chunks = attentionChunks(pairs, T, S, causal);
  const direct = T % 4 === 0 && dvp === dv;
  const [qSize, kSize] = [tiles * dk * 4, panels * dk * 8];
  const vSize = dvp === dv ? 0 : S * dvp;
  const outSize = direct ? 0 : tiles * 4 * dvp;
  const table = SHARED_DATA_START >>> 2;
  const packTable = roundUp(table + tableEntries('attend_4x8') * chunks.length, 4);
  const padTable = roundUp(packTable + tableEntries('pack_rows') * 2 * pairs, 4);
  const biases = roundUp(padTable + (dvp === dv ? 0 : tableEntries('add_rows') * pairs), 4);
  let next = biases + placedBiasFloats(operands.biases);
  const copies: SharedLayout['copies'] = [];
  for (const operand of [operands.q, operands.k, operands.v]) {
    if (copies.some(c => c.operand.at === operand.at)) continue;
    copies.push({operand, offset: next});
    next += operand.rows * operand.width;
  }
  const q = next;
  const k = q + pairs * qSize;
  const v = k + pairs * kSize;
  const out = v + pairs * vSize;
  const scratch = roundUp(out + (direct ? batch * T * heads * dv : pairs * outSize), 16);
  const state = scratch + chunks.length * scratchFloats(block);
  const end = state + pairs * tiles * 8;
  return {direct, chunks, table, packTable, padTable, biases, copies, qSize, kSize, vSize, outSize, q, k, v, out, scratch, state, end};
}

/**
 * The fused kernel on two threads (see attention_threads.ts). Q, K and V are copied into the
 * shared memory (`sharedLayoutOf`), then one job: each pair's Q and K packed there, and the
 * calls of `attentionChunks`, each thread taking the next one left (`attentionSteps`). With
 * the output in its final layout it comes back in one copy.
 */
function attendOnTwoThreads(
    thread: SecondThread, backend: WasmBackendLike, operands: Operands,
    call: FusedSizes&Attending&{outAt: number; lseAt?: number; layout: Layout; shared: SharedLayout}): void {
  const started = twoThreadCallStart();
  const shared = sharedFloats(thread, 4 * call.shared.end);
  const heap = heapFloats(backend);
  for (const {operand, offset} of call.shared.copies) {
    shared.set(heap.subarray(operand.at >>> 2, (operand.at >>> 2) + operand.rows * operand.width), offset);
  }
  const attention = attentionSteps(thread, backend, shared, operands, call);
  runStepsOnBothThreads(thread, attention.steps, attention.flops);
  attention.finish();
  noteTwoThreadCall('attend_4x8', started);
}

/**
 * The steps of the attention on two threads once its operands are in the shared memory (at
 * their `copies` offsets of `call.shared`), and what is left after them (`finish`: the output
 * copied out, and the log-sum-exp where asked): each pair's Q and K packed (and V padded to
 * dvp columns where dv is not a multiple of 8), then the calls of `attentionChunks`. The masks'
 * biases are copied in here. `shared`: a view of the whole shared memory, taken after it last
 * grew (`sharedFloats`).
 */
function attentionSteps(
    thread: SecondThread, backend: WasmBackendLike, shared: Float32Array, operands: Operands,
    call: FusedSizes&Attending&{outAt: number; lseAt?: number; layout: Layout; shared: SharedLayout}):
    {steps: JobStep[]; flops: number; finish: () => void} {
  const {batch, heads, T, S, dk, dv, scale, outAt, lseAt, layout, shared: place} = call;
  const causal = call.causal ? 1 : 0;
  const {tiles, dvp, block} = layout;
  const {qSize, kSize, vSize, outSize, direct} = place;
  const pairs = batch * heads;
  const biases = copyBiases(operands.biases, heapFloats(backend), shared, place.biases);
  const biasHeads = operands.biasHeads;
  const copyOf = (x: Operand) => place.copies.find(c => c.operand.at === x.at)!.offset;
  const addresses: Array<{q: number; k: number; v: number; out: number; keyBias: number; bias: number}> = [];  // bytes, per pair
  const bytes = (floats: number) => 4 * floats;
  const {q, k, v} = operands;
  const [qFrom, kFrom, vFrom] = [copyOf(q), copyOf(k), copyOf(v)];
  const packs: number[][] = [];
  const pads: number[][] = [];
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const pair = b * heads + h;
      const [qPacked, kPacked] = [place.q + pair * qSize, place.k + pair * kSize];
      packs.push([bytes(qFrom + b * T * q.width + q.column + h * dk), bytes(q.width), bytes(qPacked), T, dk, 4]);  // [tiles][dk][4]
      packs.push([bytes(kFrom + b * S * k.width + k.column + h * dk), bytes(k.width), bytes(kPacked), S, dk, 8]);  // [panels][dk][8]
      let vHere = vFrom + b * S * v.width + v.column + h * dv;
      if (vSize > 0) {                                                      // [S, dv] -> [S, dvp]
        pads.push(addRowsArgs(place.v + pair * vSize, dvp, vHere, null, v.width, S, dv));
        vHere = place.v + pair * vSize;
      }
      const out = direct ? place.out + b * T * heads * dv + h * dv : place.out + pair * outSize;
      addresses.push({
        q: bytes(qPacked), k: bytes(kPacked), v: bytes(vHere), out: bytes(out),
        keyBias: biasAddressOfPair(biases.key, pair, biasHeads), bias: biasAddressOfPair(biases.mask, pair, biasHeads),
      });
    }
  }
  const [rowV, rowOut] = [bytes(vSize > 0 ? dvp : v.width), bytes(direct ? heads * dv : dvp)];
  const {stride: biasStride, rows: biasRows} = maskRowArgs(biases);
  const calls = place.chunks.map(({pair, first, count}, call) => {  // tiles first .. first + count - 1 of the pair
    const at = addresses[pair];
    return [
      at.q + first * dk * 16, at.k, at.v, rowV, at.out + first * 4 * rowOut, rowOut, bytes(place.scratch + call * scratchFloats(block)),
      bytes(place.state + (pair * tiles + first) * 8), count, S, block, dk, dvp, scale, causal, 4 * first, at.keyBias, at.bias,
      biasStride, biasRows];
  });
  const steps: JobStep[] = [
    tableStep(thread, bytes(place.packTable), 'pack_rows', packs),
    ...(pads.length > 0 ? [tableStep(thread, bytes(place.padTable), 'add_rows', pads)] : []),
    tableStep(thread, bytes(place.table), 'attend_4x8', calls),
  ];
  const finish = () => {
    const to = heapFloats(backend);
    if (direct) {
      to.set(shared.subarray(place.out, place.out + batch * T * heads * dv), outAt >>> 2);
    } else {
      for (let pair = 0; pair < pairs; pair++) {                           // [tiles·4, dvp] -> T rows of dv
        const [b, h] = [Math.floor(pair / heads), pair % heads];
        copyRows(to, (outAt >>> 2) + b * T * heads * dv + h * dv, heads * dv, shared, place.out + pair * outSize, dvp, T, dv);
      }
    }
    if (lseAt != null) {                                                   // [B·H, T] from each pair's state
      for (let pair = 0; pair < pairs; pair++) logSumExp(to, (lseAt >>> 2) + pair * T, shared, place.state + pair * tiles * 8, T, scale);
    }
  };
  return {steps, flops: 2 * pairs * T * S * (dk + dv), finish};
}

/**
 * lse[t] = scale·max + log(sum) from attend_4x8's state (per tile of four: four maxima, then four sums), T queries.
 * scale·max is rounded as the backward kernel rounds its scale·score (a float32 product of the float32 scale), so
 * that the two agree exactly: for a query whose keys are all padded, max and every score are about MASKED_LOGIT
 * (-1e30), and a scale·max rounded otherwise (in float64) differed from the kernel's by an ulp of ~1e29, which made
 * exp(scale·score - lse) overflow to ∞ and that query's gradients NaN.
 */
export function logSumExp(dst: Float32Array, to: number, state: Float32Array, from: number, T: number, scale: number): void {
  const scale32 = Math.fround(scale);
  for (let t = 0; t < T; t++) {
    const at = from + 8 * (t >> 2) + (t & 3);
    dst[to + t] = Math.fround(scale32 * state[at]) + Math.log(state[at + 4]);
  }
}

/** Threads the last fused call ran on (1 or 2): for the benchmark. */
let lastCallThreads: 1|2 = 1;

/** How many threads the last `fusedAttention`, `fusedMultiHeadAttention` or `fusedAttentionLayer` (or `fusedAttentionTraining`) call used. */
export function fusedThreadsOfLastCall(): 1|2 {
  return lastCallThreads;
}

/** Records the threads of a fused call made elsewhere (`fusedAttentionTraining`, one thread). */
export function noteFusedCallThreads(threads: 1|2): void {
  lastCallThreads = threads;
}

function runFused(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, biases: {keyBias?: tf.Tensor|null; bias?: tf.Tensor|null},
    attrs: FusedSizes&Attending&{qColumn: number; kColumn: number; vColumn: number; biasHeads: number}): tf.Tensor {
  const inputs: tf.NamedTensorMap = {q, k, v};
  if (biases.keyBias != null) inputs.keyBias = biases.keyBias;
  if (biases.bias != null) inputs.bias = biases.bias;
  return runWasmKernel(FUSED_KERNEL_NAME, fusedKernelFunc, inputs, attrs);
}

/**
 * softmax(scale·Q·Kᵀ + bias)·V over the last two axes, in one kernel call on the wasm backend:
 * query [B, (H,) T, dk], key [B, (H,) S, dk], value [B, (H,) S, dv] -> [B, (H,) T, dv]. With
 * `causal`, query t attends only keys s <= t (top-left aligned). The masks' biases (float32,
 * 0 or MASKED_LOGIT), if given, are added to the scores: `keyBias` [B, S] for every query and
 * head (key padding), and `bias` [Bb, Hb, Tb, S] with Bb 1 or B, Hb 1 or H (1 for rank-3
 * inputs) and Tb 1 or T (an explicit mask; see attention_bias.ts). A query whose every key is masked gets the mean of the values: fully
 * masked rows are the caller's to zero. Never forms the [T, S] weights. Not differentiable
 * (no gradient is registered); callers check `fusedAttentionFits` first.
 */
export function fusedAttention(
    query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, scale: number, causal = false,
    biases: {keyBias?: tf.Tensor|null; bias?: tf.Tensor|null} = {}): tf.Tensor {
  const [T, dk] = query.shape.slice(-2);
  const [S, dv] = value.shape.slice(-2);
  const lead = query.shape.slice(0, -2);
  const batch = query.size / (T * dk);
  const biasHeads = query.rank === 4 ? query.shape[1] as number : 1;
  return tf.tidy(() => {
    const as3d = (x: tf.Tensor, rows: number, cols: number) => x.reshape([batch, rows, cols]);
    const out = runFused(as3d(query, T, dk), as3d(key, S, dk), as3d(value, S, dv), biases,
                         {batch, heads: 1, T, S, dk, dv, qColumn: 0, kColumn: 0, vColumn: 0, scale, causal, biasHeads});  // [B·H, T, dv]
    return out.reshape([...lead, T, dv]);                                   // [..., T, dv]
  });
}

/**
 * Multi-head attention on projections whose heads sit side by side in the last axis, as
 * one product x·[Wq | Wk | Wv] gives them: head h's queries are columns
 * `query.column + h·dk` to `+ dk` of query.x [B, T, Cq], its keys and values likewise in
 * key.x [B, S, Ck] and value.x [B, S, Cv] (which may be the same tensor). Returns the heads'
 * outputs side by side, [B, T, H·dv], ready for the output projection: no split or merge
 * of heads is ever copied. Same conditions as `fusedAttention`.
 */
export function fusedMultiHeadAttention(
    query: {x: tf.Tensor; column: number}, key: {x: tf.Tensor; column: number}, value: {x: tf.Tensor; column: number},
    sizes: {heads: number; dk: number; dv: number; scale: number; causal?: boolean}): tf.Tensor {
  const [batch, T] = query.x.shape as [number, number];
  const S = key.x.shape[1] as number;
  return runFused(query.x, key.x, value.x, {}, {
    batch, heads: sizes.heads, T, S, dk: sizes.dk, dv: sizes.dv,
    qColumn: query.column, kColumn: key.column, vColumn: value.column, scale: sizes.scale, causal: sizes.causal ?? false,
    biasHeads: sizes.heads,
  });  // [B, T, H·dv]
}

/** The projections of `fusedAttentionLayer`: wq [dq, H·dk], wk [dc, H·dk], wv [dc, H·dv] and their biases. */
export interface FusedProjections {
  wq: tf.Tensor;
  wk: tf.Tensor;
  wv: tf.Tensor;
  bq?: tf.Tensor|null;
  bk?: tf.Tensor|null;
  bv?: tf.Tensor|null;
}

/** Most bytes of the projections (Q, K and V, padded) that `fusedAttentionLayer` holds in the heap. */
export const FUSED_LAYER_MAX_BYTES = 256 * 2 ** 20;

/**
 * Whether `fusedAttentionLayer` can run x [B, T, dq] (and c [B, S, dc]) through these
 * projections: as `fusedAttentionFits`, with each weight matrix small enough for the
 * projection kernel (`denseFusedFits`) and the projections within FUSED_LAYER_MAX_BYTES.
 */
export function fusedAttentionLayerFits(sizes: FusedLayerSizes): boolean {
  return fusedKernelAvailable() && fusedAttentionLayerSizesFit(sizes);
}

/** The size conditions of `fusedAttentionLayerFits`, whatever the backend (for the planner). */
export function fusedAttentionLayerSizesFit(sizes: FusedLayerSizes): boolean {
  const {T, S, dq, dc, heads, dk, dv} = sizes;
  return fusedAttentionSizesFit(T, S, dk, dv) && 4 * projectionLayoutOf(sizes).total <= FUSED_LAYER_MAX_BYTES &&
      denseFusedSizesFit(dq, heads * dk) && denseFusedSizesFit(dc, heads * dk) && denseFusedSizesFit(dc, heads * dv);
}

/**
 * Sizes of a `fusedAttentionLayer` call: x [B, T, dq], c [B, S, dc], H heads of dk and dv;
 * `selfAttention` when c is x (packed once).
 */
export interface FusedLayerSizes {
  selfAttention?: boolean;
  batch: number;
  T: number;
  S: number;
  dq: number;
  dc: number;
  heads: number;
  dk: number;
  dv: number;
}

/**
 * Where `fusedAttentionLayer` puts x and c packed by fours and Q, K and V (rows of H·dk or
 * H·dv rounded up to 8 floats, `widths`) in its heap buffer, in floats; c is x's packing
 * for self-attention.
 */
function projectionLayoutOf({batch, T, S, dq, dc, heads, dk, dv, selfAttention}: FusedLayerSizes):
    {x: number; c: number; q: number; k: number; v: number; widths: number[]; total: number} {
  const widths = [heads * dk, heads * dk, heads * dv].map(w => roundUp(w, 8));  // Q, K, V
  const [xRows, cRows] = [roundUp(batch * T, 4), roundUp(batch * S, 4)];
  const x = 0;
  const c = x + xRows * dq;
  const q = c + (selfAttention ? 0 : cRows * dc);
  const k = q + xRows * widths[0];
  const v = k + cRows * widths[1];
  return {x, c, q, k, v, widths, total: v + cRows * widths[2]};
}

/**
 * Most bytes of heap work buffers that one `fusedAttentionLayer` call holds at once, besides
 * its output: the projections and, on one thread, the attention's (fusedAttentionBytes). On
 * two threads it copies Q, K and V and their packed forms into the worker's shared memory
 * instead, about as much again.
 */
export function fusedAttentionLayerBytes(sizes: FusedLayerSizes): number {
  return 4 * projectionLayoutOf(sizes).total + fusedAttentionBytes(sizes.T, sizes.S, sizes.dk, sizes.dv);
}

/**
 * The layer's inference in one kernel call on wasm: Q = x·wq + bq, K = c·wk + bk,
 * V = c·wv + bv (c = x when `context` is null: self-attention), then per head
 * softmax(scale·Q·Kᵀ)·V, heads side by side: x [B, T, dq], c [B, S, dc] -> [B, T, H·dv].
 * x and c are packed once and the projections never leave the heap as tensors. The masks'
 * biases (float32, 0 or MASKED_LOGIT) are added to the scores: `keyBias` [B, S] to every score
 * of each key (key padding), `bias` [Bb, Hb, Tb, S] (an explicit mask at its own size; see
 * attention_bias.ts). Not differentiable; callers check `fusedAttentionLayerFits` first.
 */
export function fusedAttentionLayer(
    x: tf.Tensor, context: tf.Tensor|null, projections: FusedProjections,
    sizes: {heads: number; dk: number; dv: number; scale: number; causal?: boolean}, keyBias?: tf.Tensor|null,
    bias?: tf.Tensor|null): tf.Tensor {
  const inputs: tf.NamedTensorMap = {x, wq: projections.wq, wk: projections.wk, wv: projections.wv};
  if (context != null) inputs.c = context;
  if (keyBias != null) inputs.keyBias = keyBias;
  if (bias != null) inputs.bias = bias;
  for (const name of ['bq', 'bk', 'bv'] as const) {
    const projectionBias = projections[name];
    if (projectionBias != null) inputs[name] = projectionBias;
  }
  const attrs = {...sizes, causal: sizes.causal ?? false};
  return runWasmKernel(FUSED_LAYER_KERNEL_NAME, fusedLayerKernelFunc, inputs, attrs);  // [B, T, H·dv]
}
