/**
 * Specification of the Keras-compatible MultiHeadAttention layer: weights (names, shapes,
 * order), symbolic shapes, numbers against a float64 reference of Keras' math
 * (test/helpers/reference_mha.ts) on every backend, masks, attention axes, gradients against
 * finite differences, configs in both spellings, save/load, bad arguments and leaks.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {MultiHeadAttention, multiHeadAttention, ValueError} from '../src/node';
import type {MultiHeadAttentionArgs} from '../src';
import * as fused from '../src/backend/wasm_fused_attention';
import * as layerTraining from '../src/backend/wasm_fused_layer_training';
import {fusedThreadsOfLastCall} from '../src/backend/wasm_fused_attention';
import {setAttentionThreads} from '../src/backend/attention_threads';
import * as blocked from '../src/attention/memory_efficient_attention';
import {kerasMha, kerasMha2d, KerasMhaCall, KerasMhaWeights} from './helpers/reference_mha';
import {withNative} from './helpers/native';
import {expectClose, expectNoLeak, expectThrowsWithoutLeak, randomArray, runTestsOn} from './helpers/tensors';

type N3 = number[][][];

const TOL = {abs: 2e-5, rel: 2e-5};

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** What tfjs' deserializer does with a layer config: the registered class's fromConfig. */
function fromConfig(config: unknown): MultiHeadAttention {
  const [cls, make] = tf.serialization.SerializationMap.getMap().classNameMap.MultiHeadAttention;
  return make(cls, config as tf.serialization.ConfigDict) as unknown as MultiHeadAttention;
}

function tensor(x: unknown): tf.Tensor {
  return tf.tensor(x as number[]);
}

/** Seeded weights in [-0.5, 0.5) for every weight of `layer` (built), set on it; returns them for the reference. */
function setRandomWeights(layer: MultiHeadAttention, seed: number): KerasMhaWeights {
  const values = layer.weights.map((w, i) => randomArray(w.shape as number[], seed + i, 0.5));
  const tensors = values.map(tensor);
  layer.setWeights(tensors);
  tf.dispose(tensors);
  const byName: {[name: string]: unknown} = {};
  layer.weights.forEach((w, i) => {
    byName[w.name.split('/').slice(-2).join('/')] = values[i];
  });
  return {
    queryKernel: byName['query/kernel'] as number[][][], queryBias: byName['query/bias'] as number[][] | undefined,
    keyKernel: byName['key/kernel'] as number[][][], keyBias: byName['key/bias'] as number[][] | undefined,
    valueKernel: byName['value/kernel'] as number[][][], valueBias: byName['value/bias'] as number[][] | undefined,
    outputKernel: byName['attention_output/kernel'] as number[][][], outputBias: byName['attention_output/bias'] as number[] | undefined,
  };
}

/** A layer built by a first call on `inputs`, with seeded weights. */
function builtLayer(args: MultiHeadAttentionArgs, inputs: tf.Tensor[], seed = 7): {layer: MultiHeadAttention; weights: KerasMhaWeights} {
  const layer = multiHeadAttention(args);
  tf.dispose(layer.apply(inputs) as tf.Tensor);
  return {layer, weights: setRandomWeights(layer, seed)};
}

describe('weights', () => {
  it('are named, shaped and ordered as Keras: query, key, value, attention_output; kernel then bias', () => {
    const layer = multiHeadAttention({numHeads: 3, keyDim: 4, valueDim: 5, outputShape: 6, name: 'mha'});
    layer.apply([tf.input({shape: [7, 8]}), tf.input({shape: [9, 10]}), tf.input({shape: [9, 11]})]);
    expect(layer.weights.map(w => [w.name, w.shape])).toEqual([
      ['mha/query/kernel', [8, 3, 4]], ['mha/query/bias', [3, 4]],
      ['mha/key/kernel', [11, 3, 4]], ['mha/key/bias', [3, 4]],
      ['mha/value/kernel', [10, 3, 5]], ['mha/value/bias', [3, 5]],
      ['mha/attention_output/kernel', [3, 5, 6]], ['mha/attention_output/bias', [6]],
    ]);
  });

  it('has no biases with useBias false, and an output kernel [H, vd, ...outputShape] for an array', () => {
    const layer = multiHeadAttention({numHeads: 2, keyDim: 3, useBias: false, outputShape: [2, 5], name: 'm2'});
    layer.apply([tf.input({shape: [4, 6]}), tf.input({shape: [4, 6]})]);
    expect(layer.weights.map(w => [w.name, w.shape])).toEqual([
      ['m2/query/kernel', [6, 2, 3]], ['m2/key/kernel', [6, 2, 3]], ['m2/value/kernel', [6, 2, 3]],
      ['m2/attention_output/kernel', [2, 3, 2, 5]],
    ]);
  });

  it('is the class tfjs deserializes for "MultiHeadAttention" (not tfjs-layers\' internal port)', () => {
    const layer = fromConfig({numHeads: 1, keyDim: 2});
    expect(layer).toBeInstanceOf(MultiHeadAttention);
  });
});

describe('symbolic shapes', () => {
  const cases: Array<[string, MultiHeadAttentionArgs, number[][], {[key: string]: unknown}, unknown]> = [
    ['self', {numHeads: 2, keyDim: 3}, [[5, 8], [5, 8]], {}, [null, 5, 8]],
    ['cross with key', {numHeads: 2, keyDim: 3, valueDim: 4}, [[5, 8], [6, 3], [6, 2]], {}, [null, 5, 8]],
    ['outputShape number', {numHeads: 2, keyDim: 3, outputShape: 7}, [[5, 8], [6, 3]], {}, [null, 5, 7]],
    ['outputShape array', {numHeads: 2, keyDim: 3, outputShape: [2, 3]}, [[5, 8], [6, 3]], {}, [null, 5, 2, 3]],
    ['scores', {numHeads: 2, keyDim: 3}, [[5, 8], [6, 3]], {returnAttentionScores: true}, [[null, 5, 8], [null, 2, 5, 6]]],
    ['4-D default axes', {numHeads: 2, keyDim: 3}, [[4, 5, 8], [4, 5, 8]], {returnAttentionScores: true},
      [[null, 4, 5, 8], [null, 2, 4, 5, 4, 5]]],
    ['4-D attentionAxes [2]', {numHeads: 2, keyDim: 3, attentionAxes: [2]}, [[4, 5, 8], [4, 6, 8]], {returnAttentionScores: true},
      [[null, 4, 5, 8], [null, 4, 2, 5, 6]]],
  ];
  it.each(cases)('%s', (_, args, shapes, kwargs, expected) => {
    const out = multiHeadAttention(args).apply(shapes.map(shape => tf.input({shape})), kwargs);
    const shapeOf = (x: tf.SymbolicTensor|tf.SymbolicTensor[]): unknown => (Array.isArray(x) ? x.map(shapeOf) : x.shape);
    expect(shapeOf(out as tf.SymbolicTensor)).toEqual(expected);
  });

  it('takes tf.keras 2\'s node form, value as a keyword, also symbolically', () => {
    const query = tf.input({shape: [5, 8]});
    const value = tf.input({shape: [6, 3]});
    const out = multiHeadAttention({numHeads: 2, keyDim: 3}).apply(query, {value}) as tf.SymbolicTensor;
    expect(out.shape).toEqual([null, 5, 8]);
    const model = tf.model({inputs: [query, value], outputs: out});
    expect(model.layers.length).toBe(3);
  });
});

describe.each(withNative(['cpu', 'wasm'] as const))('numbers against Keras\' math on %s', (backend) => {
  runTestsOn(backend);

  const q = randomArray([2, 4, 6], 1) as N3;
  const v = randomArray([2, 5, 3], 2) as N3;
  const k = randomArray([2, 5, 7], 3) as N3;

  function check(args: MultiHeadAttentionArgs, call: KerasMhaCall, kwargs: {[key: string]: unknown} = {}, seed = 11): void {
    const inputs = [tensor(call.query), tensor(call.value), ...(call.key ? [tensor(call.key)] : [])];
    const attentionMask = call.attentionMask ? tensor(call.attentionMask) : undefined;
    const {layer, weights} = builtLayer(args, inputs, seed);
    const expected = kerasMha(call, weights);
    const options = {...kwargs, ...(attentionMask ? {attentionMask} : {}), ...(call.useCausalMask ? {useCausalMask: true} : {})};
    const before = tf.memory().numTensors;
    const result = layer.apply(inputs, options) as tf.Tensor|tf.Tensor[];
    if (Array.isArray(result)) {
      expectClose(result[0], expected.output, TOL);
      expectClose(result[1], expected.scores, TOL);
    } else {
      expectClose(result, expected.output, TOL);
    }
    tf.dispose(result);
    expect(tf.memory().numTensors).toBe(before);  // no leak
    tf.dispose([inputs, attentionMask]);
    layer.dispose();
  }

  it('self-attention', () => check({numHeads: 2, keyDim: 3}, {query: q, value: q}));
  it('cross-attention, distinct key, valueDim != keyDim', () => check({numHeads: 3, keyDim: 2, valueDim: 4}, {query: q, value: v, key: k}));
  it('outputShape', () => check({numHeads: 2, keyDim: 3, outputShape: 5}, {query: q, value: v}));
  it('useBias false', () => check({numHeads: 2, keyDim: 3, useBias: false}, {query: q, value: v, key: k}));
  it('useCausalMask (self and cross, top-left aligned)', () => {
    check({numHeads: 2, keyDim: 3}, {query: q, value: q, useCausalMask: true});
    check({numHeads: 2, keyDim: 3}, {query: q, value: v, useCausalMask: true});
  });
  it('attentionMask, with a fully masked query row (zeros -> the output bias)', () => {
    const mask = [[[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 1, 0, 0, 0]],
                  [[1, 1, 0, 0, 0], [0, 0, 1, 0, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 1]]];
    check({numHeads: 2, keyDim: 3}, {query: q, value: v, attentionMask: mask});
  });
  it('returnAttentionScores [B, H, T, S]', () => check({numHeads: 2, keyDim: 3}, {query: q, value: v, key: k}, {returnAttentionScores: true}));
  it('returnAttentionScores with causal and an attention mask', () => {
    const mask = [[[1, 1, 1, 1, 0]], [[0, 1, 1, 1, 1]]];  // [B, 1, S] broadcasts over T
    check({numHeads: 1, keyDim: 4}, {query: q, value: v, attentionMask: mask as N3, useCausalMask: true}, {returnAttentionScores: true});
  });

  it('padding masks from embedding({maskZero: true}) in a model (query, value and key masks)', () => {
    const ids = [[3, 1, 2, 0, 0], [4, 0, 0, 0, 0]];
    const otherIds = [[1, 2, 0, 0], [2, 3, 4, 1]];
    const queryIn = tf.input({shape: [5], dtype: 'int32'});
    const embedQ = tf.layers.embedding({inputDim: 5, outputDim: 6, maskZero: true});
    const mha = multiHeadAttention({numHeads: 2, keyDim: 3});
    const eq = embedQ.apply(queryIn) as tf.SymbolicTensor;
    const selfOut = mha.apply([eq, eq]) as tf.SymbolicTensor;
    const model = tf.model({inputs: queryIn, outputs: selfOut});
    const weights = setRandomWeights(mha, 21);
    const table = randomArray([5, 6], 4) as number[][];
    const tableT = tensor(table);
    embedQ.setWeights([tableT]);
    const idsT = tf.tensor2d(ids, undefined, 'int32');
    const out = model.predict(idsT) as tf.Tensor;
    const x = ids.map(row => row.map(id => table[id]));
    const mask = ids.map(row => row.map(id => (id === 0 ? 0 : 1)));
    expectClose(out, kerasMha({query: x, value: x, queryMask: mask, valueMask: mask}, weights).output, TOL);
    tf.dispose([out, tableT]);

    // Cross: the eager call form with tfjs' mask list [queryMask, valueMask] (model.predict
    // in tfjs 4.22 passes a layer only its first input's mask).
    const cross = multiHeadAttention({numHeads: 2, keyDim: 3});
    const xq = tensor(x);
    const xv = tensor(randomArray([2, 4, 3], 5));
    const xk = tensor(randomArray([2, 4, 2], 6));
    tf.dispose(cross.apply([xq, xv, xk]) as tf.Tensor);
    const cw = setRandomWeights(cross, 31);
    const vMask = otherIds.map(row => row.map(id => (id === 0 ? 0 : 1)));
    const kMask = [[1, 1, 1, 0], [0, 1, 1, 1]];
    const masks = [tensor(mask), tf.tensor2d(vMask).cast('bool'), tensor(kMask)];
    const crossOut = cross.apply([xq, xv, xk], {mask: masks}) as tf.Tensor;
    const expected = kerasMha({query: x, value: xv.arraySync() as N3, key: xk.arraySync() as N3,
                               queryMask: mask, valueMask: vMask, keyMask: kMask}, cw);
    expectClose(crossOut, expected.output, TOL);
    tf.dispose([crossOut, xq, xv, xk, masks, idsT]);
    model.dispose();
  });

  it('one input x is self-attention, [x, x]', () => {
    const x = tensor(q);
    const {layer} = builtLayer({numHeads: 2, keyDim: 3}, [x, x], 91);
    const [single, pair] = [layer.apply(x) as tf.Tensor, layer.apply([x, x]) as tf.Tensor];
    expectClose(single, pair, 0);
    tf.dispose([single, pair, x]);
  });

  it('model.predict keeps an intermediate tensor given twice and used again after (embedding -> [e, e] -> residual add, scores)', () => {
    // tfjs' executor counts uses per input slot and consumers per layer: without the layer
    // passing [e, e] on as e, it disposed e before the residual add (and the scores output) ran.
    const ids = tf.input({shape: [4], dtype: 'int32'});
    const embed = tf.layers.embedding({inputDim: 6, outputDim: 4});
    const e = embed.apply(ids) as tf.SymbolicTensor;
    const mha = multiHeadAttention({numHeads: 2, keyDim: 2});
    const [attended, scores] = mha.apply([e, e], {returnAttentionScores: true}) as tf.SymbolicTensor[];
    const sum = tf.layers.add().apply([e, attended]) as tf.SymbolicTensor;
    const model = tf.model({inputs: ids, outputs: [sum, scores]});
    const weights = setRandomWeights(mha, 95);
    const table = randomArray([6, 4], 96) as number[][];
    const tableT = tensor(table);
    embed.setWeights([tableT]);
    const tokens = [[1, 2, 3, 4], [5, 1, 0, 2]];
    const tokensT = tf.tensor2d(tokens, undefined, 'int32');
    const [out, sc] = model.predict(tokensT) as tf.Tensor[];
    const x = tokens.map(row => row.map(id => table[id]));
    const expected = kerasMha({query: x, value: x}, weights);
    expectClose(out, expected.output.map((row, b) => row.map((col, t) => col.map((o, j) => o + x[b][t][j]))), TOL);
    expectClose(sc, expected.scores, TOL);
    tf.dispose([out, sc, tableT, tokensT]);
    model.dispose();
  });

  it('attentionAxes (1, 2) on [B, H, W, C], and the default (every middle axis) the same', () => {
    const image = randomArray([2, 3, 2, 4], 8) as number[][][][];
    const context = randomArray([2, 2, 3, 4], 9) as number[][][][];
    for (const attentionAxes of [[1, 2], null]) {
      const inputs = [tensor(image), tensor(context)];
      const {layer, weights} = builtLayer({numHeads: 2, keyDim: 3, outputShape: 5, attentionAxes}, inputs, 41);
      const [out, scores] = layer.apply(inputs, {returnAttentionScores: true}) as tf.Tensor[];
      const expected = kerasMha2d(image, context, weights);
      expect(scores.shape).toEqual([2, 2, 3, 2, 2, 3]);
      expectClose(out, expected.output, TOL);
      expectClose(scores, expected.scores, TOL);
      tf.dispose([out, scores, inputs]);
    }
  });

  it('attentionAxes [2] on 4-D: axis 1 is batch-like (each slice attends on its own)', () => {
    const a = randomArray([2, 3, 4, 5], 12) as number[][][][];
    const inputs = [tensor(a), tensor(a)];
    const {layer, weights} = builtLayer({numHeads: 2, keyDim: 3, attentionAxes: 2}, inputs, 51);
    const [out, scores] = layer.apply(inputs, {returnAttentionScores: true}) as tf.Tensor[];
    expect(scores.shape).toEqual([2, 3, 2, 4, 4]);
    const outs = out.arraySync() as number[][][][];
    const sc = scores.arraySync() as number[][][][][];
    for (let x = 0; x < 3; x++) {
      const slice = a.map(batch => batch[x]);  // [B, 4, 5]
      const expected = kerasMha({query: slice, value: slice}, weights);
      expectClose(outs.map(batch => batch[x]), expected.output, TOL);
      expectClose(sc.map(batch => batch[x]), expected.scores, TOL);
    }
    tf.dispose([out, scores, inputs]);
  });
});

describe('the paths the planner picks for the layer\'s op', () => {
  afterEach(() => jest.restoreAllMocks());

  it('wasm inference runs the fused kernels: with the projections when the key is the value, the attention kernel otherwise; not with scores', async () => {
    await tf.setBackend('wasm');
    try {
      const layerKernel = jest.spyOn(fused, 'fusedAttentionLayer');
      const attentionKernel = jest.spyOn(fused, 'fusedAttention');
      const x = tensor(randomArray([2, 6, 8], 101));
      const c = tensor(randomArray([2, 5, 3], 106));
      const k = tensor(randomArray([2, 5, 4], 107));
      const xs = x.arraySync() as N3;
      const self = builtLayer({numHeads: 2, keyDim: 4, valueDim: 3, outputShape: [2, 2]}, [x, x], 102);
      const cross = builtLayer({numHeads: 2, keyDim: 4}, [x, c, k], 108);
      const calls = () => [layerKernel.mock.calls.length, attentionKernel.mock.calls.length];
      layerKernel.mockClear();
      attentionKernel.mockClear();
      const mask = tf.tensor2d([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]);
      const out = self.layer.apply([x, x], {useCausalMask: true, mask}) as tf.Tensor;
      expect(calls()).toEqual([1, 0]);
      const m = mask.arraySync();
      // outputShape [2, 2]: the reference's output kernel [H, vd, 4] and bias [4] are Keras' flattened row-major.
      const flatWeights = {...self.weights, outputKernel: self.weights.outputKernel.map(a => a.map(b => (b as unknown as number[][]).flat())),
                           outputBias: (self.weights.outputBias as unknown as number[][]).flat()};
      const expected = kerasMha({query: xs, value: xs, useCausalMask: true, queryMask: m, valueMask: m}, flatWeights).output;
      expectClose(out.reshape([2, 6, 4]), expected, TOL);
      const crossOut = cross.layer.apply([x, c, k]) as tf.Tensor;
      expect(calls()).toEqual([1, 1]);
      expectClose(crossOut, kerasMha({query: xs, value: c.arraySync() as N3, key: k.arraySync() as N3}, cross.weights).output, TOL);
      const [withScores, scores] = self.layer.apply([x, x], {returnAttentionScores: true}) as tf.Tensor[];
      expect(calls()).toEqual([1, 1]);
      tf.dispose([out, crossOut, withScores, scores, x, c, k, mask]);
    } finally {
      await tf.setBackend('cpu');
    }
  });

  it('long keys (S = 4096) take the memory-efficient path on cpu, and agree with Keras\' math', () => {
    const spy = jest.spyOn(blocked, 'memoryEfficientAttention');
    const q = randomArray([1, 2, 4], 103) as N3;
    const v = randomArray([1, 4096, 3], 104) as N3;
    const inputs = [tensor(q), tensor(v)];
    const {layer, weights} = builtLayer({numHeads: 1, keyDim: 2}, inputs, 105);
    spy.mockClear();
    const out = layer.apply(inputs) as tf.Tensor;
    expect(spy).toHaveBeenCalledTimes(1);
    expectClose(out, kerasMha({query: q, value: v}, weights).output, TOL);
    tf.dispose([out, inputs]);
  });
});

describe('training on wasm: the layer\'s fused training kernels', () => {
  afterEach(() => jest.restoreAllMocks());

  /**
   * The loss sum(output ∘ R) of `layer` on `inputs` (with the call's `options`) on `backend`, and its gradients for the
   * inputs and every trainable weight, in that order; whether `fusedAttentionLayerTraining` ran for them.
   */
  async function gradientsOn(backend: string, layer: MultiHeadAttention, inputs: tf.Tensor[], r: tf.Tensor,
                             options: Record<string, unknown>): Promise<{grads: tf.Tensor[]; fused: boolean}> {
    await tf.setBackend(backend);
    const spy = jest.spyOn(layerTraining, 'fusedAttentionLayerTraining');
    try {
      const given = inputs.map(x => tf.tensor(x.arraySync() as number[], x.shape));  // on this backend
      const readout = tf.tensor(r.arraySync() as number[], r.shape);
      const loss = (...xs: tf.Tensor[]) => tf.sum(tf.mul(layer.apply(xs, options) as tf.Tensor, readout)) as tf.Scalar;
      const variables = layer.trainableWeights.map(w => w.read() as tf.Variable);
      const {value, grads} = tf.variableGrads(() => loss(...given), variables);
      const inputGrads = tf.grads(loss)(given);
      const all = [value, ...inputGrads, ...variables.map(v => grads[v.name])];
      const copies = all.map(t => ({values: t.dataSync().slice(), shape: t.shape}));
      tf.dispose([given, readout, all, Object.values(grads)]);
      return {grads: copies.map(c => tf.tensor(c.values, c.shape)), fused: spy.mock.calls.length > 0};
    } finally {
      spy.mockRestore();
    }
  }

  it.each([
    ['self-attention, 2 heads, valueDim 3, outputShape [2, 2], causal, a padding mask', {numHeads: 2, keyDim: 4, valueDim: 3, outputShape: [2, 2]},
      [[2, 6, 8]], {useCausalMask: true}, [[[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]]],
    ['cross-attention (key = value), 3 heads, no biases, the value\'s padding', {numHeads: 3, keyDim: 5, useBias: false},
      [[2, 7, 6], [2, 9, 4]], {}, [null, [[1, 1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1]]]],
    ['self-attention, an attentionMask [B, T, S] (batch 1\'s query 2 attends no key), causal, a padding mask', {numHeads: 2, keyDim: 3},
      [[2, 5, 6]], {useCausalMask: true, attentionMask: [
        [[1, 0, 1, 1, 0], [1, 1, 0, 1, 1], [1, 1, 1, 0, 1], [0, 1, 1, 1, 1], [1, 1, 0, 1, 1]],
        [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [0, 0, 0, 1, 1], [1, 0, 1, 0, 1], [1, 1, 1, 1, 0]]]},
      [[[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]]],
  ] as Array<[string, MultiHeadAttentionArgs, number[][], Record<string, unknown>, Array<number[][]|null>]>)(
      '%s: the loss and the gradients of the inputs and every weight are cpu\'s (the standard path) within 1e-4', async (_, args, shapes, call, maskRows) => {
        const inputs = shapes.map((shape, i) => tensor(randomArray(shape, 120 + i)));
        const masks = maskRows.map(m => (m == null ? null : tf.tensor2d(m)));  // one per input: the query's, the value's
        const attentionMask = call.attentionMask == null ? null : tf.tensor3d(call.attentionMask as number[][][]);
        const options = {...call, mask: shapes.length === 1 ? masks[0] : masks, ...(attentionMask == null ? {} : {attentionMask})};
        const {layer} = builtLayer(args, inputs, 130);
        const out = layer.computeOutputShape(shapes.length === 1 ? [shapes[0], shapes[0]] : shapes) as number[];
        const r = tensor(randomArray(out, 140));
        const start = tf.memory().numTensors;
        const wasm = await gradientsOn('wasm', layer, inputs, r, options);
        const cpu = await gradientsOn('cpu', layer, inputs, r, options);
        expect([wasm.fused, cpu.fused]).toEqual([true, false]);
        expect(wasm.grads.length).toBe(1 + inputs.length + layer.trainableWeights.length);
        wasm.grads.forEach((g, i) => expectClose(g, cpu.grads[i], {abs: 1e-4, rel: 1e-4}));
        tf.dispose([wasm.grads, cpu.grads]);
        expect(tf.memory().numTensors).toBe(start);
        tf.dispose([...inputs, r, ...masks.filter((m): m is tf.Tensor2D => m != null), ...(attentionMask == null ? [] : [attentionMask])]);
        layer.dispose();
      });

  it('above the two-thread size (4 heads, 29 MFLOP): the same bits on two threads as on one, nothing leaked over 50 steps', async () => {
    await tf.setBackend('wasm');
    try {
      const [B, T, d] = [2, 301, 40];
      const x = tensor(randomArray([B, T, d], 150));
      const mask = tf.tensor2d(Array.from({length: B}, (__, b) => Array.from({length: T}, (___, t) => ((t + 3 * b) % 13 === 7 ? 0 : 1))));
      const {layer} = builtLayer({numHeads: 4, keyDim: 9, valueDim: 11, outputShape: 16}, [x, x], 151);  // 2·B·H·T²·(dk + dv) = 29 MFLOP
      const step = () => tf.tidy(() => {
        const variables = layer.trainableWeights.map(w => w.read() as tf.Variable);
        const {value, grads} = tf.variableGrads(() => tf.sum(layer.apply([x, x], {mask, useCausalMask: true}) as tf.Tensor) as tf.Scalar,
                                                variables);
        return [value, ...variables.map(v => grads[v.name])];
      });
      const on = (threads: 1|2) => {
        const previous = setAttentionThreads(threads);
        const spy = jest.spyOn(layerTraining, 'fusedAttentionLayerTraining');
        try {
          const result = step();
          expect(spy).toHaveBeenCalled();
          expect(fusedThreadsOfLastCall()).toBe(threads);
          return result;
        } finally {
          spy.mockRestore();
          setAttentionThreads(previous);
        }
      };
      const [one, two] = [on(1), on(2)];
      two.forEach((g, i) => expect(g.dataSync()).toEqual(one[i].dataSync()));
      tf.dispose([one, two]);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 50; i++) tf.dispose(on(2));
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, mask]);
      layer.dispose();
    } finally {
      await tf.setBackend('cpu');
    }
  });

  it('with dropout active, or a key of its own, the op takes the call instead (its own gradients)', async () => {
    await tf.setBackend('wasm');
    const spy = jest.spyOn(layerTraining, 'fusedAttentionLayerTraining');
    try {
      const x = tensor(randomArray([2, 5, 4], 160));
      const k = tensor(randomArray([2, 5, 4], 161));
      const dropping = builtLayer({numHeads: 2, keyDim: 2, dropout: 0.5}, [x, x], 162).layer;
      const plain = builtLayer({numHeads: 2, keyDim: 2}, [x, x, k], 163).layer;
      const gradOf = (layer: MultiHeadAttention, inputs: tf.Tensor[], options: Record<string, unknown>) =>
        tf.grad(q => tf.sum(layer.apply([q, ...inputs.slice(1)], options) as tf.Tensor) as tf.Scalar)(inputs[0]);
      const g1 = gradOf(dropping, [x, x], {training: true});
      const g2 = gradOf(plain, [x, x, k], {});
      expect(spy).not.toHaveBeenCalled();
      const g3 = gradOf(dropping, [x, x], {training: false});  // dropout inactive: the fused kernels again
      expect(spy).toHaveBeenCalledTimes(1);
      expect([g1, g2, g3].every(g => Array.from(g.dataSync()).every(Number.isFinite))).toBe(true);
      tf.dispose([x, k, g1, g2, g3]);
      dropping.dispose();
      plain.dispose();
    } finally {
      spy.mockRestore();
      await tf.setBackend('cpu');
    }
  });
});

describe('gradients against finite differences of the float64 reference', () => {
  it('d(sum(output · R))/d(query) and /d(query kernel), with causal', () => {
    const q = randomArray([1, 3, 4], 61) as N3;
    const v = randomArray([1, 4, 2], 62) as N3;
    const r = randomArray([1, 3, 4], 63) as N3;
    const qT = tensor(q);
    const vT = tensor(v);
    const rT = tensor(r);
    const {layer, weights} = builtLayer({numHeads: 2, keyDim: 2, valueDim: 3}, [qT, vT], 71);
    const loss = (x: tf.Tensor) => tf.sum(tf.mul(layer.apply([x, vT], {useCausalMask: true}) as tf.Tensor, rT)) as tf.Scalar;
    const gq = tf.grad(loss)(qT);
    const {grads} = tf.variableGrads(() => loss(qT), [layer.weights[0].read() as tf.Variable]);
    const refLoss = (query: N3, w: KerasMhaWeights) => {
      const out = kerasMha({query, value: v, useCausalMask: true}, w).output;
      let sum = 0;
      out.forEach((row, b) => row.forEach((col, t) => col.forEach((o, j) => { sum += o * r[b][t][j]; })));
      return sum;
    };
    const eps = 1e-6;
    const numericQ = q.map((row, b) => row.map((col, t) => col.map((_, j) => {
      const plus = JSON.parse(JSON.stringify(q)) as N3;
      const minus = JSON.parse(JSON.stringify(q)) as N3;
      plus[b][t][j] += eps;
      minus[b][t][j] -= eps;
      return (refLoss(plus, weights) - refLoss(minus, weights)) / (2 * eps);
    })));
    expectClose(gq, numericQ, {abs: 1e-4, rel: 1e-3});
    const kernel = weights.queryKernel;
    const numericW = kernel.map((a, i) => a.map((b, j) => b.map((_, l) => {
      const shift = (delta: number) => {
        const moved = JSON.parse(JSON.stringify(kernel)) as number[][][];
        moved[i][j][l] += delta;
        return refLoss(q, {...weights, queryKernel: moved});
      };
      return (shift(eps) - shift(-eps)) / (2 * eps);
    })));
    expectClose(Object.values(grads)[0], numericW, {abs: 1e-4, rel: 1e-3});
    tf.dispose([gq, grads, qT, vT, rT]);
  });
});

/** A Keras 3.15 MultiHeadAttention config, as `layer.get_config()` writes it (snake_case, nested objects). */
const KERAS3_CONFIG = {
  name: 'mha', trainable: true,
  dtype: {module: 'keras', class_name: 'DTypePolicy', config: {name: 'float32'}, registered_name: null},
  num_heads: 2, key_dim: 3, value_dim: 4, dropout: 0.1, use_bias: true, output_shape: null, attention_axes: null,
  kernel_initializer: {module: 'keras.initializers', class_name: 'GlorotUniform', config: {seed: null}, registered_name: null},
  bias_initializer: {module: 'keras.initializers', class_name: 'Zeros', config: {}, registered_name: null},
  kernel_regularizer: {module: 'keras.regularizers', class_name: 'L2', config: {l2: 0.01}, registered_name: null},
  bias_regularizer: null, activity_regularizer: null,
  kernel_constraint: {module: 'keras.constraints', class_name: 'MaxNorm', config: {max_value: 2, axis: 0}, registered_name: null},
  bias_constraint: null, seed: null, use_gate: false, sliding_window: null,
};

describe('configs', () => {
  it('round-trips its own camelCase config (every argument)', () => {
    const layer = multiHeadAttention({
      numHeads: 2, keyDim: 3, valueDim: 5, dropout: 0.25, useBias: false, outputShape: [2, 2], attentionAxes: [1],
      kernelInitializer: 'heNormal', biasRegularizer: 'l1l2', kernelConstraint: 'nonNeg', seed: 4, name: 'x',
    });
    const config = layer.getConfig();
    expect(config).toEqual(expect.objectContaining({
      numHeads: 2, keyDim: 3, valueDim: 5, dropout: 0.25, useBias: false, outputShape: [2, 2], attentionAxes: [1], seed: 4,
      kernelInitializer: {className: 'VarianceScaling', config: expect.objectContaining({scale: 2, mode: 'fanIn', distribution: 'normal'})},
      biasRegularizer: expect.objectContaining({className: 'L1L2'}),
      kernelConstraint: expect.objectContaining({className: 'NonNeg'}),
      activityRegularizer: null, biasConstraint: null, kernelRegularizer: null,
    }));
    const again = fromConfig(config);
    expect(again.getConfig()).toEqual(config);
  });

  it('reads a Keras 3.15 snake_case config (nested objects, DTypePolicy, seed, use_gate false, sliding_window null)', () => {
    const layer = fromConfig(KERAS3_CONFIG);
    const config = layer.getConfig();
    expect(config).toEqual(expect.objectContaining({
      name: 'mha', numHeads: 2, keyDim: 3, valueDim: 4, dropout: 0.1, useBias: true, outputShape: null, attentionAxes: null,
      kernelRegularizer: {className: 'L1L2', config: {l1: 0, l2: 0.01}},
      kernelConstraint: expect.objectContaining({className: 'MaxNorm', config: expect.objectContaining({maxValue: 2, axis: 0})}),
    }));
    layer.apply([tf.input({shape: [4, 6]}), tf.input({shape: [4, 6]})]);
    expect(layer.weights.map(w => w.shape)).toEqual([[6, 2, 3], [2, 3], [6, 2, 3], [2, 3], [6, 2, 4], [2, 4], [2, 4, 6], [6]]);
  });

  it('reads a tf.keras 2 config with query_shape/key_shape/value_shape and checks them at build', () => {
    const config = {num_heads: 1, key_dim: 2, query_shape: [null, 3, 4], value_shape: [null, 5, 6], key_shape: [null, 5, 6], name: 'old'};
    const layer = fromConfig(config);
    layer.apply([tf.input({shape: [3, 4]}), tf.input({shape: [5, 6]})]);
    expect(layer.weights.map(w => w.shape)).toEqual([[4, 1, 2], [1, 2], [6, 1, 2], [1, 2], [6, 1, 2], [1, 2], [1, 2, 4], [4]]);
    const wrong = fromConfig({...config, name: 'w'});
    expect(() => wrong.apply([tf.input({shape: [3, 5]}), tf.input({shape: [5, 6]})])).toThrow(/`queryShape`.*Received: queryShape=\[null, 3, 5\]/);
  });

  it.each([
    [{use_gate: true}, /argument `use_gate`.*Received: use_gate=true/],
    [{sliding_window: 8}, /argument `sliding_window`.*Received: sliding_window=8/],
    [{num_heads: 2, numHeads: 3}, /`numHeads` was given twice.*numHeads=3, num_heads=2/],
    [{rms_scaling: true}, /unknown argument `rms_scaling`/],
    [{dtype: 'float16'}, /argument `dtype`.*Received: dtype="float16"/],
    [{activity_regularizer: 'l2'}, /argument `activityRegularizer`/],
  ])('refuses what it cannot honour: %j', (extra, pattern) => {
    expect(() => new MultiHeadAttention({numHeads: 3, keyDim: 2, ...extra} as never)).toThrow(ValueError);
    expect(() => new MultiHeadAttention({numHeads: 3, keyDim: 2, ...extra} as never)).toThrow(pattern);
  });
});

describe('save and load through model.save("file://…")', () => {
  let tmp = '';
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-attention-mha-'));
  });
  afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

  it('reloads with tf.loadLayersModel and predicts the same (causal, scores, outputShape, cross)', async () => {
    const query = tf.input({shape: [4, 6]});
    const value = tf.input({shape: [5, 3]});
    const [out, scores] = multiHeadAttention({numHeads: 2, keyDim: 3, valueDim: 2, outputShape: 4, name: 'mha',
                                              biasInitializer: 'randomNormal'})
        .apply([query, value], {useCausalMask: true, returnAttentionScores: true}) as tf.SymbolicTensor[];
    const model = tf.model({inputs: [query, value], outputs: [out, scores]});
    const x = [tensor(randomArray([2, 4, 6], 81)), tensor(randomArray([2, 5, 3], 82))];
    const before = model.predict(x) as tf.Tensor[];
    await model.save(`file://${tmp}/m`);
    const loaded = await tf.loadLayersModel(`file://${tmp}/m/model.json`);
    expect(loaded.layers[2]).toBeInstanceOf(MultiHeadAttention);
    const after = loaded.predict(x) as tf.Tensor[];
    expect(after.map(t => t.shape)).toEqual([[2, 4, 4], [2, 2, 4, 5]]);
    expectClose(after[0], before[0], 1e-6);
    expectClose(after[1], before[1], 1e-6);
    // The causal call argument survived the round trip: key s > t gets weight 0.
    expect((after[1].arraySync() as number[][][][])[0][0][0].slice(1)).toEqual([0, 0, 0, 0]);
    tf.dispose([x, before, after]);
  });
});

describe('in models: save and load of a masked self-attention, training', () => {
  let tmp = '';
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-attention-mha-self-'));
  });
  afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

  /** embedding({maskZero}) -> MHA([e, e], causal) -> residual add -> dense. */
  function selfAttentionModel(): tf.LayersModel {
    const ids = tf.input({shape: [5], dtype: 'int32'});
    const e = tf.layers.embedding({inputDim: 7, outputDim: 6, maskZero: true, embeddingsInitializer: tf.initializers.randomUniform({seed: 3})})
        .apply(ids) as tf.SymbolicTensor;
    const attended = multiHeadAttention({numHeads: 2, keyDim: 3, dropout: 0.1, name: 'mha',
                                         kernelInitializer: tf.initializers.glorotUniform({seed: 4})})
        .apply([e, e], {useCausalMask: true}) as tf.SymbolicTensor;
    const sum = tf.layers.add().apply([e, attended]) as tf.SymbolicTensor;
    const out = tf.layers.dense({units: 2, kernelInitializer: tf.initializers.glorotUniform({seed: 5})}).apply(sum) as tf.SymbolicTensor;
    return tf.model({inputs: ids, outputs: out});
  }

  it('reloads with tf.loadLayersModel and predicts the same, padding and causal kept', async () => {
    const model = selfAttentionModel();
    const ids = tf.tensor2d([[0, 0, 1, 2, 3], [4, 5, 6, 1, 2]], undefined, 'int32');  // row 0 padded on the left
    const before = model.predict(ids) as tf.Tensor;
    await model.save(`file://${tmp}/self`);
    const loaded = await tf.loadLayersModel(`file://${tmp}/self/model.json`);
    const after = loaded.predict(ids) as tf.Tensor;
    expectClose(after, before, 1e-6);
    // The padding mask survived: changing the padding token's embedding (id 0) changes no unpadded
    // output (positions 2-4 of row 0 attend causally to keys 0-1, which are padding), only the padded ones.
    const table = loaded.layers[1].getWeights()[0];
    const moved = tf.tidy(() => tf.concat([tf.fill([1, 6], 3), table.slice([1, 0], [6, 6])]));
    loaded.layers[1].setWeights([moved]);
    const again = loaded.predict(ids) as tf.Tensor;
    expectClose(again.slice([0, 2, 0], [1, 3, 2]), after.slice([0, 2, 0], [1, 3, 2]), 1e-6);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(again.slice([0, 0, 0], [1, 2, 2]), after.slice([0, 0, 0], [1, 2, 2])))).dataSync()[0]))
        .toBeGreaterThan(1e-3);
    tf.dispose([ids, before, after, again, moved]);
  });

  it('trains with model.fit (dropout active, gradients through the op): the loss goes down', async () => {
    const model = selfAttentionModel();
    model.compile({optimizer: tf.train.adam(0.05), loss: 'meanSquaredError'});
    const ids = tf.tensor2d([[1, 2, 3, 0, 0], [4, 5, 6, 1, 2]], undefined, 'int32');
    const target = tf.tensor(randomArray([2, 5, 2], 99) as number[][][]);
    const history = await model.fit(ids, target, {epochs: 15, batchSize: 2, verbose: 0});
    const losses = history.history.loss as number[];
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] * 0.8);
    tf.dispose([ids, target]);
  });
});

describe('bad arguments and inputs', () => {
  it.each([
    [{numHeads: 0, keyDim: 2}, 'Received an invalid value for argument `numHeads`, expected a positive integer. Received: numHeads=0'],
    [{numHeads: 2, keyDim: -1}, 'Received an invalid value for argument `keyDim`, expected a positive integer. Received: keyDim=-1'],
    [{numHeads: 2, keyDim: 2, valueDim: 1.5}, 'argument `valueDim`'],
    [{numHeads: 2, keyDim: 2, dropout: 1}, 'argument `dropout`'],
    [{numHeads: 2, keyDim: 2, outputShape: [2, 0]}, 'argument `outputShape`'],
    [{numHeads: 2, keyDim: 2, attentionAxes: [0]}, 'argument `attentionAxes`'],
    [{numHeads: 2, keyDim: 2, useBias: 'yes'}, 'argument `useBias`'],
    [{numHeads: 2, keyDim: 2, kernelInitializer: 'nope'}, 'argument `kernelInitializer`'],
    [{numHeads: 2, keyDim: 2, bogus: 1}, 'unknown argument `bogus`'],
  ])('constructor %j', (args, message) => {
    expect(() => multiHeadAttention(args as never)).toThrow(message);
  });

  const q = () => tf.ones([2, 3, 4]);
  /** A layer built for query, value and key [B, T, 4] (its weights made before the leak count starts). */
  const built = (args: Partial<MultiHeadAttentionArgs> = {}) => {
    const layer = multiHeadAttention({numHeads: 1, keyDim: 2, ...args});
    layer.apply([tf.input({shape: [3, 4]}), tf.input({shape: [3, 4]})]);
    return layer;
  };
  const cases: Array<[string, () => MultiHeadAttention, (layer: MultiHeadAttention) => unknown, RegExp]> = [
    ['four inputs', () => multiHeadAttention({numHeads: 1, keyDim: 2}), l => l.apply([q(), q(), q(), tf.ones([2, 3, 5])]),
      /\[query, value\].*Received: 4 inputs/],
    ['rank 2', () => multiHeadAttention({numHeads: 1, keyDim: 2}), l => l.apply([tf.ones([2, 4]), tf.ones([2, 4])]), /at least 3.*query.shape=\[2, 4\]/],
    ['batch mismatch', built, l => l.apply([q(), tf.ones([3, 3, 4])]), /axis 0.*value.shape=\[3, 3, 4\]/],
    ['key and value lengths', built, l => l.apply([q(), tf.ones([2, 5, 4]), tf.ones([2, 6, 4])]), /same length.*key.shape=\[2, 6, 4\]/],
    ['attentionAxes on the feature axis', () => multiHeadAttention({numHeads: 1, keyDim: 2, attentionAxes: [2]}), l => l.apply([q(), q()]),
      /`attentionAxes`.*1 to 1.*attentionAxes=\[2\]/],
    ['value as raw JSON (tf.keras 2 reference)', built, l => l.apply(q(), {value: ['v', 0, 0]}),
      /`value` must be a tf.Tensor.*loadKerasModel.*Received: value=\["v", 0, 0\]/],
    ['unknown call argument', built, l => l.apply([q(), q()], {causal: true}), /unknown call argument `causal`/],
    ['attentionMask shape', built, l => l.apply([q(), q()], {attentionMask: tf.ones([2, 3, 2])}),
      /`attentionMask` must have shape \[B, T, S\] = \[2, 3, 3\].*\[2, 3, 2\]/],
    ['mask shape', built, l => l.apply([q(), q()], {mask: [tf.ones([2, 4]), null]}), /padding mask of the query\) must have shape \[2, 3\]/],
    ['masks on rank 4', () => {
      const layer = multiHeadAttention({numHeads: 1, keyDim: 2});
      layer.apply([tf.input({shape: [2, 2, 3]}), tf.input({shape: [2, 2, 3]})]);
      return layer;
    }, l => l.apply([tf.ones([1, 2, 2, 3]), tf.ones([1, 2, 2, 3])], {useCausalMask: true}), /rank-3 inputs.*useCausalMask=true/],
    ['symbolic attentionMask', built, l => l.apply([tf.input({shape: [3, 4]}), tf.input({shape: [3, 4]})], {attentionMask: tf.input({shape: [3, 3]})}),
      /`attentionMask` must be an eager tf.Tensor.*Received: a SymbolicTensor of shape \[null, 3, 3\]/],
    ['nodes that disagree on call arguments', built, l => l.apply([tf.input({shape: [3, 4]}), tf.input({shape: [3, 4]})], {useCausalMask: true}),
      /several nodes.*same `useCausalMask`.*"useCausalMask":true.*after.*"useCausalMask":false/],
    ['useCausalMask not a boolean', built, l => l.apply([q(), q()], {useCausalMask: 1}), /argument `useCausalMask`, expected a boolean. Received: useCausalMask=1/],
    ['built width', built, l => l.apply([tf.ones([2, 3, 5]), q()]), /built for query width 4.*query.shape=\[2, 3, 5\]/],
  ];
  it.each(cases)('%s: a ValueError naming it, no tensor leaked', (_, make, fn, pattern) => {
    const layer = make();
    expectThrowsWithoutLeak(() => tf.tidy(() => {
      fn(layer);
    }), pattern);
    if (layer.built) layer.dispose();
  });
});

describe('leaks', () => {
  it('eager calls (self, cross with masks, scores, 4-D) leave no tensor behind', () => {
    const x = tf.ones([2, 3, 4]);
    const layer = multiHeadAttention({numHeads: 2, keyDim: 2});
    tf.dispose(layer.apply([x, x]) as tf.Tensor);
    const mask = tf.tensor2d([[1, 1, 0], [1, 0, 0]]);
    expectNoLeak(() => tf.dispose(layer.apply([x, x], {mask: [mask, mask], useCausalMask: true, returnAttentionScores: true}) as tf.Tensor[]));
    const image = tf.ones([1, 2, 2, 4]);
    const layer4 = multiHeadAttention({numHeads: 1, keyDim: 2});
    tf.dispose(layer4.apply([image, image]) as tf.Tensor);
    expectNoLeak(() => tf.dispose(layer4.apply([image, image], {returnAttentionScores: true}) as tf.Tensor[]));
    tf.dispose([x, mask, image]);
  });
});
