/**
 * saveKerasModel's refusals: a layer with no Keras equivalent, a config value Keras cannot honour,
 * a mask Keras would read differently, a bad model or path, and a failing write. Each is a
 * ValueError naming the layer (and its class) or the path, raised before anything is written,
 * with no tensor leaked; an existing file is left as it was.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {saveKerasModel} from '../src/keras_node';
import {scaledDotProductAttention} from '../src/index';

// renameSync, wrapped so that a test can make one rename fail (an fs property cannot be spied on).
jest.mock('fs', () => {
  const actual = jest.requireActual('fs');
  return {...actual, renameSync: jest.fn((from: string, to: string) => actual.renameSync(from, to))};
});

/** A layer Keras has no class for. */
class Doubler extends tf.layers.Layer {
  static className = 'Doubler';
  override call(inputs: tf.Tensor|tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => tf.mul(Array.isArray(inputs) ? inputs[0] : inputs, 2));
  }
}
tf.serialization.registerClass(Doubler);

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'save-keras-errors-'));
});
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

function denseModel(layer: tf.layers.Layer, inputShape = [3]): tf.LayersModel {
  const x = tf.input({shape: inputShape});
  return tf.model({inputs: x, outputs: layer.apply(x) as tf.SymbolicTensor});
}

/** Expects `save` to reject with `message`, write nothing at `file` (an existing file keeps its bytes), and leak no tensor. */
async function expectRefused(save: (file: string) => Promise<unknown>, message: RegExp): Promise<void> {
  const existing = path.join(tmp, 'existing.keras');
  fs.writeFileSync(existing, 'old bytes');
  const fresh = path.join(tmp, 'fresh.keras');
  for (const file of [existing, fresh]) {
    const before = tf.memory().numTensors;
    await expect(save(file)).rejects.toThrow(message);
    expect(tf.memory().numTensors).toBe(before);
  }
  expect(fs.readFileSync(existing, 'utf8')).toBe('old bytes');
  expect(fs.existsSync(fresh)).toBe(false);
  expect(fs.readdirSync(tmp).sort()).toEqual(['existing.keras']);
}

describe('saveKerasModel refuses what Keras cannot represent, naming the layer and its class', () => {
  it('a layer class with no Keras equivalent', async () => {
    const model = denseModel(new Doubler({name: 'twice'}));
    await expectRefused(file => saveKerasModel(model, file), /Layer "twice" \(class Doubler\) cannot be saved as a Keras model: Keras has no layer for class "Doubler"/);
  });

  it.each([
    ['tfjs\' hardSigmoid activation (Keras\' hard_sigmoid has another slope)', () => tf.layers.dense({units: 2, activation: 'hardSigmoid', name: 'hs'}),
     [3], /Layer "hs" \(class Dense\).*`activation` has no Keras equivalent.*Received: activation="hardSigmoid"/],
    ['an LSTM with tfjs\' default recurrentActivation hardSigmoid', () => tf.layers.lstm({units: 2, name: 'rnn'}),
     [4, 3], /Layer "rnn" \(class LSTM\).*`recurrentActivation`.*Received: recurrentActivation="hardSigmoid"/],
    ['gelu_new (the tanh approximation Keras names by no string)', () => tf.layers.activation({activation: 'gelu_new', name: 'g'}),
     [3], /Layer "g" \(class Activation\).*Received: activation="gelu_new"/],
  ])('%s', async (_, make, shape, message) => {
    const model = denseModel((make as () => tf.layers.Layer)(), shape as number[]);
    await expectRefused(file => saveKerasModel(model, file), message as RegExp);
  });

  it('a stateful RNN (a Keras file starts from zero states)', async () => {
    const x = tf.input({batchShape: [1, 4, 3]});
    const y = tf.layers.simpleRNN({units: 2, stateful: true, name: 'st'}).apply(x) as tf.SymbolicTensor;
    const model = tf.model({inputs: x, outputs: y});
    await expectRefused(file => saveKerasModel(model, file), /Layer "st" \(class SimpleRNN\).*`stateful`.*Received: stateful=true/);
  });

  it('GlobalAveragePooling1D reached by a padding mask (Keras averages only unmasked steps, tfjs all)', async () => {
    const ids = tf.input({shape: [5], dtype: 'int32'});
    const e = tf.layers.embedding({inputDim: 9, outputDim: 4, maskZero: true}).apply(ids) as tf.SymbolicTensor;
    const d = tf.layers.dense({units: 4}).apply(e) as tf.SymbolicTensor;
    const y = tf.layers.globalAveragePooling1d({name: 'pool'}).apply(d) as tf.SymbolicTensor;
    const model = tf.model({inputs: ids, outputs: y});
    await expectRefused(file => saveKerasModel(model, file), /Layer "pool" \(class GlobalAveragePooling1D\).*padding mask/);
  });

  it('attention whose context carries a mask tfjs does not pass on (tfjs gives a layer only its first input\'s mask)', async () => {
    const q = tf.input({shape: [4, 6]});
    const ids = tf.input({shape: [5], dtype: 'int32'});
    const c = tf.layers.embedding({inputDim: 9, outputDim: 6, maskZero: true}).apply(ids) as tf.SymbolicTensor;
    const y = scaledDotProductAttention({numHeads: 1, keyDim: 3, name: 'cross'}).apply([q, c]) as tf.SymbolicTensor;
    const model = tf.model({inputs: [q, ids], outputs: y});
    await expectRefused(file => saveKerasModel(model, file), /Layer "cross" \(class ScaledDotProductAttention\).*value or key input/);
  });

  it('a model nested as a layer', async () => {
    const inner = tf.sequential({name: 'inner', layers: [tf.layers.dense({units: 2, inputShape: [3]})]});
    const x = tf.input({shape: [3]});
    const model = tf.model({inputs: x, outputs: inner.apply(x) as tf.SymbolicTensor});
    await expectRefused(file => saveKerasModel(model, file), /Layer "inner" \(class Sequential\).*nested models/);
  });

  it('a layer shared by two nodes of the model', async () => {
    const x = tf.input({shape: [3]});
    const shared = tf.layers.dense({units: 3, name: 'shared'});
    const y = shared.apply(shared.apply(x)) as tf.SymbolicTensor;
    const model = tf.model({inputs: x, outputs: y});
    await expectRefused(file => saveKerasModel(model, file), /Layer "shared" \(class Dense\).*shared/);
  });
});

describe('saveKerasModel checks its arguments and writes atomically', () => {
  const model = () => denseModel(tf.layers.dense({units: 2}));

  it.each([
    ['a path in a folder that does not exist', path.join(os.tmpdir(), 'no-such-folder-for-keras', 'm.keras'), /no-such-folder-for-keras/],
    ['an empty path', '', /argument `path`.*Received: path=""/],
    ['a path that is not a string', 42, /argument `path`.*Received: path=42/],
  ])('%s is an error naming it', async (_, file, message) => {
    const m = model();
    const before = tf.memory().numTensors;
    await expect(saveKerasModel(m, file as string)).rejects.toThrow(message);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a model that is not a tf.LayersModel is an error naming the argument', async () => {
    await expect(saveKerasModel({} as tf.LayersModel)).rejects.toThrow(/argument `model`, expected a tf.LayersModel.*Received: model="Object"/);
  });

  it('a write that fails leaves the existing file as it was and no temporary file', async () => {
    const file = path.join(tmp, 'kept.keras');
    fs.writeFileSync(file, 'old bytes');
    (fs.renameSync as jest.Mock).mockImplementationOnce(() => {
      throw Object.assign(new Error('EIO: i/o error, rename'), {code: 'EIO'});
    });
    await expect(saveKerasModel(model(), file)).rejects.toThrow(/Cannot write the Keras archive .*kept\.keras: an input\/output error/);
    expect(fs.readFileSync(file, 'utf8')).toBe('old bytes');
    expect(fs.readdirSync(tmp).filter(name => name.includes('kept'))).toEqual(['kept.keras']);
    // The same call writes once the file system lets it: bytes returned and written are the same.
    const bytes = await saveKerasModel(model(), file);
    expect(new Uint8Array(fs.readFileSync(file))).toEqual(bytes);
    fs.rmSync(file);
  });
});
