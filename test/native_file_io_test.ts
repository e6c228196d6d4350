/**
 * Saving and loading with tfjs-node loaded: tfjs-node registers its own file:// router, and tfjs refuses two
 * handlers for one URL, so the library's router steps aside and makes tfjs-node's handler run the library's
 * FileSystemIO. So with tfjs-node too, saves are the library's (weights-<hash>.bin, target checks) and load
 * errors name the file at fault (tfjs-node's own loader says "tensor should have 1024 values but has 191").
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {scaledDotProductAttention} from '../src/node';
import {NATIVE, reportNativeMissing} from './helpers/native';
import {escapeRegExp, maxAbsDiff, onBackend, randomArray, runTestsOn} from './helpers/tensors';

type Nested = number[][][];
const INPUT = randomArray([2, 4, 6], 7) as Nested;

function buildModel(): tf.LayersModel {
  const model = tf.sequential({layers: [
    scaledDotProductAttention({inputShape: [4, 6], numHeads: 2, keyDim: 3, causal: true,
                               kernelInitializer: tf.initializers.glorotUniform({seed: 3})}),  // [B, 4, 6]
    tf.layers.dense({units: 2, kernelInitializer: tf.initializers.glorotUniform({seed: 4})}),  // [B, 4, 2]
  ]});
  return model;
}

function predictArray(model: tf.LayersModel): Nested {
  return tf.tidy(() => (model.predict(tf.tensor3d(INPUT)) as tf.Tensor).arraySync() as Nested);
}

let tmp = '';
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-attention-native-io-'));
});
afterEach(() => {
  fs.rmSync(tmp, {recursive: true, force: true});
});

reportNativeMissing('file:// with tfjs-node loaded');

(NATIVE.loaded ? describe : describe.skip)('file:// with tfjs-node loaded', () => {
  // Saving runs on cpu: in jest's sandbox, tfjs' encodeWeights does not recognize the Float32Array that
  // tfjs-node's binding returns (another realm's), which a plain Node process does not see. Loaded models
  // predict on tensorflow.
  runTestsOn('cpu');

  /** Saves a fresh model into tmp/model and returns it with its predictions. */
  async function saved(): Promise<{folder: string; expected: Nested}> {
    const model = buildModel();
    const expected = predictArray(model);
    const folder = path.join(tmp, 'model');
    await model.save(`file://${folder}`);
    model.dispose();
    return {folder, expected};
  }

  const weightsFile = (folder: string) => path.join(folder, fs.readdirSync(folder).find(n => n.endsWith('.bin'))!);

  it('tfjs-node answers file:// alone (no "more than one handler"), and its handler saves the library\'s layout', async () => {
    expect(tf.io.getSaveHandlers('file:///x')).toHaveLength(1);
    expect(tf.io.getLoadHandlers('file:///x/model.json')).toHaveLength(1);
    const before = tf.memory().numTensors;
    const {folder} = await saved();
    expect(tf.memory().numTensors).toBe(before);
    // tfjs-node itself writes model.json + weights.bin; the library names the weights by their sha256.
    expect(fs.readdirSync(folder).sort()).toEqual([expect.stringMatching(/^model\.json$/), expect.stringMatching(/^weights-[0-9a-f]{16}\.bin$/)].sort());
    expect(fs.readdirSync(folder)).not.toContain('weights.bin');
  });

  it('loads on tensorflow, by model.json and by folder, predicting what the saved model did, leaking nothing', async () => {
    const {folder, expected} = await saved();
    await onBackend('tensorflow', async () => {
      for (const url of [`file://${folder}/model.json`, `file://${folder}`]) {
        const before = tf.memory().numTensors;
        const model = await tf.loadLayersModel(url);
        expect(maxAbsDiff(predictArray(model), expected).diff).toBeLessThanOrEqual(1e-5);
        model.dispose();
        expect(tf.memory().numTensors).toBe(before);
      }
    });
  });

  it('a truncated weights file: the error names the file, says truncated and gives both byte counts', async () => {
    const {folder} = await saved();
    const file = weightsFile(folder);
    const size = fs.statSync(file).size;
    fs.truncateSync(file, 191);
    const before = tf.memory().numTensors;
    await expect(tf.loadLayersModel(`file://${folder}/model.json`)).rejects.toThrow(escapeRegExp(
        `Weights file ${file} is truncated: ${path.join(folder, 'model.json')} expects ${size} bytes, the files hold 191`));
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a missing weights file: the error names it and the model.json that lists it', async () => {
    const {folder} = await saved();
    const file = weightsFile(folder);
    fs.rmSync(file);
    await expect(tf.loadLayersModel(`file://${folder}/model.json`)).rejects.toThrow(
        escapeRegExp(`Weights file not found: ${file} (listed in ${path.join(folder, 'model.json')})`));
  });

  it('saving into a folder that holds other files is refused, naming them, and writes nothing', async () => {
    const folder = path.join(tmp, 'busy');
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 'notes.txt'), 'keep me');
    const model = buildModel();
    await expect(model.save(`file://${folder}`)).rejects.toThrow(/notes\.txt/);
    model.dispose();
    expect(fs.readdirSync(folder)).toEqual(['notes.txt']);
  });

  it('tfjs-node\'s own code still loads a binary graph model from a pair of paths (only single paths are taken over)', async () => {
    const pair = [`file://${tmp}/missing.pb`, `file://${tmp}/missing_manifest.json`];
    const [handler] = tf.io.getLoadHandlers(pair);
    expect(handler).toBeDefined();
    // tfjs-node's message for its binary-model loader (the library's loader has no such path).
    await expect(handler.load!()).rejects.toThrow(/Topology Path .*missing\.pb does not exist/);
  });
});
