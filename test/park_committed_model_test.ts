/**
 * Acceptance 7: the committed models/park-play, loaded by `npm run predict`, meets
 * acceptance 1–3 (park sentence, contrast contexts, held-out accuracy). Also checks what is
 * committed beside it: the metadata in model.json and the two SVG pictures.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';

import {selectBackend} from '../src/node';
import {defaultCorpusPath, loadCorpus} from '../scripts/app/park/corpus';
import {defaultModelDir, loadParkModel} from '../scripts/app/park/park_files';
import {ValueError} from '../src/errors';
import {explainSentence} from '../scripts/app/park/explanation';
import {disposeParkModel, ParkModel, parkModelFromLoaded} from '../scripts/app/park/park_model';
import {encodeSentence, nextWordProbabilities, predictNextWords} from '../scripts/app/park/prediction';
import {describeResult, REPO_ROOT, runCommand, runLimited, ScriptResult} from './helpers/run_script';

jest.setTimeout(300000);

const MODEL_DIR = path.join(REPO_ROOT, 'models', 'park-play');
const PARK = 'i like to go to the park and play';
const SPORTS = ['cricket', 'football', 'basketball', 'tennis'];
const CONTRASTS: Array<[string, string]> = [
  ['we like to go to the library and read a', 'book'],
  ['she is tired so she goes to bed to', 'sleep'],
  ['they want to build a new', 'house'],
];

interface WordProbability {
  word: string;
  probability: number;
}

/** `npm run -s predict -- "<sentence>" --json --k 10`, parsed; stdout must be the JSON alone. */
const predicted = new Map<string, {result: ScriptResult; json: WordProbability[]|Error}>();

function parsePredictions(stdout: string): WordProbability[]|Error {
  try {
    return JSON.parse(stdout) as WordProbability[];  // throws on anything else on stdout
  } catch (error) {
    return error as Error;
  }
}

function predictionsOf(sentence: string): WordProbability[] {
  const {result, json} = predicted.get(sentence)!;
  if (result.status !== 0 || json instanceof Error) {
    throw new Error(`predict failed for "${sentence}": ${json instanceof Error ? json.message : ''}\n${describeResult(result)}`);
  }
  return json;
}

beforeAll(async () => {
  const sentences = [PARK, ...CONTRASTS.map(c => c[0])];
  const results = await runLimited(sentences.map(s => () =>
    runCommand('npm', ['run', '-s', 'predict', '--', s, '--json', '--k', '10'])), 3);
  sentences.forEach((s, i) => predicted.set(s, {result: results[i], json: parsePredictions(results[i].stdout)}));
});

describe('npm run predict with the committed model', () => {
  it('prints only a JSON array of {word, probability} on stdout, most likely first', () => {
    for (const [sentence, {result}] of predicted) {
      const predictions = predictionsOf(sentence);
      expect(result.stdout.trim().startsWith('[')).toBe(true);
      expect(result.stdout.trim().endsWith(']')).toBe(true);
      expect(Array.isArray(predictions)).toBe(true);
      expect(predictions).toHaveLength(10);
      for (const p of predictions) {
        expect(Object.keys(p).sort()).toEqual(['probability', 'word']);
        expect(typeof p.word).toBe('string');
        expect(['<pad>', '<unk>']).not.toContain(p.word);
        expect(p.probability).toBeGreaterThanOrEqual(0);
        expect(p.probability).toBeLessThanOrEqual(1);
      }
      for (let i = 1; i < predictions.length; i++) {
        expect(predictions[i].probability).toBeLessThanOrEqual(predictions[i - 1].probability);
      }
      expect(new Set(predictions.map(p => p.word)).size).toBe(10);
      expect(predictions.reduce((a, p) => a + p.probability, 0)).toBeLessThanOrEqual(1 + 1e-6);
      expect(result.stderr).toBe('');  // every word is known: no notices
    }
  });

  it('acceptance 1: the park sentence\'s top 3 are sports; book, house and sleep are each under 1%', () => {
    const predictions = predictionsOf(PARK);
    for (const p of predictions.slice(0, 3)) expect(SPORTS).toContain(p.word);
    // A word outside the top 10 has at most the 10th probability; all listed ones are checked.
    const tenth = predictions[predictions.length - 1].probability;
    for (const word of ['book', 'house', 'sleep']) {
      const listed = predictions.find(p => p.word === word);
      expect(listed?.probability ?? tenth).toBeLessThan(0.01);
    }
    expect(tenth).toBeLessThan(0.01);
  });

  it.each(CONTRASTS)('acceptance 2: "%s" -> %s is top-1', (sentence, expected) => {
    expect(predictionsOf(sentence)[0].word).toBe(expected);
  });
});

describe('the committed model in-process (the loader predict uses)', () => {
  let park: ParkModel;

  beforeAll(async () => {
    await selectBackend('auto');
    park = await loadParkModel(defaultModelDir());
  });

  afterAll(() => {
    park?.model.dispose();
  });

  it('is the folder models/park-play', () => {
    expect(path.resolve(defaultModelDir())).toBe(MODEL_DIR);
  });

  it('acceptance 3: top-1 accuracy >= 95% on the held-out sentences, none of them in training', () => {
    const corpus = loadCorpus(defaultCorpusPath());
    expect(corpus.heldOut.length).toBeGreaterThan(0);
    const trained = new Set(corpus.train.map(s => s.join(' ')));
    for (const s of corpus.heldOut) expect(trained.has(s.join(' '))).toBe(false);

    const words = park.vocabulary.toJSON().words;
    const probabilities = nextWordProbabilities(park, corpus.heldOut.map(s => encodeSentence(park, s.slice(0, -1).join(' '))));
    const rows = probabilities.arraySync();
    probabilities.dispose();
    let correct = 0;
    rows.forEach((row, i) => {
      let best = -1;
      for (let id = 2; id < row.length; id++) if (best < 0 || row[id] > row[best]) best = id;  // skip <pad>, <unk>
      if (words[best] === corpus.heldOut[i][corpus.heldOut[i].length - 1]) correct++;
    });
    expect(correct / corpus.heldOut.length).toBeGreaterThanOrEqual(0.95);
  });

  it('agrees with what predict printed', () => {
    const probabilities = nextWordProbabilities(park, [encodeSentence(park, PARK)]);
    const row = probabilities.dataSync();
    probabilities.dispose();
    for (const p of predictionsOf(PARK)) {
      expect(p.probability).toBeCloseTo(row[park.vocabulary.idOf(p.word)], 5);
    }
  });

  it('covers the current corpus: every training word has an id, and the window fits the longest context', () => {
    const corpus = loadCorpus(defaultCorpusPath());
    for (const s of corpus.train) for (const w of s) expect(park.vocabulary.has(w)).toBe(true);
    expect(park.window).toBe(Math.max(...[...corpus.train, ...corpus.heldOut].map(s => s.length - 1)));
  });

  it('loading, then disposing the model and the optimizer tfjs restores from model.json, leaves numTensors as it was', async () => {
    const before = tf.memory().numTensors;
    const another = await loadParkModel(MODEL_DIR);
    expect(tf.memory().numTensors).toBeGreaterThan(before);
    const optimizer = another.model.optimizer;
    another.model.dispose();
    optimizer?.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('with a NaN weight it is refused by name, and with overflowing outputs predict and explain throw; no tensor is left', async () => {
    const another = await loadParkModel(MODEL_DIR);
    try {
      const layer = (name: string) => another.model.getLayer(name);
      const [kernel, bias] = layer('next_word').getWeights();   // [d, V], [V]
      const [embeddings] = layer('embedding').getWeights();    // [V, d]
      const nanBias = tf.tensor1d(Array.from(bias.dataSync(), (v, i) => (i === 5 ? NaN : v)));
      const huge = tf.fill(embeddings.shape, 3e38);             // finite, but layer norm overflows
      const finiteBias = bias.clone();
      const before = tf.memory().numTensors;

      layer('next_word').setWeights([kernel, nanBias]);
      expect(() => parkModelFromLoaded(another.model, 'models/with-nan')).toThrow(ValueError);
      expect(() => parkModelFromLoaded(another.model, 'models/with-nan'))
          .toThrow(/^The model at models\/with-nan has weights that are not finite numbers.*next_word\/bias\[5\] is NaN/);
      expect(tf.memory().numTensors).toBe(before);

      layer('next_word').setWeights([kernel, finiteBias]);
      layer('embedding').setWeights([huge]);
      const overflowing = parkModelFromLoaded(another.model, 'models/overflowing');  // every weight finite
      expect(() => predictNextWords(overflowing, PARK)).toThrow(/^The model at models\/overflowing computed probabilities that are not finite/);
      expect(() => explainSentence(overflowing, PARK)).toThrow(/^The model at models\/overflowing computed attention \w+ that are not finite/);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([nanBias, huge, finiteBias]);
    } finally {
      disposeParkModel(another);
    }
  });
});

describe('the committed files', () => {
  const modelJson = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'model.json'), 'utf8'));

  it('model.json\'s userDefinedMetadata holds the vocabulary and the window', () => {
    const metadata = modelJson.userDefinedMetadata;
    expect(metadata).toBeDefined();
    expect(metadata.task).toBe('park-play');
    const words: unknown[] = metadata.vocabulary.words;
    expect(words.slice(0, 2)).toEqual(['<pad>', '<unk>']);
    expect(new Set(words).size).toBe(words.length);
    for (const w of [...SPORTS, 'book', 'house', 'sleep', ...PARK.split(' ')]) expect(words).toContain(w);
    expect(Number.isInteger(metadata.window)).toBe(true);
    expect(metadata.window).toBeGreaterThanOrEqual(PARK.split(' ').length);
  });

  it('weights.bin holds exactly the float32 weights the manifest lists', () => {
    const manifest: Array<{paths: string[]; weights: Array<{shape: number[]; dtype: string}>}> = modelJson.weightsManifest;
    expect(manifest.flatMap(g => g.paths)).toEqual(['weights.bin']);
    let bytes = 0;
    for (const spec of manifest.flatMap(g => g.weights)) {
      expect(spec.dtype).toBe('float32');
      bytes += 4 * spec.shape.reduce((a, b) => a * b, 1);
    }
    expect(fs.statSync(path.join(MODEL_DIR, 'weights.bin')).size).toBe(bytes);
  });

  it.each(['training-curve.svg', 'attention-heatmap.svg'])('%s is an SVG', (file) => {
    const svg = fs.readFileSync(path.join(MODEL_DIR, file), 'utf8').trim();
    expect(svg).toMatch(/^(<\?xml[^>]*>\s*)?<svg\b/);
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
    expect(svg.endsWith('</svg>')).toBe(true);
  });

  it('the attention heatmap has the park sentence\'s tokens on both axes', () => {
    const svg = fs.readFileSync(path.join(MODEL_DIR, 'attention-heatmap.svg'), 'utf8');
    const texts = [...svg.matchAll(/<text\b[^>]*>([^<]*)<\/text>/g)].map(m => m[1].trim());
    const words = PARK.split(' ');
    for (const word of new Set(words)) {
      const inSentence = words.filter(w => w === word).length;
      expect(texts.filter(t => t === word).length).toBeGreaterThanOrEqual(2 * inSentence);
    }
  });
});

describe('parkModelFromLoaded: models that are not this park model', () => {
  const metadata = {task: 'park-play', vocabulary: {words: ['<pad>', '<unk>', 'a', 'b']}, window: 3};

  it('another architecture: names the source, what is missing, what was expected and the layers it has', () => {
    const model = tf.sequential({layers: [tf.layers.dense({inputShape: [3], units: 4, name: 'dense_only'})]});
    model.setUserDefinedMetadata(metadata);
    try {
      expect(() => parkModelFromLoaded(model, 'models/dense')).toThrow(
          /^The model at models\/dense is of another architecture: it has no layer named "attention"; expected the park-play architecture: tokens \[B, 3\] .* softmax over the 4 vocabulary words \[B, 4\]\. Its layers: dense_only \(Dense\)\./);
    } finally {
      model.dispose();
    }
  });

  it('broken metadata (a window of 0, a vocabulary without <pad>) names the source', () => {
    const model = tf.sequential({layers: [tf.layers.dense({inputShape: [3], units: 4})]});
    try {
      model.setUserDefinedMetadata({...metadata, window: 0});
      expect(() => parkModelFromLoaded(model, 'models/w0')).toThrow(
          /^The model at models\/w0 has broken park-play metadata in its model\.json: .*window=0/);
      model.setUserDefinedMetadata({...metadata, vocabulary: {words: ['a', 'b']}});
      expect(() => parkModelFromLoaded(model, 'models/v')).toThrow(/^The model at models\/v has broken park-play metadata/);
    } finally {
      model.dispose();
    }
  });
});
