/** What the project's wasm kernels share: the backend object they use, and running a kernel that registers itself on first use. */
import * as tf from '@tensorflow/tfjs';

/** What the kernels use of tfjs-backend-wasm's backend object. */
export interface WasmBackendLike {
  /** A view of a tensor's memory in the wasm heap (invalid once the heap grows). */
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  /** The Emscripten module: its exports (with the memory), malloc and free. */
  wasm: {asm?: {memory?: WebAssembly.Memory}; _malloc(bytes: number): number; _free(address: number): void};
}

/** The arguments tfjs passes a kernel function, with the wasm backend. */
export interface WasmKernelArgs {
  inputs: tf.NamedTensorMap;
  attrs?: {[name: string]: unknown};
  backend: WasmBackendLike;
}

/**
 * Runs the wasm kernel `name`, registering `kernelFunc` under that name for the wasm backend
 * the first time. The kernels are not differentiable: no gradient is registered.
 */
export function runWasmKernel(
    name: string, kernelFunc: (args: WasmKernelArgs) => tf.TensorInfo, inputs: tf.NamedTensorMap,
    attrs: object = {}): tf.Tensor {
  if (tf.getKernel(name, 'wasm') == null) {
    tf.registerKernel({kernelName: name, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc});
  }
  return tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap) as tf.Tensor;
}

/** As `runWasmKernel`, for a kernel with several outputs: they come back in its order. */
export function runWasmKernelOutputs(
    name: string, kernelFunc: (args: WasmKernelArgs) => tf.TensorInfo[], inputs: tf.NamedTensorMap,
    attrs: object = {}): tf.Tensor[] {
  if (tf.getKernel(name, 'wasm') == null) {
    tf.registerKernel({kernelName: name, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc});
  }
  return tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap) as tf.Tensor[];
}
