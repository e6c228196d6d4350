/**
 * The layer's training on tfjs' wasm backend in two kernel calls: a tfjs custom gradient
 * around the whole layer (without its output projection) whose forward projects x (and the
 * context) with `project_4x8` into Q, K and V, heads side by side, and attends them with
 * `attend_4x8`, keeping each query's log-sum-exp; and whose backward runs
 * `attend_backward_4x8` per head into one matrix G = [dQ | dK | dV] and then the
 * projections' gradients with `project_4x8` too: dx = G·[Wq | Wk | Wv]ᵀ and
 * [dWq | dWk | dWv] = xᵀ·G, the biases' gradients as one more row of that product (xᵀ with a
 * row of ones). At small shapes the layer's many tfjs ops (products, head splits, their
 * gradients) cost more than the attention; here they are gone. Below `twoThreadsPay`'s size
 * the kernels attend heads side by side on one thread; above it, with one head, the forward
 * projects and then runs the attention's own kernels (`attendWithLse`, `attendBackward`: two
 * threads in Node), and the backward takes their dQ, dK and dV into G. The planner sends larger
 * calls with several heads to `fusedAttentionTraining`.
 */
import * as tf from '@tensorflow/tfjs';
import {attendBackward, attendWithLse, backwardArgs, backwardLayoutOf, fusedTrainingSizesFit, logSumExp} from './wasm_fused_attention_backward';
import {twoThreadsPay} from './attention_threads';
import type {PairBuffers} from './wasm_fused_attention_backward';
import {FUSED_KEY_BLOCK, FUSED_MAX_BYTES, fusedAttentionLayerSizesFit, noteFusedCallThreads} from './wasm_fused_attention';
import type {FusedLayerSizes, FusedProjections} from './wasm_fused_attention';
import {packRows, projectPacked} from './wasm_dense';
import {copyRows, heapAddress, heapFloats, heapModule, roundUp, withHeapBuffer} from './wasm_heap_module';
import type {KernelExports} from './kernels/kernel_module';
import {runWasmKernelOutputs} from './wasm_kernel_registry';
import type {WasmBackendLike, WasmKernelArgs} from './wasm_kernel_registry';

const FORWARD_KERNEL_NAME = 'TfjsAttentionFusedLayerForwardLse';
const PROJECT_KERNEL_NAME = 'TfjsAttentionFusedLayerProject';
const BACKWARD_KERNEL_NAME = 'TfjsAttentionFusedLayerBackward';

/**
 * How the layer attends: H heads of dk and dv, the scale, causal; `bias`: the projections have
 * biases; `attend`: the forward attends too (else it only projects; see `fusedAttentionLayerTraining`).
 */
interface LayerAttrs {
  heads: number;
  dk: number;
  dv: number;
  scale: number;
  causal: boolean;
  bias: boolean;
  attend?: boolean;
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
 * Floats of the backward's work buffers: G [max(B·T, B·S), gradientWidth], one pair's
 * backward buffers, and the largest of the projections' products (G's columns packed with
 * the transposed weights and the output, or an input transposed and packed with the output).
 */
function backwardFloats({B, T, S, dq, dc}: CallSizes, {heads, dk, dv}: LayerAttrs): number {
  const n = Math.max(B * T, B * S);
  const width = gradientWidth(heads, dk, dv);
  const pair = backwardLayoutOf({T, S, dk, dv}, false, false).total;
  const d = Math.max(dq, dc);
  const inputs = roundUp(n, 4) * width + width * roundUp(d, 8) + roundUp(n, 4) * roundUp(d, 8);
  const weights = (roundUp(d, 4) + 4) * n + (roundUp(d, 4) + 4) * width;
  return roundUp(n * width, 16) + roundUp(pair, 16) + Math.max(inputs, weights) + 64;
}

/** Bytes of work buffers that the forward or the backward takes from the heap (the larger), besides their outputs. */
export function fusedLayerTrainingBytes(sizes: FusedLayerSizes): number {
  const {batch: B, T, S, dq, dc, heads, dk, dv} = sizes;
  const call = {B, T, S, dq, dc};
  const attrs = {heads, dk, dv, scale: 1, causal: false, bias: false};
  return 4 * Math.max(forwardFloats(call, attrs, sizes.selfAttention ?? false), backwardFloats(call, attrs));
}

/**
 * Whether sizes suit `fusedAttentionLayerTraining`: as the layer's inference kernel
 * (`fusedAttentionLayerSizesFit`) and the fused backward (`fusedTrainingSizesFit`), with at
 * most FUSED_MAX_BYTES of work buffers.
 */
export function fusedLayerTrainingSizesFit(sizes: FusedLayerSizes): boolean {
  const {T, S, dk, dv} = sizes;
  return fusedAttentionLayerSizesFit(sizes) && fusedTrainingSizesFit({T, S, dk, dv}) && fusedLayerTrainingBytes(sizes) <= FUSED_MAX_BYTES;
}

/**
 * The forward: x [B, T, dq], c [B, S, dc] (absent for self-attention), wq, wk, wv and the
 * biases, keyBias [B, S] -> out [B, T, H·dv], q [B, T, H·dk], k [B, S, H·dk], v [B, S, H·dv]
 * (heads side by side) and lse [B·H, T]; without `attend`, q, k and v alone.
 */
function forwardKernelFunc(args: WasmKernelArgs): tf.TensorInfo[] {
  const backend = args.backend;
  const module = heapModule(backend)!;
  const {x, c, wq, wk, wv, bq, bk, bv, keyBias} = args.inputs;
  const attrs = args.attrs as unknown as LayerAttrs;
  const {heads, dk, dv, scale} = attrs;
  const sizes = callSizes(x, c);
  const {B, T, S, dq} = sizes;
  const [wQ, wV] = [heads * dk, heads * dv];
  const attend = attrs.attend ?? true;
  const q = backend.makeOutput([B, T, wQ], 'float32');
  const k = backend.makeOutput([B, S, wQ], 'float32');
  const v = backend.makeOutput([B, S, wV], 'float32');
  const out = attend ? backend.makeOutput([B, T, wV], 'float32') : null;
  const lse = attend ? backend.makeOutput([B * heads, T], 'float32') : null;
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
    if (out == null || lse == null) return;
    const heap = heapFloats(backend);
    const b0 = base >>> 2;
    const [qAt, kAt, vAt, outAt, lseAt] = [q, k, v, out, lse].map(t => heapAddress(backend, t) >>> 2);
    const biasAt = keyBias == null ? -1 : heapAddress(backend, keyBias) >>> 2;
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
        const bias = keyBias == null ? 0 : 4 * (biasAt + b * S);
        module.attend_4x8(at(qp), at(kp), vHere, vStride, outHere, outStride, at(scratch), at(state), tiles, S, block, dk, dvp,
                          scale, attrs.causal ? 1 : 0, 0, bias, 0, 0, 0);  // the key bias only
        if (!outInPlace) copyRows(heap, outTo, wV, heap, b0 + outPad, dvp, T, dv);  // [tiles·4, dvp] -> T rows of dv
        logSumExp(heap, lseAt + (b * heads + h) * T, heap, b0 + state, T, scale);
      }
    }
  });
  if (out == null || lse == null) return [q, k, v];
  noteFusedCallThreads(1);
  return [out, q, k, v, lse];
}

/** out[t] = Σ_c a[t][c]·b[t][c] over T rows of d floats, `row` floats apart (delta = rowsum(dy ∘ out)). */
function rowSums(dst: Float32Array, to: number, src: Float32Array, a: number, b: number, T: number, d: number, row: number): void {
  for (let t = 0; t < T; t++) {
    let sum = 0;
    for (let c = 0; c < d; c++) sum += src[a + t * row + c] * src[b + t * row + c];
    dst[to + t] = sum;
  }
}

/**
 * The backward: the forward's inputs and outputs and dy [B, T, H·dv] -> dx (and dc), dwq,
 * dwk, dwv (and dbq, dbk, dbv). First per pair, attend_backward_4x8 into G's columns (or,
 * given gq, gk and gv, the attention's gradients, a copy of them); then the projections'
 * gradients from G with project_4x8 (`inputGradient`, `weightGradients`).
 */
function backwardKernelFunc(args: WasmKernelArgs): tf.TensorInfo[] {
  const backend = args.backend;
  const module = heapModule(backend)!;
  const {x, c, wq, wk, wv, q, k, v, out, lse, dy, keyBias, gq, gk, gv} = args.inputs;
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
  const place = backwardLayoutOf({T, S, dk, dv}, false, false);
  const {dkp, dvp, block} = place;
  const gFloats = roundUp(n * width, 16);
  const work = gFloats + (gq != null ? 0 : roundUp(place.total, 16));
  withHeapBuffer(backend, backwardFloats(sizes, attrs), base => {
    const b0 = base >>> 2;
    const heap = heapFloats(backend);
    heap.fill(0, b0, b0 + work);  // G's and the pair's padding (rows past T, columns past d) stays zero
    if (gq != null) {  // the attention's gradients, given: into G's columns
      const [gqAt, gkAt, gvAt] = [gq, gk, gv].map(t => heapAddress(backend, t) >>> 2);
      copyRows(heap, b0, width, heap, gqAt, wQ, B * T, wQ);
      copyRows(heap, b0 + wQ, width, heap, gkAt, wQ, B * S, wQ);
      copyRows(heap, b0 + 2 * wQ, width, heap, gvAt, wV, B * S, wV);
    }
    const [qAt, kAt, vAt, dyAt, outAt, lseAt] = gq != null ? [0, 0, 0, 0, 0, 0] :
        [q, k, v, dy, out, lse].map(t => heapAddress(backend, t) >>> 2);
    const biasAt = keyBias == null ? -1 : heapAddress(backend, keyBias) >>> 2;
    const p0 = b0 + gFloats;
    const call = {T, S, dk, dv, dkp, dvp, block, heads, scale: attrs.scale, causal: attrs.causal};
    // One head's rows [count, d] of a matrix whose rows are `row` floats apart, into rows of d rounded up to 8:
    // by pack_rows in groups of one row (a plain copy) when d is a multiple of 8.
    const rowsOf = (from: number, row: number, to: number, count: number, d: number) => {
      if (d % 8 === 0) module.pack_rows(4 * from, 4 * row, 4 * to, count, d, 1);
      else copyRows(heap, to, roundUp(d, 8), heap, from, row, count, d);
    };
    for (let b = 0; b < (gq == null ? B : 0); b++) {
      for (let h = 0; h < heads; h++) {
        const [qn, kn, vn, dyn] = [qAt + b * T * wQ + h * dk, kAt + b * S * wQ + h * dk, vAt + b * S * wV + h * dv, dyAt + b * T * wV + h * dv];
        module.pack_rows(4 * qn, 4 * wQ, 4 * (p0 + place.q), T, dk, 4);              // [tiles][dk][4]
        module.pack_rows(4 * kn, 4 * wQ, 4 * (p0 + place.k), S, dk, 8);              // [panels][dk][8]
        module.pack_rows(4 * dyn, 4 * wV, 4 * (p0 + place.dout), T, dv, 4);          // [tiles][dv][4]
        module.pack_rows(4 * vn, 4 * wV, 4 * (p0 + place.v), S, dv, 8);              // [panels][dv][8]
        rowsOf(qn, wQ, p0 + place.qRows, T, dk);                                    // rows padded to dkp or dvp
        rowsOf(kn, wQ, p0 + place.kRows, S, dk);
        rowsOf(dyn, wV, p0 + place.doutRows, T, dv);
        heap.set(heap.subarray(lseAt + (b * heads + h) * T, lseAt + (b * heads + h + 1) * T), p0 + place.lse);
        rowSums(heap, p0 + place.delta, heap, dyn, outAt + b * T * wV + h * dv, T, dv, wV);
        const buffers: PairBuffers = {
          q: p0 + place.q, k: p0 + place.k, v: p0 + place.v, dout: p0 + place.dout, qRows: p0 + place.qRows,
          kRows: p0 + place.kRows, doutRows: p0 + place.doutRows, lse: p0 + place.lse, delta: p0 + place.delta,
          gradQ: p0 + place.gradQ, gradK: [p0 + place.gradK, p0 + place.gradK], gradV: [p0 + place.gradV, p0 + place.gradV],
          scratch: [p0 + place.scratch, p0 + place.scratch],
          biases: [keyBias == null ? 0 : 4 * (biasAt + b * S), 0, 0, 0],
        };
        module.attend_backward_4x8(...(backwardArgs(buffers, 0, 0, call) as Parameters<KernelExports['attend_backward_4x8']>));
        copyRows(heap, b0 + b * T * width + h * dk, width, heap, p0 + place.gradQ, dkp, T, dk);           // dQ into G
        copyRows(heap, b0 + b * S * width + wQ + h * dk, width, heap, p0 + place.gradK, dkp, S, dk);      // dK
        copyRows(heap, b0 + b * S * width + 2 * wQ + h * dv, width, heap, p0 + place.gradV, dvp, S, dv);  // dV
      }
    }
    const more = b0 + work;  // the products' buffers
    const g = {at: b0, width};
    if (c == null) {  // self-attention: dx = G·[Wq | Wk | Wv]ᵀ, [dWq | dWk | dWv] = xᵀ·G
      inputGradient(backend, module, g, 0, B * T, [wq, wk, wv], gradX, more);
      weightGradients(backend, module, x, g, 0, [[gradW[0], gradB[0]], [gradW[1], gradB[1]], [gradW[2], gradB[2]]], more);
    } else {
      inputGradient(backend, module, g, 0, B * T, [wq], gradX, more);
      inputGradient(backend, module, g, wQ, B * S, [wk, wv], gradC!, more);
      weightGradients(backend, module, x, g, 0, [[gradW[0], gradB[0]]], more);
      weightGradients(backend, module, c, g, wQ, [[gradW[1], gradB[1]], [gradW[2], gradB[2]]], more);
    }
  });
  return [gradX, ...(gradC == null ? [] : [gradC]), ...gradW, ...gradB];
}

/** G: a matrix of the heap at float `at`, rows of `width` floats. */
interface Gradients {
  at: number;
  width: number;
}

/**
 * to [rows, d] = G[:, from .. from + m]·[W1 | W2 | …]ᵀ, where the weights [d, wi] have
 * m = Σ wi columns: G's columns packed by fours, the weights transposed into rows of d
 * rounded up to 8 (zeros past d), one project_4x8, its output in place when it needs no padding.
 */
function inputGradient(
    backend: WasmBackendLike, module: KernelExports, g: Gradients, from: number, rows: number, weights: tf.TensorInfo[],
    to: tf.TensorInfo, work: number): void {
  const d = weights[0].shape[0] as number;
  const m = weights.reduce((sum, w) => sum + (w.shape[1] as number), 0);
  const [tiles, dp] = [Math.ceil(rows / 4), roundUp(d, 8)];
  const [packed, transposed, padded] = [work, work + tiles * 4 * m, work + tiles * 4 * m + m * dp];
  const heap = heapFloats(backend);
  module.pack_rows(4 * (g.at + from), 4 * g.width, 4 * packed, rows, m, 4);  // [tiles][m][4]
  let row = transposed;
  for (const w of weights) {                                                 // Wᵀ [wi, dp]
    const [wAt, wi] = [heapAddress(backend, w) >>> 2, w.shape[1] as number];
    for (let j = 0; j < wi; j++, row += dp) {
      for (let i = 0; i < d; i++) heap[row + i] = heap[wAt + i * wi + j];
      heap.fill(0, row + d, row + dp);
    }
  }
  const toAt = heapAddress(backend, to);
  if (dp === d && tiles * 4 === rows) {
    module.project_4x8(4 * packed, 4 * transposed, 4 * dp, 0, toAt, 4 * d, tiles, m, dp);
    return;
  }
  module.project_4x8(4 * packed, 4 * transposed, 4 * dp, 0, 4 * padded, 4 * dp, tiles, m, dp);
  copyRows(heap, toAt >>> 2, d, heap, padded, dp, rows, d);
}

/**
 * The weights' gradients of the projections of `input` [N, d] (N rows, whose gradients are
 * G's columns from `from`, the outputs' side by side): [dW1 | dW2 | …] = inputᵀ·G[:, from ..]
 * as one project_4x8 over inputᵀ packed by fours, with a row of ones after its d rows when
 * the biases are asked for (their gradients, G's column sums, come out as that row).
 */
function weightGradients(
    backend: WasmBackendLike, module: KernelExports, input: tf.TensorInfo, g: Gradients, from: number,
    outputs: Array<[tf.TensorInfo, tf.TensorInfo|undefined]>, work: number): void {
  const d = input.shape[2] as number;
  const rows = (input.shape[0] as number) * (input.shape[1] as number);
  const withBias = outputs[0][1] != null;
  const dTiles = Math.ceil(d / 4);
  const tiles = dTiles + (withBias ? 1 : 0);
  const m = outputs.reduce((sum, [w]) => sum + (w.shape[1] as number), 0);
  const mp = roundUp(m, 8);
  const [packed, product] = [work, work + tiles * 4 * rows];
  const heap = heapFloats(backend);
  const inAt = heapAddress(backend, input) >>> 2;
  // inputᵀ packed by fours: [tiles][rows][4], feature f of row r at (⌊f/4⌋·rows + r)·4 + f % 4.
  for (let tile = 0; tile < dTiles; tile++) {
    const lanes = Math.min(4, d - 4 * tile);
    const dst = packed + tile * rows * 4;
    if (lanes === 4) {
      for (let r = 0, src = inAt + 4 * tile, to = dst; r < rows; r++, src += d, to += 4) {
        heap[to] = heap[src];
        heap[to + 1] = heap[src + 1];
        heap[to + 2] = heap[src + 2];
        heap[to + 3] = heap[src + 3];
      }
      continue;
    }
    for (let r = 0; r < rows; r++) {
      const src = inAt + r * d + 4 * tile;
      for (let lane = 0; lane < 4; lane++) heap[dst + 4 * r + lane] = lane < lanes ? heap[src + lane] : 0;
    }
  }
  if (withBias) {
    const dst = packed + dTiles * rows * 4;
    for (let r = 0; r < rows; r++) {
      heap[dst + 4 * r] = 1;
      heap.fill(0, dst + 4 * r + 1, dst + 4 * r + 4);
    }
  }
  module.project_4x8(4 * packed, 4 * (g.at + from), 4 * g.width, 0, 4 * product, 4 * mp, tiles, rows, mp);
  let column = 0;
  for (const [w, b] of outputs) {
    const wi = w.shape[1] as number;
    copyRows(heap, heapAddress(backend, w) >>> 2, wi, heap, product + column, mp, d, wi);
    if (b != null) heap.set(heap.subarray(product + dTiles * 4 * mp + column, product + dTiles * 4 * mp + column + wi), heapAddress(backend, b) >>> 2);
    column += wi;
  }
}

/**
 * The layer's attention, softmax(scale·(x·wq + bq)·(c·wk + bk)ᵀ + keyBias)·(c·wv + bv) per
 * head, heads side by side: x [B, T, dq], c [B, S, dc] (null: self-attention, c = x) ->
 * [B, T, H·dv], with a fused gradient for x, c and every weight (see the file's comment).
 * `keyBias` [B, S] (0 or MASKED_LOGIT) masks keys; fully masked rows are the caller's to zero.
 * Callers check `fusedLayerTrainingSizesFit` and that the fused kernels run here.
 */
export function fusedAttentionLayerTraining(
    x: tf.Tensor, context: tf.Tensor|null, projections: FusedProjections,
    sizes: {heads: number; dk: number; dv: number; scale: number; causal?: boolean}, keyBias?: tf.Tensor|null): tf.Tensor {
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
  const withBias = (map: tf.NamedTensorMap, bias: tf.Tensor|null|undefined) => (bias == null ? map : {...map, keyBias: bias});
  const [B, T] = x.shape as [number, number];
  const S = (context ?? x).shape[1] as number;
  // One head at a size that two threads speed up: the attention's own kernels, on two threads, between the projections'.
  const split = attrs.heads === 1 && twoThreadsPay(2 * B * T * S * (attrs.dk + attrs.dv), T);
  const attention = tf.customGrad((...args: Array<tf.Tensor|tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const given = args.slice(0, -1) as tf.Tensor[];
    const map = named(given);
    let out: tf.Tensor, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, lse: tf.Tensor;
    if (split) {
      [q, k, v] = runWasmKernelOutputs(PROJECT_KERNEL_NAME, forwardKernelFunc, map, {...attrs, attend: false});  // [B, T|S, d]
      [out, lse] = attendWithLse(q, k, v, keyBias ?? null, {heads: 1, scale: attrs.scale, causal: attrs.causal});  // [B, T, dv], [B, T]
    } else {
      [out, q, k, v, lse] = runWasmKernelOutputs(FORWARD_KERNEL_NAME, forwardKernelFunc, withBias(map, keyBias), attrs);
    }
    // The key bias is saved, not read through the closure: the caller may dispose it before the backward.
    save([given[0], ...(context == null ? [] : [given[1]]), map.wq, map.wk, map.wv, q, k, v, out, lse, ...(keyBias == null ? [] : [keyBias])]);
    return {
      value: out,                                                               // [B, T, H·dv]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => {
        let i = 0;
        const xS = saved[i++];
        const cS = context == null ? null : saved[i++];
        const [wqS, wkS, wvS, qS, kS, vS, outS, lseS] = saved.slice(i, i + 8);
        const biasS = saved[i + 8] ?? null;
        const weights: tf.NamedTensorMap = {x: xS, wq: wqS, wk: wkS, wv: wvS};
        if (cS != null) weights.c = cS;
        if (split) {
          const [gq, gk, gv] = attendBackward({q: qS, k: kS, v: vS, out: outS, lse: lseS, keyBias: biasS}, dy,
                                              {heads: 1, scale: attrs.scale, causal: attrs.causal});
          return runWasmKernelOutputs(BACKWARD_KERNEL_NAME, backwardKernelFunc, {...weights, gq, gk, gv}, attrs);
        }
        const backwardInputs: tf.NamedTensorMap = {...weights, q: qS, k: kS, v: vS, out: outS, lse: lseS, dy};
        return runWasmKernelOutputs(BACKWARD_KERNEL_NAME, backwardKernelFunc, withBias(backwardInputs, biasS), attrs);
      }),
    };
  });
  return attention(...inputs);
}
