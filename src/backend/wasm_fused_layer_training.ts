/**
 * The layer's training on tfjs' wasm backend in two kernel calls: a tfjs custom gradient
 * around the whole layer (without its output projection) whose forward projects x (and the
 * context) with `project_4x8` into Q, K and V, heads side by side, and attends them with
 * `attend_4x8`, keeping each query's log-sum-exp; and whose backward runs
 * `attend_backward_4x8` per head into one matrix G = [dQ | dK | dV] and then the
 * projections' gradients with `project_4x8` too: dx = G·[Wq | Wk | Wv]ᵀ and
 * [dWq | dWk | dWv] = xᵀ·G (xᵀ read in place), the biases' gradients as one more tile of that
 * product (a row of ones). At small shapes the layer's many tfjs ops (products, head splits, their
 * gradients) cost more than the attention; here they are gone. Above `twoThreadsPay`'s size
 * both passes run on two threads in Node, in the worker's shared memory: the forward as the
 * layer's inference does (wasm_fused_attention.ts' `projectAndAttendOnTwoThreads`, keeping Q,
 * K, V and the log-sum-exp), the backward with the attention's backward kernel
 * (`attendBackwardOnTwoThreads`, reading each head's rows where they lie side by side), G built
 * where its dQ, dK and dV lie, and the projections' gradients shared between the threads; each
 * tile and row is computed as on one thread, so the bits are the same.
 */
import * as tf from '@tensorflow/tfjs';
import {
  attendBackwardOnTwoThreads, backwardArgs, backwardLayoutOf, backwardPartCount, backwardParts, fusedTrainingSizesFit, layPairOperands,
  NOTHING_IN_PLACE, pairRows, partBuffers, partsSumArgs, zeroRowPadding,
} from './wasm_fused_attention_backward';
import {SHARED_MAX_BYTES, tableEntries, tableStep} from './attention_threads';
import type {JobStep, SecondThread} from './attention_threads';
import type {PairBuffers, StepsAfter} from './wasm_fused_attention_backward';
import {
  FUSED_KEY_BLOCK, FUSED_MAX_BYTES, fusedAttentionLayerSizesFit, logSumExp, noteFusedCallThreads, projectAndAttendOnTwoThreads,
} from './wasm_fused_attention';
import type {FusedLayerSizes, FusedProjections} from './wasm_fused_attention';
import {packRows, projectPacked} from './wasm_dense';
import {heapSpace, inputGradient, inputGradientFloats, sharedSpace, weightGradientFloats, weightGradients} from './wasm_projection_gradients';
import type {Gradients, ProductSpace} from './wasm_projection_gradients';
import {copyRows, heapAddress, heapFloats, heapModule, roundUp, withHeapBuffer} from './wasm_heap_module';
import {biasArgsOfPair, heapBiases} from './attention_bias';
import type {KernelExports} from './kernels/kernel_module';
import {runWasmKernelOutputs} from './wasm_kernel_registry';
import type {WasmBackendLike, WasmKernelArgs} from './wasm_kernel_registry';

const FORWARD_KERNEL_NAME = 'TfjsAttentionFusedLayerForwardLse';
const BACKWARD_KERNEL_NAME = 'TfjsAttentionFusedLayerBackward';

/** How the layer attends: H heads of dk and dv, the scale, causal; `bias`: the projections have biases. */
interface LayerAttrs {
  heads: number;
  dk: number;
  dv: number;
  scale: number;
  causal: boolean;
  bias: boolean;
}

/** The sizes of one call: x [B, T, dq], c [B, S, dc]. */
interface CallSizes {
  B: number; T: number; S: number; dq: number; dc: number;
}

function callSizes(x: tf.TensorInfo, c: tf.TensorInfo|undefined): CallSizes {
  const [B, T, dq] = x.shape as [number, number, number];
  const [S, dc] = (c ?? x).shape.slice(1) as [number, number];
  return {B, T, S, dq, dc};
}

/**
 * Floats of the forward's work buffers: x and c packed by fours, one projection padded to
 * 4-row tiles and 8-float rows, and one pair's attention buffers (Q and K packed, V and the
 * output padded, the scratch and the state).
 */
function forwardFloats({B, T, S, dq, dc}: CallSizes, {heads, dk, dv}: LayerAttrs, selfAttention: boolean): number {
  const [tiles, panels, dvp] = [Math.ceil(T / 4), Math.ceil(S / 8), roundUp(dv, 8)];
  const block = Math.min(FUSED_KEY_BLOCK, panels * 8);
  const packed = roundUp(B * T, 4) * dq + (selfAttention ? 0 : roundUp(B * S, 4) * dc);
  const projection = roundUp(Math.max(B * T, B * S), 4) * roundUp(heads * Math.max(dk, dv), 8);
  const attention = tiles * dk * 4 + panels * dk * 8 + S * dvp + tiles * 4 * dvp + roundUp(block * 4 + 4, 16) + tiles * 8;
  return roundUp(packed, 16) + roundUp(projection, 16) + attention;
}

/** Columns of G's rows: dQ from 0, dK from H·dk, dV from 2·H·dk, rounded up so that either part read by eights stays inside. */
function gradientWidth(heads: number, dk: number, dv: number): number {
  return roundUp(heads * dk + roundUp(heads * (dk + dv), 8), 8);
}

/**
 * Floats of the backward's work buffers on one thread: G [max(B·T, B·S), gradientWidth], one
 * pair's backward buffers (with its parts' dK and dV: backwardPartCount), and the largest of the
 * projections' products (G's columns packed with the transposed weights and the output, or an
 * input transposed and packed with the output), which reuse one buffer.
 */
function backwardFloats({B, T, S, dq, dc}: CallSizes, {heads, dk, dv}: LayerAttrs): number {
  const n = Math.max(B * T, B * S);
  const width = gradientWidth(heads, dk, dv);
  const pair = backwardLayoutOf({T, S, dk, dv}, backwardPartCount({pairs: B * heads, T, S, dk, dv}), NOTHING_IN_PLACE).total;
  const d = Math.max(dq, dc);
  const products = Math.max(inputGradientFloats(n, width, d), weightGradientFloats(n, d, true, width));
  return roundUp(n * width, 16) + roundUp(pair, 16) + products;
}

/** Bytes of work buffers that the forward or the backward takes from the heap (the larger), besides their outputs. */
export function fusedLayerTrainingBytes(sizes: FusedLayerSizes): number {
  const {batch: B, T, S, dq, dc, heads, dk, dv} = sizes;
  const call = {B, T, S, dq, dc};
  const attrs = {heads, dk, dv, scale: 1, causal: false, bias: false};
  return 4 * Math.max(forwardFloats(call, attrs, sizes.selfAttention ?? false), backwardFloats(call, attrs));
}

/**
 * Bytes of the worker's shared memory that a training step on two threads may take (the
 * larger of its forward and backward), an upper bound: the forward's operands, products and
 * each pair's buffers; the backward's operands, pair buffers (both parts of dK and dV), G, and
 * every product of the projections' gradients side by side.
 */
export function fusedLayerTrainingSharedBytes(sizes: FusedLayerSizes): number {
  const {batch: B, T, S, dq, dc, heads, dk, dv} = sizes;
  const P = B * heads;
  const [tiles, panels, dvp] = [Math.ceil(T / 4), Math.ceil(S / 8), roundUp(dv, 8)];
  const [n, d, width] = [roundUp(Math.max(B * T, B * S), 4), Math.max(dq, dc), gradientWidth(heads, dk, dv)];
  const tables = 64 * 1024;  // the jobs' tables and the calls' scratch, at most
  const forward = 2 * n * (2 * d + width) + d * width + P * (tiles * dk * 4 + panels * dk * 8 + S * dvp + tiles * 4 * dvp + tiles * 8);
  const parts = backwardPartCount({pairs: P, T, S, dk, dv});
  const backward = P * (backwardLayoutOf({T, S, dk, dv}, parts, NOTHING_IN_PLACE).total + (T + S) * (dk + dv)) + n * width +
      2 * (inputGradientFloats(n, width, d) + weightGradientFloats(n, d, true, width));
  return 4 * (Math.max(forward, backward) + tables);
}

/**
 * Whether sizes suit `fusedAttentionLayerTraining`: as the layer's inference kernel
 * (`fusedAttentionLayerSizesFit`) and the fused backward (`fusedTrainingSizesFit`), with at
 * most FUSED_MAX_BYTES of work buffers in the heap or, for a step that runs on two threads
 * (`twoThreads`: above `twoThreadsPay`'s size, the worker allowed), at most
 * SHARED_MAX_BYTES of the worker's shared memory (`fusedLayerTrainingSharedBytes`).
 */
export function fusedLayerTrainingSizesFit(sizes: FusedLayerSizes, twoThreads = false): boolean {
  const {T, S, dk, dv} = sizes;
  if (!fusedAttentionLayerSizesFit(sizes) || !fusedTrainingSizesFit({T, S, dk, dv})) return false;
  if (fusedLayerTrainingBytes(sizes) <= FUSED_MAX_BYTES) return true;
  return twoThreads && fusedLayerTrainingSharedBytes(sizes) <= SHARED_MAX_BYTES;
}

/**
 * The forward: x [B, T, dq], c [B, S, dc] (absent for self-attention), wq, wk, wv and the
 * biases, keyBias [B, S] -> out [B, T, H·dv], q [B, T, H·dk], k [B, S, H·dk], v [B, S, H·dv]
 * (heads side by side) and lse [B·H, T]: on two threads where they pay, else on this one.
 */
function forwardKernelFunc(args: WasmKernelArgs): tf.TensorInfo[] {
  const backend = args.backend;
  const module = heapModule(backend)!;
  const {x, c, wq, wk, wv, bq, bk, bv, keyBias, bias: maskBias} = args.inputs;
  const attrs = args.attrs as unknown as LayerAttrs;
  const {heads, dk, dv, scale} = attrs;
  const sizes = callSizes(x, c);
  const {B, T, S, dq} = sizes;
  const [wQ, wV] = [heads * dk, heads * dv];
  const q = backend.makeOutput([B, T, wQ], 'float32');
  const k = backend.makeOutput([B, S, wQ], 'float32');
  const v = backend.makeOutput([B, S, wV], 'float32');
  const out = backend.makeOutput([B, T, wV], 'float32');
  const lse = backend.makeOutput([B * heads, T], 'float32');
  const kept = {q: heapAddress(backend, q), k: heapAddress(backend, k), v: heapAddress(backend, v), lse: heapAddress(backend, lse)};
  const attending = {batch: B, heads, T, S, dk, dv, scale, causal: attrs.causal};
  if (projectAndAttendOnTwoThreads(backend, {x, c, wq, wk, wv, bq, bk, bv, keyBias, bias: maskBias}, attending, heapAddress(backend, out), kept)) {
    return [out, q, k, v, lse];
  }
  const [tiles, panels, dvp] = [Math.ceil(T / 4), Math.ceil(S / 8), roundUp(dv, 8)];
  const block = Math.min(FUSED_KEY_BLOCK, panels * 8);
  const packedFloats = roundUp(roundUp(B * T, 4) * dq, 16);
  const projection = packedFloats + (c == null ? 0 : roundUp(roundUp(B * S, 4) * sizes.dc, 16));
  const qp = projection + roundUp(roundUp(Math.max(B * T, B * S), 4) * roundUp(heads * Math.max(dk, dv), 8), 16);
  const kp = qp + tiles * dk * 4;
  const vPad = kp + panels * dk * 8;
  const outPad = vPad + S * dvp;
  const scratch = roundUp(outPad + tiles * 4 * dvp, 16);
  const state = scratch + roundUp(block * 4 + 4, 16);
  withHeapBuffer(backend, state + tiles * 8, base => {
    const at = (floats: number) => base + 4 * floats;
    const xPacked = packRows(backend, module, x, at(0));
    const cPacked = c == null ? xPacked : packRows(backend, module, c, at(packedFloats));
    // Into the tensor when its rows need no padding, else through the work buffer.
    const project = (packed: typeof xPacked, w: tf.TensorInfo, b: tf.TensorInfo|undefined, to: tf.TensorInfo, rows: number) => {
      const width = w.shape[1] as number;
      if (rows % 4 === 0 && width % 8 === 0) {
        projectPacked(backend, module, packed, w, b, heapAddress(backend, to), width);
        return;
      }
      projectPacked(backend, module, packed, w, b, at(projection), roundUp(width, 8));
      const heap = heapFloats(backend);
      copyRows(heap, heapAddress(backend, to) >>> 2, width, heap, (base >>> 2) + projection, roundUp(width, 8), rows, width);
    };
    project(xPacked, wq, bq, q, B * T);
    project(cPacked, wk, bk, k, B * S);
    project(cPacked, wv, bv, v, B * S);
    const heap = heapFloats(backend);
    const b0 = base >>> 2;
    const [qAt, kAt, vAt, outAt, lseAt] = [q, k, v, out, lse].map(t => heapAddress(backend, t) >>> 2);
    const biases = heapBiases(backend, keyBias, maskBias);
    // V and the output in place when their rows need no padding (dv a multiple of 8, and T of 4 for the output).
    const [vInPlace, outInPlace] = [dvp === dv, dvp === dv && tiles * 4 === T];
    if (!vInPlace) heap.fill(0, b0 + vPad, b0 + outPad);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < heads; h++) {
        module.pack_rows(4 * (qAt + b * T * wQ + h * dk), 4 * wQ, at(qp), T, dk, 4);  // [T, dk] -> [tiles][dk][4]
        module.pack_rows(4 * (kAt + b * S * wQ + h * dk), 4 * wQ, at(kp), S, dk, 8);  // [S, dk] -> [panels][dk][8]
        const vFrom = vAt + b * S * wV + h * dv;
        if (!vInPlace) copyRows(heap, b0 + vPad, dvp, heap, vFrom, wV, S, dv);      // [S, dv] -> [S, dvp]
        const [vHere, vStride] = vInPlace ? [4 * vFrom, 4 * wV] : [at(vPad), 4 * dvp];
        const outTo = outAt + b * T * wV + h * dv;
        const [outHere, outStride] = outInPlace ? [4 * outTo, 4 * wV] : [at(outPad), 4 * dvp];
        module.attend_4x8(at(qp), at(kp), vHere, vStride, outHere, outStride, at(scratch), at(state), tiles, S, block, dk, dvp,
                          scale, attrs.causal ? 1 : 0, 0, ...biasArgsOfPair(biases, b * heads + h, heads));
        if (!outInPlace) copyRows(heap, outTo, wV, heap, b0 + outPad, dvp, T, dv);  // [tiles·4, dvp] -> T rows of dv
        logSumExp(heap, lseAt + (b * heads + h) * T, heap, b0 + state, T, scale);
      }
    }
  });
  noteFusedCallThreads(1);
  return [out, q, k, v, lse];
}

/**
 * The backward: the forward's inputs and outputs and dy [B, T, H·dv] -> dx (and dc), dwq,
 * dwk, dwv (and dbq, dbk, dbv). First per pair, attend_backward_4x8 into G's columns (above
 * `backwardParts`' size in parts of the query tiles, whose dK and dV are added, as the
 * attention's backward does on either thread count); then the projections' gradients from G
 * with project_4x8 (`inputGradient`, `weightGradients`). Above that size, on two threads
 * (`backwardOnTwoThreads`).
 */
function backwardKernelFunc(args: WasmKernelArgs): tf.TensorInfo[] {
  const backend = args.backend;
  const module = heapModule(backend)!;
  const {x, c, q, k, v, out, lse, dy, keyBias, bias: maskBias} = args.inputs;
  const attrs = args.attrs as unknown as LayerAttrs;
  const {heads, dk, dv} = attrs;
  const sizes = callSizes(x, c);
  const {B, T, S, dq, dc} = sizes;
  const [wQ, wV] = [heads * dk, heads * dv];
  const width = gradientWidth(heads, dk, dv);
  const n = Math.max(B * T, B * S);
  const gradX = backend.makeOutput([B, T, dq], 'float32');
  const gradC = c == null ? null : backend.makeOutput([B, S, dc], 'float32');
  const gradW = [backend.makeOutput([dq, wQ], 'float32'), backend.makeOutput([dc, wQ], 'float32'), backend.makeOutput([dc, wV], 'float32')];
  const gradB = attrs.bias ? [backend.makeOutput([wQ], 'float32'), backend.makeOutput([wQ], 'float32'), backend.makeOutput([wV], 'float32')] : [];
  const outputs = {gradX, gradC, gradW, gradB};
  if (backwardOnTwoThreads(backend, args.inputs, attrs, outputs)) return [gradX, ...(gradC == null ? [] : [gradC]), ...gradW, ...gradB];
  const bounds = backwardParts({pairs: B * heads, T, S, dk, dv, causal: attrs.causal});
  // With one head a pair's rows of Q, K and dy are rows of the tensors, in place where they need no padding; with its
  // tiles in one part, the kernel writes dQ, dK and dV that need no padding into their columns of G.
  const place = backwardLayoutOf({T, S, dk, dv}, bounds.length - 1, {rows: heads === 1, gradients: bounds.length === 2});
  const {dkp, dvp, block} = place;
  const gFloats = roundUp(n * width, 16);
  const work = gFloats + roundUp(place.total, 16);
  withHeapBuffer(backend, backwardFloats(sizes, attrs), base => {
    const b0 = base >>> 2;
    const heap = heapFloats(backend);
    zeroUnwrittenG(heap, b0, n, width, {qRows: B * T, kvRows: B * S, wQ, wV});
    const [p0, pairSizes] = [b0 + gFloats, {T, S, dk, dv}];
    zeroRowPadding(heap, place, p0, pairSizes);
    const [qAt, kAt, vAt, dyAt, outAt, lseAt] = [q, k, v, dy, out, lse].map(t => heapAddress(backend, t) >>> 2);
    const biases = heapBiases(backend, keyBias, maskBias);
    const call = {T, S, dk, dv, dkp, dvp, block, heads, scale: attrs.scale, causal: attrs.causal};
    // Every pair's work buffers are the same; its rows (in place with one head) and its masks' rows its own.
    const buffers: PairBuffers = {
      q: p0 + place.q, k: p0 + place.k, v: p0 + place.v, dout: p0 + place.dout, qRows: 0, kRows: 0, doutRows: 0,  // rows: per pair
      lse: p0 + place.lse, delta: p0 + place.delta, gradQ: p0 + place.gradQ, ...partBuffers(place, p0),
      biases: [0, 0, 0, 0], gradRows: [place.gradQ < 0 ? width : dkp, place.gradK < 0 ? width : dkp, place.gradV < 0 ? width : dvp],
    };
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < heads; h++) {
        const n = b * heads + h;
        const dyn = pairRows(dyAt, n, T, dv, heads);
        const operands = {q: pairRows(qAt, n, T, dk, heads), k: pairRows(kAt, n, S, dk, heads), v: pairRows(vAt, n, S, dv, heads), dy: dyn};
        layPairOperands(place, p0, operands, pairSizes, module.pack_rows, module.add_rows, buffers);
        heap.copyWithin(p0 + place.lse, lseAt + n * T, lseAt + (n + 1) * T);
        const outn = pairRows(outAt, n, T, dv, heads);
        module.row_dots(4 * (p0 + place.delta), 4 * dyn.from, 4 * dyn.stride, 4 * outn.from, 4 * outn.stride, T, dv);  // rowsum(dy ∘ out)
        buffers.biases = biasArgsOfPair(biases, n, heads);
        const [gq, gk, gv] = [b0 + b * T * width + h * dk, b0 + b * S * width + wQ + h * dk, b0 + b * S * width + 2 * wQ + h * dv];
        if (place.gradQ < 0) buffers.gradQ = gq;
        if (place.gradK < 0) buffers.gradK = [gk];  // (one part)
        if (place.gradV < 0) buffers.gradV = [gv];
        for (let part = 0; part < place.parts; part++) {
          module.attend_backward_4x8(...(backwardArgs(buffers, part, bounds, call) as Parameters<KernelExports['attend_backward_4x8']>));
        }
        if (place.gradQ >= 0) intoG(module, gq, width, [buffers.gradQ], 0, dkp, T, dk);           // dQ into G
        if (place.gradK >= 0) intoG(module, gk, width, buffers.gradK, buffers.partK, dkp, S, dk);  // dK: its parts added
        if (place.gradV >= 0) intoG(module, gv, width, buffers.gradV, buffers.partV, dvp, S, dv);  // dV
      }
    }
    projectionGradients(heapSpace(backend, module, b0 + work, b0 + backwardFloats(sizes, attrs)), args.inputs, {at: b0, width}, outputs);
  });
  noteFusedCallThreads(1);
  return [gradX, ...(gradC == null ? [] : [gradC]), ...gradW, ...gradB];
}

/**
 * Zeroes what intoG leaves unwritten of G [n, width] at float `at`: the columns past dQ, dK and
 * dV (read by the products' eights, their results dropped), and the rows past each part's own
 * (qRows of dQ, kvRows of dK and dV; never read). Mostly nothing: G is written whole.
 */
function zeroUnwrittenG(mem: Float32Array, at: number, n: number, width: number,
                        {qRows, kvRows, wQ, wV}: {qRows: number; kvRows: number; wQ: number; wV: number}): void {
  const used = 2 * wQ + wV;
  if (qRows === n && kvRows === n && used === width) return;
  for (let r = 0; r < n; r++) {
    const row = at + r * width;
    if (r >= qRows) mem.fill(0, row, row + wQ);
    if (r >= kvRows) mem.fill(0, row + wQ, row + used);
    mem.fill(0, row + used, row + width);
  }
}

/**
 * Into G's rows `row` floats apart from float `to`: `rows` rows of `width` floats of a pair's
 * gradient (rows `srcRow` floats apart), the sum of its parts left to right (`backwardParts`;
 * parts 1 .. `partFloats` apart) or its one part: add_rows, in the memory of `module`.
 */
function intoG(module: KernelExports, to: number, row: number, parts: number[], partFloats: number, srcRow: number, rows: number, width: number): void {
  module.add_rows(...partsSumArgs(to, row, parts, partFloats, srcRow, rows, width));
}

/** The backward's outputs: dx (and dc), dWq, dWk, dWv (and the biases'). */
interface LayerGradients {
  gradX: tf.TensorInfo;
  gradC: tf.TensorInfo|null;
  gradW: tf.TensorInfo[];
  gradB: tf.TensorInfo[];
}

/**
 * The projections' gradients from G: dx = G·[Wq | Wk | Wv]ᵀ and [dWq | dWk | dWv] = xᵀ·G for
 * self-attention; for cross-attention dx = G[:, Q]·Wqᵀ, dc = G[:, K V]·[Wk | Wv]ᵀ, dWq = xᵀ·G[:, Q],
 * [dWk | dWv] = cᵀ·G[:, K V].
 */
function projectionGradients(
    space: ProductSpace, inputs: {[name: string]: tf.TensorInfo|undefined}, g: Gradients, outputs: LayerGradients): void {
  const {x, c, wq, wk, wv} = inputs as {[name: string]: tf.TensorInfo};
  const {gradX, gradC, gradW, gradB} = outputs;
  const [B, T] = x.shape as [number, number];
  const wQ = wq.shape[1] as number;
  if (c == null) {
    inputGradient(space, g, 0, B * T, [wq, wk, wv], gradX);
    weightGradients(space, x, g, 0, [[gradW[0], gradB[0]], [gradW[1], gradB[1]], [gradW[2], gradB[2]]]);
    return;
  }
  const S = c.shape[1] as number;
  inputGradient(space, g, 0, B * T, [wq], gradX);
  inputGradient(space, g, wQ, B * S, [wk, wv], gradC!);
  weightGradients(space, x, g, 0, [[gradW[0], gradB[0]]]);
  weightGradients(space, c, g, wQ, [[gradW[1], gradB[1]], [gradW[2], gradB[2]]]);
}

/**
 * The layer's backward on two threads, above `backwardParts`' size, as one job: the attention's
 * backward (`attendBackwardOnTwoThreads`, each (batch, head) pair's rows read where the heads lie
 * side by side), then the steps added here: G [max(B·T, B·S), gradientWidth] built in the shared
 * memory from each pair's dQ and its dK and dV parts (added as on one thread) into its head's
 * columns, G's columns packed and the weights transposed, and the projections' gradients as calls of
 * project_4x8 by tiles of rows, shared between the threads; their results copied out to the heap
 * after the job. Returns false where the call stays on one thread.
 */
function backwardOnTwoThreads(
    backend: WasmBackendLike, inputs: {[name: string]: tf.TensorInfo|undefined}, attrs: LayerAttrs, outputs: LayerGradients): boolean {
  const {x, c, q, k, v, out, lse, dy, keyBias, bias: maskBias} = inputs as {[name: string]: tf.TensorInfo};
  const {heads, dk, dv} = attrs;
  const {B, T, S, dq, dc} = callSizes(x, c);
  const [wQ, wV] = [heads * dk, heads * dv];
  const width = gradientWidth(heads, dk, dv);
  const n = Math.max(B * T, B * S);
  const withBias = attrs.bias;
  const products = c == null ?
      inputGradientFloats(B * T, 2 * wQ + wV, dq) + weightGradientFloats(B * T, dq, withBias, 2 * wQ + wV) :
      inputGradientFloats(B * T, wQ, dq) + inputGradientFloats(B * S, wQ + wV, dc) + weightGradientFloats(B * T, dq, withBias, wQ) +
      weightGradientFloats(B * S, dc, withBias, wQ + wV);
  // Bounds of what the products take: their buffers (as inputGradient and weightGradients take them); at most one
  // call per tile of rows, and one pack per product of G's columns and per weight (transposed); and G's three
  // add_rows per pair.
  const calls = 2 * Math.ceil(n / 4) + 2 * (Math.ceil(Math.max(dq, dc) / 4) + 1);
  const packs = 2 + 3;
  const tables = roundUp(tableEntries('project_4x8') * calls, 16) + roundUp(tableEntries('pack_rows') * packs, 16) +
      roundUp(tableEntries('add_rows') * 3 * B * heads, 16);
  const gFloats = roundUp(n * width, 16);
  const reserve = gFloats + products + tables;
  const attention = {q, k, v, dy, out, lse, ...(keyBias == null ? {} : {keyBias}), ...(maskBias == null ? {} : {bias: maskBias})};
  const training = {heads, scale: attrs.scale, causal: attrs.causal};
  return attendBackwardOnTwoThreads(backend, attention, training, reserve, (thread, mem, pairs, free): StepsAfter => {
    const [dkp, dvp] = [roundUp(dk, 8), roundUp(dv, 8)];
    zeroUnwrittenG(mem, free, n, width, {qRows: B * T, kvRows: B * S, wQ, wV});
    const intoGCalls = pairs.flatMap((pair, p) => {                                      // pair p: batch b, head h
      const [b, h] = [Math.floor(p / heads), p % heads];
      return [
        partsSumArgs(free + b * T * width + h * dk, width, [pair.gradQ], 0, dkp, T, dk),                // dQ into G
        partsSumArgs(free + b * S * width + wQ + h * dk, width, pair.gradK, pair.partK, dkp, S, dk),      // dK: its parts added
        partsSumArgs(free + b * S * width + 2 * wQ + h * dv, width, pair.gradV, pair.partV, dvp, S, dv),  // dV
      ];
    });
    const space = sharedSpace(backend, mem, free + gFloats);
    projectionGradients(space, inputs, {at: free, width}, outputs);
    // The tables after the products' buffers, within the reserve (its bounds above).
    const projectTable = roundUp(space.end(), 16);
    const packTable = roundUp(projectTable + tableEntries('project_4x8') * space.calls.length, 16);
    const intoGTable = roundUp(packTable + tableEntries('pack_rows') * space.packs.length, 16);
    if (intoGTable + tableEntries('add_rows') * intoGCalls.length > free + reserve) {
      throw new Error('tfjs-attention: the layer\'s gradient products outgrew the shared memory reserved for them');
    }
    const steps: JobStep[] = [
      tableStep(thread, 4 * intoGTable, 'add_rows', intoGCalls),          // G = [dQ | dK | dV]
      tableStep(thread, 4 * packTable, 'pack_rows', space.packs),         // G's columns packed, the weights transposed
      tableStep(thread, 4 * projectTable, 'project_4x8', space.calls),    // dx (and dc), dW (and db)
    ];
    const flops = space.calls.reduce((sum, a) => sum + 2 * 4 * a[8] * a[9] * a[10], 0);
    return {steps, flops, finish: () => space.copies.forEach(copy => copy())};
  }, heads);
}

/**
 * The layer's attention, softmax(scale·(x·wq + bq)·(c·wk + bk)ᵀ + keyBias + bias)·(c·wv + bv)
 * per head, heads side by side: x [B, T, dq], c [B, S, dc] (null: self-attention, c = x) ->
 * [B, T, H·dv], with a fused gradient for x, c and every weight (see the file's comment).
 * `keyBias` [B, S] (0 or MASKED_LOGIT) masks keys, `bias` [Bb, Hb, Tb, S] is an explicit mask at
 * its own size (attention_bias.ts); fully masked rows are the caller's to zero. Callers check
 * `fusedLayerTrainingSizesFit` and that the fused kernels run here.
 */
export function fusedAttentionLayerTraining(
    x: tf.Tensor, context: tf.Tensor|null, projections: FusedProjections,
    sizes: {heads: number; dk: number; dv: number; scale: number; causal?: boolean}, keyBias?: tf.Tensor|null,
    bias?: tf.Tensor|null): tf.Tensor {
  const {wq, wk, wv} = projections;
  const biases = projections.bq == null ? [] : [projections.bq, projections.bk!, projections.bv!];
  const attrs: LayerAttrs = {heads: sizes.heads, dk: sizes.dk, dv: sizes.dv, scale: sizes.scale, causal: sizes.causal ?? false, bias: biases.length > 0};
  const inputs = [x, ...(context == null ? [] : [context]), wq, wk, wv, ...biases];
  const named = (ts: tf.Tensor[]): tf.NamedTensorMap => {
    const map: tf.NamedTensorMap = {x: ts[0]};
    let i = 1;
    if (context != null) map.c = ts[i++];
    [map.wq, map.wk, map.wv] = ts.slice(i, i + 3);
    if (attrs.bias) [map.bq, map.bk, map.bv] = ts.slice(i + 3, i + 6);
    return map;
  };
  // The masks' biases, by their kernel inputs' names: given to both kernels, saved (not read through the closure: the
  // caller may dispose them before the backward).
  const masks: Array<[string, tf.Tensor]> = [];
  if (keyBias != null) masks.push(['keyBias', keyBias]);
  if (bias != null) masks.push(['bias', bias]);
  const withMasks = (map: tf.NamedTensorMap, given: tf.Tensor[]) => {
    const all = {...map};
    masks.forEach(([name], j) => {
      all[name] = given[j];
    });
    return all;
  };
  const attention = tf.customGrad((...args: Array<tf.Tensor|tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const given = args.slice(0, -1) as tf.Tensor[];
    const map = named(given);
    const maskTensors = masks.map(([, t]) => t);
    const [out, q, k, v, lse] = runWasmKernelOutputs(FORWARD_KERNEL_NAME, forwardKernelFunc, withMasks(map, maskTensors), attrs);
    save([given[0], ...(context == null ? [] : [given[1]]), map.wq, map.wk, map.wv, q, k, v, out, lse, ...maskTensors]);
    return {
      value: out,                                                               // [B, T, H·dv]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => {
        let i = 0;
        const xS = saved[i++];
        const cS = context == null ? null : saved[i++];
        const [wqS, wkS, wvS, qS, kS, vS, outS, lseS] = saved.slice(i, i + 8);
        const masksS = saved.slice(i + 8);
        const weights: tf.NamedTensorMap = {x: xS, wq: wqS, wk: wkS, wv: wvS};
        if (cS != null) weights.c = cS;
        const backwardInputs: tf.NamedTensorMap = {...weights, q: qS, k: kS, v: vS, out: outS, lse: lseS, dy};
        return runWasmKernelOutputs(BACKWARD_KERNEL_NAME, backwardKernelFunc, withMasks(backwardInputs, masksS), attrs);
      }),
    };
  });
  return attention(...inputs);
}
