/**
 * The gradients of dense products y = x·W (+ b) from dy, by `project_4x8`
 * (src/backend/kernels/project_4x8_wasmsimd.c): dx = dy·Wᵀ (`inputGradient`: dy packed by fours,
 * W transposed by `pack_rows`) and dW = xᵀ·dy, db = Σ dy (`weightGradients`: xᵀ read in place,
 * the biases' gradients one more tile, of ones). Several weights that read the same input
 * ([W1 | W2 | …], the attention layer's Wq, Wk and Wv) make one product. The products run in a
 * `ProductSpace`: tfjs' heap on this thread (`heapSpace`), or the second thread's shared memory,
 * queued as calls that both threads share (`sharedSpace`). The layer's backward
 * (wasm_fused_layer_training.ts) and the dense layer's (wasm_dense_training.ts) call them.
 */
import * as tf from '@tensorflow/tfjs';
import {projectionChunks} from './wasm_fused_attention';
import {copyRows, heapAddress, heapFloats, roundUp} from './wasm_heap_module';
import {packedByFours, transposedInPlace} from './kernels/kernel_module';
import type {KernelExports} from './kernels/kernel_module';
import type {WasmBackendLike} from './wasm_kernel_registry';

/**
 * The group by which `inputGradient` packs the weights' d rows (pack_rows' groups are powers of
 * two): one group, so that the pack is their transpose, rows `transposedWidth(d)` floats apart,
 * zeros past d; at least 8, project_4x8 reading d rounded up to 8 columns.
 */
function transposedWidth(d: number): number {
  return Math.max(8, 2 ** Math.ceil(Math.log2(d)));
}

/** Floats of the work buffers of `inputGradient` (rows of G, m columns, into d columns) and of `weightGradients` (d features of rows). */
export function inputGradientFloats(rows: number, m: number, d: number): number {
  const tileRows = Math.ceil(rows / 4) * 4;
  return roundUp(tileRows * m + m * transposedWidth(d) + tileRows * roundUp(d, 8) + d * m, 16);  // G packed, Wᵀ, the product, W's copy
}
export function weightGradientFloats(rows: number, d: number, withBias: boolean, m: number): number {
  const tiles = Math.ceil(d / 4);
  // The product (and its bias tile), the bias tile's x, the input's copy, and the tile of its last d % 4 features:
  // taken only where d is not a multiple of 4, but counted for every d, so that the callers' bounds from the larger of
  // two widths hold.
  return roundUp((tiles + (withBias ? 1 : 0)) * 4 * roundUp(m, 8) + 4 + roundUp(rows * d, 4) + 4 * rows, 16);
}

/** G: a matrix at float `at` of a product space's memory, rows of `width` floats. */
export interface Gradients {
  at: number;
  width: number;
}

/**
 * Where the projections' gradients are computed: in tfjs' heap on this thread (`heapSpace`),
 * or in the worker's shared memory on both (`sharedSpace`). The weights and inputs are read
 * from the heap and the results written there either way.
 */
export interface ProductSpace {
  backend: WasmBackendLike;
  /** The memory of G and of the work buffers. */
  mem: Float32Array;
  /** `mem` is tfjs' heap: a result that needs no padding is written into its tensor. */
  inHeap: boolean;
  /** Float index in `mem` where a product's work buffers of `floats` floats may start. */
  take(floats: number): number;
  /**
   * A call of pack_rows (its arguments, byte addresses in `mem`, reading G or what was written into `mem` before):
   * made now, or queued to run before the queued products.
   */
  pack(args: number[]): void;
  /** A call of project_4x8 (its arguments, byte addresses in `mem`): made now, or queued. */
  project(args: number[]): void;
  /** Copies a result out, once the calls so far are made: now, or after the queue. */
  then(copy: () => void): void;
}

/**
 * The heap's space: each product made at once, in the work buffer from float `work` to `end`
 * (each reuses it; one that would pass `end` throws rather than write over the heap).
 */
export function heapSpace(backend: WasmBackendLike, module: KernelExports, work: number, end: number): ProductSpace {
  return {
    backend, mem: heapFloats(backend), inHeap: true,
    take: floats => {
      if (work + floats > end) {
        throw new Error(`tfjs-attention: a gradient product of the layer needs ${floats} floats of work buffer, ${end - work} are left`);
      }
      return work;
    },
    pack: args => module.pack_rows(...(args as Parameters<KernelExports['pack_rows']>)),
    project: args => module.project_4x8(...(args as Parameters<KernelExports['project_4x8']>)), then: copy => copy(),
  };
}

/**
 * The shared memory's space, from float `free`: the packs and the products' calls queued for
 * steps of a job on both threads, each product's rows cut into calls of tiles
 * (`projectionChunks`); then the copies out. `end()`: the float after the last product's buffers.
 */
export function sharedSpace(backend: WasmBackendLike, mem: Float32Array, free: number):
    ProductSpace&{packs: number[][]; calls: number[][]; copies: Array<() => void>; end: () => number} {
  let next = free;
  const [packs, calls]: number[][][] = [[], []];
  const copies: Array<() => void> = [];
  return {
    backend, mem, inHeap: false, packs, calls, copies, end: () => next,
    pack: args => void packs.push(args),
    take: floats => {
      const at = next;
      next += roundUp(floats, 16);
      return at;
    },
    project: ([x, tileStride, step, w, wStride, bias, out, outStride, tiles, dIn, dOut]) => {
      for (const {first, count} of projectionChunks(tiles)) {  // x: tiles tileStride bytes apart; out: rows outStride bytes apart
        calls.push([x + first * tileStride, tileStride, step, w, wStride, bias, out + 4 * first * outStride, outStride, count, dIn, dOut]);
      }
    },
    then: copy => void copies.push(copy),
  };
}

/**
 * Where the products read tensor `t` in the space's memory (a float index): its own place in the
 * heap, or a copy at float `to` of the shared memory, made now.
 */
function operandIn(space: ProductSpace, t: tf.TensorInfo, to: number): number {
  const at = heapAddress(space.backend, t) >>> 2;
  if (space.inHeap) return at;
  space.mem.set(heapFloats(space.backend).subarray(at, at + tf.util.sizeFromShape(t.shape)), to);
  return to;
}

/**
 * to [rows, d] = G[:, from .. from + m]·[W1 | W2 | …]ᵀ, where the weights [d, wi] have
 * m = Σ wi columns: G's columns packed by fours, the weights transposed by pack_rows (their d
 * rows as one group, `transposedWidth`), one project_4x8, its output in place when it needs no
 * padding.
 */
export function inputGradient(space: ProductSpace, g: Gradients, from: number, rows: number, weights: tf.TensorInfo[], to: tf.TensorInfo): void {
  const {backend, mem} = space;
  const d = weights[0].shape[0] as number;
  const m = weights.reduce((sum, w) => sum + (w.shape[1] as number), 0);
  const [tiles, dp, width] = [Math.ceil(rows / 4), roundUp(d, 8), transposedWidth(d)];
  const work = space.take(inputGradientFloats(rows, m, d));
  const transposed = work + tiles * 4 * m;
  const padded = transposed + m * width;
  const copies = padded + tiles * 4 * dp;
  space.pack([4 * (g.at + from), 4 * g.width, 4 * work, rows, m, 4]);  // G's columns: [tiles][m][4]
  let column = 0;
  for (const w of weights) {                                             // Wᵀ: [m][width], W's row i in column i
    const wi = w.shape[1] as number;
    const wAt = operandIn(space, w, copies + d * column);
    space.pack([4 * wAt, 4 * wi, 4 * (transposed + column * width), d, wi, width]);
    column += wi;
  }
  const toAt = heapAddress(backend, to);
  const inPlace = space.inHeap && dp === d && tiles * 4 === rows;
  space.project([4 * work, ...packedByFours(m), 4 * transposed, 4 * width, 0, inPlace ? toAt : 4 * padded, 4 * dp, tiles, m, dp]);
  if (!inPlace) space.then(() => copyRows(heapFloats(backend), toAt >>> 2, d, mem, padded, dp, rows, d));
}

/**
 * The weights' gradients of the projections of `input` [..., d] (N rows, whose gradients are
 * G's columns from `from`, the outputs' side by side): [dW1 | dW2 | …] = inputᵀ·G[:, from ..]
 * by project_4x8, whose tiles of four rows are four features, read in place (a tile's rows side
 * by side, one row of the input to the next); the last d % 4 features, which in place would read
 * past the input, copied into a tile with zero lanes. In the heap each dWi is written into its
 * tensor when it needs no padding. The biases' gradients, G's column sums, are one more tile,
 * (1, 0, 0, 0) for every row (an x_step of 0).
 */
export function weightGradients(
    space: ProductSpace, input: tf.TensorInfo, g: Gradients, from: number, outputs: Array<[tf.TensorInfo, tf.TensorInfo|undefined]>): void {
  const {backend, mem} = space;
  const d = input.shape[input.shape.length - 1] as number;
  const rows = tf.util.sizeFromShape(input.shape) / d;
  const withBias = outputs[0][1] != null;
  const [inPlaceTiles, lastLanes] = [Math.floor(d / 4), d % 4];
  const dTiles = inPlaceTiles + (lastLanes > 0 ? 1 : 0);
  const widths = outputs.map(([w]) => w.shape[1] as number);
  const m = widths.reduce((sum, wi) => sum + wi, 0);
  const mp = roundUp(m, 8);
  const work = space.take(weightGradientFloats(rows, d, withBias, m));
  const ones = work + (dTiles + (withBias ? 1 : 0)) * 4 * mp;     // after the product [dTiles·4 (+ 4), mp]
  const [product, copy] = [work, ones + 4];
  const inAt = operandIn(space, input, copy);
  const gAt = g.at + from;
  const gradientsOf = (x: number, tileStride: number, step: number, tiles: number, firstTile: number) =>
    space.project([4 * x, tileStride, step, 4 * gAt, 4 * g.width, 0, 4 * (product + firstTile * 4 * mp), 4 * mp, tiles, rows, mp]);
  const direct = space.inHeap && lastLanes === 0 && widths.every(wi => wi % 8 === 0);
  let column = 0;
  for (const [w] of direct ? outputs : []) {                     // dWi [d, wi] into its tensor
    const wi = w.shape[1] as number;
    space.project([4 * inAt, ...transposedInPlace(d), 4 * (gAt + column), 4 * g.width, 0, heapAddress(backend, w), 4 * wi, inPlaceTiles, rows, wi]);
    column += wi;
  }
  if (!direct && inPlaceTiles > 0) gradientsOf(inAt, ...transposedInPlace(d), inPlaceTiles, 0);
  if (lastLanes > 0) {                                           // [rows][4]: the last features, zero lanes past d
    const last = copy + roundUp(rows * d, 4);
    for (let r = 0; r < rows; r++) {
      const src = inAt + r * d + 4 * inPlaceTiles;
      for (let lane = 0; lane < 4; lane++) mem[last + 4 * r + lane] = lane < lastLanes ? mem[src + lane] : 0;
    }
    gradientsOf(last, ...packedByFours(rows), 1, inPlaceTiles);
  }
  if (withBias) {
    mem.set([1, 0, 0, 0], ones);
    gradientsOf(ones, ...transposedInPlace(0), 1, dTiles);  // one row read for every input
  }
  space.then(() => {
    const to = heapFloats(backend);
    let column = 0;
    for (const [w, b] of outputs) {
      const wi = w.shape[1] as number;
      if (!direct) copyRows(to, heapAddress(backend, w) >>> 2, wi, mem, product + column, mp, d, wi);
      if (b != null) to.set(mem.subarray(product + dTiles * 4 * mp + column, product + dTiles * 4 * mp + column + wi), heapAddress(backend, b) >>> 2);
      column += wi;
    }
  });
}
