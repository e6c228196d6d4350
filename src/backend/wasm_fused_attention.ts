/**
 * The whole attention forward, softmax(scale·Q·Kᵀ)·V, as one kernel for tfjs' wasm backend
 * (the `attend` function of wasm_heap_module.ts). Four queries at a time, it computes their
 * scores against every key into a small scratch buffer, takes the softmax there and
 * multiplies by V: the T×S score matrix never exists, so memory stays linear in T, and the
 * four steps cost one kernel call instead of five ops. Inference only: no gradient is
 * registered.
 */
import * as tf from '@tensorflow/tfjs';
import {getSecondThread, runOnBothThreads, SHARED_MAX_BYTES, sharedFloats, TWO_THREAD_MIN_FLOPS} from './attention_threads';
import type {SecondThread} from './attention_threads';
import {heapModule} from './wasm_heap_module';
import type {HeapModule, WasmBackendLike} from './wasm_heap_module';

/** Sizes of one call: B batches of H heads, T queries, S keys, head sizes dk and dv. */
interface FusedSizes {
  batch: number;
  heads: number;
  T: number;
  S: number;
  dk: number;
  dv: number;
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

function layoutOf({T, S, dk, dv}: FusedSizes): Layout {
  const tiles = Math.ceil(T / 4);
  const panels = Math.ceil(S / 8);
  const dvp = Math.ceil(dv / 8) * 8;
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
  return Math.ceil((block * 4 + 4) / 16) * 16;
}

/**
 * Most bytes of work buffers that one call takes from the wasm heap, freed after the call:
 * one pair's packed Q and K, V and output when their rows need padding, and 16·S bytes of
 * scores. 64 MiB is T = S = 64 Ki keys with d = 64: the kernel is linear in T.
 */
export const FUSED_MAX_BYTES = 64 * 2 ** 20;

/** Bytes of work buffers of one call (see FUSED_MAX_BYTES), besides the output. */
export function fusedAttentionBytes(T: number, S: number, dk: number, dv: number): number {
  return 4 * layoutOf({batch: 1, heads: 1, T, S, dk, dv}).total;
}

/**
 * Whether `fusedAttention` can run: the wasm backend (unthreaded) in a runtime with wasm
 * SIMD, non-empty operands and at most FUSED_MAX_BYTES of work buffers.
 */
export function fusedAttentionFits(T: number, S: number, dk: number, dv: number): boolean {
  return tf.getBackend() === 'wasm' && Math.min(T, S, dk, dv) > 0 &&
      fusedAttentionBytes(T, S, dk, dv) <= FUSED_MAX_BYTES &&
      heapModule(tf.backend() as unknown as WasmBackendLike) != null;
}

const FUSED_KERNEL_NAME = 'TfjsAttentionFusedAttention';

/**
 * The kernel function. Inputs q [B, T, Cq], k [B, S, Ck], v [B, S, Cv] (possibly one tensor);
 * head h's queries are the dk columns of q from column `qColumn + h·dk`, its keys and values
 * likewise. Output [B, T, H·dv], the heads side by side. For each (batch, head) pair it packs
 * Q and K into a buffer of the wasm heap and runs `attend` on the heap in place.
 */
function fusedKernelFunc(args: {inputs: tf.NamedTensorMap; attrs?: {[name: string]: unknown}; backend: unknown}): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const module = heapModule(backend)!;
  const {q, k, v} = args.inputs;
  const attrs = args.attrs as unknown as FusedSizes&{qColumn: number; kColumn: number; vColumn: number; scale: number};
  const {batch, heads, T, S, dk, dv, qColumn, kColumn, vColumn, scale} = attrs;
  const [cq, ck, cv] = [q, k, v].map(x => x.shape[2] as number);
  const layout = layoutOf(attrs);
  const {tiles, panels, dvp, block} = layout;
  const output = backend.makeOutput([batch, T, heads * dv], 'float32');
  const pairs = batch * heads;
  const thread = 2 * pairs * T * S * (dk + dv) >= TWO_THREAD_MIN_FLOPS && tiles >= 2 ? getSecondThread() : null;
  // Bytes in the shared memory, at most: the operands copied, Q and K packed, V padded, the output, two scratch buffers.
  const sharedBytes = 4 * ([q, k, v].reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0) +
      pairs * (4 + tiles * dk * 4 + panels * dk * 8 + S * dvp + tiles * 4 * dvp) + 2 * (scratchFloats(block) + tiles * 8) + 32);
  const allocation = backend.wasm._malloc(4 * layout.total + 64);         // may grow the heap: views come after
  const base = Math.ceil((allocation >>> 0) / 64) * 64;                    // cache-line aligned; unsigned above 2 GiB
  const at = (floats: number) => base + 4 * floats;                        // byte address in the heap
  const address = (t: tf.TensorInfo) => backend.typedArrayFromHeap(t).byteOffset;
  try {
    const heap = new Float32Array(backend.typedArrayFromHeap(output).buffer);
    const [qAt, kAt, vAt, outAt] = [address(q), address(k), address(v), address(output)];
    // Padding queries and keys are zeros: their results are never read, but stay finite.
    if (T % 4 !== 0) heap.fill(0, (base >>> 2) + layout.q + (tiles - 1) * dk * 4, (base >>> 2) + layout.q + tiles * dk * 4);
    if (S % 8 !== 0) heap.fill(0, (base >>> 2) + layout.k + (panels - 1) * dk * 8, (base >>> 2) + layout.k + panels * dk * 8);
    if (thread != null && sharedBytes <= SHARED_MAX_BYTES) {
      attendOnTwoThreads(thread, heap, {q, k, v}, {...attrs, addressOf: address, outAt, layout});
      return output;
    }
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        module.pack(qAt + 4 * (b * T * cq + qColumn + h * dk), 4 * cq, at(layout.q), T, dk, 4);  // [T, dk] -> [tiles][dk][4]
        module.pack(kAt + 4 * (b * S * ck + kColumn + h * dk), 4 * ck, at(layout.k), S, dk, 8);  // [S, dk] -> [panels][dk][8]
        let [vHere, rowV] = [vAt + 4 * (b * S * cv + vColumn + h * dv), 4 * cv];
        if (layout.v >= 0) {                                               // [S, dv] -> [S, dvp]
          for (let s = 0; s < S; s++) {
            const from = (vHere >>> 2) + s * cv;
            heap.copyWithin((base >>> 2) + layout.v + s * dvp, from, from + dv);
          }
          [vHere, rowV] = [at(layout.v), 4 * dvp];
        }
        const outHere = outAt + 4 * (b * T * heads * dv + h * dv);
        if (layout.out < 0) {
          module.attend(at(layout.q), at(layout.k), vHere, rowV, outHere, 4 * heads * dv, at(layout.scratch), at(layout.state),
                        tiles, S, block, dk, dvp, scale);
          continue;
        }
        module.attend(at(layout.q), at(layout.k), vHere, rowV, at(layout.out), 4 * dvp, at(layout.scratch), at(layout.state),
                      tiles, S, block, dk, dvp, scale);
        for (let t = 0; t < T; t++) {                                      // [tiles·4, dvp] -> T rows of dv
          const from = (base >>> 2) + layout.out + t * dvp;
          heap.copyWithin((outHere >>> 2) + t * heads * dv, from, from + dv);
        }
      }
    }
  } finally {
    backend.wasm._free(allocation);
  }
  return output;
}

/**
 * The fused kernel on two threads (see attention_threads.ts). Q, K and V are copied whole
 * into the shared memory, and each pair's Q and K packed there; the worker attends the
 * first half of every pair's query tiles, this thread the second half. When no padding is
 * needed (T % 4 = 0, dv % 8 = 0) V is read in place and the output is written in its final
 * layout, so that it comes back in one copy.
 */
function attendOnTwoThreads(
    thread: SecondThread, heap: Float32Array, tensors: {q: tf.TensorInfo; k: tf.TensorInfo; v: tf.TensorInfo},
    call: FusedSizes&{qColumn: number; kColumn: number; vColumn: number; scale: number; addressOf: (t: tf.TensorInfo) => number;
                      outAt: number; layout: Layout}): void {
  const {batch, heads, T, S, dk, dv, qColumn, kColumn, vColumn, scale, addressOf, outAt, layout} = call;
  const {tiles, panels, dvp, block} = layout;
  const pairs = batch * heads;
  const direct = T % 4 === 0 && dvp === dv;
  const [qSize, kSize] = [tiles * dk * 4, panels * dk * 8];                 // floats per pair, packed
  const outSize = direct ? 0 : tiles * 4 * dvp;
  const vSize = dvp === dv ? 0 : S * dvp;
  const sizeOf = (t: tf.TensorInfo) => t.shape.reduce((a, b) => a * b, 1);
  const [cq, ck, cv] = [tensors.q, tensors.k, tensors.v].map(t => t.shape[2] as number);
  // Float offsets in the shared memory: the address table, raw copies, packed Q and K, V padded, out, scratch.
  const table = thread.dataStart >>> 2;
  const copies = new Map<unknown, {tensor: tf.TensorInfo; offset: number}>();  // one copy per distinct tensor
  let next = table + 4 * pairs;
  for (const tensor of [tensors.q, tensors.k, tensors.v]) {
    if (copies.has(tensor.dataId)) continue;
    copies.set(tensor.dataId, {tensor, offset: next});
    next += sizeOf(tensor);
  }
  const q0 = next;
  const k0 = q0 + pairs * qSize;
  const v0 = k0 + pairs * kSize;
  const out0 = v0 + pairs * vSize;
  // Per thread: a scratch and the tiles' state (0: this thread, 1: the worker).
  const scratch0 = Math.ceil((out0 + (direct ? batch * T * heads * dv : pairs * outSize)) / 16) * 16;
  const scratch1 = scratch0 + scratchFloats(block);
  const state0 = scratch1 + scratchFloats(block);
  const state1 = state0 + tiles * 8;
  const shared = sharedFloats(thread, 4 * (state1 + tiles * 8) - thread.dataStart);
  for (const {tensor, offset} of copies.values()) {
    const from = addressOf(tensor) >>> 2;
    shared.set(heap.subarray(from, from + sizeOf(tensor)), offset);
  }
  const rawAt = (t: tf.TensorInfo) => copies.get(t.dataId)!.offset;
  const addresses = new Int32Array(shared.buffer, 4 * table, 4 * pairs);
  const bytes = (floats: number) => 4 * floats;
  const module: HeapModule = thread.module;
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const pair = b * heads + h;
      const [qPacked, kPacked] = [q0 + pair * qSize, k0 + pair * kSize];
      if (T % 4 !== 0) shared.fill(0, qPacked + qSize - dk * 4, qPacked + qSize);   // padding queries
      if (S % 8 !== 0) shared.fill(0, kPacked + kSize - dk * 8, kPacked + kSize);   // padding keys
      module.pack(bytes(rawAt(tensors.q) + b * T * cq + qColumn + h * dk), bytes(cq), bytes(qPacked), T, dk, 4);
      module.pack(bytes(rawAt(tensors.k) + b * S * ck + kColumn + h * dk), bytes(ck), bytes(kPacked), S, dk, 8);
      let v = rawAt(tensors.v) + b * S * cv + vColumn + h * dv;
      if (vSize > 0) {                                                      // [S, dv] -> [S, dvp]
        for (let s = 0; s < S; s++) shared.copyWithin(v0 + pair * vSize + s * dvp, v + s * cv, v + s * cv + dv);
        v = v0 + pair * vSize;
      }
      const out = direct ? out0 + b * T * heads * dv + h * dv : out0 + pair * outSize;
      addresses.set([bytes(qPacked), bytes(kPacked), bytes(v), bytes(out)], 4 * pair);
    }
  }
  const [rowV, rowOut] = [bytes(vSize > 0 ? dvp : cv), bytes(direct ? heads * dv : dvp)];
  const half = tiles >> 1;
  const share = {pairs, table: bytes(table), rowV, rowOut, scratch: bytes(scratch1), state: bytes(state1), tiles: half, S, block, dk, dvp, scale};
  runOnBothThreads(thread, share, () => {
    for (let pair = 0; pair < pairs; pair++) {
      const [q, k, v, out] = addresses.subarray(4 * pair, 4 * pair + 4);
      module.attend(q + half * dk * 16, k, v, rowV, out + half * 4 * rowOut, rowOut, bytes(scratch0), bytes(state0),
                    tiles - half, S, block, dk, dvp, scale);
    }
  });
  const result = new Float32Array(thread.memory.buffer);
  if (direct) {
    heap.set(result.subarray(out0, out0 + batch * T * heads * dv), outAt >>> 2);
    return;
  }
  for (let pair = 0; pair < pairs; pair++) {                               // [tiles·4, dvp] -> T rows of dv
    const [b, h] = [Math.floor(pair / heads), pair % heads];
    for (let t = 0; t < T; t++) {
      const from = out0 + pair * outSize + t * dvp;
      heap.set(result.subarray(from, from + dv), (outAt >>> 2) + (b * T + t) * heads * dv + h * dv);
    }
  }
}

function runFused(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, attrs: FusedSizes&{qColumn: number; kColumn: number; vColumn: number; scale: number}): tf.Tensor {
  if (tf.getKernel(FUSED_KERNEL_NAME, 'wasm') == null) {
    tf.registerKernel({
      kernelName: FUSED_KERNEL_NAME, backendName: 'wasm', kernelFunc: fusedKernelFunc as unknown as tf.KernelFunc,
    });
  }
  return tf.engine().runKernel(FUSED_KERNEL_NAME, {q, k, v}, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/**
 * softmax(scale·Q·Kᵀ)·V over the last two axes, in one kernel call on the wasm backend:
 * query [..., T, dk], key [..., S, dk], value [..., S, dv] with equal leading dims ->
 * [..., T, dv]. Never forms the [T, S] weights. Not differentiable (no gradient is
 * registered), no mask; callers check `fusedAttentionFits` first.
 */
export function fusedAttention(query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, scale: number): tf.Tensor {
  const [T, dk] = query.shape.slice(-2);
  const [S, dv] = value.shape.slice(-2);
  const lead = query.shape.slice(0, -2);
  const batch = query.size / (T * dk);
  return tf.tidy(() => {
    const as3d = (x: tf.Tensor, rows: number, cols: number) => x.reshape([batch, rows, cols]);
    const out = runFused(as3d(query, T, dk), as3d(key, S, dk), as3d(value, S, dv),
                         {batch, heads: 1, T, S, dk, dv, qColumn: 0, kColumn: 0, vColumn: 0, scale});  // [B·H, T, dv]
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
    sizes: {heads: number; dk: number; dv: number; scale: number}): tf.Tensor {
  const [batch, T] = query.x.shape as [number, number];
  const S = key.x.shape[1] as number;
  return runFused(query.x, key.x, value.x, {
    batch, heads: sizes.heads, T, S, dk: sizes.dk, dv: sizes.dv,
    qColumn: query.column, kColumn: key.column, vColumn: value.column, scale: sizes.scale,
  });  // [B, T, H·dv]
}
