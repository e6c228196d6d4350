/**
 * Kernels for tfjs' wasm backend that make attention fast there: a batched matMul in
 * WebAssembly SIMD (the C kernel batch_matmul_4x4, since wasm's own batched matMul runs a
 * scalar loop), a slice that does not copy its whole input, and a per-row pick. Each
 * registers on first use.
 */
import * as tf from '@tensorflow/tfjs';
import {sizeOf, withExplicitTransposes} from '../attention/matmul';
import {runWasmKernel} from './wasm_kernel_registry';
import type {WasmKernelArgs} from './wasm_kernel_registry';
import {instantiateKernels} from './kernels/kernel_module';
import type {KernelExports} from './kernels/kernel_module';

// ---------------------------------------------------------------------------------------
// A WebAssembly SIMD kernel for small batched products.

/**
 * `batch_matmul_4x4` (src/backend/kernels/batch_matmul_4x4_wasmsimd.c) on a memory of its
 * own: for each batch n, C[n] = scale·A[n]·B[n] with A [M, K], B [K, N], C [M, N]
 * row-major float32 at byte offsets a, b, c, and M and N multiples of 4.
 */
interface SimdKernel {
  kernels: KernelExports;
  memory: WebAssembly.Memory;
}

/** undefined: not tried yet; null: this runtime has no wasm SIMD. */
let simdKernel: SimdKernel|null|undefined;

function loadSimdKernel(): SimdKernel|null {
  if (simdKernel !== undefined) return simdKernel;
  const memory = new WebAssembly.Memory({initial: 1});
  const kernels = instantiateKernels(memory);
  simdKernel = kernels == null ? null : {kernels, memory};  // null: no WebAssembly SIMD (old browsers), tf.matMul instead
  return simdKernel;
}

/**
 * The most bytes (A, B and C with rows padded to multiples of 4) that one call of the SIMD
 * kernel may use. Its memory grows to the largest call and never shrinks, so the kernel is
 * kept to small products: 64 MiB holds the products of (B, H, T) = (8, 4, 512), d = 64.
 */
export const SIMD_MAX_BYTES = 64 * 2 ** 20;

/** Whether `simdBatchMatMul` can take this product: a SIMD runtime and at most SIMD_MAX_BYTES. */
export function simdFits(batches: number, m: number, k: number, n: number): boolean {
  const [mp, np] = [(m + 3) & ~3, (n + 3) & ~3];
  return 4 * batches * (mp * k + k * np + mp * np) <= SIMD_MAX_BYTES && loadSimdKernel() != null;
}

/**
 * Copies `batches` matrices [rows, cols] from `src` into `dst` at `offset`, rows `dstRows`
 * apart per batch and `dstCols` apart within one (the kernel's padded layout; the padding
 * is left as it is).
 */
function copyIn(
    src: Float32Array, dst: Float32Array, offset: number, batches: number, rows: number, cols: number,
    dstRows: number, dstCols: number): void {
  if (rows === dstRows && cols === dstCols) {
    dst.set(src.subarray(0, batches * rows * cols), offset);
    return;
  }
  for (let batch = 0; batch < batches; batch++) {
    const from = batch * rows * cols;
    const to = offset + batch * dstRows * dstCols;
    if (cols === dstCols) {
      dst.set(src.subarray(from, from + rows * cols), to);
    } else {
      for (let r = 0; r < rows; r++) dst.set(src.subarray(from + r * cols, from + (r + 1) * cols), to + r * dstCols);
    }
  }
}


/** Name of the kernel, registered for 'wasm' on first use. */
const SIMD_KERNEL_NAME = 'TfjsAttentionSimdBatchMatMul';

/**
 * The kernel function: copies a [..., M, K] and b [..., K, N] from the wasm heap into the
 * SIMD module's memory (padding M and N to multiples of 4), runs it, and copies C into a
 * new output in the heap. Written as a tfjs kernel so that no JS array is allocated on the way: an
 * intermediate Float32Array and tf.tensor() took 2.5 ms for a 2 MB result.
 */
function simdKernelFunc(args: WasmKernelArgs): tf.TensorInfo {
  const kernel = loadSimdKernel()!;
  const backend = args.backend;
  const {a, b} = args.inputs;
  const scale = (args.attrs?.scale as number|undefined) ?? 1;
  const [m, k] = a.shape.slice(-2);
  const n = b.shape[b.rank - 1];
  const lead = a.shape.slice(0, -2);
  const batches = sizeOf(lead);
  const [mp, np] = [(m + 3) & ~3, (n + 3) & ~3];
  const [aLen, bLen, cLen] = [batches * mp * k, batches * k * np, batches * mp * np];
  const memory = kernel.memory;
  const bytes = 4 * (aLen + bLen + cLen);
  if (memory.buffer.byteLength < bytes) memory.grow(Math.ceil((bytes - memory.buffer.byteLength) / 65536));
  const heap = new Float32Array(memory.buffer, 0, aLen + bLen + cLen);
  if (mp !== m) heap.fill(0, 0, aLen);                                  // padding rows of A
  if (np !== n) heap.fill(0, aLen, aLen + bLen);                        // padding columns of B
  copyIn(backend.typedArrayFromHeap(a), heap, 0, batches, m, k, mp, k);
  copyIn(backend.typedArrayFromHeap(b), heap, aLen, batches, k, n, k, np);
  kernel.kernels.batch_matmul_4x4(0, 4 * aLen, 4 * (aLen + bLen), batches, mp, k, np, scale);
  const output = backend.makeOutput([...lead, m, n], 'float32');       // [..., M, N]
  const out = backend.typedArrayFromHeap(output);                       // after makeOutput, which may grow the heap
  const c = heap.subarray(aLen + bLen);
  if (mp === m && np === n) {
    out.set(c);
  } else {
    for (let batch = 0; batch < batches; batch++) {
      for (let r = 0; r < m; r++) {
        const from = (batch * mp + r) * np;
        out.set(c.subarray(from, from + n), (batch * m + r) * n);
      }
    }
  }
  return output;
}

/**
 * scale·op(a)·op(b) for batched float32 operands with equal batch dims, op(a) [..., M, K]
 * and op(b) [..., K, N], on the SIMD kernel: about 20 GFLOP/s on this machine for
 * [32, 16, 64]·[32, 64, 16] or [32, 128, 16]·[32, 16, 128], where wasm's batched matMul
 * runs a scalar loop at about 1 GFLOP/s. The flags become explicit transposes (wasm's
 * transpose kernel is faster than a JS loop), chosen as in matMulFast to move the fewest
 * elements. wasm backend only; not differentiable (no gradient is registered): called from
 * custom gradients, or where no gradient is recorded. Callers check `simdFits` first.
 */
export function simdBatchMatMul(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false, scale = 1): tf.Tensor {
  const run = (left: tf.Tensor, right: tf.Tensor) => runWasmKernel(SIMD_KERNEL_NAME, simdKernelFunc, {a: left, b: right}, {scale});
  return withExplicitTransposes(a, b, transposeA, transposeB, run);  // [..., M, N]
}

// ---------------------------------------------------------------------------------------
// Slicing without copying the whole input.

/** Name of the slice kernel below, registered for 'wasm' on first use. */
const SLICE_KERNEL_NAME = 'TfjsAttentionSlice';

/**
 * tf.slice for wasm, reading the input in place. tfjs-backend-wasm 4.22's Slice starts with
 * readSync(x), a copy of the whole input, so that taking a 128 KB block of a 2 MB key tensor
 * cost 1-3 ms, and splitting n pairs cost n full copies. This copies only the slice: runs of
 * contiguous elements, from a view of the heap.
 */
function sliceKernelFunc(args: WasmKernelArgs): tf.TensorInfo {
  const backend = args.backend;
  const {x} = args.inputs;
  const begin = args.attrs!.begin as number[];
  const size = args.attrs!.size as number[];
  const output = backend.makeOutput(size, x.dtype);
  const src = backend.typedArrayFromHeap(x);                           // views, taken after makeOutput
  const dst = backend.typedArrayFromHeap(output);
  const rank = x.shape.length;
  const strides = new Array<number>(rank).fill(1);
  for (let axis = rank - 2; axis >= 0; axis--) strides[axis] = strides[axis + 1] * x.shape[axis + 1];
  // The trailing axes taken whole, and the last partial one, form runs of contiguous elements.
  let axis = rank - 1;
  let run = 1;
  while (axis >= 0 && begin[axis] === 0 && size[axis] === x.shape[axis]) run *= x.shape[axis--];
  if (axis < 0) {
    dst.set(src.subarray(0, run));
    return output;
  }
  run *= size[axis];
  const runs = sizeOf(size.slice(0, axis));
  const index = new Array<number>(axis).fill(0);
  for (let n = 0; n < runs; n++) {
    let offset = begin[axis] * strides[axis];
    for (let a = 0; a < axis; a++) offset += (begin[a] + index[a]) * strides[a];
    dst.set(src.subarray(offset, offset + run), n * run);
    for (let a = axis - 1; a >= 0; a--) {                              // next index, last axis fastest
      if (++index[a] < size[a]) break;
      index[a] = 0;
    }
  }
  return output;
}

/** tf.slice(x, begin, size) with full begin and size (no -1), fast on wasm (see sliceKernelFunc). */
export function sliceFast(x: tf.Tensor, begin: number[], size: number[]): tf.Tensor {
  if (tf.getBackend() !== 'wasm' || x.dtype === 'string') return tf.slice(x, begin, size);
  return runWasmKernel(SLICE_KERNEL_NAME, sliceKernelFunc, {x}, {begin, size});
}

/** x [L..., R, C] split into its prod(L) matrices [R, C], each by sliceFast. */
export function splitMatrices(x: tf.Tensor): tf.Tensor[] {
  const [rows, cols] = x.shape.slice(-2);
  const count = x.size / (rows * cols);
  const flat = x.reshape([count, rows, cols]);                          // [N, R, C]
  return Array.from({length: count}, (_, n) => sliceFast(flat, [n, 0, 0], [1, rows, cols]).reshape([rows, cols]));
}

/** Name of the row-pick kernel below, registered for 'wasm' on first use. */
const PICK_KERNEL_NAME = 'TfjsAttentionPickPerRow';

/** out[r] = x[r, index[r]] for x [R, C] float32 and index [R] int32, read in place. */
function pickKernelFunc(args: WasmKernelArgs): tf.TensorInfo {
  const backend = args.backend;
  const {x, index} = args.inputs;
  const [rows, cols] = x.shape;
  const output = backend.makeOutput([rows], 'float32');
  const src = backend.typedArrayFromHeap(x);
  const at = backend.typedArrayFromHeap(index) as unknown as Int32Array;
  const dst = backend.typedArrayFromHeap(output);
  for (let r = 0; r < rows; r++) dst[r] = src[r * cols + at[r]];
  return output;
}

/**
 * x[r, index[r]] for each row r of x [R, C] (float32) with index [R] (int32) -> [R]. On wasm
 * a kernel reading x in place: tf.gather on the flattened x took ~3 ms for 8192 rows of a
 * [8192, 512] tensor, this ~0.05 ms.
 */
export function pickPerRow(x: tf.Tensor, index: tf.Tensor): tf.Tensor {
  const [rows, cols] = x.shape;
  if (tf.getBackend() !== 'wasm') {
    return tf.tidy(() => tf.gather(x.reshape([-1]), tf.add(tf.mul(tf.range(0, rows, 1, 'int32'), tf.scalar(cols, 'int32')), index)));
  }
  return runWasmKernel(PICK_KERNEL_NAME, pickKernelFunc, {x, index});
}
