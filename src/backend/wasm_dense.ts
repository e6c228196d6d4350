/** A dense layer's product x·w + b for inference on wasm, as one kernel (`project_4x8`, src/backend/kernels/project_4x8_wasmsimd.c). */
import * as tf from '@tensorflow/tfjs';
import {copyRows, heapAddress, heapFloats, heapModule, roundUp, withHeapBuffer} from './wasm_heap_module';
import {packedByFours} from './kernels/kernel_module';
import type {KernelExports} from './kernels/kernel_module';
import {runWasmKernel} from './wasm_kernel_registry';
import type {WasmBackendLike, WasmKernelArgs} from './wasm_kernel_registry';

const DENSE_KERNEL_NAME = 'TfjsAttentionDense';

/**
 * out = x·w (+ b) for x packed by fours at byte `xPacked` ([tiles][dIn][4], see `pack_rows`):
 * writes tiles·4 rows of w's width rounded up to 8 floats, `outRow` floats apart, at byte
 * `out`. w [dIn, dOut] (and b) are read in place, or copied with padded rows when dOut is
 * not a multiple of 8.
 */
export function projectPacked(
    backend: WasmBackendLike, module: KernelExports, x: {packed: number; tiles: number; dIn: number},
    w: tf.TensorInfo, b: tf.TensorInfo|null|undefined, out: number, outRow: number): void {
  const dOut = w.shape[1] as number;
  const dOutP = roundUp(dOut, 8);
  const [wAt, bAt] = [heapAddress(backend, w), b == null ? 0 : heapAddress(backend, b)];
  const project = (weights: number, bias: number) =>
    module.project_4x8(x.packed, ...packedByFours(x.dIn), weights, 4 * dOutP, bias, out, 4 * outRow, x.tiles, x.dIn, dOutP);
  if (dOutP === dOut) {
    project(wAt, bAt);
    return;
  }
  withHeapBuffer(backend, x.dIn * dOutP + dOutP, padded => {           // w [dIn, dOutP], then b [dOutP]
    const heap = heapFloats(backend);
    const [to, wFrom] = [padded >>> 2, wAt >>> 2];
    heap.fill(0, to, to + x.dIn * dOutP + dOutP);
    copyRows(heap, to, dOutP, heap, wFrom, dOut, x.dIn, dOut);
    if (b != null) heap.copyWithin(to + x.dIn * dOutP, bAt >>> 2, (bAt >>> 2) + dOut);
    project(padded, b == null ? 0 : padded + 4 * x.dIn * dOutP);
  });
}

/**
 * Packs the rows of x [N, dIn] by fours into the heap at byte `packed` (`pack_rows` zeroes the padding rows):
 * the layout of `project_4x8` and of `attend_4x8`'s queries.
 */
export function packRows(backend: WasmBackendLike, module: KernelExports, x: tf.TensorInfo, packed: number): {packed: number; tiles: number; dIn: number} {
  const dIn = x.shape[x.shape.length - 1] as number;
  const n = x.shape.reduce((a, b) => a * b, 1) / dIn;
  const tiles = Math.ceil(n / 4);
  module.pack_rows(heapAddress(backend, x), 4 * dIn, packed, n, dIn, 4);    // [N, dIn] -> [tiles][dIn][4]
  return {packed, tiles, dIn};
}

/**
 * x [N, dIn] · w [dIn, dOut] (+ b [dOut]) -> [N, dOut] on the heap: x packed by fours into
 * a work buffer, the result written in place when N is a multiple of 4 and dOut of 8.
 */
function denseKernelFunc(args: WasmKernelArgs): tf.TensorInfo {
  const backend = args.backend;
  const module = heapModule(backend)!;
  const {x, w, b} = args.inputs;
  const [n, dIn] = x.shape as [number, number];
  const dOut = w.shape[1] as number;
  const tiles = Math.ceil(n / 4);
  const dOutP = roundUp(dOut, 8);
  const padOut = dOutP !== dOut || tiles * 4 !== n;
  const output = backend.makeOutput([n, dOut], 'float32');
  withHeapBuffer(backend, tiles * dIn * 4 + (padOut ? tiles * 4 * dOutP : 0), base => {
    const packed = packRows(backend, module, x, base);
    if (!padOut) {
      projectPacked(backend, module, packed, w, b, heapAddress(backend, output), dOut);
      return;
    }
    const out = base + 4 * tiles * dIn * 4;
    projectPacked(backend, module, packed, w, b, out, dOutP);
    const heap = heapFloats(backend);
    const to = heapAddress(backend, output) >>> 2;
    copyRows(heap, to, dOut, heap, out >>> 2, dOutP, n, dOut);
  });
  return output;
}

/**
 * The most bytes of w that `denseFused` takes. Its kernel reads all of w for every four rows
 * of x, from cache while w fits in it; XNNPACK, which blocks for the cache, takes larger w.
 */
export const DENSE_FUSED_MAX_WEIGHT_BYTES = 256 * 2 ** 10;

/** Whether `denseFused` can take w [dIn, dOut]: the wasm backend with SIMD, and a small w. */
export function denseFusedFits(dIn: number, dOut: number): boolean {
  return tf.getBackend() === 'wasm' && denseFusedSizesFit(dIn, dOut) && heapModule(tf.backend() as unknown as WasmBackendLike) != null;
}

/** The size conditions of `denseFusedFits`: a non-empty w of at most DENSE_FUSED_MAX_WEIGHT_BYTES. */
export function denseFusedSizesFit(dIn: number, dOut: number): boolean {
  return 4 * dIn * dOut <= DENSE_FUSED_MAX_WEIGHT_BYTES && dIn > 0 && dOut > 0;
}

/**
 * x [..., dIn] · w [dIn, dOut] (+ b [dOut]) -> [..., dOut] in one wasm SIMD kernel, for
 * inference (not differentiable); callers check `denseFusedFits`. Faster than XNNPACK's
 * matMul for attention's projections: 0.45 against 0.70 ms for [1024, 64]·[64, 64].
 */
export function denseFused(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor|null): tf.Tensor {
  const [dIn, dOut] = w.shape as [number, number];
  return tf.tidy(() => {
    const inputs: tf.NamedTensorMap = {x: x.reshape([-1, dIn]), w};
    if (b != null) inputs.b = b;
    const y = runWasmKernel(DENSE_KERNEL_NAME, denseKernelFunc, inputs);   // [N, dOut]
    return y.reshape([...x.shape.slice(0, -1), dOut]);
  });
}
