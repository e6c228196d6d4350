/**
 * The park model in Keras: models/park-play saved with saveKerasModel, and with
 * `npm run export` (scripts/export.ts), loads in Keras 3.15 without custom objects and predicts
 * the next word as tfjs does, for real sentences encoded as the app encodes them (left-padded
 * with 0 to the 13-word window, so the padding mask matters).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {saveKerasModel} from '../src/keras_node';
import {loadParkModel} from '../scripts/app/park/park_files';
import {disposeParkModel, ParkModel, PARK_SENTENCE} from '../scripts/app/park/park_model';
import {encodeSentence} from '../scripts/app/park/prediction';
import {expectConfigsAsKerasWrites, KerasPython, requireKerasPython} from './helpers/keras_python';
import {REPO_ROOT, runCommand, describeResult} from './helpers/run_script';

const SENTENCES = [
  PARK_SENTENCE,                                   // the app's example
  'the dog',                                       // mostly padding
  'after school we ran to the park and then we sat on the bench to eat',  // longer than the window: truncated
  'my zorblax likes to',                           // an unknown word
];

let keras: KerasPython;
let park: ParkModel;
let tmp: string;

beforeAll(async () => {
  keras = new KerasPython();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'save-keras-park-'));
  park = await loadParkModel(path.join(REPO_ROOT, 'models', 'park-play'));
});

afterAll(() => {
  keras?.close();
  if (park != null) disposeParkModel(park);
  if (tmp != null) fs.rmSync(tmp, {recursive: true, force: true});
});

/** The park sentences' ids [N, 13] and tfjs' probabilities [N, V]. */
function tfjsPredictions(): {ids: number[][]; probabilities: Float32Array; shape: number[]} {
  const ids = SENTENCES.map(sentence => encodeSentence(park, sentence).ids);
  expect(ids.some(row => row[0] === 0)).toBe(true);  // some rows are padded
  return tf.tidy(() => {
    const y = park.model.predict(tf.tensor2d(ids, undefined, 'int32')) as tf.Tensor;
    return {ids, probabilities: y.dataSync() as Float32Array, shape: y.shape};
  });
}

async function expectKerasPredictsAsTfjs(file: string): Promise<void> {
  const {ids, probabilities, shape} = tfjsPredictions();
  const reply = await keras.predict(file, [{data: ids.flat(), shape: [ids.length, ids[0].length], dtype: 'int32'}]);
  expect(reply.outputs[0].shape).toEqual(shape);
  expectConfigsAsKerasWrites(new Uint8Array(fs.readFileSync(file)), reply.configs);
  const worst = reply.outputs[0].data.reduce((max, v, i) => Math.max(max, Math.abs(v - probabilities[i])), 0);
  expect(worst).toBeLessThanOrEqual(1e-4);
  // The same most likely next word for every sentence.
  const vocabulary = shape[1];
  const argmax = (data: ArrayLike<number>, row: number) => {
    let best = 0;
    for (let j = 1; j < vocabulary; j++) if (data[row * vocabulary + j] > data[row * vocabulary + best]) best = j;
    return best;
  };
  expect(SENTENCES.map((_, row) => argmax(reply.outputs[0].data, row))).toEqual(SENTENCES.map((_, row) => argmax(probabilities, row)));
  // PositionEmbedding and LastPosition became layers Keras has.
  expect(reply.layers).toEqual(['InputLayer', 'Embedding', 'Dense', 'LayerNormalization', 'Add', 'MultiHeadAttention', 'Add',
                                'LayerNormalization', 'Cropping1D', 'Reshape', 'Dense']);
}

describe('the park model in Keras', () => {
  it('without .venv-keras these tests fail, saying how to make it', () => {
    expect(() => requireKerasPython(path.join(tmp, 'no-venv', 'bin', 'python')))
        .toThrow(/Python with Keras 3 is missing .*run `bash scripts\/fixtures\/python_env.sh`/);
  });

  it('saveKerasModel(park model): Keras predicts the next words as tfjs does, padded sentences included', async () => {
    const before = tf.memory().numTensors;
    const bytes = await saveKerasModel(park.model);
    expect(tf.memory().numTensors).toBe(before);
    const file = path.join(tmp, 'park.keras');
    fs.writeFileSync(file, bytes);
    await expectKerasPredictsAsTfjs(file);
  });

  it('npm run export -- --model models/park-play --out <file>: writes a .keras file Keras predicts with as tfjs does', async () => {
    const file = path.join(tmp, 'exported.keras');
    const result = await runCommand('tsx', [path.join('scripts', 'export.ts'), '--model', 'models/park-play', '--out', file]);
    expect({status: result.status, stderr: result.stderr}).toEqual({status: 0, stderr: ''});
    expect(result.stdout).toContain(`Wrote ${file}`);
    expect(result.stdout).toMatch(/attention \(ScaledDotProductAttention\)/);
    await expectKerasPredictsAsTfjs(file);
    // Without --out: a usage error before any work, and nothing written.
    const missing = await runCommand('tsx', [path.join('scripts', 'export.ts'), '--model', 'models/park-play']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/Option `--out` is required/);
    expect(describeResult(missing)).toContain('Usage: npm run export');
  });
});
