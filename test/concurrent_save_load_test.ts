/**
 * Concurrent saves and loads from separate processes (issue 9): two savers and a loader, each a child Node process
 * running the built package (dist/); every save lands and every load is one whole model. (Split from
 * file_system_io_test.ts: the children run dist/, so the io mutation module leaves this file out.)
 */
import {spawn} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '../src/node';
import {constantModel} from './helpers/save_load_model';

const REPO = path.resolve(__dirname, '..');
let tmp = '';

function weightsPathsOf(folder: string): string[] {
  return JSON.parse(fs.readFileSync(path.join(folder, 'model.json'), 'utf8')).weightsManifest.flatMap((g: {paths: string[]}) => g.paths);
}

let model: tf.LayersModel;

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-attention-concurrent-')));
  model = constantModel(1);
});

afterAll(() => {
  model?.dispose();
  if (tmp) fs.rmSync(tmp, {recursive: true, force: true});
});

/** A child Node process that saves or loads with the built package (dist/, built by globalSetup). */
const CHILD = `
const tf = require(${JSON.stringify(path.join(REPO, 'node_modules', '@tensorflow', 'tfjs'))});
require(${JSON.stringify(path.join(REPO, 'dist', 'cjs', 'node.js'))});
const [mode, folder, id, rounds] = process.argv.slice(2);
(async () => {
  await tf.setBackend('cpu');
  const report = {done: 0, errors: [], mixes: [], seen: []};
  const deadline = Date.now() + 60000;
  for (let round = 0; round < Number(rounds) && Date.now() < deadline; round++) {
    if (mode === 'save') {
      const value = Number(id) * 1000 + round + 1;
      const model = tf.sequential({layers: [tf.layers.dense({units: 3, inputShape: [5],
          kernelInitializer: tf.initializers.constant({value}), biasInitializer: tf.initializers.constant({value})})]});
      model.setUserDefinedMetadata({value});
      try {
        await model.save('file://' + folder);
      } catch (error) {
        report.errors.push(error.message);
      }
      model.dispose();
    } else {
      try {
        const model = await tf.loadLayersModel('file://' + folder + '/model.json');
        const value = model.getUserDefinedMetadata().value;
        const values = new Set(model.getWeights().flatMap(w => Array.from(w.dataSync())));
        if (values.size !== 1 || !values.has(value)) report.mixes.push({value, weights: [...values]});
        report.seen.push(value);
        model.dispose();
      } catch (error) {
        report.errors.push(error.message);
      }
    }
    report.done++;
  }
  console.log('RESULT ' + JSON.stringify(report));
})().catch(error => { console.error(error.stack); process.exit(1); });
`;

interface ChildReport {
  done: number;
  errors: string[];
  mixes: Array<{value: number; weights: number[]}>;
  seen: number[];
}

function runChild(script: string, args: string[]): Promise<ChildReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], {stdio: ['ignore', 'pipe', 'pipe']});
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120000);
    child.on('close', (status) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find(l => l.startsWith('RESULT '));
      if (status !== 0 || line == null) reject(new Error(`child ${args.join(' ')} failed (${status}):\n${stderr}\n${stdout}`));
      else resolve(JSON.parse(line.slice('RESULT '.length)));
    });
  });
}

describe('concurrent saves and loads from separate processes', () => {
  it('2 savers x 30 rounds and 1 loader x 60 rounds: every save lands, every load is one whole model', async () => {
    const folder = path.join(tmp, 'concurrent', 'model');
    await model.save(`file://${folder}`);  // value 1: the model before the savers start
    const script = path.join(tmp, 'save_load_child.js');
    fs.writeFileSync(script, CHILD);
    const [saverA, saverB, loader] = await Promise.all([
      runChild(script, ['save', folder, '1', '30']),
      runChild(script, ['save', folder, '2', '30']),
      runChild(script, ['load', folder, '0', '60']),
    ]);
    for (const saver of [saverA, saverB]) expect({done: saver.done, errors: saver.errors}).toEqual({done: 30, errors: []});
    expect({done: loader.done, errors: loader.errors, mixes: loader.mixes}).toEqual({done: 60, errors: [], mixes: []});
    const valid = new Set([1, ...Array.from({length: 30}, (_, r) => 1001 + r), ...Array.from({length: 30}, (_, r) => 2001 + r)]);
    expect(loader.seen.filter(v => !valid.has(v))).toEqual([]);
    // Only the last model is left: no lock, no temporary file, no old weights.
    expect(fs.readdirSync(folder).sort()).toEqual(['model.json', ...weightsPathsOf(folder)]);
    const last = await tf.loadLayersModel(`file://${folder}/model.json`);
    expect([1030, 2030]).toContain((last.getUserDefinedMetadata() as {value: number}).value);
    last.dispose();
  });
});
