/**
 * Round trips through real Keras, run by this test (issue 12), beside the committed fixtures:
 *  - Keras -> tfjs: Keras 3.15 makes every fixture case anew, with other seeds (other weights and
 *    inputs than the committed files: scripts/fixtures/make_keras_fixtures.py --seed-offset), in a
 *    temporary folder; loadKerasModel reads each new .keras archive and converter folder and
 *    predicts what Keras predicted, within 1e-4.
 *  - tfjs -> .keras -> tfjs: saveKerasModel's archive loads back with loadKerasModel and predicts
 *    what the tfjs model predicted (the park model on real sentences, the project's attention
 *    layers). That Keras itself loads those archives and predicts the same is
 *    test/save_keras_model_test.ts and test/save_keras_park_test.ts.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {lastPosition, multiHeadAttention, positionEmbedding, scaledDotProductAttention} from '../src';
import {loadKerasModel, saveKerasModel} from '../src/keras_node';
import {loadParkModel} from '../scripts/app/park/park_files';
import {disposeParkModel, ParkModel, PARK_SENTENCE} from '../scripts/app/park/park_model';
import {encodeSentence} from '../scripts/app/park/prediction';
import {kerasCasePath, readKerasCase} from './helpers/keras_fixtures';
import {expectKerasPredictions} from './helpers/keras_predictions';
import {KERAS_PYTHON, requireKerasPython} from './helpers/keras_python';
import {REPO_ROOT} from './helpers/run_script';
import {expectClose, randomArray} from './helpers/tensors';

const SEED_OFFSET = 1000;
let tmp = '';
let fresh: string[] = [];

beforeAll(() => {
  requireKerasPython();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'keras-round-trip-'));
  const made = spawnSync(KERAS_PYTHON, [path.join(REPO_ROOT, 'scripts', 'fixtures', 'make_keras_fixtures.py'),
    '--out', tmp, '--seed-offset', String(SEED_OFFSET)], {
    encoding: 'utf8', timeout: 300_000, env: {...process.env, TF_CPP_MIN_LOG_LEVEL: '3', PYTHONWARNINGS: 'ignore'},
  });
  if (made.status !== 0) {
    throw new Error(`make_keras_fixtures.py --out ${tmp} failed (status ${made.status}):\n${made.stdout}\n${made.stderr}`);
  }
  fresh = fs.readdirSync(tmp).filter((name) => fs.existsSync(path.join(tmp, name, 'case.json'))).sort();
}, 320_000);

afterAll(() => {
  if (tmp !== '') fs.rmSync(tmp, {recursive: true, force: true});
});

describe('Keras 3.15 makes models now (other seeds than the fixtures); loadKerasModel predicts as Keras', () => {
  it('made every case of the fixture script, with the seeds offset', () => {
    const committed = fs.readdirSync(path.join(REPO_ROOT, 'test', 'fixtures', 'keras'))
        .filter((name) => fs.existsSync(path.join(REPO_ROOT, 'test', 'fixtures', 'keras', name, 'case.json'))).sort();
    expect(fresh).toEqual(committed);
    for (const name of fresh) {
      expect({name, seed: readKerasCase(path.join(tmp, name)).seed})
          .toEqual({name, seed: readKerasCase(name).seed + SEED_OFFSET});
    }
  });

  for (const backend of ['cpu', 'wasm']) {
    it(`every new .keras archive and converter folder, on ${backend}`, async () => {
      await tf.setBackend(backend);
      const before = tf.memory().numTensors;
      for (const name of fresh) {
        const folder = path.join(tmp, name);
        const files = readKerasCase(folder).files.filter((file) => file === 'model.keras' || file === 'tfjs/model.json');
        expect(files.length).toBeGreaterThan(0);
        for (const file of files) {
          const model = await loadKerasModel(kerasCasePath(folder, file));
          try {
            expectKerasPredictions(folder, model);
          } catch (error) {
            throw new Error(`${name}/${file} on ${backend}: ${(error as Error).message}`);
          } finally {
            model.dispose();
          }
        }
      }
      expect(tf.memory().numTensors).toBe(before);
      await tf.setBackend('cpu');
    }, 120_000);
  }
});

describe('tfjs -> saveKerasModel -> loadKerasModel predicts as the tfjs model', () => {
  /** The archive of `model`, loaded back, predicts `inputs` as `model` does, within `tolerance`. */
  async function expectSameAfterRoundTrip(model: tf.LayersModel, inputs: tf.Tensor[], tolerance = 1e-5): Promise<string[]> {
    const before = tf.memory().numTensors;
    const loaded = await loadKerasModel(await saveKerasModel(model));
    const ours = [model.predict(inputs)].flat();
    const theirs = [loaded.predict(inputs)].flat();
    expect(theirs.map((t) => t.shape)).toEqual(ours.map((t) => t.shape));
    ours.forEach((t, i) => expectClose(theirs[i].arraySync() as number[], t.arraySync() as number[], tolerance));
    const classes = loaded.layers.map((layer) => layer.getClassName());
    tf.dispose([...ours, ...theirs]);
    loaded.dispose();
    expect(tf.memory().numTensors).toBe(before);
    return classes;
  }

  it('the park model, on real sentences (left-padded): Keras layers only, the same next-word probabilities', async () => {
    const park: ParkModel = await loadParkModel(path.join(REPO_ROOT, 'models', 'park-play'));
    try {
      const sentences = [PARK_SENTENCE, 'the dog', 'my zorblax likes to'];
      const ids = tf.tensor2d(sentences.map((s) => encodeSentence(park, s).ids), undefined, 'int32');  // [N, 13]
      const classes = await expectSameAfterRoundTrip(park.model, [ids]);
      // PositionEmbedding, ScaledDotProductAttention and LastPosition have become layers Keras has.
      expect(classes).toEqual(['InputLayer', 'Embedding', 'Dense', 'LayerNormalization', 'Add', 'MultiHeadAttention',
        'Add', 'LayerNormalization', 'Cropping1D', 'Reshape', 'Dense']);
      ids.dispose();
    } finally {
      disposeParkModel(park);
    }
  });

  it('scaledDotProductAttention (causal, a custom scale, no output projection) and multiHeadAttention, in one model', async () => {
    const x = tf.input({shape: [6, 8]});
    const positions = positionEmbedding({sequenceLength: 6}).apply(x) as tf.SymbolicTensor;
    const sdpa = scaledDotProductAttention({numHeads: 2, keyDim: 3, valueDim: 4, causal: true, scale: 0.7})
        .apply(positions) as tf.SymbolicTensor;                                                      // [B, 6, 8]
    const mha = multiHeadAttention({numHeads: 2, keyDim: 4, outputShape: 5}).apply([sdpa, x]) as tf.SymbolicTensor;  // [B, 6, 5]
    const last = lastPosition().apply(mha) as tf.SymbolicTensor;                                       // [B, 5]
    const model = tf.model({inputs: x, outputs: [mha, last]});
    const input = tf.tensor3d(randomArray([2, 6, 8], 77) as number[][][]);
    const classes = await expectSameAfterRoundTrip(model, [input], 1e-4);
    expect(classes.filter((c) => c === 'MultiHeadAttention')).toHaveLength(2);
    input.dispose();
    model.dispose();
  });
});
