/** A dense layer's product x·w + b for inference on wasm, as one kernel (`project` of wasm_heap_module.ts). */
import * as tf from '@tensorflow/tfjs';
import {heapModule} from './wasm_heap_module';
import type {WasmBackendLike} from './wasm_heap_module';

const DENSE_KERNEL_NAME = 'TfjsAttentionDense';

/**
 * x [N, dIn] · w [dIn, dOut] (+ b [dOut]) -> [N, dOut] on the heap: x is packed by fours
 * into a work buffer, w read in place (copied with padded rows when dOut is not a multiple
 * of 8), the result written in place when N is a multiple of 4 and dOut of 8.
 */
function denseKernelFunc(args: {inputs: tf.NamedTensorMap; backend: unknown}): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const module = heapModule(backend)!;
  const {x, w, b} = args.inputs;
  const [n, dIn] = x.shape as [number, number];
  const dOut = w.shape[1] as number;
  const tiles = Math.ceil(n / 4);
  const dOutP = Math.ceil(dOut / 8) * 8;
  const padW = dOutP !== dOut;
  const padOut = padW || tiles * 4 !== n;
  const xFloats = tiles * dIn * 4;
  const wFloats = padW ? dIn * dOutP + dOutP : 0;                          // w and b, padded
  const outFloats = padOut ? tiles * 4 * dOutP : 0;
  const output = backend.makeOutput([n, dOut], 'float32');
  const allocation = backend.wasm._malloc(4 * (xFloats + wFloats + outFloats) + 64);
  const base = Math.ceil((allocation >>> 0) / 64) * 64;                  // cache-line aligned; unsigned above 2 GiB
  const address = (t: tf.TensorInfo) => backend.typedArrayFromHeap(t).byteOffset;
  try {
    const heap = new Float32Array(backend.typedArrayFromHeap(output).buffer);
    const at = base >>> 2;
    if (n % 4 !== 0) heap.fill(0, at + (tiles - 1) * dIn * 4, at + xFloats);
    module.pack(address(x), 4 * dIn, base, n, dIn, 4);                      // [N, dIn] -> [tiles][dIn][4]
    let [wAt, rowW, bAt] = [address(w), 4 * dOut, b == null ? 0 : address(b)];
    if (padW) {
      const wp = at + xFloats;
      heap.fill(0, wp, wp + wFloats);
      for (let k = 0; k < dIn; k++) heap.copyWithin(wp + k * dOutP, (wAt >>> 2) + k * dOut, (wAt >>> 2) + (k + 1) * dOut);
      if (b != null) heap.copyWithin(wp + dIn * dOutP, bAt >>> 2, (bAt >>> 2) + dOut);
      [wAt, rowW, bAt] = [4 * wp, 4 * dOutP, b == null ? 0 : 4 * (wp + dIn * dOutP)];
    }
    if (!padOut) {
      module.project(base, wAt, rowW, bAt, address(output), 4 * dOut, tiles, dIn, dOutP);
    } else {
      const op = at + xFloats + wFloats;
      module.project(base, wAt, rowW, bAt, 4 * op, 4 * dOutP, tiles, dIn, dOutP);
      const to = address(output) >>> 2;
      for (let r = 0; r < n; r++) heap.copyWithin(to + r * dOut, op + r * dOutP, op + r * dOutP + dOut);
    }
  } finally {
    backend.wasm._free(allocation);
  }
  return output;
}

/**
 * The most bytes of w that `denseFused` takes. Its kernel reads all of w for every four rows
 * of x, from cache while w fits in it; XNNPACK, which blocks for the cache, takes larger w.
 */
export const DENSE_FUSED_MAX_WEIGHT_BYTES = 256 * 2 ** 10;

/** Whether `denseFused` can take w [dIn, dOut]: the wasm backend with SIMD, and a small w. */
export function denseFusedFits(dIn: number, dOut: number): boolean {
  return tf.getBackend() === 'wasm' && 4 * dIn * dOut <= DENSE_FUSED_MAX_WEIGHT_BYTES && dIn > 0 && dOut > 0 &&
      heapModule(tf.backend() as unknown as WasmBackendLike) != null;
}

/**
 * x [..., dIn] · w [dIn, dOut] (+ b [dOut]) -> [..., dOut] in one wasm SIMD kernel, for
 * inference (not differentiable); callers check `denseFusedFits`. Faster than XNNPACK's
 * matMul for attention's projections: 0.45 against 0.70 ms for [1024, 64]·[64, 64].
 */
export function denseFused(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor|null): tf.Tensor {
  if (tf.getKernel(DENSE_KERNEL_NAME, 'wasm') == null) {
    tf.registerKernel({kernelName: DENSE_KERNEL_NAME, backendName: 'wasm', kernelFunc: denseKernelFunc as unknown as tf.KernelFunc});
  }
  const [dIn, dOut] = w.shape as [number, number];
  return tf.tidy(() => {
    const inputs: tf.NamedTensorMap = {x: x.reshape([-1, dIn]), w};
    if (b != null) inputs.b = b;
    const y = tf.engine().runKernel(DENSE_KERNEL_NAME, inputs) as tf.Tensor;   // [N, dOut]
    return y.reshape([...x.shape.slice(0, -1), dOut]);
  });
}
