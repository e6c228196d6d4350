/**
 * A plain-JavaScript reference of the attention layer's math, written with number[][] loops
 * and no TensorFlow.js, so that tests have an expectation independent of the code under test.
 *
 * Q = x·Wq (+bq), K = c·Wk (+bk), V = c·Wv (+bv); head h owns columns h*d..(h+1)*d; per head
 * weights = softmax(Q·Kᵀ·scale) over the allowed keys (masked keys get exactly 0, a row with
 * no allowed key gets all zeros); heads = weights·V, concatenated; then ·Wo (+bo) if present.
 * A pair (t, s) is allowed when the explicit mask, the causal rule (s <= t, top-left) and the
 * padding of the query row and of the key all allow it.
 */

export type Vector = number[];
export type Matrix = number[][];
export type Tensor3 = number[][][];
export type Tensor4 = number[][][][];

export interface ReferenceWeights {
  wq: Matrix;
  wk: Matrix;
  wv: Matrix;
  bq?: Vector;
  bk?: Vector;
  bv?: Vector;
  wo?: Matrix;
  bo?: Vector;
}

export interface ReferenceOptions {
  /** Number of heads; keyDim and valueDim follow from the widths of wq and wv. */
  numHeads: number;
  causal?: boolean;
  /** Defaults to 1/sqrt(keyDim). */
  scale?: number|null;
  /** [B, T, S], nonzero = attend. */
  attentionMask?: Tensor3|null;
  /** [B, T], nonzero = a real (not padding) query position. */
  queryPadding?: Matrix|null;
  /** [B, S], nonzero = a real (not padding) key position. */
  keyPadding?: Matrix|null;
}

export interface ReferenceResult {
  /** Projected, before the head split: [B, T, H*dk], [B, S, H*dk], [B, S, H*dv]. */
  query: Tensor3;
  key: Tensor3;
  value: Tensor3;
  /** [B, H, T, S]. */
  scores: Tensor4;
  scaled: Tensor4;
  weights: Tensor4;
  /** Per-head weights·V: [B, H, T, dv]. */
  heads: Tensor4;
  /** Merged heads, then the output projection if any: [B, T, out]. */
  output: Tensor3;
  /** The allowed pairs: [B, T, S] of booleans. */
  allowed: boolean[][][];
  scaleFactor: number;
}

/** a [M][K] · b [K][N]. */
export function matmul(a: Matrix, b: Matrix): Matrix {
  const k = b.length;
  const n = k === 0 ? 0 : b[0].length;
  return a.map((row) => {
    if (row.length !== k) throw new Error(`matmul: inner dims ${row.length} vs ${k}`);
    const out = new Array<number>(n).fill(0);
    for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) out[j] += row[i] * b[i][j];
    return out;
  });
}

export function transpose(a: Matrix): Matrix {
  if (a.length === 0) return [];
  return a[0].map((_, j) => a.map((row) => row[j]));
}

/** x [L][din] · w [din][dout] + b. */
export function dense(x: Matrix, w: Matrix, b?: Vector): Matrix {
  const y = matmul(x, w);
  return b == null ? y : y.map((row) => row.map((v, j) => v + b[j]));
}

/** Columns h*depth..(h+1)*depth of every row: [L][H*d] -> [L][d]. */
export function headColumns(x: Matrix, h: number, depth: number): Matrix {
  return x.map((row) => row.slice(h * depth, (h + 1) * depth));
}

/** [B][L][H*d] -> [B][H][L][d]. */
export function splitHeads(x: Tensor3, numHeads: number): Tensor4 {
  return x.map((m) => {
    const depth = m.length === 0 ? 0 : m[0].length / numHeads;
    return Array.from({length: numHeads}, (_, h) => headColumns(m, h, depth));
  });
}

/** [B][H][L][d] -> [B][L][H*d]. */
export function mergeHeads(x: Tensor4): Tensor3 {
  return x.map((heads) => heads[0].map((_, t) => heads.flatMap((head) => head[t])));
}

/**
 * Softmax of `row` over the entries where `allowed` is true, with the max subtracted for
 * stability; disallowed entries get 0 and a row with nothing allowed is all zeros. Non-finite
 * scores follow IEEE arithmetic, as PyTorch's softmax: a NaN or +∞ among the allowed entries
 * makes the row NaN (NaN max, or ∞ - ∞), -∞ gets weight 0, and all -∞ is NaN (-∞ - -∞).
 */
export function maskedSoftmax(row: Vector, allowed: boolean[]): Vector {
  if (!allowed.some(Boolean)) return row.map(() => 0);
  const max = row.reduce((m, v, i) => (allowed[i] ? Math.max(m, v) : m), -Infinity);  // NaN if any is NaN
  const e = row.map((v, i) => (allowed[i] ? Math.exp(v - max) : 0));
  const sum = e.reduce((s, v) => s + v, 0);
  return e.map((v) => v / sum);
}

/** One head: q [T][dk], k [S][dk], v [S][dv], allowed [T][S]. */
export function attendOneHead(
    q: Matrix, k: Matrix, v: Matrix, allowed: boolean[][], scale: number):
    {scores: Matrix; scaled: Matrix; weights: Matrix; output: Matrix} {
  const scores = matmul(q, transpose(k));
  const scaled = scores.map((row) => row.map((s) => s * scale));
  const weights = scaled.map((row, t) => maskedSoftmax(row, allowed[t]));
  const output = matmul(weights, v);
  return {scores, scaled, weights, output};
}

/** The [T][S] causal rule, top-left aligned: s <= t. */
export function causalAllowed(queryLength: number, keyLength: number): boolean[][] {
  return Array.from({length: queryLength}, (_, t) => Array.from({length: keyLength}, (_, s) => s <= t));
}

/** The layer's forward pass. `context` null means self-attention (context = query). */
export function referenceAttention(
    query: Tensor3, context: Tensor3|null, w: ReferenceWeights, options: ReferenceOptions): ReferenceResult {
  const ctx = context ?? query;
  const numHeads = options.numHeads;
  const dk = w.wq[0].length / numHeads;
  const dv = w.wv[0].length / numHeads;
  const scale = options.scale ?? 1 / Math.sqrt(dk);
  const q = query.map((x) => dense(x, w.wq, w.bq));
  const k = ctx.map((c) => dense(c, w.wk, w.bk));
  const v = ctx.map((c) => dense(c, w.wv, w.bv));
  const allowed = query.map((x, b) => x.map((_, t) => ctx[b].map((__, s) => {
    if (options.attentionMask != null && !options.attentionMask[b][t][s]) return false;
    if (options.causal && s > t) return false;
    if (options.queryPadding != null && !options.queryPadding[b][t]) return false;
    if (options.keyPadding != null && !options.keyPadding[b][s]) return false;
    return true;
  })));
  const scores: Tensor4 = [];
  const scaled: Tensor4 = [];
  const weights: Tensor4 = [];
  const heads: Tensor4 = [];
  for (let b = 0; b < query.length; b++) {
    scores.push([]);
    scaled.push([]);
    weights.push([]);
    heads.push([]);
    for (let h = 0; h < numHeads; h++) {
      const r = attendOneHead(
          headColumns(q[b], h, dk), headColumns(k[b], h, dk), headColumns(v[b], h, dv), allowed[b], scale);
      scores[b].push(r.scores);
      scaled[b].push(r.scaled);
      weights[b].push(r.weights);
      heads[b].push(r.output);
    }
  }
  const merged = mergeHeads(heads);
  const output = w.wo == null ? merged : merged.map((m) => dense(m, w.wo!, w.bo));
  return {query: q, key: k, value: v, scores, scaled, weights, heads, output, allowed, scaleFactor: scale};
}

export interface ReferenceOpOptions {
  /**
   * Whether query t may attend key s at the leading index `lead` ([b] for rank-3 inputs,
   * [b, h] for rank-4 inputs). Defaults to always.
   */
  allowed?: (lead: number[], t: number, s: number) => boolean;
  causal?: boolean;
  /** Defaults to 1/sqrt(dk). */
  scale?: number|null;
}

type NestedMatrices = Matrix|NestedMatrices[];

/**
 * The functional op on rank-3 [B, T, d] or rank-4 [B, H, T, d] nested arrays: returns the
 * output [.., T, dv] and the weights [.., T, S] with the same leading axes.
 */
export function referenceDotProductAttention(
    query: NestedMatrices, key: NestedMatrices, value: NestedMatrices, options: ReferenceOpOptions = {}):
    {output: NestedMatrices; weights: NestedMatrices} {
  const isMatrix = (x: NestedMatrices): x is Matrix => !Array.isArray((x as unknown[][])[0]?.[0]);
  const recurse = (q: NestedMatrices, k: NestedMatrices, v: NestedMatrices, lead: number[]):
      {output: NestedMatrices; weights: NestedMatrices} => {
    if (isMatrix(q)) {
      const qm = q;
      const km = k as Matrix;
      const vm = v as Matrix;
      const dk = qm[0].length;
      const allowed = qm.map((_, t) => km.map((__, s) =>
          (!options.causal || s <= t) && (options.allowed == null || options.allowed(lead, t, s))));
      const r = attendOneHead(qm, km, vm, allowed, options.scale ?? 1 / Math.sqrt(dk));
      return {output: r.output, weights: r.weights};
    }
    const parts = (q as NestedMatrices[]).map((qi, i) =>
        recurse(qi, (k as NestedMatrices[])[i], (v as NestedMatrices[])[i], [...lead, i]));
    return {output: parts.map((p) => p.output), weights: parts.map((p) => p.weights)};
  };
  return recurse(query, key, value, []);
}
