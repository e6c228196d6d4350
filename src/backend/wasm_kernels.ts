/** Kernels that tfjs' wasm backend lacks but training needs, registered for 'wasm'. */
import * as tf from '@tensorflow/tfjs';

interface KernelArgs {
  inputs: {[name: string]: tf.TensorInfo};
  attrs?: {[name: string]: unknown};
  backend: {
    readSync(dataId: object): ArrayLike<number>;
    makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: ArrayLike<number>): tf.TensorInfo;
  };
}

/**
 * UnsortedSegmentSum: out[s] = sum of x[i] over i with segmentIds[i] = s. It is the gradient
 * of gather, so without it `tf.layers.embedding` cannot train on wasm ("Kernel
 * 'UnsortedSegmentSum' not registered for backend 'wasm'"). It runs in JS on the wasm heap;
 * embedding gradients are small next to the matMuls.
 */
function unsortedSegmentSum({inputs, attrs, backend}: KernelArgs): tf.TensorInfo {
  const {x, segmentIds} = inputs;
  const numSegments = attrs!.numSegments as number;
  const values = backend.readSync(x.dataId);
  const ids = backend.readSync(segmentIds.dataId);
  const innerShape = x.shape.slice(segmentIds.shape.length);
  const inner = innerShape.reduce((a, b) => a * b, 1);
  const out = x.dtype === 'int32' ? new Int32Array(numSegments * inner) : new Float32Array(numSegments * inner);
  for (let i = 0; i < ids.length; i++) {
    const segment = ids[i];
    if (segment < 0 || segment >= numSegments) continue;  // as TensorFlow: out-of-range ids are dropped
    const from = i * inner;
    const to = segment * inner;
    for (let j = 0; j < inner; j++) out[to + j] += values[from + j];
  }
  return backend.makeOutput([numSegments, ...innerShape], x.dtype, undefined, out);
}

let registered = false;
/** Registers the missing kernels once; harmless when the wasm backend is never used. */
export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  if (tf.getKernel('UnsortedSegmentSum', 'wasm') == null) {
    tf.registerKernel({
      kernelName: 'UnsortedSegmentSum', backendName: 'wasm',
      kernelFunc: unsortedSegmentSum as unknown as tf.KernelFunc,
    });
  }
}
