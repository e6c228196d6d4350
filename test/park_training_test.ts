/**
 * Acceptance 1–5 of the "park and play ___" issue on a small configuration trained once on
 * the wasm backend: the park sentence's completions, the contrast contexts, held-out accuracy,
 * save/reload, and numTensors. Also: seeded determinism and the explanation's four steps.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';

import {selectBackend} from '../src/node';
import {Corpus, defaultCorpusPath, HELD_OUT_MARKER, loadCorpus} from '../scripts/app/park/corpus';
import {explainSentence} from '../scripts/app/park/explanation';
import {loadParkModel, saveParkModel} from '../scripts/app/park/park_files';
import {ParkModel, PARK_SENTENCE} from '../scripts/app/park/park_model';
import {encodeSentence, nextWordProbabilities, predictNextWords} from '../scripts/app/park/prediction';
import {evaluateAccuracy, EpochLogs, trainParkModel} from '../scripts/app/park/training';
import {NATIVE, reportNativeMissing} from './helpers/native';

jest.setTimeout(240000);

/** The small configuration: a few seconds on wasm with 2 cores. */
const SMALL = {epochs: 6, seed: 1};
const SPORTS = ['cricket', 'football', 'basketball', 'tennis'];
const NOT_SPORTS = ['book', 'house', 'sleep'];

/** Contrast contexts written here (the examples and a few other phrasings). */
const CONTRASTS: Array<[string, string]> = [
  ['we like to go to the library and read a', 'book'],
  ['my friends love to go to the library and read a', 'book'],
  ['she is tired so she goes to bed to', 'sleep'],
  ['i am tired so i want to go to bed and', 'sleep'],
  ['they want to build a new', 'house'],
  ['he plans to build a new', 'house'],
];

/** Sentences whose sport is fixed by a cue word several positions before the end. */
const CUES: Array<[string, string]> = [
  ['he takes his bat to the park to play', 'cricket'],
  ['we set up the wicket in the park and play', 'cricket'],
  ['she takes her racket to the park to play', 'tennis'],
  ['they set up the net in the park and play', 'tennis'],
  ['you take your boots to the park to play', 'football'],
  ['he sets up the goal in the park and plays', 'football'],
  ['we set up the hoop in the park and play', 'basketball'],
];

let corpus: Corpus;
let park: ParkModel;
let history: EpochLogs[];
let tensorsBeforeTraining: number;
const tempDirs: string[] = [];

/** The probability of every vocabulary word after `sentence`, as a word → probability map. */
function distribution(model: ParkModel, sentence: string): Map<string, number> {
  const probabilities = nextWordProbabilities(model, [encodeSentence(model, sentence)]);
  const row = probabilities.dataSync();
  probabilities.dispose();
  const byWord = new Map<string, number>();
  model.vocabulary.toJSON().words.forEach((word, id) => byWord.set(word, row[id]));
  return byWord;
}

/** The word ranked first among real words (not <pad>/<unk>), computed here from the probabilities. */
function top1(model: ParkModel, sentence: string): string {
  let best = '';
  let bestP = -1;
  for (const [word, p] of distribution(model, sentence)) {
    if (word === '<pad>' || word === '<unk>') continue;
    if (p > bestP) [best, bestP] = [word, p];
  }
  return best;
}

/** The corpus file split independently of loadCorpus: sentence lines before and after the marker. */
function rawCorpusLines(): {train: string[]; heldOut: string[]} {
  const lines = fs.readFileSync(defaultCorpusPath(), 'utf8').split(/\r?\n/).map(l => l.trim());
  const marker = lines.indexOf(HELD_OUT_MARKER);
  const sentences = (ls: string[]) => ls.filter(l => l !== '' && !l.startsWith('#')).map(l => l.toLowerCase());
  return {train: sentences(lines.slice(0, marker)), heldOut: sentences(lines.slice(marker + 1))};
}

function weightsOf(model: ParkModel): Float32Array[] {
  return model.model.getWeights().map(w => Float32Array.from(w.dataSync() as Float32Array));
}

/** Disposes a trained model and the optimizer it was compiled with (the caller created neither). */
function disposeTrained(model: ParkModel): void {
  const optimizer = model.model.optimizer;
  model.model.dispose();
  optimizer?.dispose();
}

beforeAll(async () => {
  expect(await selectBackend('wasm')).toBe('wasm');
  corpus = loadCorpus(defaultCorpusPath());
  tensorsBeforeTraining = tf.memory().numTensors;
  ({park, history} = await trainParkModel(corpus, SMALL));
});

afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, {recursive: true, force: true});
});

describe('the small configuration', () => {
  it('trains the requested number of epochs with a decreasing loss', () => {
    expect(history).toHaveLength(SMALL.epochs);
    for (const h of history) {
      expect(Number.isFinite(h.loss)).toBe(true);
      expect(h.accuracy).toBeGreaterThanOrEqual(0);
      expect(h.accuracy).toBeLessThanOrEqual(1);
    }
    expect(history[history.length - 1].loss).toBeLessThan(history[0].loss);
    // The ambiguous sentences (112 of 394) cap training top-1 at about 1 - 112*0.75/394 = 79%;
    // a loss near ln(4)*112/394 = 0.39 is the floor. Anything close means the rest is learned.
    expect(history[history.length - 1].loss).toBeLessThan(0.6);
  });

  it('puts the same vocabulary and window in the model as the corpus implies', () => {
    const words = park.vocabulary.toJSON().words;
    expect(words.slice(0, 2)).toEqual(['<pad>', '<unk>']);
    for (const sentence of corpus.train) for (const w of sentence) expect(park.vocabulary.has(w)).toBe(true);
    const longestContext = Math.max(...[...corpus.train, ...corpus.heldOut].map(s => s.length - 1));
    expect(park.window).toBe(longestContext);
  });
});

describe('acceptance 1: "i like to go to the park and play ___"', () => {
  it('uses the issue\'s sentence', () => {
    expect(PARK_SENTENCE).toBe('i like to go to the park and play');
  });

  it('ranks sports first and gives book, house and sleep under 1% each', () => {
    const byWord = distribution(park, 'i like to go to the park and play');
    const total = [...byWord.values()].reduce((a, b) => a + b, 0);
    expect(total).toBeCloseTo(1, 4);
    const ranked = [...byWord.entries()].filter(([w]) => w !== '<pad>' && w !== '<unk>').sort((a, b) => b[1] - a[1]);
    for (const [word] of ranked.slice(0, 3)) expect(SPORTS).toContain(word);
    for (const word of NOT_SPORTS) {
      expect(byWord.has(word)).toBe(true);
      expect(byWord.get(word)!).toBeLessThan(0.01);
    }
    // predictNextWords' top 3 agree with the ranking computed here.
    expect(predictNextWords(park, PARK_SENTENCE, 3).predictions.map(p => p.word))
        .toEqual(ranked.slice(0, 3).map(([w]) => w));
  });
});

describe('acceptance 2: contrast contexts', () => {
  it.each(CONTRASTS)('"%s" -> %s is top-1', (sentence, expected) => {
    expect(encodeSentence(park, sentence).unknown).toEqual([]);
    expect(top1(park, sentence)).toBe(expected);
    expect(predictNextWords(park, sentence, 1).predictions[0].word).toBe(expected);
  });

  it.each(CUES)('cue sentence "%s" -> %s is top-1', (sentence, expected) => {
    expect(encodeSentence(park, sentence).unknown).toEqual([]);
    expect(top1(park, sentence)).toBe(expected);
  });
});

describe('acceptance 3: held-out sentences', () => {
  it('are the corpus file\'s held-out section, and none of them is in the training data', () => {
    const raw = rawCorpusLines();
    expect(raw.train).toHaveLength(394);
    expect(raw.heldOut).toHaveLength(47);
    expect(corpus.train.map(s => s.join(' '))).toEqual(raw.train);
    expect(corpus.heldOut.map(s => s.join(' '))).toEqual(raw.heldOut);
    const trained = new Set(raw.train);
    for (const sentence of raw.heldOut) expect(trained.has(sentence)).toBe(false);
    // No held-out context is a training context either (with another last word).
    const trainedContexts = new Set(corpus.train.map(s => s.slice(0, -1).join(' ')));
    for (const s of corpus.heldOut) expect(trainedContexts.has(s.slice(0, -1).join(' '))).toBe(false);
  });

  it('top-1 accuracy is at least 95%', () => {
    let correct = 0;
    const wrong: string[] = [];
    for (const s of corpus.heldOut) {
      const predicted = top1(park, s.slice(0, -1).join(' '));
      if (predicted === s[s.length - 1]) correct++;
      else wrong.push(`${s.join(' ')} (predicted ${predicted})`);
    }
    const accuracy = correct / corpus.heldOut.length;
    if (accuracy < 0.95) process.stderr.write(`held-out accuracy ${accuracy}; wrong:\n  ${wrong.join('\n  ')}\n`);
    expect(accuracy).toBeGreaterThanOrEqual(0.95);
    // The library's own measure agrees with the one computed here.
    expect(evaluateAccuracy(park, corpus.heldOut)).toBeCloseTo(accuracy, 6);
  });
});

describe('acceptance 4: save and reload', () => {
  it('gives identical probabilities, vocabulary and window', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'park-save-'));
    tempDirs.push(dir);
    const folder = path.join(dir, 'park-play');
    await saveParkModel(park, folder);
    expect(fs.existsSync(path.join(folder, 'model.json'))).toBe(true);
    const listed = JSON.parse(fs.readFileSync(path.join(folder, 'model.json'), 'utf8')).weightsManifest[0].paths;
    expect(fs.readdirSync(folder).sort()).toEqual(['model.json', ...listed].sort());

    const loaded = await loadParkModel(folder);
    try {
      expect(loaded.window).toBe(park.window);
      expect(loaded.vocabulary.toJSON()).toEqual(park.vocabulary.toJSON());
      const sentences = [PARK_SENTENCE, ...CONTRASTS.map(c => c[0]), ...CUES.map(c => c[0]),
        'the zoo is closed so we', 'one two three four five six seven eight nine ten i like to go to the park and play'];
      const before = nextWordProbabilities(park, sentences.map(s => encodeSentence(park, s)));
      const after = nextWordProbabilities(loaded, sentences.map(s => encodeSentence(loaded, s)));
      try {
        expect(after.shape).toEqual(before.shape);
        expect(after.dtype).toBe('float32');
        const a = before.dataSync() as Float32Array;
        const b = after.dataSync() as Float32Array;
        expect(b).toBeInstanceOf(Float32Array);
        expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength)
            .equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength))).toBe(true);
      } finally {
        tf.dispose([before, after]);
      }
      // The weights themselves round-trip bit for bit.
      const original = weightsOf(park);
      const reloaded = weightsOf(loaded);
      expect(reloaded.length).toBe(original.length);
      original.forEach((w, i) => expect(Array.from(reloaded[i])).toEqual(Array.from(w)));
    } finally {
      disposeTrained(loaded);
    }
  });
});

describe('the explanation of a cue sentence', () => {
  it('has the four steps with shapes [H,T,T] x3 and [H,T,dv], softmax rows and the words as labels', () => {
    const sentence = 'she takes her racket to the park to play';
    const words = sentence.split(' ');
    const explanation = explainSentence(park, sentence);
    expect(explanation.labels).toEqual(words);
    expect(explanation.steps.map(s => s.name)).toEqual(['scores', 'scaled', 'weights', 'output']);

    const config = park.model.getLayer('attention').getConfig() as unknown as {numHeads: number; keyDim: number|null; valueDim: number|null};
    const H = config.numHeads;
    const T = words.length;
    const dv = config.valueDim ?? config.keyDim;
    expect(H).toBeGreaterThan(0);
    expect(typeof dv).toBe('number');
    const [scores, scaled, weights, output] = explanation.steps;
    for (const step of [scores, scaled, weights]) {
      expect(step.shape).toEqual([H, T, T]);
      expect(step.heads).toHaveLength(H);
      for (const m of step.heads) {
        expect(m).toHaveLength(T);
        for (const row of m) expect(row).toHaveLength(T);
      }
    }
    expect(output.shape).toEqual([H, T, dv]);
    for (const m of output.heads) {
      expect(m).toHaveLength(T);
      for (const row of m) expect(row).toHaveLength(dv!);
    }

    // Step 2 is step 1 times 1/sqrt(d); step 3 is its row softmax, so each row sums to 1 over
    // the sentence's own words (the padding was masked out).
    expect(explanation.keyDim).toBe(config.keyDim);
    const scale = 1 / Math.sqrt(config.keyDim!);
    expect(explanation.scale).toBeCloseTo(scale, 6);
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < T; i++) {
        const row = weights.heads[h][i];
        expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
        for (const w of row) expect(w).toBeGreaterThanOrEqual(0);
        const logits = scaled.heads[h][i];
        const max = Math.max(...logits);
        const exps = logits.map(x => Math.exp(x - max));
        const sum = exps.reduce((a, b) => a + b, 0);
        for (let j = 0; j < T; j++) {
          expect(scaled.heads[h][i][j]).toBeCloseTo(scores.heads[h][i][j] * scale, 4);
          expect(row[j]).toBeCloseTo(exps[j] / sum, 5);
        }
      }
    }
  });

  it('labels a sentence longer than the window with its last words', () => {
    const words = 'one two three four five six seven eight nine ten i like to go to the park and play'.split(' ');
    const explanation = explainSentence(park, words.join(' '));
    expect(explanation.truncated).toBe(true);
    expect(explanation.labels).toEqual(words.slice(-park.window));
    expect(explanation.steps[2].shape.slice(1)).toEqual([park.window, park.window]);
  });
});

describe('acceptance 5: numTensors', () => {
  it('1,000 predictions leave numTensors unchanged', () => {
    const sentences = [PARK_SENTENCE, ...CONTRASTS.map(c => c[0]), 'the zoo and the park'];
    predictNextWords(park, sentences[0], 5);  // warm up
    const before = tf.memory().numTensors;
    for (let i = 0; i < 1000; i++) predictNextWords(park, sentences[i % sentences.length], 5);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('seeded training is deterministic, and each training leaves only its model and optimizer', async () => {
    const baseline = tf.memory().numTensors;
    const train = async (seed: number) => {
      const result = await trainParkModel(corpus, {epochs: 2, seed});
      const weights = weightsOf(result.park);
      disposeTrained(result.park);
      expect(tf.memory().numTensors).toBe(baseline);
      return {weights, history: result.history};
    };
    const a = await train(7);
    const b = await train(7);
    const c = await train(8);
    expect(b.history).toEqual(a.history);
    expect(b.weights.length).toBe(a.weights.length);
    a.weights.forEach((w, i) => expect(Array.from(b.weights[i])).toEqual(Array.from(w)));
    // Another seed: other initial weights and shuffles, so other trained weights.
    expect(c.weights.some((w, i) => w.some((x, j) => x !== a.weights[i][j]))).toBe(true);
  });

  // Last: disposes the model that the tests above share.
  it('disposing the trained model and its optimizer brings numTensors back to its value before training', () => {
    expect(tf.memory().numTensors).toBeGreaterThan(tensorsBeforeTraining);
    disposeTrained(park);
    expect(tf.memory().numTensors).toBe(tensorsBeforeTraining);
  });
});

reportNativeMissing('training the park model on tensorflow');

(NATIVE.loaded ? describe : describe.skip)('the small configuration trained on tensorflow (tfjs-node)', () => {
  let native: ParkModel;
  let nativeHistory: EpochLogs[];
  let before: number;

  beforeAll(async () => {
    expect(await selectBackend('tensorflow')).toBe('tensorflow');
    before = tf.memory().numTensors;
    ({park: native, history: nativeHistory} = await trainParkModel(corpus, SMALL));
  });
  afterAll(async () => {
    await selectBackend('wasm');
  });

  it('trains with a decreasing loss to the same floor as on wasm', () => {
    expect(tf.getBackend()).toBe('tensorflow');
    expect(nativeHistory).toHaveLength(SMALL.epochs);
    expect(nativeHistory[nativeHistory.length - 1].loss).toBeLessThan(nativeHistory[0].loss);
    expect(nativeHistory[nativeHistory.length - 1].loss).toBeLessThan(0.6);
  });

  it('acceptance 1: sports first for the park sentence; book, house and sleep under 1% each', () => {
    const byWord = distribution(native, PARK_SENTENCE);
    const ranked = [...byWord.entries()].filter(([w]) => w !== '<pad>' && w !== '<unk>').sort((a, b) => b[1] - a[1]);
    for (const [word] of ranked.slice(0, 3)) expect(SPORTS).toContain(word);
    for (const word of NOT_SPORTS) expect(byWord.get(word)!).toBeLessThan(0.01);
  });

  it('acceptance 2 and 3: the contrast contexts and the cue words, and at least 95% of the held-out sentences', () => {
    for (const [sentence, word] of [...CONTRASTS, ...CUES]) expect([sentence, top1(native, sentence)]).toEqual([sentence, word]);
    const correct = corpus.heldOut.filter(s => top1(native, s.slice(0, -1).join(' ')) === s[s.length - 1]).length;
    expect(correct / corpus.heldOut.length).toBeGreaterThanOrEqual(0.95);
  });

  it('acceptance 5: 100 predictions leave numTensors unchanged; disposing the model brings it back', () => {
    const start = tf.memory().numTensors;
    for (let i = 0; i < 100; i++) predictNextWords(native, PARK_SENTENCE, 5);
    expect(tf.memory().numTensors).toBe(start);
    disposeTrained(native);
    expect(tf.memory().numTensors).toBe(before);
  });
});
