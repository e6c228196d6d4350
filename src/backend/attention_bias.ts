/**
 * Where the fused kernels find the additive mask of each (batch, head) pair in a bias tensor:
 * `attend_4x8` and `attend_backward_4x8` (kernels.h) take a pair's bias as a pointer, a row
 * stride and a row count. A bias is float32, 0 where a query attends a key and MASKED_LOGIT
 * where not, and is kept at the size its mask broadcasts from: [B, S] (a key padding mask,
 * one row for every query) or [Bb, Hb, Tb, S] with Bb 1 or B, Hb 1 or H and Tb 1 or T (an
 * explicit mask); never expanded to [B, H, T, S].
 */
import type * as tf from '@tensorflow/tfjs';
import {heapAddress} from './wasm_heap_module';
import type {WasmBackendLike} from './wasm_kernel_registry';

/** A bias tensor's broadcast sizes: batches Bb, heads Hb and rows Tb of S floats each. */
export interface BiasLayout {
  batches: number;
  heads: number;
  rows: number;
  S: number;
}

/** The layout of a bias of shape [B, S] (key padding: one row) or [Bb, Hb, Tb, S]. */
export function biasLayoutOf(shape: readonly number[]): BiasLayout {
  if (shape.length === 2) return {batches: shape[0], heads: 1, rows: 1, S: shape[1]};
  const [batches, heads, rows, S] = shape;
  return {batches, heads, rows, S};
}

/** Floats of the whole bias. */
export function biasFloats(layout: BiasLayout): number {
  return layout.batches * layout.heads * layout.rows * layout.S;
}

/** Float offset of the bias of the pair of batch b and head h: its batch b % Bb and head h % Hb. */
export function biasPairOffset(layout: BiasLayout, b: number, h: number): number {
  return ((b % layout.batches) * layout.heads + (h % layout.heads)) * layout.rows * layout.S;
}

/** biasPairOffset of pair n of a call whose pairs run `heads` to a batch (pair n: batch ⌊n / heads⌋, head n % heads). */
export function biasOffsetOfPair(layout: BiasLayout, n: number, heads: number): number {
  return biasPairOffset(layout, Math.floor(n / heads), n % heads);
}

/** The kernels' `bias_stride` (bytes between the rows of queries; 0: one row for all) and `bias_rows`. */
export function biasRowArgs(layout: BiasLayout): {stride: number; rows: number} {
  return {stride: layout.rows === 1 ? 0 : 4 * layout.S, rows: layout.rows};
}

/** A bias in a memory: its float index there and its layout. */
export interface PlacedBias {
  at: number;
  layout: BiasLayout;
}

/** A call's masks in a memory (null: none): the key padding's [B, S] and an explicit mask's [Bb, Hb, Tb, S]. */
export interface PlacedBiases {
  key: PlacedBias|null;
  mask: PlacedBias|null;
}

/**
 * The kernels' last four arguments (key_bias, bias, bias_stride, bias_rows; kernels.h) for pair
 * n of a call whose pairs run `heads` to a batch: byte addresses (0: none) and the mask's rows.
 */
export function biasArgsOfPair(biases: PlacedBiases, n: number, heads: number): [number, number, number, number] {
  const {stride, rows} = maskRowArgs(biases);
  return [biasAddressOfPair(biases.key, n, heads), biasAddressOfPair(biases.mask, n, heads), stride, rows];
}

/** Byte address of pair n's part of `bias` (0 for none), for a call whose pairs run `heads` to a batch. */
export function biasAddressOfPair(bias: PlacedBias|null, n: number, heads: number): number {
  return bias == null ? 0 : 4 * (bias.at + biasOffsetOfPair(bias.layout, n, heads));
}

/** The kernels' `bias_stride` and `bias_rows` of a call's explicit mask (0 and 0 without one). */
export function maskRowArgs(biases: PlacedBiases): {stride: number; rows: number} {
  return biases.mask == null ? {stride: 0, rows: 0} : biasRowArgs(biases.mask.layout);
}

/** A kernel's key bias and explicit-mask bias tensors (absent: none), at their float indices in the wasm heap. */
export function heapBiases(
    backend: WasmBackendLike, keyBias: tf.TensorInfo|null|undefined, mask: tf.TensorInfo|null|undefined): PlacedBiases {
  const placed = (x: tf.TensorInfo|null|undefined) => (x == null ? null : {at: heapAddress(backend, x) >>> 2, layout: biasLayoutOf(x.shape)});
  return {key: placed(keyBias), mask: placed(mask)};
}

/** Floats that both biases take when copied one after the other (copyBiases), each from a multiple of 4. */
export function placedBiasFloats(biases: PlacedBiases): number {
  const floats = (bias: PlacedBias|null) => (bias == null ? 0 : Math.ceil(biasFloats(bias.layout) / 4) * 4);
  return floats(biases.key) + floats(biases.mask);
}

/** Copies both biases from memory `from` into `to` from float `at`, one after the other; returns where they lie there. */
export function copyBiases(biases: PlacedBiases, from: Float32Array, to: Float32Array, at: number): PlacedBiases {
  let next = at;
  const copy = (bias: PlacedBias|null): PlacedBias|null => {
    if (bias == null) return null;
    const floats = biasFloats(bias.layout);
    to.set(from.subarray(bias.at, bias.at + floats), next);
    const placed = {at: next, layout: bias.layout};
    next += Math.ceil(floats / 4) * 4;
    return placed;
  };
  return {key: copy(biases.key), mask: copy(biases.mask)};
}
