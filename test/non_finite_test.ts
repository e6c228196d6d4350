/**
 * One answer on every path (issue 9, findings 6 and 10): NaN and ±∞ in queries, keys, values
 * and the layer's weights propagate as the IEEE arithmetic of softmax(Q·Kᵀ·scale)·V does (as
 * in PyTorch), the same on the fused wasm kernel (op and layer, one and two threads), the
 * standard path (with and without the weights), the memory-efficient path and
 * traceAttention, on cpu and wasm; the gradients of the standard and memory-efficient paths
 * agree on NaN; T = 0 and S = 0 give the same empty or zero result everywhere, with no
 * kernel status line on stderr; arguments out of range are refused by name. Expectations
 * come from the plain-array float64 reference (test/helpers/reference_attention.ts), whose
 * softmax follows IEEE arithmetic for non-finite scores.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {dotProductAttention, memoryEfficientAttention, scaledDotProductAttention, traceAttention, ValueError} from '../src/node';
import type {ScaledDotProductAttentionArgs} from '../src/node';
import {planAttention} from '../src/attention/attention_plan';
import {MAX_WEIGHT_ELEMENTS} from '../src/attention/scaled_dot_product_attention';
import * as threadsModule from '../src/backend/attention_threads';
import {setAttentionThreads, TWO_THREAD_MIN_FLOPS} from '../src/backend/attention_threads';
import * as fusedModule from '../src/backend/wasm_fused_attention';
import {fusedAttention} from '../src/backend/wasm_fused_attention';
import {Matrix, matmul, referenceAttention, referenceDotProductAttention, Tensor3, transpose} from './helpers/reference_attention';
import {withNative} from './helpers/native';
import {runCommand} from './helpers/run_script';
import {
  disposeAll, expectClose, expectIeee, expectThrowsWithoutLeak, kindOf, Nested, randomArray, runTestsOn, valuesOf,
} from './helpers/tensors';

/** Runs `fn` and asserts that the only tensor it leaves behind is the one it returns. */
function onlyTheResult<R extends tf.Tensor>(fn: () => R): R {
  const before = tf.memory().numTensors;
  const result = fn();
  expect(tf.memory().numTensors).toBe(before + 1);
  return result;
}

/** How many entries of `x` are NaN, ±∞ and finite: a case must have both kinds to test anything. */
function kinds(x: Nested): {nonFinite: number; finite: number} {
  const values = valuesOf(x).values;
  const finite = values.filter(Number.isFinite).length;
  return {nonFinite: values.length - finite, finite};
}

/** A copy of a nested array with `value` at `index`. */
function withValue(x: Nested, index: number[], value: number): Nested {
  const copy = JSON.parse(JSON.stringify(x)) as Nested;
  let at = copy as Nested[];
  index.slice(0, -1).forEach(i => (at = at[i] as Nested[]));
  at[index[index.length - 1]] = value;
  return copy;
}

/** Random values rounded to float32, so that the reference sees what the tensors hold. */
function float32Array(shape: number[], seed: number): Nested {
  return tf.tidy(() => tf.tensor(randomArray(shape, seed) as number[], shape, 'float32').arraySync() as Nested);
}

const [B, H, T, S, DK, DV] = [2, 2, 5, 6, 4, 3];
const SCALE = 1 / Math.sqrt(DK);

/** [name, tensor, index [b, h, row, column], value, causal]. */
type OpCase = [string, 'query'|'key'|'value', number[], number, boolean];
const OP_CASES: OpCase[] = [
  ['NaN in one key: every query of its (batch, head) is NaN', 'key', [0, 1, 2, 1], NaN, false],
  ['NaN in one query: that query row alone is NaN', 'query', [1, 0, 3, 2], NaN, false],
  ['NaN in one value: its column is NaN for every query', 'value', [0, 0, 4, 1], NaN, false],
  ['+∞ in a query: its scores are ±∞, so the row is NaN (∞ - ∞)', 'query', [0, 1, 0, 0], Infinity, false],
  ['-∞ in a query: its row is NaN', 'query', [1, 1, 4, 3], -Infinity, false],
  ['+∞ in a key: queries that score it +∞ are NaN, those that score it -∞ give it weight 0', 'key', [1, 1, 5, 3], Infinity, false],
  ['-∞ in a key: the same with the signs swapped', 'key', [0, 0, 1, 2], -Infinity, false],
  ['+∞ in a value: +∞ in its column for every query', 'value', [1, 0, 2, 0], Infinity, false],
  ['-∞ in a value: -∞ in its column', 'value', [0, 1, 0, 2], -Infinity, false],
  ['causal, NaN in one query: that row alone', 'query', [1, 1, 2, 0], NaN, true],
  ['causal, NaN in key 0 (attended by every query): all of its (batch, head) is NaN', 'key', [0, 0, 0, 3], NaN, true],
  ['causal, -∞ in value 0: -∞ in that column for every query', 'value', [1, 0, 0, 1], -Infinity, true],
  ['causal, -∞ in key 0: query 0, whose one key scores ±∞, is NaN; the others by the sign of their score', 'key', [0, 1, 0, 2], -Infinity, true],
  ['causal, +∞ in key 0: the same with the signs swapped', 'key', [1, 1, 0, 0], Infinity, true],
];

/** Random Q, K, V [B, H, T|S, d] as nested arrays, with `value` put at `index` of `which`. */
function opInputs(which: 'query'|'key'|'value', index: number[], value: number): {q: Nested; k: Nested; v: Nested} {
  const inputs = {query: float32Array([B, H, T, DK], 11), key: float32Array([B, H, S, DK], 12), value: float32Array([B, H, S, DV], 13)};
  inputs[which] = withValue(inputs[which], index, value);
  return {q: inputs.query, k: inputs.key, v: inputs.value};
}

/** The op's paths: [name, options]; on wasm the first is the fused kernel (checked below). */
const OP_PATHS: Array<[string, {blockSize?: number}]> = [
  ['default (fused kernel on wasm)', {}],
  ['standard (blockSize 0)', {blockSize: 0}],
  ['memory-efficient, blocks of 2', {blockSize: 2}],
  ['memory-efficient, blocks of 4', {blockSize: 4}],
  ['memory-efficient, one block', {blockSize: 64}],
];

describe.each(withNative(['cpu', 'wasm']))('on %s', backend => {
  runTestsOn(backend);

  it('the default path of these inputs is the fused kernel on wasm and the standard path on cpu and tensorflow', () => {
    expect(planAttention({backend: tf.getBackend(), batch: B, heads: H, T, S, dk: DK, dv: DV}).path).toBe(backend === 'wasm' ? 'fused' : 'standard');
  });

  describe.each(OP_CASES)('dotProductAttention: %s', (_, which, index, value, causal) => {
    const {q, k, v} = opInputs(which, index, value);
    const reference = referenceDotProductAttention(q as Matrix, k as Matrix, v as Matrix, {scale: SCALE, causal});
    const tensors = () => [q, k, v].map((x, i) => tf.tensor(x as number[], [[B, H, T, DK], [B, H, S, DK], [B, H, S, DV]][i] as number[], 'float32'));

    it('the reference has both non-finite and finite outputs', () => {
      expect(kinds(reference.output).nonFinite).toBeGreaterThan(0);
      expect(kinds(reference.output).finite).toBeGreaterThan(0);
    });

    it.each(OP_PATHS)('%s: NaN and ±∞ where the reference has them', (__, options) => {
      const [qt, kt, vt] = tensors();
      const out = onlyTheResult(() => tf.tidy(() => tf.keep(dotProductAttention(qt, kt, vt, {...options, scale: SCALE, causal}))));
      expectIeee(out, reference.output);
      disposeAll(out, qt, kt, vt);
    });

    it('standard with returnWeights: the output and the weights as the reference', () => {
      const [qt, kt, vt] = tensors();
      const [out, weights] = dotProductAttention(qt, kt, vt, {blockSize: 0, returnWeights: true, scale: SCALE, causal});
      expectIeee(out, reference.output);
      expectIeee(weights, reference.weights);
      disposeAll(out, weights, qt, kt, vt);
    });

    it('rank 3 (the (batch, head) pairs as the batch): the same', () => {
      const [qt, kt, vt] = tensors().map(t => t.reshape([B * H, -1, t.shape[3] as number]));
      const flat = (x: Nested) => (x as Nested[]).flat() as Nested;
      for (const [, options] of OP_PATHS) {
        const out = dotProductAttention(qt, kt, vt, {...options, scale: SCALE, causal});
        expectIeee(out, flat(reference.output));
        out.dispose();
      }
      disposeAll(qt, kt, vt);
    });

    it('one (batch, head) pair at a time, [1, T, d] (on wasm: 2-D XNNPACK products): the same', () => {
      const [qt, kt, vt] = tensors().map(t => t.reshape([B * H, -1, t.shape[3] as number]));
      const pairs = (reference.output as Nested[]).flat();
      for (let n = 0; n < B * H; n++) {
        const [qn, kn, vn] = [qt, kt, vt].map(t => t.slice([n, 0, 0], [1, -1, -1]));
        for (const [, options] of OP_PATHS) {
          const out = dotProductAttention(qn, kn, vn, {...options, scale: SCALE, causal});
          expectIeee(out, [pairs[n]]);
          out.dispose();
        }
        disposeAll(qn, kn, vn);
      }
      disposeAll(qt, kt, vt);
    });
  });

  /** A plain-array float64 backward of sum(softmax(Q·Kᵀ·scale)·V) for one pair: dQ, dK, dV (the formulas of both custom gradients). */
  function referenceGrads(q: Matrix, k: Matrix, v: Matrix): [Matrix, Matrix, Matrix] {
    const p = referenceDotProductAttention(q, k, v, {scale: SCALE}).weights as Matrix;
    const out = matmul(p, v);
    const dOut = out.map(row => row.map(() => 1));
    const dv = matmul(transpose(p), dOut);
    const dp = matmul(dOut, transpose(v));
    const rowTerm = out.map((row, t) => row.reduce((s, x, c) => s + x * dOut[t][c], 0));
    const ds = p.map((row, t) => row.map((x, s) => x * (dp[t][s] - rowTerm[t])));
    const dq = matmul(ds, k).map(row => row.map(x => x * SCALE));
    const dk = matmul(transpose(ds), q).map(row => row.map(x => x * SCALE));
    return [dq, dk, dv];
  }

  describe.each(OP_CASES.filter(c => Number.isNaN(c[3]) && !c[4]))('gradients: %s', (_, which, index, value) => {
    const {q, k, v} = opInputs(which, index, value);
    const pairs = (x: Nested) => (x as Nested[][]).map(b => b.map(m => m as Matrix));
    const [qs, ks, vs] = [q, k, v].map(pairs);
    const expected = [0, 1, 2].map(i => qs.map((row, b) => row.map((qm, h) => referenceGrads(qm, ks[b][h], vs[b][h])[i])));

    it('the reference gradients have NaN and finite entries', () => {
      const counts = expected.map(g => kinds(g as unknown as Nested));
      expect(counts.reduce((n, c) => n + c.nonFinite, 0)).toBeGreaterThan(0);
      expect(counts.reduce((n, c) => n + c.finite, 0)).toBeGreaterThan(0);
    });

    it.each([['standard (blockSize 0)', 0], ['memory-efficient, blocks of 2', 2], ['memory-efficient, one block', 64],
      ['default (on wasm the fused backward)', null]])(
        '%s: dQ, dK and dV are NaN where the reference is', (__, blockSize) => {
          const shapes = [[B, H, T, DK], [B, H, S, DK], [B, H, S, DV]];
          const inputs = [q, k, v].map((x, i) => tf.tensor(x as number[], shapes[i], 'float32'));
          const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
            tf.sum(dotProductAttention(a, b, c, {blockSize: blockSize as number|null, scale: SCALE})));
          const before = tf.memory().numTensors;
          const [dq, dk, dv] = grads(inputs);
          expect(tf.memory().numTensors).toBe(before + 3);
          expectIeee(dq, expected[0] as unknown as Nested, 1e-4);
          expectIeee(dk, expected[1] as unknown as Nested, 1e-4);
          expectIeee(dv, expected[2] as unknown as Nested, 1e-4);
          disposeAll(dq, dk, dv, ...inputs);
        });
  });

  /** The layer's weights, random, as nested arrays: x [B, T, 4] -> heads 2 × (dk 3, dv 2). */
  function layerWeights(): Record<'wq'|'wk'|'wv'|'bq'|'bk'|'bv', Nested> {
    return {
      wq: float32Array([4, 6], 21), wk: float32Array([4, 6], 22), wv: float32Array([4, 4], 23),
      bq: float32Array([6], 24), bk: float32Array([6], 25), bv: float32Array([4], 26),
    };
  }

  /** [name, weight, index, value, layer arguments beyond the heads, padding mask of the input]. */
  type LayerCase = [string, 'wq'|'wk'|'wv'|'bq'|'bk'|'bv', number[], number, ScaledDotProductAttentionArgs, number[][]|null];
  const LAYER_CASES: LayerCase[] = [
    ['NaN in Wq: the head whose query column it feeds is NaN', 'wq', [1, 4], NaN, {}, null],
    ['NaN in Wk: the head whose keys it feeds is NaN', 'wk', [0, 0], NaN, {}, null],
    ['NaN in Wv: its output column is NaN', 'wv', [2, 3], NaN, {}, null],
    ['+∞ in bq: that head NaN', 'bq', [2], Infinity, {}, null],
    ['-∞ in bv: -∞ in its output column', 'bv', [0], -Infinity, {}, null],
    ['+∞ in bk, causal: queries that score key s at +∞ are NaN from s on', 'bk', [4], Infinity, {causal: true}, null],
    ['NaN in Wv with a padding mask (the kernel\'s key bias)', 'wv', [1, 1], NaN, {}, [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]],
  ];

  describe.each(LAYER_CASES)('layer: %s', (_, name, index, value, args, padding) => {
    const weights = layerWeights();
    weights[name] = withValue(weights[name], index, value);
    const x = float32Array([B, T, 4], 27);
    const reference = referenceAttention(x as Tensor3, null, {
      wq: weights.wq as Matrix, wk: weights.wk as Matrix, wv: weights.wv as Matrix,
      bq: weights.bq as number[], bk: weights.bk as number[], bv: weights.bv as number[],
    }, {numHeads: 2, causal: args.causal, queryPadding: padding, keyPadding: padding});

    /** A layer with these weights, built on x. */
    function layerWith(extra: ScaledDotProductAttentionArgs): ReturnType<typeof scaledDotProductAttention> {
      const layer = scaledDotProductAttention({numHeads: 2, keyDim: 3, valueDim: 2, useBias: true, ...args, ...extra});
      layer.build([B, T, 4]);
      const order = ['wq', 'wk', 'wv', 'bq', 'bk', 'bv'] as const;
      const values = order.map(w => tf.tensor(weights[w] as number[]));
      layer.setWeights(values);
      tf.dispose(values);
      return layer;
    }

    it('the reference has both non-finite and finite outputs', () => {
      expect(kinds(reference.output).nonFinite).toBeGreaterThan(0);
      expect(kinds(reference.output).finite).toBeGreaterThan(0);
    });

    it.each([['default (the fused layer kernel on wasm)', {}], ['standard (blockSize 0)', {blockSize: 0}],
      ['memory-efficient, blocks of 2', {blockSize: 2}]] as Array<[string, ScaledDotProductAttentionArgs]>)(
        '%s: NaN and ±∞ where the reference has them', (__, extra) => {
          const layer = layerWith(extra);
          const input = tf.tensor(x as number[], [B, T, 4]);
          const mask = padding == null ? null : tf.tensor(padding, undefined, 'bool');
          const out = onlyTheResult(() => layer.apply(input, mask == null ? {} : {mask}) as tf.Tensor);
          expectIeee(out, reference.output);
          disposeAll(out, input, mask);
        });

    it('returnAttentionScores and traceAttention: the output, the weights and the heads as the reference', () => {
      const layer = layerWith({returnAttentionScores: true});
      const input = tf.tensor(x as number[], [B, T, 4]);
      const mask = padding == null ? null : tf.tensor(padding, undefined, 'bool');
      const [out, scores] = layer.apply(input, mask == null ? {} : {mask}) as tf.Tensor[];
      expectIeee(out, reference.output);
      expectIeee(scores, reference.weights);
      const trace = traceAttention(layer, input, mask == null ? {} : {mask});
      expectIeee(trace.weights, reference.weights);
      expectIeee(trace.output, reference.heads);
      disposeAll(out, scores, trace, input, mask);
    });
  });

  it('layer with projections too large for the projection kernel (XNNPACK, then the attention kernel on wasm): NaN in Wk makes head 0 NaN', () => {
    const [heads, dk, dv] = [2, 10000, 2];  // wq [4, 20000]: over DENSE_FUSED_MAX_WEIGHT_BYTES
    const weights = {wq: float32Array([4, heads * dk], 51), wk: float32Array([4, heads * dk], 52), wv: float32Array([4, heads * dv], 53)};
    weights.wk = withValue(weights.wk, [1, 3], NaN);
    const x = float32Array([B, T, 4], 54);
    const expected = referenceAttention(x as Tensor3, null, {wq: weights.wq as Matrix, wk: weights.wk as Matrix, wv: weights.wv as Matrix},
                                        {numHeads: heads}).output;
    expect(kinds(expected)).toEqual({nonFinite: B * T * dv, finite: B * T * dv});
    const fusedHeads = jest.spyOn(fusedModule, 'fusedMultiHeadAttention');
    try {
      const layer = scaledDotProductAttention({numHeads: heads, keyDim: dk, valueDim: dv});
      layer.build([B, T, 4]);
      const values = [weights.wq, weights.wk, weights.wv].map(w => tf.tensor(w as number[]));
      layer.setWeights(values);
      const input = tf.tensor(x as number[], [B, T, 4]);
      const out = onlyTheResult(() => layer.apply(input) as tf.Tensor);
      expect(fusedHeads).toHaveBeenCalledTimes(backend === 'wasm' ? 1 : 0);
      expectIeee(out, expected, 1e-4);
      disposeAll(out, input, values);
    } finally {
      fusedHeads.mockRestore();
    }
  });

  it.each([['NaN in Wk', 'wk', [0, 0], NaN], ['NaN in Wq', 'wq', [3, 5], NaN], ['+∞ in bv', 'bv', [2], Infinity]] as Array<[string, 'wq'|'wk'|'bv', number[], number]>)(
      'layer gradients, %s: the standard, memory-efficient and default paths (on wasm the fused backward) give the weights NaN and ±∞ in the same places', (_, name, index, value) => {
        const weights = layerWeights();
        weights[name] = withValue(weights[name], index, value);
        const x = tf.tensor(float32Array([B, T, 4], 28) as number[], [B, T, 4]);
        const grads = [0, 2, null].map(blockSize => {
          const layer = scaledDotProductAttention({numHeads: 2, keyDim: 3, valueDim: 2, useBias: true, blockSize});
          layer.build([B, T, 4]);
          const values = (['wq', 'wk', 'wv', 'bq', 'bk', 'bv'] as const).map(w => tf.tensor(weights[w] as number[]));
          layer.setWeights(values);
          tf.dispose(values);
          const {value: loss, grads: byName} = tf.variableGrads(() => tf.sum(layer.apply(x) as tf.Tensor) as tf.Scalar,
                                                                layer.trainableWeights.map(w => (w as unknown as {val: tf.Variable}).val));
          const arrays = Object.keys(byName).sort().map(k => valuesOf(byName[k]).values.map(kindOf));
          tf.dispose([loss, byName]);
          return arrays;
        });
        expect(grads[1]).toEqual(grads[0]);
        expect(grads[2]).toEqual(grads[0]);
        expect(grads[0].flat().filter(k => k !== 'finite').length).toBeGreaterThan(0);
        x.dispose();
      });

  describe('T = 0 and S = 0', () => {
    // [name, T, S]
    const sizes: Array<[string, number, number]> = [['T = 0', 0, 5], ['S = 0', 5, 0], ['T = S = 0', 0, 0]];

    it('an empty batch or head axis: an empty output on every path', () => {
      for (const lead of [[0], [2, 0]]) {
        const [q, k, v] = [tf.zeros([...lead, 5, 4]), tf.zeros([...lead, 6, 4]), tf.zeros([...lead, 6, 3])];
        for (const [, options] of OP_PATHS) {
          const out = onlyTheResult(() => tf.tidy(() => tf.keep(dotProductAttention(q, k, v, options))));
          expect(out.shape).toEqual([...lead, 5, 3]);
          out.dispose();
        }
        disposeAll(q, k, v);
      }
    });

    it('dk = 0 or dv = 0: a ValueError naming the head size and the shapes, on every path', () => {
      const cases: Array<[number, number, RegExp]> = [
        [0, 3, /at least one element \(dk >= 1\)\. Received: query\.shape=\[2, 5, 0\], key\.shape=\[2, 6, 0\], value\.shape=\[2, 6, 3\]/],
        [4, 0, /at least one element \(dv >= 1\)\. Received: query\.shape=\[2, 5, 4\], key\.shape=\[2, 6, 4\], value\.shape=\[2, 6, 0\]/],
      ];
      for (const [dk, dv, pattern] of cases) {
        const [q, k, v] = [tf.zeros([2, 5, dk]), tf.zeros([2, 6, dk]), tf.zeros([2, 6, dv])];
        for (const [, options] of OP_PATHS) {
          expectThrowsWithoutLeak(() => dotProductAttention(q, k, v, {...options, scale: 1}), pattern);
        }
        const as4d = (x: tf.Tensor) => x.expandDims(1) as tf.Tensor4D;
        const [q4, k4, v4] = [q, k, v].map(as4d);
        expectThrowsWithoutLeak(() => memoryEfficientAttention(q4, k4, v4, {blockSize: 2, scale: 1}), /at least one element \(d[kv] >= 1\)/);
        disposeAll(q, k, v, q4, k4, v4);
      }
    });

    describe.each(sizes)('%s', (_, t, s) => {
      it.each([[1], [2]])('dotProductAttention, batch %i, every path and rank: [.., T, dv], zeros; weights [.., T, S]', batch => {
        for (const lead of [[batch], [batch, 2]]) {
          const q = tf.randomUniform([...lead, t, 4]);
          const k = tf.randomUniform([...lead, s, 4]);
          const v = tf.randomUniform([...lead, s, 3]);
          for (const [, options] of OP_PATHS) {
            const out = onlyTheResult(() => tf.tidy(() => tf.keep(dotProductAttention(q, k, v, options))));
            expect(out.shape).toEqual([...lead, t, 3]);
            expect(Array.from(out.dataSync())).toEqual(new Array<number>(lead[0] * (lead[1] ?? 1) * t * 3).fill(0));
            out.dispose();
          }
          const [out, weights] = dotProductAttention(q, k, v, {blockSize: 0, returnWeights: true, causal: true});
          expect(out.shape).toEqual([...lead, t, 3]);
          expect(weights.shape).toEqual([...lead, t, s]);
          expect(Array.from(out.dataSync()).every(x => x === 0)).toBe(true);
          disposeAll(out, weights, q, k, v);
        }
      });

      it('memoryEfficientAttention: [B, H, T, dv] zeros, and zero gradients of the inputs\' shapes', () => {
        const q = tf.randomUniform([2, 2, t, 4]) as tf.Tensor4D;
        const k = tf.randomUniform([2, 2, s, 4]) as tf.Tensor4D;
        const v = tf.randomUniform([2, 2, s, 3]) as tf.Tensor4D;
        const out = memoryEfficientAttention(q, k, v, {blockSize: 4, scale: 0.5, causal: true});
        expect(out.shape).toEqual([2, 2, t, 3]);
        expect(Array.from(out.dataSync()).every(x => x === 0)).toBe(true);
        for (const blockSize of [0, 4]) {
          const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(dotProductAttention(a, b, c, {blockSize})));
          const dqkv = grads([q, k, v]);
          expect(dqkv.map(g => g.shape)).toEqual([q.shape, k.shape, v.shape]);
          expect(dqkv.every(g => Array.from(g.dataSync()).every(x => x === 0))).toBe(true);
          disposeAll(dqkv);
        }
        disposeAll(out, q, k, v);
      });

      it('the layer on every path, and traceAttention: [B, T, out], zeros', () => {
        const query = tf.randomUniform([1, t, 4]);
        const context = tf.randomUniform([1, s, 4]);
        for (const extra of [{}, {blockSize: 0}, {blockSize: 4}, {outputDim: 3}, {causal: true}]) {
          const layer = scaledDotProductAttention({numHeads: 2, keyDim: 4, ...extra});
          tf.dispose(layer.apply([query, context]) as tf.Tensor);  // builds the weights
          const out = onlyTheResult(() => tf.tidy(() => tf.keep(layer.apply([query, context]) as tf.Tensor)));
          expect(out.shape).toEqual([1, t, 'outputDim' in extra ? 3 : 8]);
          expect(Array.from(out.dataSync()).every(x => x === 0)).toBe(true);
          out.dispose();
        }
        const layer = scaledDotProductAttention({numHeads: 2, keyDim: 4, returnAttentionScores: true});
        const [out, weights] = layer.apply([query, context]) as tf.Tensor[];
        expect([out.shape, weights.shape]).toEqual([[1, t, 8], [1, 2, t, s]]);
        const before = tf.memory().numTensors;
        const trace = traceAttention(layer, [query, context]);
        expect(tf.memory().numTensors).toBe(before + 7);  // Q, K, V, scores, scaled, weights, output
        expect([trace.scores.shape, trace.weights.shape, trace.output.shape]).toEqual([[1, 2, t, s], [1, 2, t, s], [1, 2, t, 4]]);
        expect(Array.from(trace.output.dataSync()).every(x => x === 0)).toBe(true);
        disposeAll(trace, out, weights, query, context);
      });
    });
  });
});

describe('the fused kernel on two threads (wasm)', () => {
  runTestsOn('wasm');
  afterEach(() => {
    setAttentionThreads(2);
  });

  const [n, d] = [400, 64];
  // [name, tensor, row, column, value, causal]
  const cases: Array<[string, 'query'|'key'|'value', number, number, number, boolean]> = [
    ['NaN in key 37 (in the first block of 256)', 'key', 37, 5, NaN, false],
    ['NaN in key 300 (in the second block)', 'key', 300, 5, NaN, false],
    ['NaN in query 123 (a tile on the worker\'s side)', 'query', 123, 60, NaN, false],
    ['NaN in query 398 (the last, padded tile)', 'query', 398, 0, NaN, false],
    ['+∞ in key 290: NaN or weight 0 per query, across blocks', 'key', 290, 7, Infinity, false],
    ['+∞ in value 250', 'value', 250, 3, Infinity, false],
    ['causal, NaN in key 260: the queries from 260 on are NaN', 'key', 260, 1, NaN, true],
    ['causal, -∞ in key 0: each query NaN or not by the sign of its score', 'key', 0, 9, -Infinity, true],
  ];
  it.each(cases)('%s: bit for bit the one-thread result, with NaN and ±∞ where the reference has them', (_, which, row, column, value, causal) => {
    expect(2 * n * n * 2 * d).toBeGreaterThanOrEqual(TWO_THREAD_MIN_FLOPS);
    const inputs = {query: float32Array([n, d], 31), key: float32Array([n, d], 32), value: float32Array([n, d], 33)};
    inputs[which] = withValue(inputs[which], [row, column], value);
    const scale = 1 / Math.sqrt(d);
    const expected = referenceDotProductAttention(inputs.query as Matrix, inputs.key as Matrix, inputs.value as Matrix, {scale, causal}).output;
    const [q, k, v] = [inputs.query, inputs.key, inputs.value].map(x => tf.tensor(valuesOf(x).values, [1, n, d], 'float32'));
    const workerRuns = jest.spyOn(threadsModule, 'runStepsOnBothThreads');
    try {
      setAttentionThreads(1);
      const one = fusedAttention(q, k, v, scale, causal);
      expect(workerRuns).not.toHaveBeenCalled();
      setAttentionThreads(2);
      const two = fusedAttention(q, k, v, scale, causal);
      expect(workerRuns).toHaveBeenCalled();
      expect(Array.from(two.dataSync())).toEqual(Array.from(one.dataSync()));  // NaN equals NaN here
      expectIeee(two.reshape([n, d]), expected as Nested, 1e-5);
      expect(kinds(expected as Nested).nonFinite).toBeGreaterThan(0);
      disposeAll(one, two);
    } finally {
      workerRuns.mockRestore();
      disposeAll(q, k, v);
    }
  });
});

describe('no kernel status line on stderr', () => {
  it('T = 0 and S = 0 on wasm (one pair: 2-D XNNPACK products) print nothing', async () => {
    const script = [
      "const tf = require('@tensorflow/tfjs');",
      "const {selectBackend, dotProductAttention, scaledDotProductAttention} = require('./dist/cjs/node');",
      '(async () => {',
      "  await selectBackend('wasm');",
      '  const shapes = [];',
      '  for (const [t, s] of [[0, 5], [5, 0]]) {',
      '    const [q, k, v] = [tf.zeros([1, t, 4]), tf.ones([1, s, 4]), tf.ones([1, s, 3])];',
      '    for (const options of [{}, {blockSize: 0}, {blockSize: 0, returnWeights: true}, {blockSize: 4}]) {',
      '      const out = dotProductAttention(q, k, v, options);',
      '      shapes.push((Array.isArray(out) ? out[0] : out).shape.join("x"));',
      '    }',
      '    const layer = scaledDotProductAttention({keyDim: 4, blockSize: 0});',
      '    shapes.push(layer.apply([q, k]).shape.join("x"));',
      '  }',
      "  console.log(shapes.join(' '));",
      '})();',
    ].join('\n');
    const result = await runCommand('node', ['-e', script], 60000);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout.trim()).toBe('1x0x3 1x0x3 1x0x3 1x0x3 1x0x4 1x5x3 1x5x3 1x5x3 1x5x3 1x5x4');
  }, 70000);
});

describe('arguments out of range are refused by name, with the value received', () => {
  const dims: Array<[string, ScaledDotProductAttentionArgs, RegExp]> = [
    ['keyDim: 2**31', {keyDim: 2 ** 31}, /argument `keyDim`, expected a positive integer at most 268435456\. Received: keyDim=2147483648/],
    ['valueDim: 2**31', {valueDim: 2 ** 31}, /argument `valueDim`.*Received: valueDim=2147483648/],
    ['numHeads: 2**31', {numHeads: 2 ** 31}, /argument `numHeads`.*Received: numHeads=2147483648/],
    ['outputDim: 2**40', {outputDim: 2 ** 40}, /argument `outputDim`.*Received: outputDim=1099511627776/],
    ['numHeads · keyDim over the limit', {numHeads: 2 ** 15, keyDim: 2 ** 14},
      /`numHeads` and `keyDim` make weights of numHeads·keyDim = 536870912 columns.*Received: numHeads=32768, keyDim=16384/],
    ['blockSize: -1', {blockSize: -1}, /argument `blockSize`, expected a positive integer\. Received: blockSize=-1/],
    ['blockSize: 2.5', {blockSize: 2.5}, /Received: blockSize=2\.5/],
    ['blockSize: NaN', {blockSize: NaN}, /Received: blockSize=NaN/],
    ['blockSize: Infinity', {blockSize: Infinity}, /Received: blockSize=Infinity/],
  ];
  it.each(dims)('%s: a ValueError from the constructor, never a RangeError', (_, args, pattern) => {
    expect(() => scaledDotProductAttention(args)).toThrow(ValueError);
    expect(() => scaledDotProductAttention(args)).toThrow(pattern);
  });

  it('a weight over the limit once the input width is known: a ValueError naming it before any allocation', () => {
    const layer = scaledDotProductAttention({keyDim: 2 ** 20});
    const x = tf.zeros([1, 2, 512]);
    expectThrowsWithoutLeak(() => layer.apply(x), /weight `wq` would have shape \[512, 1048576\], over the limit of 268435456/);
    expect(2 ** 29).toBeGreaterThan(MAX_WEIGHT_ELEMENTS);
    x.dispose();
  });

  it('a huge blockSize is one block: the same result as blockSize 0', () => {
    const x = tf.randomUniform([1, 6, 4]);
    const [huge, standard] = [2 ** 40, 0].map(blockSize => {
      const layer = scaledDotProductAttention({blockSize, kernelInitializer: 'ones'});
      const out = layer.apply(x) as tf.Tensor;
      layer.dispose();
      return out;
    });
    expectClose(huge, standard, 1e-6);
    disposeAll(huge, standard, x);
  });
});
