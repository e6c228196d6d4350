/**
 * Acceptances 5 and 6: `model.save('file://…')` without tfjs-node writes tfjs-node's layout;
 * saves are atomic; corrupt or hostile model files give errors that name the file; no path
 * leaks tensors. (Loading in child processes through the built package: save_load_child_test.ts. Saving's
 * file-system safety and symbolic links: file_system_io_test.ts; concurrency: concurrent_save_load_test.ts.)
 */
import {createHash} from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {ScaledDotProductAttention} from '../src/node';
import {SaveStep, setSaveStepHookForTest} from '../src/io/file_system_io';
import {buildModel, predictArray} from './helpers/save_load_model';
import {escapeRegExp} from './helpers/tensors';

let tmp = '';

async function expectNoLeak(body: () => Promise<unknown>|unknown): Promise<void> {
  const before = tf.memory().numTensors;
  await body();
  expect(tf.memory().numTensors).toBe(before);
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-attention-save-'));
});

/** The weights file a save names by content: weights-<first 16 hex digits of the sha256 of the bytes>.bin. */
function weightsNameOf(bytes: Buffer): string {
  return `weights-${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}.bin`;
}

/** The weights files that a saved model.json lists. */
function weightsPathsOf(folder: string): string[] {
  return JSON.parse(fs.readFileSync(path.join(folder, 'model.json'), 'utf8')).weightsManifest.flatMap((g: {paths: string[]}) => g.paths);
}

afterAll(() => {
  setSaveStepHookForTest(null);
  if (tmp) fs.rmSync(tmp, {recursive: true, force: true});
});

describe('model.save("file://…") without tfjs-node', () => {
  it('writes model.json and weights-<sha256>.bin in tfjs-node\'s layout, the bytes being the weights in manifest order', async () => {
    const model = buildModel(10);
    const folder = path.join(tmp, 'layout', 'nested', 'model');  // parents are created
    const result = await model.save(`file://${folder}`);
    // 2 heads: wq 3x4, wk 3x4, wv 3x6, bq 4, bk 4, bv 6, wo 6x4, bo 4; then wq, wk, wv 4x3.
    const floats = 12 + 12 + 18 + 4 + 4 + 6 + 24 + 4 + 12 + 12 + 12;
    const expectedBytes = Buffer.concat(model.getWeights().map(w => Buffer.from((w.dataSync() as Float32Array).buffer)));
    const weightsName = weightsNameOf(expectedBytes);
    expect(fs.readdirSync(folder).sort()).toEqual(['model.json', weightsName]);

    const json = JSON.parse(fs.readFileSync(path.join(folder, 'model.json'), 'utf8'));
    expect(json.format).toBe('layers-model');
    expect(json.generatedBy).toMatch(/^TensorFlow\.js tfjs-layers v4\.22/);
    expect(json.modelTopology.class_name).toBe('Model');
    expect(JSON.stringify(json.modelTopology)).toContain('"class_name":"ScaledDotProductAttention"');
    expect(json.trainingConfig).toBeUndefined();  // as tfjs: only with {includeOptimizer: true}
    expect(json.weightsManifest).toHaveLength(1);
    expect(json.weightsManifest[0].paths).toEqual([weightsName]);
    const specs = json.weightsManifest[0].weights as Array<{name: string; shape: number[]; dtype: string}>;
    expect(specs.map(s => s.name)).toEqual(model.weights.map(w => w.name));
    expect(specs.map(s => s.shape)).toEqual(model.weights.map(w => w.shape));
    expect(new Set(specs.map(s => s.name)).size).toBe(specs.length);  // the two layers' weights stay apart

    const bin = fs.readFileSync(path.join(folder, weightsName));
    expect(bin.byteLength).toBe(floats * 4);
    expect(result.modelArtifactsInfo.weightDataBytes).toBe(floats * 4);
    expect(bin.equals(expectedBytes)).toBe(true);
  });

  it('saves and loads in-process with identical predictions; save, load and dispose leak nothing', async () => {
    const folder = path.join(tmp, 'in-process');
    await expectNoLeak(async () => {
      const model = buildModel(20);
      const expected = predictArray(model);
      await model.save(`file://${folder}`);
      const loaded = await tf.loadLayersModel(`file://${folder}/model.json`);
      expect(loaded.layers.filter(l => l instanceof ScaledDotProductAttention)).toHaveLength(2);
      expect(predictArray(loaded)).toEqual(expected);
      const byFolder = await tf.loadLayersModel(`file://${folder}`);  // the folder works as well
      expect(predictArray(byFolder)).toEqual(expected);
      model.dispose();
      model.optimizer.dispose();  // Adam's two step counters: not the model's to dispose
      loaded.dispose();
      byFolder.dispose();
    });
  });

});

describe('atomic saves', () => {
  /** Every entry of a folder with its bytes, so that "as it was" can be checked exactly. */
  const snapshot = (folder: string) =>
    Object.fromEntries(fs.readdirSync(folder).sort().map(name => {
      const file = path.join(folder, name);
      return [name, fs.statSync(file).isDirectory() ? 'folder' : fs.readFileSync(file).toString('base64')];
    }));

  afterEach(() => setSaveStepHookForTest(null));

  it.each<[string, SaveStep]>([
    ['after the new weights file is written (its rename fails)', 'weights-written'],
    ['after the new weights file is renamed into place', 'weights-renamed'],
    ['after the new model.json is written (its rename fails)', 'model-json-written'],
  ])('a save that fails %s leaves the previous model intact and loadable, and nothing of its own', async (_what, failAt) => {
    const parent = path.join(tmp, `atomic-${failAt}`);
    const folder = path.join(parent, 'model');
    const original = buildModel(40);
    const originalPrediction = predictArray(original);
    await original.save(`file://${folder}`);
    const before = snapshot(folder);
    expect(Object.keys(before)).toEqual(['model.json', weightsPathsOf(folder)[0]]);

    const replacement = buildModel(41);
    expect(predictArray(replacement)).not.toEqual(originalPrediction);
    const steps: SaveStep[] = [];
    setSaveStepHookForTest(step => {
      steps.push(step);
      if (step === failAt) throw new Error(`simulated failure at ${step}`);
    });
    await expectNoLeak(async () => {
      await expect(replacement.save(`file://${folder}`)).rejects.toThrow(new RegExp(`simulated failure at ${failAt}`));
    });
    setSaveStepHookForTest(null);
    expect(steps[steps.length - 1]).toBe(failAt);

    expect(fs.readdirSync(parent)).toEqual(['model']);
    expect(snapshot(folder)).toEqual(before);  // no temporary file, no lock, no new weights file
    const reloaded = await tf.loadLayersModel(`file://${folder}/model.json`);
    expect(predictArray(reloaded)).toEqual(originalPrediction);
    reloaded.dispose();
    original.dispose();
    replacement.dispose();
  });

  it('a save that fails once model.json is renamed has the new model in place, whole; the next save removes the old weights', async () => {
    const folder = path.join(tmp, 'atomic-after-commit');
    const original = buildModel(42);
    await original.save(`file://${folder}`);
    const oldWeights = weightsPathsOf(folder)[0];
    const replacement = buildModel(43);
    setSaveStepHookForTest(step => {
      if (step === 'model-json-renamed') throw new Error('simulated failure after the model.json rename');
    });
    await expect(replacement.save(`file://${folder}`)).rejects.toThrow(/simulated failure after the model\.json rename/);
    setSaveStepHookForTest(null);
    const newWeights = weightsPathsOf(folder)[0];
    expect(newWeights).not.toBe(oldWeights);
    expect(fs.readdirSync(folder).sort()).toEqual(['model.json', oldWeights, newWeights].sort());
    const reloaded = await tf.loadLayersModel(`file://${folder}/model.json`);
    expect(predictArray(reloaded)).toEqual(predictArray(replacement));
    reloaded.dispose();

    await replacement.save(`file://${folder}`);
    expect(fs.readdirSync(folder).sort()).toEqual(['model.json', newWeights]);
    original.dispose();
    replacement.dispose();
  });

  it('a failed first save to a new path creates nothing there', async () => {
    const parent = path.join(tmp, 'atomic-new');
    fs.mkdirSync(parent);
    const model = buildModel(50);
    setSaveStepHookForTest(step => {
      if (step === 'weights-renamed') throw new Error('simulated crash after the weights file');
    });
    await expect(model.save(`file://${path.join(parent, 'model', 'nested')}`)).rejects.toThrow(/simulated crash/);
    expect(fs.readdirSync(parent)).toEqual([]);
    model.dispose();
  });

  it('refuses to save into a folder holding other files and folders, naming them, and leaves them untouched', async () => {
    const folder = path.join(tmp, 'keeps-others');
    const first = buildModel(60);
    await first.save(`file://${folder}`);
    fs.writeFileSync(path.join(folder, 'loss.svg'), '<svg>loss</svg>');
    fs.mkdirSync(path.join(folder, 'plots'));
    fs.writeFileSync(path.join(folder, 'plots', 'weights.txt'), 'heatmap');
    const before = snapshot(folder);

    const second = buildModel(61);
    await expectNoLeak(async () => {
      await expect(second.save(`file://${folder}`)).rejects.toThrow(
          `Cannot save a model to ${folder}: it holds 2 entries that are not part of a saved model (loss.svg, plots/).`);
    });
    expect(snapshot(folder)).toEqual(before);
    expect(fs.readFileSync(path.join(folder, 'plots', 'weights.txt'), 'utf8')).toBe('heatmap');
    const loaded = await tf.loadLayersModel(`file://${folder}/model.json`);
    expect(predictArray(loaded)).toEqual(predictArray(first));
    [first, second, loaded].forEach(m => m.dispose());
  });

  it('refuses to save over a path that is a file, leaving it and nothing else', async () => {
    const parent = path.join(tmp, 'atomic-file');
    fs.mkdirSync(parent);
    const target = path.join(parent, 'model');
    fs.writeFileSync(target, 'not a folder');
    const model = buildModel(70);
    await expectNoLeak(async () => {
      await expect(model.save(`file://${target}`)).rejects.toThrow(
          new RegExp(`^Cannot save a model to ${escapeRegExp(target).source}: it is a file, not a folder\\.$`));
    });
    expect(fs.readdirSync(parent)).toEqual(['model']);
    expect(fs.readFileSync(target, 'utf8')).toBe('not a folder');
    model.dispose();
  });

  it('refuses to save to a path ending in .json, leaving the folder that would hold it untouched', async () => {
    const parent = path.join(tmp, 'save-to-json');
    fs.mkdirSync(parent);
    const sibling = path.join(parent, 'notes.txt');
    fs.writeFileSync(sibling, 'keep me');
    const before = fs.statSync(parent).ino;
    const url = `file://${path.join(parent, 'x.json')}`;
    const model = buildModel(80);
    await expectNoLeak(async () => {
      await expect(model.save(url)).rejects.toThrow(
          `Received an invalid value for argument \`url\`, expected a folder to save model.json and its weights in, ` +
          `not a path ending in .json. Received: url=${JSON.stringify(url)}`);
    });
    expect(fs.statSync(parent).ino).toBe(before);  // the same folder, not a replacement
    expect(fs.readdirSync(parent)).toEqual(['notes.txt']);
    expect(fs.readFileSync(sibling, 'utf8')).toBe('keep me');
    model.dispose();
  });
});

describe('loading corrupt or hostile model files', () => {
  let good = '';
  let weightsName = '';
  let weightBytes = 0;

  beforeAll(async () => {
    good = path.join(tmp, 'good');
    const model = buildModel(80);
    await model.save(`file://${good}`);
    [weightsName] = weightsPathsOf(good);
    weightBytes = fs.statSync(path.join(good, weightsName)).size;
    model.dispose();
  });

  /** A fresh copy of the good model, changed by `damage`; returns the copy's folder. */
  function damagedCopy(name: string, damage: (folder: string) => void): string {
    const folder = path.join(tmp, 'damaged', name);
    fs.cpSync(good, folder, {recursive: true});
    damage(folder);
    return folder;
  }

  function editManifest(folder: string, edit: (paths: string[]) => string[]): void {
    const file = path.join(folder, 'model.json');
    const json = JSON.parse(fs.readFileSync(file, 'utf8'));
    json.weightsManifest[0].paths = edit(json.weightsManifest[0].paths);
    fs.writeFileSync(file, JSON.stringify(json));
  }

  async function expectLoadError(url: string, message: RegExp): Promise<void> {
    await expectNoLeak(async () => {
      await expect(tf.loadLayersModel(url)).rejects.toThrow(message);
    });
  }

  it('a missing weights file: an error naming that file and the model.json that lists it', async () => {
    const folder = damagedCopy('missing-bin', f => fs.rmSync(path.join(f, weightsName)));
    await expectLoadError(`file://${folder}/model.json`, new RegExp(
        `Weights file not found: ${escapeRegExp(path.join(folder, weightsName)).source} \\(listed in ${escapeRegExp(path.join(folder, 'model.json')).source}\\)`));
  });

  it('a truncated weights file: an error naming the file, saying truncated, with both byte counts', async () => {
    const kept = weightBytes - 10;
    const folder = damagedCopy('truncated-bin', f => fs.truncateSync(path.join(f, weightsName), kept));
    await expectLoadError(`file://${folder}/model.json`, new RegExp(
        `Weights file ${escapeRegExp(path.join(folder, weightsName)).source} is truncated: .*expects ${weightBytes} bytes, ` +
        `the files hold ${kept}`));
  });

  it('a weights file with extra bytes: an error naming the file, saying too long', async () => {
    const folder = damagedCopy('long-bin', f => fs.appendFileSync(path.join(f, weightsName), Buffer.alloc(8)));
    await expectLoadError(`file://${folder}/model.json`, new RegExp(
        `Weights file ${escapeRegExp(path.join(folder, weightsName)).source} is too long: .*expects ${weightBytes} bytes, ` +
        `the files hold ${weightBytes + 8}`));
  });

  it('invalid JSON in model.json: an error naming model.json', async () => {
    const folder = damagedCopy('bad-json', f => fs.writeFileSync(path.join(f, 'model.json'), '{"modelTopology": {'));
    await expectLoadError(`file://${folder}/model.json`,
                          new RegExp(`Cannot parse ${escapeRegExp(path.join(folder, 'model.json')).source} as JSON`));
  });

  it('a JSON file that is not a model: an error naming it', async () => {
    const folder = damagedCopy('not-a-model', f => fs.writeFileSync(path.join(f, 'model.json'), '{"hello": 1}'));
    await expectLoadError(`file://${folder}/model.json`,
                          new RegExp(`${escapeRegExp(path.join(folder, 'model.json')).source} has no \`modelTopology\``));
  });

  it.each([
    ['a relative path climbing out', '../../etc/passwd'],
    ['an absolute path', '/etc/passwd'],
    ['a sibling folder that shares the name as a prefix', '../path-escape-evil/weights.bin'],
  ])('refuses a weights path that leads outside the model folder: %s', async (_what, hostile) => {
    const folder = damagedCopy('path-escape', f => editManifest(f, () => [hostile]));
    fs.mkdirSync(path.join(tmp, 'damaged', 'path-escape-evil'), {recursive: true});
    fs.copyFileSync(path.join(good, weightsName), path.join(tmp, 'damaged', 'path-escape-evil', 'weights.bin'));
    await expectLoadError(`file://${folder}/model.json`, new RegExp(
        `${escapeRegExp(path.join(folder, 'model.json')).source} names a weights path outside the model's folder ` +
        `${escapeRegExp(folder).source}, which is refused\\. Received: ${escapeRegExp(JSON.stringify(hostile)).source}`));
    fs.rmSync(folder, {recursive: true});
  });

  it('a missing model folder: an error naming the path', async () => {
    const missing = path.join(tmp, 'no-such-model');
    await expectLoadError(`file://${missing}`, new RegExp(`Model file not found: ${escapeRegExp(path.join(missing, 'model.json')).source}`));
    await expectLoadError(`file://${missing}/model.json`,
                          new RegExp(`Model file not found: ${escapeRegExp(path.join(missing, 'model.json')).source}`));
  });
});
