/**
 * The C kernels (src/backend/kernels/) instantiated on the memory of tfjs' wasm backend
 * itself, so that they read tensors in place and write their outputs straight into output
 * tensors, and the helpers their callers share: work buffers taken from the heap, views of
 * it, and row copies.
 */
import type * as tf from '@tensorflow/tfjs';
import {instantiateKernels} from './kernels/kernel_module';
import type {KernelExports} from './kernels/kernel_module';
import type {WasmBackendLike} from './wasm_kernel_registry';

/** The kernels per backend memory; null where they cannot run (no SIMD, a shared memory). */
const modules = new WeakMap<object, KernelExports|null>();

/**
 * The kernels instantiated on this backend's heap (once per heap), or null where it cannot
 * run: a runtime without wasm SIMD, or tfjs' threaded build, whose heap is a shared memory.
 */
export function heapModule(backend: WasmBackendLike): KernelExports|null {
  const memory = backend.wasm?.asm?.memory;
  if (!(memory instanceof WebAssembly.Memory)) return null;
  let module = modules.get(memory);
  if (module !== undefined) return module;
  // The threaded build's memory is shared, and a shared memory needs a matching import.
  const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
  module = shared ? null : instantiateKernels(memory);
  modules.set(memory, module);
  return module;
}

/**
 * Runs `fn` with a buffer of `floats` float32 from the heap, cache-line aligned, freed
 * afterwards even if `fn` throws. `fn` gets its byte address; views of the heap must be
 * taken inside `fn` (the allocation may grow the heap). Addresses are unsigned: the heap
 * may pass 2 GiB, where wasm's malloc returns negative int32s.
 */
export function withHeapBuffer<R>(backend: WasmBackendLike, floats: number, fn: (address: number) => R): R {
  const allocation = backend.wasm._malloc(4 * floats + 64);
  if (allocation === 0) {
    throw new Error(`tfjs-attention: the wasm heap has no room for ${4 * floats + 64} bytes of work buffers (it stops at 4 GiB)`);
  }
  try {
    return fn(Math.ceil((allocation >>> 0) / 64) * 64);
  } finally {
    backend.wasm._free(allocation);
  }
}

/** A Float32Array over the whole heap (valid until the heap grows). */
export function heapFloats(backend: WasmBackendLike): Float32Array {
  return new Float32Array(backend.wasm.asm!.memory!.buffer);
}

/** The byte address of a tensor's data in the heap. */
export function heapAddress(backend: WasmBackendLike, t: tf.TensorInfo): number {
  return backend.typedArrayFromHeap(t).byteOffset;
}

/**
 * Copies `rows` rows of `width` floats from `src` (rows `srcRow` floats apart from float
 * `from`) to `dst` (rows `dstRow` apart from float `to`): padding or unpadding rows, or
 * taking one head's columns. src and dst may be the same array.
 */
export function copyRows(
    dst: Float32Array, to: number, dstRow: number, src: Float32Array, from: number, srcRow: number, rows: number, width: number): void {
  if (srcRow === width && dstRow === width) {                 // contiguous: one copy
    if (src === dst) dst.copyWithin(to, from, from + rows * width);
    else dst.set(src.subarray(from, from + rows * width), to);
    return;
  }
  const apart = src !== dst || to + rows * dstRow <= from || from + rows * srcRow <= to;
  if (apart && width <= NARROW_ROW) {                          // short rows: a loop costs less than a call per row
    for (let r = 0; r < rows; r++) {
      const [d0, s0] = [to + r * dstRow, from + r * srcRow];
      for (let c = 0; c < width; c++) dst[d0 + c] = src[s0 + c];
    }
    return;
  }
  for (let r = 0; r < rows; r++) {
    const start = from + r * srcRow;
    if (src === dst) dst.copyWithin(to + r * dstRow, start, start + width);
    else dst.set(src.subarray(start, start + width), to + r * dstRow);
  }
}

/**
 * Widest rows (floats) that `copyRows` copies by a loop rather than by a call per row
 * (copyWithin, or set from a view). Measured in Node 20, 16 rows: 16 floats 0.7 ns per float
 * by the loop, 0.9 by copyWithin, 1.9 by views; 64 floats 1.5, 0.3 and 0.5.
 */
const NARROW_ROW = 24;

/** n rounded up to a multiple of `multiple`. */
export function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

