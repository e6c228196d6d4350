/** FLOP counts of the attention layer, for the benchmark's effective GFLOP/s. */

/** The sizes that decide the layer's work: self-attention on x [batch, length, dModel]. */
export interface AttentionSize {
  batch: number;
  /** T = S: query and key length (self-attention). */
  length: number;
  dModel: number;
  heads: number;
  /** Per-head query/key size dk. Defaults to dModel / heads. */
  keyDim?: number;
  /** Per-head value size dv. Defaults to keyDim. */
  valueDim?: number;
  /** Width of the output projection, if there is one. */
  outputDim?: number|null;
}

/**
 * Multiply-add FLOPs (2 per multiply-add) of one forward pass:
 *
 *   projections  2·B·T·d·H·dk (Q) + 2·B·T·d·H·dk (K) + 2·B·T·d·H·dv (V) [+ 2·B·T·H·dv·outputDim]
 *   attention    2·B·H·T·S·dk (Q·Kᵀ) + 2·B·H·T·S·dv (P·V) = 2·B·H·T·S·(dk + dv)
 *
 * with S = T. Softmax, scaling, masking and biases are not counted: they are O(T·S) or
 * O(T·d) and run at memory speed, so the effective GFLOP/s says how close the whole layer
 * gets to the speed of its matrix products.
 */
export function forwardFlops(size: AttentionSize): number {
  const {batch: B, length: T, dModel: d, heads: H} = size;
  const dk = size.keyDim ?? d / H;
  const dv = size.valueDim ?? dk;
  const projections = 2 * B * T * d * H * (2 * dk + dv) + (size.outputDim != null ? 2 * B * T * H * dv * size.outputDim : 0);
  const attention = 2 * B * H * T * T * (dk + dv);
  return projections + attention;
}

/**
 * FLOPs of forward plus backward with gradients for the input and every weight: 3× the
 * forward, since the backward of each product C = A·B is the two products dA = dC·Bᵀ and
 * dB = Aᵀ·dC of the same size. The memory-efficient path recomputes the scores in its
 * backward and so does more work; it is credited with the same count (effective FLOP/s).
 */
export function trainingFlops(size: AttentionSize): number {
  return 3 * forwardFlops(size);
}

/** FLOPs of an [n, n]·[n, n] matMul: 2·n³. */
export function matMulFlops(n: number): number {
  return 2 * n * n * n;
}
