/** Specification of the park task's example tensors: context ids in, last-word id out. */

import * as tf from '@tensorflow/tfjs';

import {ValueError} from '../src/errors';
import {contextWindow, makeExamples} from '../scripts/app/park/dataset';
import {Vocabulary} from '../scripts/app/park/vocabulary';

describe('makeExamples', () => {
  // Vocabulary: <pad> 0, <unk> 1, play 2 (x3), the 3 (x2), ball 4, cricket 5, football 6, i 7, we 8.
  const sentences = [['i', 'play', 'football'], ['we', 'play', 'the', 'cricket'], ['play', 'the', 'ball']];
  const vocab = Vocabulary.fromSentences(sentences);

  it('encodes all words but the last (left-padded) as input and the last word as target', () => {
    expect(vocab.toJSON().words).toEqual(['<pad>', '<unk>', 'play', 'the', 'ball', 'cricket', 'football', 'i', 'we']);
    const {xs, ys} = makeExamples(sentences, vocab, 4);
    expect(xs.shape).toEqual([3, 4]);
    expect(xs.dtype).toBe('int32');
    expect(ys.shape).toEqual([3]);
    expect(ys.dtype).toBe('int32');
    expect(xs.arraySync()).toEqual([
      [0, 0, 7, 2],  // i play
      [0, 8, 2, 3],  // we play the
      [0, 0, 2, 3],  // play the
    ]);
    expect(ys.arraySync()).toEqual([6, 5, 4]);  // football, cricket, ball
    tf.dispose([xs, ys]);
  });

  it('keeps the last `window` context words when the context is longer', () => {
    const {xs, ys} = makeExamples([['we', 'play', 'the', 'cricket']], vocab, 2);
    expect(xs.arraySync()).toEqual([[2, 3]]);  // play the
    expect(ys.arraySync()).toEqual([5]);
    tf.dispose([xs, ys]);
  });

  it('maps unknown context words and an unknown last word to <unk> (1)', () => {
    const {xs, ys} = makeExamples([['they', 'play', 'tennis']], vocab, 3);
    expect(xs.arraySync()).toEqual([[0, 1, 2]]);
    expect(ys.arraySync()).toEqual([1]);
    tf.dispose([xs, ys]);
  });

  it('gives tensors with 0 rows for no sentences', () => {
    const {xs, ys} = makeExamples([], vocab, 4);
    expect(xs.shape).toEqual([0, 4]);
    expect(ys.shape).toEqual([0]);
    tf.dispose([xs, ys]);
  });

  it('leaves no tensors behind once the caller disposes xs and ys', () => {
    const before = tf.memory().numTensors;
    const {xs, ys} = makeExamples(sentences, vocab, 4);
    expect(tf.memory().numTensors).toBe(before + 2);
    tf.dispose([xs, ys]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects a sentence of fewer than 2 words, naming it', () => {
    expect(() => makeExamples([['i', 'play'], ['football']], vocab, 3))
        .toThrow('Received an invalid value for argument `sentences[1]`, expected a sentence of at least 2 words');
  });

  it('rejects a bad window or sentences that are not an array, creating no tensors', () => {
    const before = tf.memory().numTensors;
    expect(() => makeExamples(sentences, vocab, 0)).toThrow('Received: window=0');
    expect(() => makeExamples('i play' as unknown as string[][], vocab, 3)).toThrow(ValueError);
    expect(() => makeExamples([['i', 'play'], ['x']], vocab, 3)).toThrow(ValueError);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('contextWindow', () => {
  it('is the longest sentence length minus one, over training and held-out', () => {
    expect(contextWindow({train: [['a', 'b', 'c'], ['a', 'b']], heldOut: []})).toBe(2);
    expect(contextWindow({train: [['a', 'b']], heldOut: [['a', 'b', 'c', 'd', 'e']]})).toBe(4);
  });

  it('rejects something that is not a corpus', () => {
    expect(() => contextWindow({train: []} as unknown as {train: string[][]; heldOut: string[][]})).toThrow(ValueError);
  });
});
