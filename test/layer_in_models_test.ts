/**
 * Acceptance 4 and 7: ScaledDotProductAttention inside tf.sequential and functional tf.model
 * graphs, model.summary(), getConfig/fromConfig and the serialization registry, initializers,
 * regularizers and constraints, training with model.fit, and tensor leaks.
 *
 * Expected values come from the plain-array implementation of attention
 * (test/helpers/reference_attention.ts), fed with the layer's own weights, never from the
 * code under test.
 */
import * as tf from '@tensorflow/tfjs';
import {ScaledDotProductAttention, scaledDotProductAttention} from '../src';
import {Matrix as Mat, referenceAttention, ReferenceWeights, Tensor3} from './helpers/reference_attention';
import {withNative} from './helpers/native';
import {expectClose, filled, randomArray, runTestsOn, seededRandom} from './helpers/tensors';

/** The layer's weights in the documented getWeights() order, as nested arrays. */
function referenceWeightsOf(layer: ScaledDotProductAttention): ReferenceWeights {
  const values = layer.getWeights().map(t => t.arraySync());
  const [wq, wk, wv] = values as Mat[];
  const result: ReferenceWeights = {wq, wk, wv};
  let next = 3;
  if (layer.useBias) {
    [result.bq, result.bk, result.bv] = values.slice(3, 6) as number[][];
    next = 6;
  }
  if (layer.outputDim != null) {
    result.wo = values[next] as Mat;
    if (layer.useBias) result.bo = values[next + 1] as number[];
  }
  return result;
}

/** Runs `body` and checks that it leaves the number of live tensors unchanged. */
async function expectNoLeak(body: () => unknown): Promise<void> {
  const before = tf.memory().numTensors;
  await body();
  expect(tf.memory().numTensors).toBe(before);
}

function summaryLines(model: tf.LayersModel): string[] {
  const lines: string[] = [];
  model.summary(160, undefined, (...parts: unknown[]) => lines.push(parts.join(' ')));
  return lines;
}

/** cpu, and tensorflow (tfjs-node) when it loads; its absence is a skipped test with the reason. */
const BACKENDS = withNative(['cpu']);

describe.each(BACKENDS)('on %s', (backend) => {
  runTestsOn(backend);

  describe('ScaledDotProductAttention in tf.sequential', () => {
    it('runs as the first layer (inputShape) and after an inputLayer, and summary() counts its parameters', () => {
      const dq = 8, heads = 2, keyDim = 4, valueDim = 3, outputDim = 6;
      // wq, wk: dq x H*kd; wv: dq x H*vd; bq, bk: H*kd; bv: H*vd; wo: H*vd x outputDim; bo: outputDim.
      const expectedParams =
          dq * heads * keyDim + dq * heads * keyDim + dq * heads * valueDim +
          heads * keyDim + heads * keyDim + heads * valueDim +
          heads * valueDim * outputDim + outputDim;
      expect(expectedParams).toBe(64 + 64 + 48 + 8 + 8 + 6 + 36 + 6);  // = 240

      const args = {numHeads: heads, keyDim, valueDim, useBias: true, outputDim, name: 'attn'};
      const first = tf.sequential({layers: [scaledDotProductAttention({...args, inputShape: [5, dq]})]});
      const afterInput = tf.sequential({
        layers: [tf.layers.inputLayer({inputShape: [5, dq]}), new ScaledDotProductAttention({...args, name: 'attn2'})],
      });
      for (const model of [first, afterInput]) {
        expect(model.outputs[0].shape).toEqual([null, 5, outputDim]);
        expect(model.countParams()).toBe(expectedParams);
        const layer = model.layers[model.layers.length - 1] as ScaledDotProductAttention;
        expect(layer.getWeights().map(w => w.shape)).toEqual([
          [dq, heads * keyDim], [dq, heads * keyDim], [dq, heads * valueDim],
          [heads * keyDim], [heads * keyDim], [heads * valueDim], [heads * valueDim, outputDim], [outputDim],
        ]);
        // tfjs suffixes a variable name already taken in the process (_2, _3: this suite runs once per backend).
        expect(layer.weights.map(w => w.name.split('/').pop()!.replace(/_\d+$/, '')))
            .toEqual(['wq', 'wk', 'wv', 'bq', 'bk', 'bv', 'wo', 'bo']);

        const lines = summaryLines(model);
        const row = lines.find(line => line.includes(`${layer.name} (ScaledDotProductAttention)`));
        expect(row).toBeDefined();
        expect(row!.trim().split(/\s+/).pop()).toBe(String(expectedParams));
        expect(lines).toContain(`Total params: ${expectedParams}`);
        expect(lines).toContain(`Trainable params: ${expectedParams}`);

        const xValues = randomArray([2, 5, dq], 11) as Tensor3;
        const x = tf.tensor3d(xValues);
        const y = model.predict(x) as tf.Tensor;
        const expected = referenceAttention(xValues, null, referenceWeightsOf(layer), {numHeads: heads});
        expect(y.shape).toEqual([2, 5, outputDim]);
        expectClose(y, expected.output);
        tf.dispose([x, y]);
      }
    });

    it('feeds following layers (flatten, dense) and predicts the same as the layer applied eagerly', () => {
      const model = tf.sequential({
        layers: [
          scaledDotProductAttention({inputShape: [4, 3], keyDim: 2, causal: true}),
          tf.layers.flatten(),
          tf.layers.dense({units: 2}),
        ],
      });
      expect(model.outputs[0].shape).toEqual([null, 2]);
      const x = tf.tensor3d(randomArray([3, 4, 3], 5) as Tensor3);
      const attention = model.layers[0].apply(x) as tf.Tensor;  // [3, 4, 2]: valueDim defaults to keyDim
      expect(attention.shape).toEqual([3, 4, 2]);
      const byHand = tf.layers.dense({units: 2, weights: model.layers[2].getWeights()}).apply(attention.reshape([3, 8])) as tf.Tensor;
      const predicted = model.predict(x) as tf.Tensor;
      expectClose(predicted, byHand.arraySync(), 1e-6);
      tf.dispose([x, attention, byHand, predicted]);
    });
  });

  describe('ScaledDotProductAttention in a functional tf.model with symbolic inputs', () => {
    it('self-attention (causal) on a variable-length input [null, 4] predicts the reference for two lengths', () => {
      const input = tf.input({shape: [null, 4]});
      const layer = new ScaledDotProductAttention({numHeads: 2, keyDim: 3, causal: true});
      const output = layer.apply(input) as tf.SymbolicTensor;
      expect(output.shape).toEqual([null, null, 6]);
      const model = tf.model({inputs: input, outputs: output});
      for (const length of [3, 6]) {
        const xValues = randomArray([2, length, 4], 100 + length) as Tensor3;
        const x = tf.tensor3d(xValues);
        const y = model.predict(x) as tf.Tensor;
        const expected = referenceAttention(xValues, null, referenceWeightsOf(layer), {numHeads: 2, causal: true});
        expect(y.shape).toEqual([2, length, 6]);
        expectClose(y, expected.output);
        tf.dispose([x, y]);
      }
    });

    it('cross-attention with two inputs of different lengths and widths: shapes, summary and values', () => {
      const query = tf.input({shape: [5, 8], name: 'query'});
      const context = tf.input({shape: [7, 3], name: 'context'});
      const layer = new ScaledDotProductAttention({numHeads: 2, keyDim: 4, name: 'attn'});
      const output = layer.apply([query, context]) as tf.SymbolicTensor;
      // valueDim defaults to keyDim; no output projection: width H*valueDim = 8.
      expect(output.shape).toEqual([null, 5, 8]);
      const model = tf.model({inputs: [query, context], outputs: output});

      // wq: dq x H*kd = 8x8; wk: dc x H*kd = 3x8; wv: dc x H*vd = 3x8; no biases.
      const expectedParams = 8 * 8 + 3 * 8 + 3 * 8;
      expect(layer.getWeights().map(w => w.shape)).toEqual([[8, 8], [3, 8], [3, 8]]);
      const lines = summaryLines(model);
      const row = lines.find(line => line.includes('attn (ScaledDotProductAttention)'));
      expect(row).toBeDefined();
      expect(row).toMatch(new RegExp(`\\b${expectedParams}\\b`));
      expect(row).toMatch(/query\[0\]\[0\]/);  // "Receives inputs" lists both inputs
      expect(lines.join('\n')).toMatch(/context\[0\]\[0\]/);
      expect(lines).toContain(`Total params: ${expectedParams}`);

      const qValues = randomArray([2, 5, 8], 21) as Tensor3;
      const cValues = randomArray([2, 7, 3], 22) as Tensor3;
      const [q, c] = [tf.tensor3d(qValues), tf.tensor3d(cValues)];
      const y = model.predict([q, c]) as tf.Tensor;
      expect(y.shape).toEqual([2, 5, 8]);
      expectClose(y, referenceAttention(qValues, cValues, referenceWeightsOf(layer), {numHeads: 2}).output);
      tf.dispose([q, c, y]);
    });

    it('returnAttentionScores gives the model two outputs: [output, weights [B, H, T, S]]', () => {
      const query = tf.input({shape: [3, 4]});
      const context = tf.input({shape: [5, 2]});
      const layer = new ScaledDotProductAttention({
        numHeads: 2, keyDim: 2, valueDim: 3, useBias: true, outputDim: 4, scale: 0.8, returnAttentionScores: true,
        biasInitializer: tf.initializers.randomUniform({minval: -0.5, maxval: 0.5, seed: 3}),
      });
      const outputs = layer.apply([query, context]) as tf.SymbolicTensor[];
      expect(outputs.map(o => o.shape)).toEqual([[null, 3, 4], [null, 2, 3, 5]]);
      const model = tf.model({inputs: [query, context], outputs});
      expect(model.outputs).toHaveLength(2);

      const qValues = randomArray([2, 3, 4], 31) as Tensor3;
      const cValues = randomArray([2, 5, 2], 32) as Tensor3;
      const [q, c] = [tf.tensor3d(qValues), tf.tensor3d(cValues)];
      const [y, weights] = model.predict([q, c]) as tf.Tensor[];
      const expected = referenceAttention(qValues, cValues, referenceWeightsOf(layer), {numHeads: 2, scale: 0.8});
      expect(weights.shape).toEqual([2, 2, 3, 5]);
      expectClose(y, expected.output);
      expectClose(weights, expected.weights);
      const rowSums = weights.sum(-1);
      expectClose(rowSums, filled([2, 2, 3], () => 1), 1e-6);
      tf.dispose([q, c, y, weights, rowSums]);
    });

    it('takes padding masks from an embedding with maskZero: padded keys and padded queries get zero weight', () => {
      const ids = tf.input({shape: [4], dtype: 'int32'});
      const embedded = tf.layers.embedding({
        inputDim: 6, outputDim: 4, maskZero: true, embeddingsInitializer: tf.initializers.randomNormal({seed: 4}),
      }).apply(ids) as tf.SymbolicTensor;
      const layer = new ScaledDotProductAttention({keyDim: 3, returnAttentionScores: true});
      const outputs = layer.apply(embedded) as tf.SymbolicTensor[];
      const model = tf.model({inputs: ids, outputs});

      const idValues = [[1, 2, 5, 0], [3, 0, 0, 0]];
      const tokens = tf.tensor2d(idValues, undefined, 'int32');
      const [y, weights] = model.predict(tokens) as tf.Tensor[];
      const table = model.layers[1].getWeights()[0].arraySync() as Mat;
      const xValues = idValues.map(row => row.map(id => table[id]));
      const notPad = idValues.map(row => row.map(id => (id !== 0 ? 1 : 0)));  // [B, T]
      const expected = referenceAttention(xValues, null, referenceWeightsOf(layer), {
        numHeads: 1, queryPadding: notPad, keyPadding: notPad,
      });
      expectClose(weights, expected.weights);
      expectClose(y, expected.output);
      // Spelled out: batch 1 has one real token, which attends only itself.
      // (Within float32 rounding: tensorflow's softmax gives 1 as 0.99999994.)
      expectClose((weights.arraySync() as number[][][][])[1][0], [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], 1e-6);
      expect(Array.from(y.dataSync()).every(Number.isFinite)).toBe(true);
      tf.dispose([tokens, y, weights]);
    });

    it('refuses a symbolic attentionMask, naming the argument and its shape, and leaks nothing', async () => {
      const x = tf.input({shape: [5, 4]});
      const mask = tf.input({shape: [5, 5]});
      const layer = new ScaledDotProductAttention({keyDim: 2});
      await expectNoLeak(() => {
        expect(() => layer.apply(x, {attentionMask: mask})).toThrow(
            /Argument `attentionMask` must be an eager tf\.Tensor.*Received: a SymbolicTensor of shape \[null, 5, 5\]/);
      });
    });

    it('refuses three inputs, and mismatched query/context batches when the model runs, naming both shapes, without leaks', async () => {
      const a = tf.input({shape: [2, 3]});
      expect(() => new ScaledDotProductAttention({keyDim: 2}).apply([a, a, a])).toThrow(
          /one input x \(self-attention\) or \[query, context\] \(cross-attention\)\. Received: 3 inputs/);

      const query = tf.input({shape: [2, 3]});
      const context = tf.input({shape: [4, 3]});
      const model = tf.model({inputs: [query, context], outputs: new ScaledDotProductAttention({keyDim: 2}).apply([query, context]) as tf.SymbolicTensor});
      const q = tf.zeros([2, 2, 3]);
      const c = tf.zeros([3, 4, 3]);
      // model.apply runs the graph on the tensors as given. (model.predict would not reach the
      // layer: tfjs' predict slices every input to the first input's batch size without a check.)
      await expectNoLeak(() => {
        expect(() => model.apply([q, c])).toThrow(
            /must have the same batch size\. Received: query\.shape=\[2, 2, 3\], context\.shape=\[3, 4, 3\]/);
      });
      tf.dispose([q, c]);
    });

    it('100 predict calls of a functional model with two outputs return numTensors to its baseline', async () => {
      const query = tf.input({shape: [3, 4]});
      const context = tf.input({shape: [5, 2]});
      const outputs = new ScaledDotProductAttention({numHeads: 2, keyDim: 2, useBias: true, outputDim: 3, returnAttentionScores: true})
          .apply([query, context]) as tf.SymbolicTensor[];
      const model = tf.model({inputs: [query, context], outputs});
      await expectNoLeak(() => {
        const q = tf.randomNormal([2, 3, 4]);
        const c = tf.randomNormal([2, 5, 2]);
        for (let i = 0; i < 100; i++) tf.dispose(model.predict([q, c]) as tf.Tensor[]);
        tf.dispose([q, c]);
      });
    });
  });

  describe('getConfig, fromConfig and the serialization registry', () => {
    const fullArgs = () => ({
      name: 'attn', keyDim: 3, valueDim: 2, numHeads: 2, useBias: true, outputDim: 5, causal: true,
      dropout: 0.1, scale: 0.7, returnAttentionScores: true,
      kernelInitializer: 'heNormal',                                    // by name
      biasInitializer: tf.initializers.constant({value: 0.5}),          // by instance
      kernelRegularizer: tf.regularizers.l1l2({l1: 0.001, l2: 0.01}),   // by instance
      biasRegularizer: 'l1l2',                                          // by name (tfjs' default l1 = l2 = 0.01)
      kernelConstraint: 'nonNeg',                                       // by name
      biasConstraint: tf.constraints.minMaxNorm({minValue: 0, maxValue: 1}),  // by instance
    });

    it('getConfig carries every argument, with objects in the {className, config} form', () => {
      const config = new ScaledDotProductAttention(fullArgs()).getConfig();
      expect(config).toEqual(expect.objectContaining({
        name: 'attn', trainable: true, keyDim: 3, valueDim: 2, numHeads: 2, useBias: true, outputDim: 5, causal: true,
        dropout: 0.1, scale: 0.7, returnAttentionScores: true,
        // heNormal is VarianceScaling(scale 2, fanIn, normal) in tfjs, as in Keras.
        kernelInitializer: {className: 'VarianceScaling', config: {scale: 2, mode: 'fanIn', distribution: 'normal'}},
        biasInitializer: {className: 'Constant', config: {value: 0.5}},
        kernelRegularizer: {className: 'L1L2', config: {l1: 0.001, l2: 0.01}},
        biasRegularizer: {className: 'L1L2', config: {l1: 0.01, l2: 0.01}},
        kernelConstraint: {className: 'NonNeg', config: {}},
        biasConstraint: {className: 'MinMaxNorm', config: expect.objectContaining({minValue: 0, maxValue: 1})},
      }));
      const defaults = new ScaledDotProductAttention({}).getConfig();
      expect(defaults).toEqual(expect.objectContaining({
        keyDim: null, valueDim: null, numHeads: 1, useBias: false, outputDim: null, causal: false, dropout: 0,
        scale: null, returnAttentionScores: false, kernelRegularizer: null, biasRegularizer: null,
        kernelConstraint: null, biasConstraint: null, biasInitializer: {className: 'Zeros', config: {}},
      }));
    });

    it('fromConfig gives a layer with an equal config that, given the same weights, gives equal outputs', () => {
      const original = new ScaledDotProductAttention({...fullArgs(), kernelConstraint: null, biasConstraint: null});
      const [qValues, cValues] = [randomArray([2, 4, 3], 41) as Tensor3, randomArray([2, 6, 5], 42) as Tensor3];
      const [q, c] = [tf.tensor3d(qValues), tf.tensor3d(cValues)];
      const expectedOutputs = original.apply([q, c]) as tf.Tensor[];

      for (const config of [original.getConfig(), JSON.parse(JSON.stringify(original.getConfig()))]) {
        const copy = ScaledDotProductAttention.fromConfig(ScaledDotProductAttention, config) as ScaledDotProductAttention;
        expect(copy).toBeInstanceOf(ScaledDotProductAttention);
        expect(copy.getConfig()).toEqual(original.getConfig());
        copy.build([[null, 4, 3], [null, 6, 5]]);
        copy.setWeights(original.getWeights());
        const outputs = copy.apply([q, c]) as tf.Tensor[];
        expect(outputs).toHaveLength(2);
        outputs.forEach((output, i) => expectClose(output, expectedOutputs[i].arraySync(), 0));
        tf.dispose(outputs);
      }
      tf.dispose([q, c, ...expectedOutputs]);
    });

    it('is registered under "ScaledDotProductAttention": a model rebuilt from its JSON contains the class', () => {
      const entry = tf.serialization.SerializationMap.getMap().classNameMap.ScaledDotProductAttention;
      expect(entry).toBeDefined();
      expect(entry[0]).toBe(ScaledDotProductAttention);
      expect(ScaledDotProductAttention.className).toBe('ScaledDotProductAttention');

      const model = tf.sequential({
        layers: [scaledDotProductAttention({inputShape: [3, 4], numHeads: 2, keyDim: 2, causal: true, outputDim: 3})],
      });
      const json = model.toJSON(undefined, false) as unknown as tf.serialization.ConfigDict;
      expect(JSON.stringify(json)).toContain('"class_name":"ScaledDotProductAttention"');
      return tf.models.modelFromJSON({modelTopology: json}).then(rebuilt => {
        const layer = rebuilt.layers[rebuilt.layers.length - 1];
        expect(layer).toBeInstanceOf(ScaledDotProductAttention);
        // The Python-style JSON turns an unset initializer seed (undefined) into null: the same meaning.
        const withoutNulls = (config: tf.serialization.ConfigDict) =>
          JSON.parse(JSON.stringify(config, (_key, value) => value === null ? undefined : value));
        expect(withoutNulls(layer.getConfig())).toEqual(withoutNulls(model.layers[0].getConfig()));
        expect(layer.getConfig()).toEqual(expect.objectContaining({numHeads: 2, keyDim: 2, causal: true, outputDim: 3}));
        rebuilt.setWeights(model.getWeights());
        const x = tf.tensor3d(randomArray([2, 3, 4], 51) as Tensor3);
        const [a, b] = [model.predict(x) as tf.Tensor, rebuilt.predict(x) as tf.Tensor];
        expectClose(b, a.arraySync(), 0);
        tf.dispose([x, a, b]);
      });
    });

    it('custom initializers (by name and instance) survive a JSON round trip and initialize the weights', () => {
      const original = new ScaledDotProductAttention({
        keyDim: 2, useBias: true, outputDim: 2, kernelInitializer: 'ones', biasInitializer: tf.initializers.constant({value: 0.5}),
      });
      const copy = ScaledDotProductAttention.fromConfig(
          ScaledDotProductAttention, JSON.parse(JSON.stringify(original.getConfig()))) as ScaledDotProductAttention;
      copy.build([null, 3, 4]);
      const values = copy.getWeights().map(w => Array.from(w.dataSync()));
      const [wq, wk, wv, bq, bk, bv, wo, bo] = values;
      for (const kernel of [wq, wk, wv, wo]) expect(new Set(kernel)).toEqual(new Set([1]));
      for (const bias of [bq, bk, bv, bo]) expect(new Set(bias)).toEqual(new Set([0.5]));
    });

    it('constraints (by name and instance) survive a JSON round trip and project the weights set', () => {
      const config = JSON.parse(JSON.stringify(new ScaledDotProductAttention(fullArgs()).getConfig()));
      const copy = ScaledDotProductAttention.fromConfig(ScaledDotProductAttention, config) as ScaledDotProductAttention;
      copy.build([null, 4, 3]);
      // tfjs-layers applies constraints when weights are written with setWeights (not inside fit).
      copy.setWeights(copy.getWeights().map(w => tf.fill(w.shape, -1)));
      const values = copy.getWeights().map(w => Array.from(w.dataSync()));
      const [wq, wk, wv, bq, bk, bv, wo, bo] = values;
      for (const kernel of [wq, wk, wv, wo]) expect(new Set(kernel)).toEqual(new Set([0]));  // nonNeg
      for (const bias of [bq, bk, bv, bo]) {  // minMaxNorm(0, 1): a bias of -1s is rescaled to norm 1
        const norm = Math.sqrt(bias.reduce((s, v) => s + v * v, 0));
        expect(norm).toBeCloseTo(1, 6);
        bias.forEach(v => expect(v).toBeCloseTo(-1 / Math.sqrt(bias.length), 6));
      }
    });

    it('regularizers (by name and instance) survive a JSON round trip and add their penalty to the training loss', async () => {
      const args = {
        numHeads: 2, keyDim: 2, useBias: true, outputDim: 3,
        kernelRegularizer: tf.regularizers.l1l2({l1: 0.001, l2: 0.02}), biasRegularizer: 'l1l2',
        biasInitializer: tf.initializers.randomUniform({minval: -1, maxval: 1, seed: 6}),
      };
      const regularized = ScaledDotProductAttention.fromConfig(
          ScaledDotProductAttention, JSON.parse(JSON.stringify(new ScaledDotProductAttention(args).getConfig()))) as
          ScaledDotProductAttention;
      const plain = new ScaledDotProductAttention({numHeads: 2, keyDim: 2, useBias: true, outputDim: 3});
      const build = (layer: tf.layers.Layer) => {
        const model = tf.sequential({layers: [tf.layers.inputLayer({inputShape: [3, 4]}), layer]});
        model.compile({optimizer: tf.train.sgd(0), loss: 'meanSquaredError'});
        return model;
      };
      const [withPenalty, without] = [build(regularized), build(plain)];
      without.setWeights(withPenalty.getWeights());
      expect(regularized.losses).toHaveLength(8);  // one per weight
      expect(plain.losses).toHaveLength(0);

      const [wq, wk, wv, bq, bk, bv, wo, bo] = regularized.getWeights().map(w => Array.from(w.dataSync()));
      const l1l2 = (values: number[], l1: number, l2: number) =>
        values.reduce((sum, v) => sum + l1 * Math.abs(v) + l2 * v * v, 0);
      const penalty = [wq, wk, wv, wo].reduce((s, k) => s + l1l2(k, 0.001, 0.02), 0) +
          [bq, bk, bv, bo].reduce((s, b) => s + l1l2(b, 0.01, 0.01), 0);
      expect(penalty).toBeGreaterThan(0.05);

      const x = tf.tensor3d(randomArray([4, 3, 4], 61) as Tensor3);
      const y = tf.tensor3d(randomArray([4, 3, 3], 62) as Tensor3);
      const lossWith = (await withPenalty.fit(x, y, {epochs: 1, batchSize: 4, verbose: 0})).history.loss[0] as number;
      const lossWithout = (await without.fit(x, y, {epochs: 1, batchSize: 4, verbose: 0})).history.loss[0] as number;
      expect(lossWith - lossWithout).toBeCloseTo(penalty, 5);
      tf.dispose([x, y]);
    });
  });

  describe('training with model.fit', () => {
    const T = 5, V = 4;

    /**
     * Sequences of T one-hot tokens (V kinds) with one position flagged by an extra marker
     * feature; the label is the token at the flagged position. Averaging the raw inputs cannot
     * tell which token is flagged: the model must learn to attend to the marker.
     */
    function markerTask(count: number, seed: number): {x: tf.Tensor3D; y: tf.Tensor2D; labels: number[]} {
      const next = seededRandom(seed);  // [0, 1)
      const pick = (n: number) => Math.floor(next() * n);
      const sequences: number[][][] = [];
      const labels: number[] = [];
      for (let n = 0; n < count; n++) {
        const marked = pick(T);
        const sequence: number[][] = [];
        for (let t = 0; t < T; t++) {
          const token = pick(V);
          const features = new Array(V + 1).fill(0);
          features[token] = 1;
          if (t === marked) {
            features[V] = 1;
            labels.push(token);
          }
          sequence.push(features);
        }
        sequences.push(sequence);
      }
      const y = tf.tidy(() => tf.oneHot(tf.tensor1d(labels, 'int32'), V).toFloat() as tf.Tensor2D);
      return {x: tf.tensor3d(sequences), y, labels};
    }

    function markerModel(): tf.LayersModel {
      const input = tf.input({shape: [T, V + 1]});
      const attended = new ScaledDotProductAttention({
        keyDim: 4, kernelInitializer: tf.initializers.glorotUniform({seed: 1}),
      }).apply(input) as tf.SymbolicTensor;
      const pooled = tf.layers.globalAveragePooling1d().apply(attended) as tf.SymbolicTensor;
      const probabilities = tf.layers.dense({
        units: V, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({seed: 2}),
      }).apply(pooled) as tf.SymbolicTensor;
      const model = tf.model({inputs: input, outputs: probabilities});
      model.compile({optimizer: tf.train.adam(0.05), loss: 'categoricalCrossentropy'});
      return model;
    }

    it('learns to copy the marked token: the loss falls below half its start and held-out accuracy >= 90%', async () => {
      const model = markerModel();
      const train = markerTask(96, 7);
      const history = await model.fit(train.x, train.y, {epochs: 15, batchSize: 32, shuffle: false, verbose: 0});
      const losses = history.history.loss as number[];
      expect(losses[0]).toBeGreaterThan(1);  // about ln 4 = 1.39 at the start
      expect(losses[losses.length - 1]).toBeLessThan(0.5 * losses[0]);

      const heldOut = markerTask(64, 99);
      const predicted = tf.tidy(() => (model.predict(heldOut.x) as tf.Tensor).argMax(-1));
      const guesses = Array.from(predicted.dataSync());
      const accuracy = guesses.filter((g, i) => g === heldOut.labels[i]).length / guesses.length;
      expect(accuracy).toBeGreaterThanOrEqual(0.9);
      tf.dispose([train.x, train.y, heldOut.x, heldOut.y, predicted]);
    });

    it('10 fit steps (dropout on, as in training) return numTensors to its baseline once the inputs are disposed', async () => {
      const input = tf.input({shape: [T, V + 1]});
      const attended = new ScaledDotProductAttention({numHeads: 2, keyDim: 2, useBias: true, outputDim: 3, dropout: 0.2, causal: true})
          .apply(input) as tf.SymbolicTensor;
      const model = tf.model({inputs: input, outputs: attended});
      model.compile({optimizer: tf.train.adam(0.01), loss: 'meanSquaredError'});
      const warmUp = {x: tf.ones([2, T, V + 1]), y: tf.zeros([2, T, 3])};
      await model.fit(warmUp.x, warmUp.y, {epochs: 1, verbose: 0});  // creates Adam's slots once
      tf.dispose([warmUp.x, warmUp.y]);

      const baseline = tf.memory().numTensors;
      const x = tf.randomNormal([8, T, V + 1], 0, 1, 'float32', 8);
      const y = tf.randomNormal([8, T, 3], 0, 1, 'float32', 9);
      const history = await model.fit(x, y, {epochs: 10, batchSize: 8, verbose: 0});
      expect(history.history.loss).toHaveLength(10);
      tf.dispose([x, y]);
      expect(tf.memory().numTensors).toBe(baseline);
    });
  });
});
