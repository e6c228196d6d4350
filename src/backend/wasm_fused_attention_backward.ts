/**
 * Training with the fused kernels on tfjs' wasm backend: softmax(scale·Q·Kᵀ)·V whose forward
 * runs `attend_4x8` and keeps each query's log-sum-exp, and whose gradient, a tfjs custom
 * gradient, runs `attend_backward_4x8` (src/backend/kernels/attend_backward_4x8_wasmsimd.c,
 * FlashAttention-2's backward): the weights are recomputed per block of keys from the
 * log-sum-exp, so neither pass forms a [T, S] matrix and memory stays linear in T and S.
 * One thread. The planner (attention_plan.ts) sends recorded calls on wasm here.
 */
import * as tf from '@tensorflow/tfjs';
import {FUSED_KEY_BLOCK, FUSED_MAX_BYTES, noteFusedCallThreads} from './wasm_fused_attention';
import {copyRows, heapAddress, heapFloats, heapModule, roundUp, withHeapBuffer} from './wasm_heap_module';
import {runWasmKernelOutputs} from './wasm_kernel_registry';
import type {WasmKernelArgs} from './wasm_kernel_registry';

/**
 * Keys per block of the backward kernel: the block's dK and dV rows (8 KiB each at d = 64,
 * 32 keys), which every tile of four queries updates, stay in L1 with its K and V rows.
 */
export const FUSED_BACKWARD_KEY_BLOCK = 32;

const FORWARD_KERNEL_NAME = 'TfjsAttentionFusedForwardLse';
const BACKWARD_KERNEL_NAME = 'TfjsAttentionFusedBackward';

/** The sizes of one call: P (batch, head) pairs of T queries, S keys, head sizes dk and dv. */
interface PairSizes {
  T: number;
  S: number;
  dk: number;
  dv: number;
}

/** Where the backward's work buffers of one pair lie, in floats from their start (-1: used in place). */
interface BackwardLayout {
  tiles: number;
  dkp: number;
  dvp: number;
  block: number;
  q: number; k: number; dout: number; v: number;
  qRows: number; kRows: number; doutRows: number;
  lse: number; delta: number;
  gradQ: number; gradK: number; gradV: number;
  scratch: number;
  total: number;
}

function backwardLayoutOf({T, S, dk, dv}: PairSizes): BackwardLayout {
  const tiles = Math.ceil(T / 4);
  const panels = Math.ceil(S / 8);
  const [dkp, dvp] = [roundUp(dk, 8), roundUp(dv, 8)];
  const block = Math.min(FUSED_BACKWARD_KEY_BLOCK, panels * 8);
  const rowsInPlace = tiles * 4 === T;
  let next = 0;
  const take = (floats: number, inPlace = false) => {
    if (inPlace) return -1;
    const at = next;
    next += roundUp(floats, 16);
    return at;
  };
  const q = take(tiles * dk * 4);
  const k = take(panels * dk * 8);
  const dout = take(tiles * dv * 4);
  const v = take(panels * dv * 8);
  const qRows = take(tiles * 4 * dkp, rowsInPlace && dkp === dk);
  const kRows = take(S * dkp, dkp === dk);
  const doutRows = take(tiles * 4 * dvp, rowsInPlace && dvp === dv);
  const lse = take(tiles * 4);
  const delta = take(tiles * 4);
  const gradQ = take(tiles * 4 * dkp, rowsInPlace && dkp === dk);
  const gradK = take(S * dkp, dkp === dk);
  const gradV = take(S * dvp, dvp === dv);
  const scratch = take(8 * block);
  return {tiles, dkp, dvp, block, q, k, dout, v, qRows, kRows, doutRows, lse, delta, gradQ, gradK, gradV, scratch, total: next};
}

/** Floats of the forward's work buffers of one pair: Q and K packed, V and the output padded, the scratch and the state. */
function forwardFloats({T, S, dk, dv}: PairSizes): number {
  const [tiles, panels, dvp] = [Math.ceil(T / 4), Math.ceil(S / 8), roundUp(dv, 8)];
  const block = Math.min(FUSED_KEY_BLOCK, panels * 8);
  return tiles * dk * 4 + panels * dk * 8 + S * dvp + tiles * 4 * dvp + roundUp(block * 4 + 4, 16) + tiles * 8 + 64;
}

/** Bytes of work buffers that the forward or the backward takes from the heap (the larger), besides their outputs. */
export function fusedTrainingBytes(sizes: PairSizes): number {
  return 4 * Math.max(forwardFloats(sizes), backwardLayoutOf(sizes).total);
}

/** Whether sizes suit `fusedAttentionTraining`: non-empty, and at most FUSED_MAX_BYTES of work buffers. */
export function fusedTrainingSizesFit(sizes: PairSizes): boolean {
  return Math.min(sizes.T, sizes.S, sizes.dk, sizes.dv) > 0 && fusedTrainingBytes(sizes) <= FUSED_MAX_BYTES;
}

/** Attributes of both kernels: the heads per batch (pair n is batch ⌊n / heads⌋), the scale and causal. */
interface TrainingAttrs {
  heads: number;
  scale: number;
  causal: boolean;
}

/**
 * The forward: q [P, T, dk], k [P, S, dk], v [P, S, dv] and, optionally, keyBias [B, S]
 * (P = B·heads) -> out [P, T, dv] and lse [P, T], each query's log-sum-exp of its scaled
 * scores: scale·max + log(sum) from the kernel's running max and sum.
 */
function forwardKernelFunc(args: WasmKernelArgs): tf.TensorInfo[] {
  const backend = args.backend;
  const module = heapModule(backend)!;
  const {q, k, v, keyBias} = args.inputs;
  const {heads, scale, causal} = args.attrs as unknown as TrainingAttrs;
  const [P, T, dk] = q.shape as [number, number, number];
  const [S, dv] = v.shape.slice(1) as [number, number];
  const out = backend.makeOutput([P, T, dv], 'float32');
  const lse = backend.makeOutput([P, T], 'float32');
  const [tiles, panels, dvp] = [Math.ceil(T / 4), Math.ceil(S / 8), roundUp(dv, 8)];
  const block = Math.min(FUSED_KEY_BLOCK, panels * 8);
  const [qAt, kAt, vAt, outAt, lseAt] = [q, k, v, out, lse].map(x => heapAddress(backend, x) >>> 2);
  const biasAt = keyBias == null ? -1 : heapAddress(backend, keyBias) >>> 2;
  const [qp, kp] = [0, tiles * dk * 4];
  const vPad = kp + panels * dk * 8;
  const outPad = vPad + S * dvp;
  const scratch = roundUp(outPad + tiles * 4 * dvp, 16);
  const state = scratch + roundUp(block * 4 + 4, 16);
  withHeapBuffer(backend, state + tiles * 8, base => {
    const heap = heapFloats(backend);
    const at = (floats: number) => base + 4 * floats;
    const b0 = base >>> 2;
    for (let n = 0; n < P; n++) {
      module.pack_rows(4 * (qAt + n * T * dk), 4 * dk, at(qp), T, dk, 4);            // [T, dk] -> [tiles][dk][4]
      module.pack_rows(4 * (kAt + n * S * dk), 4 * dk, at(kp), S, dk, 8);            // [S, dk] -> [panels][dk][8]
      copyRows(heap, b0 + vPad, dvp, heap, vAt + n * S * dv, dv, S, dv);             // [S, dv] -> [S, dvp]
      const bias = keyBias == null ? 0 : 4 * (biasAt + Math.floor(n / heads) * S);
      module.attend_4x8(at(qp), at(kp), at(vPad), 4 * dvp, at(outPad), 4 * dvp, at(scratch), at(state), tiles, S, block, dk, dvp,
                        scale, causal ? 1 : 0, 0, bias);
      copyRows(heap, outAt + n * T * dv, dv, heap, b0 + outPad, dvp, T, dv);          // [tiles·4, dvp] -> [T, dv]
      for (let t = 0; t < T; t++) {
        const at4 = b0 + state + 8 * (t >> 2) + (t & 3);
        heap[lseAt + n * T + t] = scale * heap[at4] + Math.log(heap[at4 + 4]);
      }
    }
  });
  return [out, lse];
}

/**
 * The backward: q, k, v as the forward's, dy and out [P, T, dv], lse [P, T] and keyBias
 * [B, S] if the forward had it -> dq [P, T, dk], dk [P, S, dk], dv [P, S, dv]. Per pair, the
 * operands are packed (and padded where their sizes need it) into a heap buffer, delta =
 * rowsum(dy ∘ out) is taken, and `attend_backward_4x8` writes the gradients, in place when
 * their rows need no padding.
 */
function backwardKernelFunc(args: WasmKernelArgs): tf.TensorInfo[] {
  const backend = args.backend;
  const module = heapModule(backend)!;
  const {q, k, v, dy, out, lse, keyBias} = args.inputs;
  const {heads, scale, causal} = args.attrs as unknown as TrainingAttrs;
  const [P, T, dk] = q.shape as [number, number, number];
  const [S, dv] = v.shape.slice(1) as [number, number];
  const gradQ = backend.makeOutput([P, T, dk], 'float32');
  const gradK = backend.makeOutput([P, S, dk], 'float32');
  const gradV = backend.makeOutput([P, S, dv], 'float32');
  const place = backwardLayoutOf({T, S, dk, dv});
  const {tiles, dkp, dvp, block} = place;
  const [qAt, kAt, vAt, dyAt, outAt, lseAt, gqAt, gkAt, gvAt] =
      [q, k, v, dy, out, lse, gradQ, gradK, gradV].map(x => heapAddress(backend, x) >>> 2);
  const biasAt = keyBias == null ? -1 : heapAddress(backend, keyBias) >>> 2;
  withHeapBuffer(backend, place.total, base => {
    const heap = heapFloats(backend);
    const b0 = base >>> 2;
    heap.fill(0, b0, b0 + place.total);  // the padding (rows past T, columns past d) stays zero
    for (let n = 0; n < P; n++) {
      const [qn, kn, vn, dyn] = [qAt + n * T * dk, kAt + n * S * dk, vAt + n * S * dv, dyAt + n * T * dv];
      module.pack_rows(4 * qn, 4 * dk, 4 * (b0 + place.q), T, dk, 4);                // [tiles][dk][4]
      module.pack_rows(4 * kn, 4 * dk, 4 * (b0 + place.k), S, dk, 8);                // [panels][dk][8]
      module.pack_rows(4 * dyn, 4 * dv, 4 * (b0 + place.dout), T, dv, 4);            // [tiles][dv][4]
      module.pack_rows(4 * vn, 4 * dv, 4 * (b0 + place.v), S, dv, 8);                // [panels][dv][8]
      // Rows padded to dkp or dvp columns and tiles·4 rows, or the operand itself.
      const rows = (offset: number, from: number, count: number, d: number, dp: number) => {
        if (offset < 0) return from;
        copyRows(heap, b0 + offset, dp, heap, from, d, count, d);
        return b0 + offset;
      };
      const qRows = rows(place.qRows, qn, T, dk, dkp);
      const kRows = rows(place.kRows, kn, S, dk, dkp);
      const doutRows = rows(place.doutRows, dyn, T, dv, dvp);
      heap.set(heap.subarray(lseAt + n * T, lseAt + (n + 1) * T), b0 + place.lse);
      const outn = outAt + n * T * dv;
      for (let t = 0; t < T; t++) {                                                // delta[t] = Σ_c dy[t][c]·out[t][c]
        let sum = 0;
        for (let c = 0; c < dv; c++) sum += heap[dyn + t * dv + c] * heap[outn + t * dv + c];
        heap[b0 + place.delta + t] = sum;
      }
      const gq = place.gradQ < 0 ? gqAt + n * T * dk : b0 + place.gradQ;
      const gk = place.gradK < 0 ? gkAt + n * S * dk : b0 + place.gradK;
      const gv = place.gradV < 0 ? gvAt + n * S * dv : b0 + place.gradV;
      const bias = keyBias == null ? 0 : 4 * (biasAt + Math.floor(n / heads) * S);
      module.attend_backward_4x8(
          4 * (b0 + place.q), 4 * (b0 + place.k), 4 * (b0 + place.v), 4 * (b0 + place.dout), 4 * qRows, 4 * kRows, 4 * doutRows,
          4 * (b0 + place.lse), 4 * (b0 + place.delta), 4 * gq, 4 * gk, 4 * gv, 4 * (b0 + place.scratch), T, S, block, dk, dv,
          scale, causal ? 1 : 0, bias);
      if (place.gradQ >= 0) copyRows(heap, gqAt + n * T * dk, dk, heap, gq, dkp, T, dk);
      if (place.gradK >= 0) copyRows(heap, gkAt + n * S * dk, dk, heap, gk, dkp, S, dk);
      if (place.gradV >= 0) copyRows(heap, gvAt + n * S * dv, dv, heap, gv, dvp, S, dv);
    }
  });
  return [gradQ, gradK, gradV];
}

/**
 * softmax(scale·Q·Kᵀ + keyBias)·V on the wasm backend with a fused gradient: query
 * [B, (H,) T, dk], key [B, (H,) S, dk], value [B, (H,) S, dv] -> [B, (H,) T, dv]. `keyBias`
 * [B, S] (0 or MASKED_LOGIT) is added to every score of each key (key padding); with
 * `causal`, query t attends keys s <= t. Fully masked rows are the caller's to zero (as the
 * standard path does, by multiplying the output). Callers check `fusedTrainingSizesFit` and
 * that the fused kernels run here (`fusedKernelAvailable`).
 */
export function fusedAttentionTraining(
    query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, options: {scale: number; causal: boolean; keyBias?: tf.Tensor|null}): tf.Tensor {
  const [T, dk] = query.shape.slice(-2) as [number, number];
  const [S, dv] = value.shape.slice(-2) as [number, number];
  const heads = query.rank === 4 ? query.shape[1] as number : 1;
  const pairs = query.size / (T * dk);
  const attrs: TrainingAttrs = {heads, scale: options.scale, causal: options.causal};
  const keyBias = options.keyBias ?? null;
  noteFusedCallThreads(1);
  const withBias = (inputs: tf.NamedTensorMap, bias: tf.Tensor|null) => (bias == null ? inputs : {...inputs, keyBias: bias});
  const attention = tf.customGrad((...args: Array<tf.Tensor|tf.GradSaveFunc>) => {
    const [q, k, v] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const [out, lse] = runWasmKernelOutputs(FORWARD_KERNEL_NAME, forwardKernelFunc, withBias({q, k, v}, keyBias), attrs);  // [P, T, dv], [P, T]
    // The key bias is saved, not read through the closure: the caller may dispose it before the backward.
    save([q, k, v, out, lse, ...(keyBias == null ? [] : [keyBias])]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [qS, kS, vS, outS, lseS, biasS] = saved;
        return runWasmKernelOutputs(BACKWARD_KERNEL_NAME, backwardKernelFunc,
                                    withBias({q: qS, k: kS, v: vS, dy, out: outS, lse: lseS}, biasS ?? null), attrs);  // dq, dk, dv
      },
    };
  });
  return tf.tidy(() => {
    const as3d = (x: tf.Tensor, rows: number, cols: number) => x.reshape([pairs, rows, cols]);
    const out = attention(as3d(query, T, dk), as3d(key, S, dk), as3d(value, S, dv));  // [P, T, dv]
    return out.reshape([...query.shape.slice(0, -2), T, dv]);                         // [B, (H,) T, dv]
  });
}
