/**
 * Acceptances 5 and 6, through the built package in child Node processes: a child that imports only
 * `@tensorflow/tfjs` and `tfjs-attention` (dist/, by require and by ESM import) loads a model saved here with
 * identical predictions and trains on; two copies of the package on one tfjs register one file:// handler. (Split
 * from save_load_test.ts: these run dist/ in children, so the io mutation module leaves them out.)
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '../src/node';
import {buildModel, INPUT, Nested, predictArray, TRAIN_X, TRAIN_Y} from './helpers/save_load_model';
import {maxAbsDiff} from './helpers/tensors';

const REPO = path.resolve(__dirname, '..');
let tmp = '';

/** The body shared by the CommonJS and the ESM child script: load, predict, train on, save, reload. */
const CHILD_BODY = `
const job = JSON.parse(process.argv[2]);
(async () => {
  await tf.setBackend('cpu');
  const model = await tf.loadLayersModel(job.url);
  const x = tf.tensor(job.input);
  const result = {
    resolved: RESOLVED,
    registered: tf.serialization.SerializationMap.getMap().classNameMap.ScaledDotProductAttention?.[0] === ScaledDotProductAttention,
    layerClasses: model.layers.map(l => l.getClassName()),
    optimizer: model.optimizer ? model.optimizer.getClassName() : null,  // as loaded
    prediction: model.predict(x).arraySync(),
  };
  if (job.train) {
    if (model.optimizer == null) model.compile({optimizer: tf.train.adam(0.02), loss: 'meanSquaredError'});
    const history = await model.fit(tf.tensor(job.train.x), tf.tensor(job.train.y),
        {epochs: job.train.epochs, batchSize: 8, shuffle: false, verbose: 0});
    result.losses = history.history.loss;
    result.predictionAfterFit = model.predict(x).arraySync();
    await model.save(job.saveTo);
    const reloaded = await tf.loadLayersModel(job.saveTo + '/model.json');
    result.reloadedPrediction = reloaded.predict(x).arraySync();
  }
  console.log('RESULT ' + JSON.stringify(result));
})().catch(error => {
  console.error(error && error.stack || String(error));
  process.exit(1);
});
`;

const CHILD_CJS = `const tf = require('@tensorflow/tfjs');
const {ScaledDotProductAttention} = require('tfjs-attention');
const RESOLVED = require.resolve('tfjs-attention');
${CHILD_BODY}`;

const CHILD_ESM = `import * as tf from '@tensorflow/tfjs';
import {ScaledDotProductAttention} from 'tfjs-attention';
const RESOLVED = new URL(import.meta.resolve('tfjs-attention')).pathname;
${CHILD_BODY}`;

interface ChildResult {
  resolved: string;
  registered: boolean;
  layerClasses: string[];
  optimizer: string|null;
  prediction: Nested;
  losses?: number[];
  predictionAfterFit?: Nested;
  reloadedPrediction?: Nested;
}

/** Runs a child script in `tmp`, whose node_modules links `tfjs-attention` (this repo) and `@tensorflow`. */
function runChild(script: string, job: object): ChildResult {
  const child = spawnSync(process.execPath, [path.join(tmp, script), JSON.stringify(job)], {
    cwd: tmp, encoding: 'utf8', timeout: 90000, env: {...process.env, NODE_PATH: '', NODE_OPTIONS: ''},
  });
  const line = (child.stdout ?? '').split('\n').find(l => l.startsWith('RESULT '));
  if (child.status !== 0 || line == null) {
    throw new Error(`child ${script} failed (status ${child.status}):\n${child.stderr}\n${child.stdout}`);
  }
  return JSON.parse(line.slice('RESULT '.length));
}

function buildResult(): {status: number|null; output: string} {
  return JSON.parse(fs.readFileSync(path.join(REPO, 'dist', 'build-result.json'), 'utf8'));
}
beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-attention-save-child-'));
  fs.mkdirSync(path.join(tmp, 'node_modules'));
  fs.symlinkSync(REPO, path.join(tmp, 'node_modules', 'tfjs-attention'), 'dir');
  fs.symlinkSync(path.join(REPO, 'node_modules', '@tensorflow'), path.join(tmp, 'node_modules', '@tensorflow'), 'dir');
  fs.writeFileSync(path.join(tmp, 'child.js'), CHILD_CJS);
  fs.writeFileSync(path.join(tmp, 'child.mjs'), CHILD_ESM);
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, {recursive: true, force: true});
});

describe('model.save("file://…") here, loaded in a child Node process', () => {
  const cases: Array<[string, string, boolean, string]> = [
    ['require (CommonJS)', 'child.js', false, 'cjs'],
    ['import (ESM .mjs)', 'child.mjs', true, 'esm'],  // the ESM build, through the `node` condition
  ];
  for (const [kind, script, includeOptimizer, build] of cases) {
    const saved = includeOptimizer ? 'saved with its optimizer' : 'saved without optimizer (the child compiles it)';
    it(`a child Node process using ${kind} of tfjs-attention loads a model ${saved} with identical predictions and trains on`, async () => {
      expect(buildResult().status).toBe(0);
      const model = buildModel(30);
      await model.fit(tf.tensor3d(TRAIN_X), tf.tensor3d(TRAIN_Y), {epochs: 2, batchSize: 8, verbose: 0});
      const folder = path.join(tmp, `for-${script}`);
      await model.save(`file://${folder}`, {includeOptimizer});
      const expected = predictArray(model);
      if (includeOptimizer) {
        const json = JSON.parse(fs.readFileSync(path.join(folder, 'model.json'), 'utf8'));
        expect(json.trainingConfig).toEqual(expect.objectContaining({loss: 'mean_squared_error'}));
        const groups = (json.weightsManifest[0].weights as Array<{group?: string}>).map(w => w.group);
        expect(groups).toContain('optimizer');  // Adam's moments travel in the same weights file
      }

      const saveTo = path.join(tmp, `trained-by-${script}`);
      const child = runChild(script, {
        url: `file://${folder}/model.json`, input: INPUT, train: {x: TRAIN_X, y: TRAIN_Y, epochs: 6}, saveTo: `file://${saveTo}`,
      });
      expect(fs.realpathSync(child.resolved)).toBe(path.join(REPO, 'dist', build, 'node.js'));  // the built package
      expect(child.registered).toBe(true);
      expect(child.layerClasses.filter(c => c === 'ScaledDotProductAttention')).toHaveLength(2);
      expect(maxAbsDiff(child.prediction, expected).diff).toBeLessThanOrEqual(1e-6);
      expect(child.prediction).toEqual(expected);  // same cpu kernels: bit for bit

      // Training continues (with the optimizer from trainingConfig, when saved): the loss falls.
      expect(child.optimizer).toBe(includeOptimizer ? 'Adam' : null);
      const losses = child.losses!;
      expect(losses).toHaveLength(6);
      expect(losses[losses.length - 1]).toBeLessThan(losses[0]);
      expect(maxAbsDiff(child.predictionAfterFit!, expected).diff).toBeGreaterThan(1e-4);
      expect(child.reloadedPrediction).toEqual(child.predictionAfterFit);

      // And the child's save comes back here with the child's predictions.
      const retrained = await tf.loadLayersModel(`file://${saveTo}/model.json`);
      expect(predictArray(retrained)).toEqual(child.predictionAfterFit);
      retrained.dispose();
      model.dispose();
    });
  }
});

describe('two copies of tfjs-attention on one tfjs (e.g. two versions installed side by side)', () => {
  it('register one file:// handler between them, so saving and loading still work', () => {
    const copy = path.join(tmp, 'second-copy');
    fs.cpSync(path.join(REPO, 'dist', 'cjs'), path.join(copy, 'dist', 'cjs'), {recursive: true});
    const folder = path.join(tmp, 'saved-with-two-copies');
    fs.writeFileSync(path.join(tmp, 'two_copies.js'), `const tf = require('@tensorflow/tfjs');
require('tfjs-attention');
require(${JSON.stringify(path.join(copy, 'dist', 'cjs', 'node.js'))});
(async () => {
  await tf.setBackend('cpu');
  const model = tf.sequential({layers: [tf.layers.dense({units: 1, inputShape: [2], kernelInitializer: 'ones'})]});
  const handlers = tf.io.getSaveHandlers('file://${folder}').length;
  await model.save('file://${folder}');
  const loaded = await tf.loadLayersModel('file://${folder}/model.json');
  console.log('RESULT ' + JSON.stringify({handlers, prediction: loaded.predict(tf.tensor2d([[1, 2]])).arraySync()}));
})().catch(error => { console.error(error.stack); process.exit(1); });
`);
    const child = spawnSync(process.execPath, ['two_copies.js'], {cwd: tmp, encoding: 'utf8', timeout: 90000});
    const line = child.stdout.split('\n').find(l => l.startsWith('RESULT '));
    expect({status: child.status, stderr: line == null ? child.stderr : ''}).toEqual({status: 0, stderr: ''});
    expect(JSON.parse(line!.slice('RESULT '.length))).toEqual({handlers: 1, prediction: [[3]]});
  });
});
