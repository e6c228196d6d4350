/**
 * A dense product x·w (+ b) with its gradient on tfjs' wasm backend, both ways through
 * `project_4x8` (src/backend/kernels/project_4x8_wasmsimd.c): the forward is the inference
 * kernel (wasm_dense.ts), the backward one kernel that computes dx = dy·wᵀ, dw = xᵀ·dy and
 * db = Σ dy (wasm_projection_gradients.ts, as the attention layer's backward computes its
 * projections'). It takes the place of tf.matMul and its gradient (XNNPACK's product behind
 * explicit transposes) for the projections that train outside the layer's fused kernels: the
 * output projection Wo, and MultiHeadAttention's projections where the key is its own input.
 */
import * as tf from '@tensorflow/tfjs';
import {denseFused} from './wasm_dense';
import {heapSpace, inputGradient, inputGradientFloats, weightGradientFloats, weightGradients} from './wasm_projection_gradients';
import type {Gradients} from './wasm_projection_gradients';
import {copyRows, heapAddress, heapFloats, heapModule, roundUp, withHeapBuffer} from './wasm_heap_module';
import {runWasmKernelOutputs} from './wasm_kernel_registry';
import type {WasmKernelArgs} from './wasm_kernel_registry';

const BACKWARD_KERNEL_NAME = 'TfjsAttentionDenseBackward';

/**
 * Floats of the backward's work buffer: dy's copy with rows of dOut rounded up to 8 (where dOut
 * is not a multiple of 8: weightGradients reads dy's rows by eights), then the larger of the two
 * products' buffers (each product reuses it).
 */
function backwardFloats(n: number, dIn: number, dOut: number, withBias: boolean): {gFloats: number; total: number} {
  const dOutP = roundUp(dOut, 8);
  const gFloats = dOutP === dOut ? 0 : roundUp(n * dOutP, 16);
  return {gFloats, total: gFloats + Math.max(inputGradientFloats(n, dOut, dIn), weightGradientFloats(n, dIn, withBias, dOut))};
}

/** x [N, dIn], w [dIn, dOut] and dy [N, dOut] -> dx [N, dIn], dw [dIn, dOut] (and db [dOut] with attrs.bias). */
function denseBackwardKernelFunc(args: WasmKernelArgs): tf.TensorInfo[] {
  const backend = args.backend;
  const module = heapModule(backend)!;
  const {x, w, dy} = args.inputs;
  const withBias = (args.attrs as {bias: boolean}).bias;
  const [n, dIn] = x.shape as [number, number];
  const dOut = w.shape[1] as number;
  const gradX = backend.makeOutput([n, dIn], 'float32');
  const gradW = backend.makeOutput([dIn, dOut], 'float32');
  const gradB = withBias ? backend.makeOutput([dOut], 'float32') : undefined;
  const {gFloats, total} = backwardFloats(n, dIn, dOut, withBias);
  withHeapBuffer(backend, total, base => {
    const b0 = base >>> 2;
    const heap = heapFloats(backend);
    let g: Gradients = {at: heapAddress(backend, dy) >>> 2, width: dOut};
    if (gFloats > 0) {                                                  // dy [N, dOut] -> [N, dOutP], zeros past dOut
      const dOutP = roundUp(dOut, 8);
      heap.fill(0, b0, b0 + n * dOutP);
      copyRows(heap, b0, dOutP, heap, g.at, dOut, n, dOut);
      g = {at: b0, width: dOutP};
    }
    const space = heapSpace(backend, module, b0 + gFloats, b0 + total);
    inputGradient(space, g, 0, n, [w], gradX);                          // dx = dy·wᵀ
    weightGradients(space, x, g, 0, [[gradW, gradB]]);                   // dw = xᵀ·dy, db = Σ dy
  });
  return gradB == null ? [gradX, gradW] : [gradX, gradW, gradB];
}

/**
 * x [N, dIn] · w [dIn, dOut] (+ b [dOut]) -> [N, dOut], differentiable, on wasm with the SIMD
 * kernels; callers check `denseFusedFits(dIn, dOut)`. The gradients are the plain product's
 * (the same sums as tf.matMul's, within float rounding).
 */
export const denseTrainable = tf.customGrad((...args: Array<tf.Tensor|tf.GradSaveFunc>) => {
  const [x, w] = args as tf.Tensor2D[];
  const hasBias = args.length === 4;
  const save = args[args.length - 1] as tf.GradSaveFunc;
  save([x, w]);
  return {
    value: denseFused(x, w, hasBias ? args[2] as tf.Tensor1D : null),   // [N, dOut]
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xS, wS] = saved;
      return runWasmKernelOutputs(BACKWARD_KERNEL_NAME, denseBackwardKernelFunc, {x: xS, w: wS, dy}, {bias: hasBias});
    },
  };
}) as (x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D) => tf.Tensor2D;
