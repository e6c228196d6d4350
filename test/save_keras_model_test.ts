/**
 * saveKerasModel against real Keras: tfjs models (the project's attention layers, standard
 * layers, the park model) are saved as `.keras` archives, loaded by Keras 3.15 in Python with
 * keras.saving.load_model (no custom objects, safe mode) and must predict as tfjs does, within
 * 1e-4 (relative where values are large). Keras runs in one Python process for the whole file
 * (test/helpers/keras_python.ts); without .venv-keras the tests fail and say how to make it.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {cropping1D, multiHeadAttention, scaledDotProductAttention, lastPosition, positionEmbedding} from '../src/index';
import {saveKerasModel} from '../src/keras_node';
import {expectConfigsAsKerasWrites, KerasArray, KerasPython} from './helpers/keras_python';

let keras: KerasPython;
let tmp: string;

beforeAll(() => {
  keras = new KerasPython();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'save-keras-'));
});

afterAll(() => {
  keras?.close();
  if (tmp != null) fs.rmSync(tmp, {recursive: true, force: true});
});

/** A deterministic stream of numbers in [-1, 1). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 31 - 1;
  };
}

/** Sets every weight to seeded values in [-scale, scale) (moving variances positive), so that no weight is trivial. */
function randomizeWeights(model: tf.LayersModel, seed: number, scale = 0.5): void {
  const next = random(seed);
  for (const weight of model.weights) {
    const shape = weight.shape as number[];
    const values = Float32Array.from({length: shape.reduce((a, b) => a * b, 1)}, () => next() * scale);
    if (/moving_variance/.test(weight.originalName)) values.forEach((v, i) => values[i] = Math.abs(v) + 0.5);
    tf.tidy(() => {
      weight.write(tf.tensor(values, shape));
    });
  }
}

function floats(shape: number[], seed: number): tf.Tensor {
  const next = random(seed);
  return tf.tensor(Float32Array.from({length: shape.reduce((a, b) => a * b, 1)}, next), shape);
}

function toKeras(x: tf.Tensor): KerasArray {
  return {data: Array.from(x.dataSync()), shape: x.shape, dtype: x.dtype === 'int32' ? 'int32' : 'float32'};
}

let fileCount = 0;

/**
 * Saves `model`, loads it in Keras, and checks that Keras' predictions for `inputs` equal tfjs'
 * (|keras - tfjs| <= 1e-4·max(1, |tfjs|)), and that saving leaked no tensor.
 */
async function expectKerasMatches(model: tf.LayersModel, inputs: tf.Tensor[]): Promise<string[]> {
  const expected = tf.tidy(() => {
    const y = model.predict(inputs.length === 1 ? inputs[0] : inputs);
    return (Array.isArray(y) ? y : [y]).map(t => ({data: Array.from(t.dataSync()), shape: t.shape}));
  });
  const before = tf.memory().numTensors;
  const bytes = await saveKerasModel(model);
  expect(tf.memory().numTensors).toBe(before);
  const file = path.join(tmp, `model_${fileCount++}.keras`);
  fs.writeFileSync(file, bytes);
  const reply = await keras.predict(file, inputs.map(toKeras));
  expect(reply.outputs.map(o => o.shape)).toEqual(expected.map(e => e.shape));
  reply.outputs.forEach((output, i) => {
    const worst = output.data.reduce((max, v, j) => {
      const want = expected[i].data[j];
      return Math.max(max, Math.abs(v - want) / Math.max(1, Math.abs(want)));
    }, 0);
    expect({output: i, worst: worst <= 1e-4 ? 'within 1e-4' : worst}).toEqual({output: i, worst: 'within 1e-4'});
  });
  tf.dispose(inputs);
  expectConfigsAsKerasWrites(bytes, reply.configs);
  return reply.layers;
}

/** Token ids [B, T] with 0 as padding, left-padded (rows end in real tokens) or right-padded. */
function tokens(rows: number[][]): tf.Tensor {
  return tf.tensor2d(rows, undefined, 'int32');
}

describe('saveKerasModel: ScaledDotProductAttention as Keras MultiHeadAttention', () => {
  const cases: Array<[string, {[key: string]: unknown}]> = [
    ['one head, no bias, no output projection (identity)', {numHeads: 1, keyDim: 4}],
    ['three heads, valueDim != keyDim, outputDim, bias', {numHeads: 3, keyDim: 4, valueDim: 5, outputDim: 6, useBias: true}],
    ['causal, two heads, no outputDim, bias', {numHeads: 2, keyDim: 3, causal: true, useBias: true}],
    ['a custom scale folded into the query projection (kernel and bias)', {numHeads: 2, keyDim: 4, scale: 0.9, useBias: true, outputDim: 8}],
    ['default keyDim (the query width) and dropout (inactive)', {numHeads: 1, dropout: 0.3}],
  ];
  it.each(cases)('self-attention: %s', async (_, args) => {
    const x = tf.input({shape: [5, 8]});
    const y = scaledDotProductAttention({name: 'sdpa', ...args}).apply(x) as tf.SymbolicTensor;
    const model = tf.model({inputs: x, outputs: y});
    randomizeWeights(model, 1);
    const layers = await expectKerasMatches(model, [floats([2, 5, 8], 2)]);
    expect(layers).toEqual(['InputLayer', 'MultiHeadAttention']);
  });

  it('cross-attention [query, context] with different widths and lengths, causal, and the attention scores as a second output', async () => {
    const q = tf.input({shape: [4, 6]});
    const c = tf.input({shape: [7, 5]});
    const [y, scores] = scaledDotProductAttention({numHeads: 2, keyDim: 3, valueDim: 2, useBias: true, causal: true,
                                                  returnAttentionScores: true, scale: 0.5})
        .apply([q, c]) as tf.SymbolicTensor[];
    const model = tf.model({inputs: [q, c], outputs: [y, scores]});
    randomizeWeights(model, 3);
    await expectKerasMatches(model, [floats([2, 4, 6], 4), floats([2, 7, 5], 5)]);
  });

  it('cross-attention, causal with T != S (Keras\' fused causal path), no bias', async () => {
    const q = tf.input({shape: [6, 4]});
    const c = tf.input({shape: [3, 4]});
    const y = scaledDotProductAttention({numHeads: 2, keyDim: 2, causal: true}).apply([q, c]) as tf.SymbolicTensor;
    const model = tf.model({inputs: [q, c], outputs: y});
    randomizeWeights(model, 26);
    await expectKerasMatches(model, [floats([2, 6, 4], 27), floats([2, 3, 4], 28)]);
  });

  it.each([['left', [[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]]], ['right', [[3, 4, 0, 0, 0], [6, 7, 8, 0, 0]]]])(
      'padding masks from Embedding(maskZero), %s-padded: padded queries output zeros in both (Keras\' explicit path)',
      async (_, rows) => {
        const ids = tf.input({shape: [5], dtype: 'int32'});
        const e = tf.layers.embedding({inputDim: 10, outputDim: 8, maskZero: true}).apply(ids) as tf.SymbolicTensor;
        const y = scaledDotProductAttention({numHeads: 2, keyDim: 4, useBias: true, outputDim: 8}).apply(e) as tf.SymbolicTensor;
        const model = tf.model({inputs: ids, outputs: y});
        randomizeWeights(model, 6);
        await expectKerasMatches(model, [tokens(rows as number[][])]);
      });
});

describe('saveKerasModel: the project\'s MultiHeadAttention', () => {
  it('self-attention [x, x] with a causal mask, and outputShape', async () => {
    const x = tf.input({shape: [5, 6]});
    const y = multiHeadAttention({numHeads: 2, keyDim: 3, outputShape: 4}).apply([x, x], {useCausalMask: true}) as tf.SymbolicTensor;
    const model = tf.model({inputs: x, outputs: y});
    randomizeWeights(model, 7);
    await expectKerasMatches(model, [floats([2, 5, 6], 8)]);
  });

  it('cross-attention [query, value, key] with valueDim != keyDim, no bias, and the scores', async () => {
    const q = tf.input({shape: [4, 8]});
    const v = tf.input({shape: [3, 6]});
    const k = tf.input({shape: [3, 7]});
    const [y, s] = multiHeadAttention({numHeads: 2, keyDim: 4, valueDim: 3, useBias: false})
        .apply([q, v, k], {returnAttentionScores: true}) as tf.SymbolicTensor[];
    const model = tf.model({inputs: [q, v, k], outputs: [y, s]});
    randomizeWeights(model, 9);
    await expectKerasMatches(model, [floats([2, 4, 8], 10), floats([2, 3, 6], 11), floats([2, 3, 7], 12)]);
  });

  it('attention over both spatial axes of an image-like [B, H, W, C] input (attentionAxes [1, 2])', async () => {
    const x = tf.input({shape: [3, 4, 5]});
    const y = multiHeadAttention({numHeads: 2, keyDim: 3, attentionAxes: [1, 2]}).apply([x, x]) as tf.SymbolicTensor;
    const model = tf.model({inputs: x, outputs: y});
    randomizeWeights(model, 29);
    await expectKerasMatches(model, [floats([2, 3, 4, 5], 30)]);
  });

  it('an Embedding(maskZero) padding mask', async () => {
    const ids = tf.input({shape: [6], dtype: 'int32'});
    const e = tf.layers.embedding({inputDim: 12, outputDim: 8, maskZero: true}).apply(ids) as tf.SymbolicTensor;
    const y = multiHeadAttention({numHeads: 2, keyDim: 4}).apply([e, e]) as tf.SymbolicTensor;
    const model = tf.model({inputs: ids, outputs: y});
    randomizeWeights(model, 13);
    await expectKerasMatches(model, [tokens([[0, 0, 0, 5, 6, 7], [1, 2, 3, 4, 0, 0]])]);
  });
});

describe('saveKerasModel: standard layers', () => {
  it('a Sequential model: Dense (relu, tanh, sigmoid, softmax), Dropout, Activation', async () => {
    const model = tf.sequential({layers: [
      tf.layers.dense({units: 6, activation: 'relu', inputShape: [4]}),
      tf.layers.dropout({rate: 0.2}),
      tf.layers.dense({units: 5, activation: 'tanh'}),
      tf.layers.dense({units: 5, activation: 'sigmoid', useBias: false}),
      tf.layers.activation({activation: 'elu'}),
      tf.layers.dense({units: 3, activation: 'softmax'}),
    ]});
    randomizeWeights(model, 14, 1);
    const layers = await expectKerasMatches(model, [floats([3, 4], 15)]);
    expect(layers).toEqual(['InputLayer', 'Dense', 'Dropout', 'Dense', 'Dense', 'Activation', 'Dense']);
  });

  it('recurrent layers: Embedding(maskZero) → LSTM (sequences) → GRU (sequences) → SimpleRNN, with padded rows', async () => {
    const ids = tf.input({shape: [6], dtype: 'int32'});
    let h = tf.layers.embedding({inputDim: 10, outputDim: 5, maskZero: true}).apply(ids) as tf.SymbolicTensor;
    h = tf.layers.lstm({units: 4, recurrentActivation: 'sigmoid', returnSequences: true}).apply(h) as tf.SymbolicTensor;
    h = tf.layers.gru({units: 3, recurrentActivation: 'sigmoid', returnSequences: true}).apply(h) as tf.SymbolicTensor;
    const y = tf.layers.simpleRNN({units: 2}).apply(h) as tf.SymbolicTensor;
    const model = tf.model({inputs: ids, outputs: y});
    randomizeWeights(model, 16);
    await expectKerasMatches(model, [tokens([[0, 0, 1, 2, 3, 4], [5, 6, 7, 0, 0, 0], [1, 2, 3, 4, 5, 6]])]);
  });

  it('Masking → LSTM (goBackwards) and Bidirectional(SimpleRNN) on masked steps, last outputs only', async () => {
    const x = tf.input({shape: [5, 3]});
    const m = tf.layers.masking({maskValue: 0}).apply(x) as tf.SymbolicTensor;
    const a = tf.layers.lstm({units: 3, recurrentActivation: 'sigmoid', goBackwards: true}).apply(m) as tf.SymbolicTensor;
    const b = tf.layers.bidirectional({layer: tf.layers.simpleRNN({units: 2}) as tf.RNN}).apply(m) as tf.SymbolicTensor;
    const y = tf.layers.concatenate().apply([a, b]) as tf.SymbolicTensor;
    const model = tf.model({inputs: x, outputs: y});
    randomizeWeights(model, 31);
    const input = floats([3, 5, 3], 32);
    const rows = input.arraySync() as number[][][];
    rows[0][0] = [0, 0, 0];                      // a masked first step
    rows[1][3] = rows[1][4] = [0, 0, 0];         // masked last steps
    rows[2][2] = [0, 0, 0];                      // a masked step in the middle
    input.dispose();
    await expectKerasMatches(model, [tf.tensor3d(rows)]);
  });

  it('Bidirectional(LSTM) and Bidirectional(GRU) (merge modes concat and sum), two of a class named by Keras\' order', async () => {
    const x = tf.input({shape: [5, 3]});
    const a = tf.layers.bidirectional({layer: tf.layers.lstm({units: 4, recurrentActivation: 'sigmoid', returnSequences: true}) as tf.RNN})
        .apply(x) as tf.SymbolicTensor;
    const b = tf.layers.bidirectional({layer: tf.layers.gru({units: 2, recurrentActivation: 'sigmoid'}) as tf.RNN, mergeMode: 'sum'})
        .apply(a) as tf.SymbolicTensor;
    const model = tf.model({inputs: x, outputs: b});
    randomizeWeights(model, 17);
    await expectKerasMatches(model, [floats([2, 5, 3], 18)]);
  });

  it('1-D convolutions and poolings, Add, Multiply, Concatenate over branches, Cropping1D', async () => {
    const x = tf.input({shape: [12, 3]});
    const c1 = tf.layers.conv1d({filters: 4, kernelSize: 3, activation: 'relu', padding: 'same'}).apply(x) as tf.SymbolicTensor;
    const c2 = tf.layers.conv1d({filters: 4, kernelSize: 2, padding: 'same', dilationRate: 2}).apply(x) as tf.SymbolicTensor;
    const sum = tf.layers.add().apply([c1, c2]) as tf.SymbolicTensor;
    const product = tf.layers.multiply().apply([c1, c2]) as tf.SymbolicTensor;
    const maxPooled = tf.layers.maxPooling1d({poolSize: 2}).apply(sum) as tf.SymbolicTensor;
    const averaged = tf.layers.averagePooling1d({poolSize: 3, strides: 2, padding: 'same'}).apply(product) as tf.SymbolicTensor;
    const joined = tf.layers.concatenate({axis: -1}).apply([maxPooled, averaged]) as tf.SymbolicTensor;
    const cropped = cropping1D({cropping: [1, 2]}).apply(joined) as tf.SymbolicTensor;
    const gmax = tf.layers.globalMaxPooling1d().apply(cropped) as tf.SymbolicTensor;
    const gavg = tf.layers.globalAveragePooling1d().apply(joined) as tf.SymbolicTensor;
    const y = tf.layers.concatenate().apply([gmax, gavg]) as tf.SymbolicTensor;
    const model = tf.model({inputs: x, outputs: y});
    randomizeWeights(model, 19);
    await expectKerasMatches(model, [floats([2, 12, 3], 20)]);
  });

  it('2-D convolution and poolings, BatchNormalization, Flatten, Reshape, LayerNormalization', async () => {
    const model = tf.sequential({layers: [
      tf.layers.conv2d({filters: 4, kernelSize: 3, strides: 1, activation: 'relu', inputShape: [8, 8, 2]}),
      tf.layers.batchNormalization(),
      tf.layers.maxPooling2d({poolSize: 2}),
      tf.layers.averagePooling2d({poolSize: [1, 2], strides: 1}),
      tf.layers.flatten(),
      tf.layers.reshape({targetShape: [6, 4]}),
      tf.layers.layerNormalization({axis: -1}),
      tf.layers.flatten(),
      tf.layers.dense({units: 3}),
    ]});
    randomizeWeights(model, 21);
    await expectKerasMatches(model, [floats([2, 8, 8, 2], 22)]);
  });

  it('same-shaped Dense layers on branches: their weights go to the groups Keras\' layer order names (dense, dense_1, …)', async () => {
    // Created a, b, c; Keras orders them a (deepest), then c before b (found first from the output).
    const x = tf.input({shape: [4]});
    const a = tf.layers.dense({units: 4, name: 'a'}).apply(x) as tf.SymbolicTensor;
    const b = tf.layers.dense({units: 4, name: 'b'}).apply(a) as tf.SymbolicTensor;
    const c = tf.layers.dense({units: 4, name: 'c'}).apply(x) as tf.SymbolicTensor;
    const y = tf.layers.concatenate().apply([c, b]) as tf.SymbolicTensor;
    const model = tf.model({inputs: x, outputs: y});
    randomizeWeights(model, 24, 1);
    await expectKerasMatches(model, [floats([3, 4], 25)]);
  });

  it('a transformer block: Embedding, PositionEmbedding, attention, residual Add, LayerNormalization, feed-forward, LastPosition', async () => {
    const ids = tf.input({shape: [7], dtype: 'int32'});
    const e = tf.layers.embedding({inputDim: 20, outputDim: 8, maskZero: true}).apply(ids) as tf.SymbolicTensor;
    const p = positionEmbedding({sequenceLength: 9}).apply(e) as tf.SymbolicTensor;  // a table longer than T: P[:7]
    const a = scaledDotProductAttention({numHeads: 2, keyDim: 4, useBias: true, causal: true}).apply(p) as tf.SymbolicTensor;
    const r = tf.layers.add().apply([p, a]) as tf.SymbolicTensor;
    const n = tf.layers.layerNormalization().apply(r) as tf.SymbolicTensor;
    const f = tf.layers.dense({units: 16, activation: 'relu'}).apply(n) as tf.SymbolicTensor;
    const g = tf.layers.dense({units: 8}).apply(f) as tf.SymbolicTensor;
    const r2 = tf.layers.add().apply([n, g]) as tf.SymbolicTensor;
    const last = lastPosition().apply(r2) as tf.SymbolicTensor;
    const y = tf.layers.dense({units: 5, activation: 'softmax'}).apply(last) as tf.SymbolicTensor;
    const model = tf.model({inputs: ids, outputs: y});
    randomizeWeights(model, 23);
    await expectKerasMatches(model, [tokens([[0, 0, 0, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 0, 0, 9]])]);
  });
});
