/** Turns tokenized sentences into (context ids, last-word id) tensors for training and evaluation. */

import * as tf from '@tensorflow/tfjs';

import {checkPositiveInteger, invalidArgument, ValueError} from '../tfjs_attention';
import {MAX_SENTENCE_WORDS} from './corpus';
import type {Corpus} from './corpus';
import type {Vocabulary} from './vocabulary';

/**
 * Makes one example per sentence: the input is every word but the last, encoded with
 * `vocab.encode(words, window)` (left-padded, or keeping the last `window` words); the
 * target is the id of the last word (`<unk>`'s id when it is not in the vocabulary).
 * No sentences give tensors with 0 rows. The caller disposes both tensors.
 *
 * @returns `xs`: int32 [N, window]; `ys`: int32 [N].
 */
export function makeExamples(sentences: string[][], vocab: Vocabulary, window: number):
    {xs: tf.Tensor2D; ys: tf.Tensor1D} {
  if (!Array.isArray(sentences)) {
    throw invalidArgument('sentences', 'an array of tokenized sentences (string[][])', sentences);
  }
  checkPositiveInteger('window', window);
  const inputs = new Int32Array(sentences.length * window);
  const targets = new Int32Array(sentences.length);
  sentences.forEach((sentence, i) => {
    if (!Array.isArray(sentence) || sentence.length < 2 || sentence.some((w) => typeof w !== 'string')) {
      throw invalidArgument(`sentences[${i}]`, 'a sentence of at least 2 words (string[])', sentence);
    }
    inputs.set(vocab.encode(sentence.slice(0, -1), window).ids, i * window);
    targets[i] = vocab.idOf(sentence[sentence.length - 1]);
  });
  const xs = tf.tensor2d(inputs, [sentences.length, window], 'int32');  // [N, window]
  const ys = tf.tensor1d(targets, 'int32');  // [N]
  return {xs, ys};
}

/**
 * The longest context in the corpus: max over training and held-out of (sentence length - 1).
 * A sentence over {@link MAX_SENTENCE_WORDS} words is an error (parseCorpus rejects it with
 * its line; this catches corpora built by hand), so the window is at most 63.
 */
export function contextWindow(corpus: Corpus): number {
  if (corpus == null || !Array.isArray(corpus.train) || !Array.isArray(corpus.heldOut)) {
    throw invalidArgument('corpus', 'a Corpus {train: string[][], heldOut: string[][]}', corpus);
  }
  let longest = 1;
  for (const [part, sentences] of [['train', corpus.train], ['heldOut', corpus.heldOut]] as const) {
    sentences.forEach((sentence, i) => {
      if (Array.isArray(sentence) && sentence.length > MAX_SENTENCE_WORDS) {
        throw new ValueError(
            `Received an invalid value for argument \`corpus.${part}[${i}]\`, expected a sentence of at most ` +
            `${MAX_SENTENCE_WORDS} words. Received: ${sentence.length} words`);
      }
      longest = Math.max(longest, (sentence?.length ?? 0) - 1);
    });
  }
  return longest;
}
