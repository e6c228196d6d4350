/** Next-word predictions of a park model for a sentence. */
import * as tf from '@tensorflow/tfjs';
import {checkPositiveInteger, ValueError} from '../tfjs_attention';
import {ParkModel} from './park_model';
import {PAD_ID, tokenize, UNK_ID} from './vocabulary';

export interface WordProbability {
  word: string;
  probability: number;
}

/** A sentence as the model sees it. */
export interface EncodedSentence {
  /** The sentence's words, lower case. */
  tokens: string[];
  /** The words the model reads: the last `window` tokens. */
  kept: string[];
  /** `window` ids, left-padded with 0. */
  ids: number[];
  /** Words outside the vocabulary, read as `<unk>`. */
  unknown: string[];
  /** True when the sentence was longer than the window and its first words were dropped. */
  truncated: boolean;
}

export interface NextWordPrediction extends EncodedSentence {
  /** The k most likely next words, most likely first (`<pad>` and `<unk>` excluded). */
  predictions: WordProbability[];
}

/** Tokenizes and encodes a sentence; an empty one is an error. */
export function encodeSentence(park: ParkModel, sentence: string): EncodedSentence {
  if (typeof sentence !== 'string') {
    throw new ValueError(`Argument \`sentence\` must be a string. Received: sentence=${String(sentence)}`);
  }
  const tokens = tokenize(sentence);
  if (tokens.length === 0) {
    throw new ValueError(
        `Argument \`sentence\` has no words; type a sentence such as "i like to go to the park and play". ` +
        `Received: sentence=${JSON.stringify(sentence)}`);
  }
  const encoded = park.vocabulary.encode(tokens, park.window);
  return {tokens, kept: tokens.slice(-park.window), ...encoded};
}

/** The probability of every vocabulary word following each sentence: [N, V]. */
export function nextWordProbabilities(park: ParkModel, sentences: EncodedSentence[]): tf.Tensor2D {
  return tf.tidy(() => {
    const ids = tf.tensor2d(sentences.map(s => s.ids), [sentences.length, park.window], 'int32');  // [N, W]
    return park.model.predict(ids) as tf.Tensor2D;                                                 // [N, V]
  });
}

/** The k most likely next words of `sentence`, with probabilities. */
export function predictNextWords(park: ParkModel, sentence: string, k = 5): NextWordPrediction {
  checkPositiveInteger('k', k);
  const encoded = encodeSentence(park, sentence);
  const probabilities = nextWordProbabilities(park, [encoded]);
  const row = probabilities.dataSync();
  probabilities.dispose();
  checkFiniteOutput(park, row, 'probabilities', encoded);
  return {...encoded, predictions: topK(park, row, k)};
}

/** "the model at models/x" or "the model" (one just trained has no source). */
function modelName(park: ParkModel): string {
  return park.source != null ? `the model at ${park.source}` : 'the model';
}

/**
 * Throws a ValueError naming the model when `values` (what it computed for `sentence`) holds
 * NaN or ±Infinity, instead of printing NaN as a probability.
 */
export function checkFiniteOutput(park: ParkModel, values: ArrayLike<number>, what: string, sentence: EncodedSentence): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      const name = modelName(park);
      throw new ValueError(
          `${name[0].toUpperCase()}${name.slice(1)} computed ${what} that are not finite numbers ` +
          `(${values[i]} at index ${i}) for "${sentence.kept.join(' ')}"; its weights or inputs overflow. ` +
          'Train it again with `npm run train`.');
    }
  }
}

/** The k largest entries of one probability row, as words. */
function topK(park: ParkModel, row: ArrayLike<number>, k: number): WordProbability[] {
  const ids: number[] = [];
  for (let id = 0; id < row.length; id++) if (id !== PAD_ID && id !== UNK_ID) ids.push(id);
  ids.sort((a, b) => row[b] - row[a] || a - b);
  return ids.slice(0, k).map(id => ({word: park.vocabulary.wordOf(id), probability: row[id]}));
}
