/** Training and evaluation of the park model, deterministic for a seed and backend. */
import * as tf from '@tensorflow/tfjs';
import {checkPositiveFinite, checkPositiveInteger, invalidArgument} from '../tfjs_attention';
import {Corpus} from './corpus';
import {contextWindow, makeExamples} from './dataset';
import {attachMetadata, createParkModel, ParkModel, ParkModelOptions} from './park_model';
import {Vocabulary} from './vocabulary';
import {seededRandom} from '../random';

export interface TrainOptions {
  /** Passes over the training sentences. Defaults to 60. */
  epochs?: number;
  /** Sentences per gradient step. Defaults to 32. */
  batchSize?: number;
  /** Adam's learning rate. Defaults to 0.01. */
  learningRate?: number;
  /** Seeds the initializers and the shuffling. Defaults to 42. */
  seed?: number;
  /** Architecture overrides. */
  model?: Partial<Omit<ParkModelOptions, 'vocabularySize'|'window'|'seed'>>;
  /** Called after each epoch with its mean loss and accuracy. */
  onEpochEnd?: (epoch: number, logs: EpochLogs) => void|Promise<void>;
}

export interface EpochLogs {
  loss: number;
  accuracy: number;
}

export interface TrainingResult {
  park: ParkModel;
  history: EpochLogs[];
}

/** A Fisher-Yates permutation of 0..n-1 drawn from `random`. */
function permutation(n: number, random: () => number): Int32Array {
  const order = Int32Array.from({length: n}, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/**
 * Builds the vocabulary from the training sentences, creates the model and fits it.
 * tfjs' own `shuffle` uses Math.random, so batches are shuffled here with a seeded PRNG.
 */
export async function trainParkModel(corpus: Corpus, options: TrainOptions = {}): Promise<TrainingResult> {
  const epochs = options.epochs ?? 60;
  const batchSize = options.batchSize ?? 32;
  const learningRate = options.learningRate ?? 0.01;
  const seed = options.seed ?? 42;
  checkPositiveInteger('epochs', epochs);
  checkPositiveInteger('batchSize', batchSize);
  checkPositiveFinite('learningRate', learningRate);
  if (typeof seed !== 'number' || !Number.isInteger(seed)) throw invalidArgument('seed', 'an integer', seed);

  const vocabulary = Vocabulary.fromSentences(corpus.train);
  const window = contextWindow(corpus);
  const model = createParkModel({...options.model, vocabularySize: vocabulary.size, window, seed});
  model.compile({optimizer: tf.train.adam(learningRate), loss: 'sparseCategoricalCrossentropy', metrics: ['accuracy']});
  const park: ParkModel = {model, vocabulary, window};

  const {xs, ys} = makeExamples(corpus.train, vocabulary, window);  // [N, W], [N]
  let targets: tf.Tensor|null = null;
  const random = seededRandom(seed);
  const history: EpochLogs[] = [];
  try {
    targets = tf.tidy(() => ys.cast('float32').expandDims(1));       // [N, 1], built once
    for (let epoch = 0; epoch < epochs; epoch++) {
      const order = tf.tensor1d(permutation(xs.shape[0], random), 'int32');
      const epochXs = tf.gather(xs, order);                             // [N, W]
      const epochYs = tf.gather(targets, order);                        // [N, 1]
      try {
        const fitted = await model.fit(epochXs, epochYs, {epochs: 1, batchSize, shuffle: false, verbose: 0});
        const logs = {loss: fitted.history.loss[0] as number, accuracy: fitted.history.acc[0] as number};
        history.push(logs);
        await options.onEpochEnd?.(epoch, logs);
      } finally {
        tf.dispose([order, epochXs, epochYs]);
      }
    }
  } finally {
    tf.dispose([xs, ys]);
    targets?.dispose();
  }
  attachMetadata(park, {epochs, seed, learningRate, batchSize, trainSentences: corpus.train.length});
  return {park, history};
}

/** Top-1 accuracy of the model on sentences (their last word is the target). */
export function evaluateAccuracy(park: ParkModel, sentences: string[][]): number {
  if (sentences.length === 0) return NaN;
  return tf.tidy(() => {
    const {xs, ys} = makeExamples(sentences, park.vocabulary, park.window);
    const predicted = (park.model.predict(xs) as tf.Tensor2D).argMax(1);  // [N]
    return tf.equal(predicted, ys).cast('float32').mean().dataSync()[0];
  });
}
