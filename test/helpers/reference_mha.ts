/**
 * A plain-array float64 reference of Keras' MultiHeadAttention math, written from Keras'
 * einsums as loops (keras/src/layers/attention/multi_head_attention.py): projections
 * `abc,cde->abde`, scores `aecd,abcd->acbe` on the query times 1/sqrt(key_dim), masked softmax,
 * combine `acbe,aecd->abcd`, output `abcd,cde->abe`. Independent of the layer under test.
 * A query row whose every key is masked gets zero weights (Keras' explicit path; see README).
 */

export type Nested = number|Nested[];

/** Keras' weights as nested arrays: kernels [d, H, kd], biases [H, kd], output kernel [H, vd, out], bias [out]. */
export interface KerasMhaWeights {
  queryKernel: number[][][];
  queryBias?: number[][];
  keyKernel: number[][][];
  keyBias?: number[][];
  valueKernel: number[][][];
  valueBias?: number[][];
  outputKernel: number[][][];
  outputBias?: number[];
}

export interface KerasMhaCall {
  /** [B, T, dq] */
  query: number[][][];
  /** [B, S, dv] */
  value: number[][][];
  /** [B, S, dk]; defaults to value. */
  key?: number[][][];
  /** [B, T], 1 = real. */
  queryMask?: number[][];
  /** [B, S] */
  valueMask?: number[][];
  /** [B, S] */
  keyMask?: number[][];
  /** [B, T, S] or [B, 1, S] */
  attentionMask?: number[][][];
  useCausalMask?: boolean;
}

/** x [L, d] through kernel [d, H, k] + bias [H, k]: [L, H, k] (einsum abc,cde->abde for one batch). */
function project(x: number[][], kernel: number[][][], bias?: number[][]): number[][][] {
  const [d, h, k] = [kernel.length, kernel[0].length, kernel[0][0].length];
  return x.map(row => Array.from({length: h}, (_, e) => Array.from({length: k}, (_, f) => {
    let sum = bias ? bias[e][f] : 0;
    for (let c = 0; c < d; c++) sum += row[c] * kernel[c][e][f];
    return sum;
  })));
}

/** Keras' math for rank-3 inputs: output [B, T, out] and scores [B, H, T, S]. */
export function kerasMha(call: KerasMhaCall, w: KerasMhaWeights): {output: number[][][]; scores: number[][][][]} {
  const key = call.key ?? call.value;
  const h = w.queryKernel[0].length;
  const kd = w.queryKernel[0][0].length;
  const vd = w.valueKernel[0][0].length;
  const outDim = w.outputKernel[0][0].length;
  const output: number[][][] = [];
  const scores: number[][][][] = [];
  for (let b = 0; b < call.query.length; b++) {
    const q = project(call.query[b], w.queryKernel, w.queryBias).map(t => t.map(hd => hd.map(x => x / Math.sqrt(kd))));  // [T, H, kd]
    const k = project(key[b], w.keyKernel, w.keyBias);        // [S, H, kd]
    const v = project(call.value[b], w.valueKernel, w.valueBias);  // [S, H, vd]
    const T = q.length;
    const S = k.length;
    const allowed = (t: number, s: number) =>
      (call.queryMask ? call.queryMask[b][t] !== 0 : true) && (call.valueMask ? call.valueMask[b][s] !== 0 : true) &&
      (call.keyMask ? call.keyMask[b][s] !== 0 : true) && (call.useCausalMask ? s <= t : true) &&
      (call.attentionMask ? call.attentionMask[b][call.attentionMask[b].length === 1 ? 0 : t][s] !== 0 : true);
    const batchScores: number[][][] = [];
    const attended: number[][][] = Array.from({length: T}, () => Array.from({length: h}, () => new Array<number>(vd).fill(0)));  // [T, H, vd]
    for (let head = 0; head < h; head++) {
      const rows: number[][] = [];
      for (let t = 0; t < T; t++) {
        const logits = Array.from({length: S}, (_, s) => {
          let dot = 0;
          for (let j = 0; j < kd; j++) dot += q[t][head][j] * k[s][head][j];
          return dot;
        });
        const mask = logits.map((_, s) => allowed(t, s));
        let weights: number[];
        if (!mask.some(x => x)) {
          weights = new Array<number>(S).fill(0);
        } else {
          const max = Math.max(...logits.filter((_, s) => mask[s]));
          const exps = logits.map((x, s) => (mask[s] ? Math.exp(x - max) : 0));
          const total = exps.reduce((a, x) => a + x, 0);
          weights = exps.map(x => x / total);
        }
        rows.push(weights);
        for (let s = 0; s < S; s++) for (let j = 0; j < vd; j++) attended[t][head][j] += weights[s] * v[s][head][j];
      }
      batchScores.push(rows);
    }
    scores.push(batchScores);
    output.push(attended.map(heads => Array.from({length: outDim}, (_, o) => {
      let sum = w.outputBias ? w.outputBias[o] : 0;
      for (let head = 0; head < h; head++) for (let j = 0; j < vd; j++) sum += heads[head][j] * w.outputKernel[head][j][o];
      return sum;
    })));
  }
  return {output, scores};
}

/**
 * Keras' math for [B, X, Y, d] inputs with attention_axes=(1, 2), written with its own index
 * pairs: scores[b, h, x, y, x', y'] over all (x', y') at once, softmax over both key axes.
 * Output [B, X, Y, out], scores [B, H, X, Y, X', Y'].
 */
export function kerasMha2d(query: number[][][][], value: number[][][][], w: KerasMhaWeights):
    {output: number[][][][]; scores: number[][][][][][]} {
  const h = w.queryKernel[0].length;
  const kd = w.queryKernel[0][0].length;
  const vd = w.valueKernel[0][0].length;
  const outDim = w.outputKernel[0][0].length;
  const output: number[][][][] = [];
  const scores: number[][][][][][] = [];
  for (let b = 0; b < query.length; b++) {
    const q = query[b].map(row => project(row, w.queryKernel, w.queryBias));   // [X, Y, H, kd]
    const k = value[b].map(row => project(row, w.keyKernel, w.keyBias));       // [X', Y', H, kd]
    const v = value[b].map(row => project(row, w.valueKernel, w.valueBias));   // [X', Y', H, vd]
    const [X, Y, X2, Y2] = [q.length, q[0].length, k.length, k[0].length];
    const bScores: number[][][][][] = [];
    const attended = q.map(row => row.map(() => Array.from({length: h}, () => new Array<number>(vd).fill(0))));
    for (let head = 0; head < h; head++) {
      const hs: number[][][][] = [];
      for (let x = 0; x < X; x++) {
        const xs: number[][][] = [];
        for (let y = 0; y < Y; y++) {
          const logits: number[][] = [];
          for (let x2 = 0; x2 < X2; x2++) {
            logits.push([]);
            for (let y2 = 0; y2 < Y2; y2++) {
              let dot = 0;
              for (let j = 0; j < kd; j++) dot += (q[x][y][head][j] / Math.sqrt(kd)) * k[x2][y2][head][j];
              logits[x2].push(dot);
            }
          }
          const max = Math.max(...logits.flat());
          const total = logits.flat().reduce((a, l) => a + Math.exp(l - max), 0);
          const weights = logits.map(r => r.map(l => Math.exp(l - max) / total));
          xs.push(weights);
          for (let x2 = 0; x2 < X2; x2++) for (let y2 = 0; y2 < Y2; y2++) {
            for (let j = 0; j < vd; j++) attended[x][y][head][j] += weights[x2][y2] * v[x2][y2][head][j];
          }
        }
        hs.push(xs);
      }
      bScores.push(hs);
    }
    scores.push(bScores);
    output.push(attended.map(row => row.map(heads => Array.from({length: outDim}, (_, o) => {
      let sum = w.outputBias ? w.outputBias[o] : 0;
      for (let head = 0; head < h; head++) for (let j = 0; j < vd; j++) sum += heads[head][j] * w.outputKernel[head][j][o];
      return sum;
    }))));
  }
  return {output, scores};
}
