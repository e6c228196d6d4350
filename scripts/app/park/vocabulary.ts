/** Tokenizer and word <-> id vocabulary of the "park and play ___" task. */

import {ValueError, checkPositiveInteger, formatValue, invalidArgument} from '../tfjs_attention';

/** Id of the padding token; the model never predicts it. */
export const PAD_ID = 0;
/** Id that every word outside the vocabulary maps to. */
export const UNK_ID = 1;
export const PAD = '<pad>';
export const UNK = '<unk>';

/**
 * Splits a sentence into lower-case words: runs of letters, digits and apostrophes.
 * Everything else (spaces, punctuation) separates words and is dropped; apostrophes at
 * either end of a word are dropped too, so quotes around a word do not make a new word.
 */
export function tokenize(sentence: string): string[] {
  if (typeof sentence !== 'string') throw invalidArgument('sentence', 'a string', sentence);
  // Typographic apostrophes count as the plain one, so "don’t" and "don't" are one word.
  const text = sentence.toLowerCase().replace(/[\u2018\u2019]/g, '\'');
  const words: string[] = [];
  for (const run of text.match(/[\p{L}\p{N}']+/gu) ?? []) {
    const word = run.replace(/^'+|'+$/g, '');
    if (word.length > 0) words.push(word);
  }
  return words;
}

/** The result of {@link Vocabulary.encode}. */
export interface Encoded {
  /** Exactly `window` ids, left-padded with {@link PAD_ID}. */
  ids: number[];
  /** Words of the encoded part that are not in the vocabulary (each once, in order). */
  unknown: string[];
  /** True when the tokens were longer than the window and the first ones were dropped. */
  truncated: boolean;
}

/**
 * Maps words to ids and back. Id 0 is `<pad>`, id 1 is `<unk>`, then the words by
 * frequency (most frequent first), ties broken alphabetically, so the same sentences
 * always give the same ids.
 */
export class Vocabulary {
  private readonly words: readonly string[];
  private readonly ids: ReadonlyMap<string, number>;

  private constructor(words: string[]) {
    this.words = words;
    this.ids = new Map(words.map((word, id) => [word, id]));
  }

  /** Builds the vocabulary of tokenized sentences (see {@link tokenize}). */
  static fromSentences(sentences: string[][]): Vocabulary {
    if (!Array.isArray(sentences)) {
      throw invalidArgument('sentences', 'an array of tokenized sentences (string[][])', sentences);
    }
    const counts = new Map<string, number>();
    sentences.forEach((sentence, i) => {
      if (!Array.isArray(sentence) || sentence.some((w) => typeof w !== 'string' || w.length === 0)) {
        throw invalidArgument(`sentences[${i}]`, 'an array of non-empty strings', sentence);
      }
      for (const word of sentence) {
        // The reserved tokens keep their fixed ids whatever the sentences contain.
        if (word === PAD || word === UNK) continue;
        counts.set(word, (counts.get(word) ?? 0) + 1);
      }
    });
    // Plain < comparison, not localeCompare, so the order does not depend on the locale.
    const sorted = [...counts.entries()]
        .sort(([a, ca], [b, cb]) => cb - ca || (a < b ? -1 : a > b ? 1 : 0))
        .map(([word]) => word);
    return new Vocabulary([PAD, UNK, ...sorted]);
  }

  /**
   * Rebuilds a vocabulary saved with {@link Vocabulary.toJSON}: `{words: [...]}` with
   * `'<pad>'` and `'<unk>'` first and no empty or repeated words.
   */
  static fromJSON(json: unknown): Vocabulary {
    const expected = 'an object {words: string[]} whose words start with "<pad>", "<unk>"';
    if (typeof json !== 'object' || json == null || !Array.isArray((json as {words?: unknown}).words)) {
      throw invalidArgument('json', expected, json);
    }
    const words: unknown[] = (json as {words: unknown[]}).words;
    if (words[0] !== PAD || words[1] !== UNK) {
      throw new ValueError(
          `Vocabulary JSON must start with the words "${PAD}", "${UNK}". ` +
          `Received: words=${formatValue(words.slice(0, 2))}`);
    }
    const seen = new Set<string>();
    words.forEach((word, i) => {
      if (typeof word !== 'string' || word.length === 0) {
        throw new ValueError(`Vocabulary JSON words must be non-empty strings. Received: words[${i}]=${formatValue(word)}`);
      }
      if (seen.has(word)) {
        throw new ValueError(`Vocabulary JSON words must be unique. Received: words[${i}]=${formatValue(word)} again`);
      }
      seen.add(word);
    });
    return new Vocabulary(words as string[]);
  }

  /** Number of ids, `<pad>` and `<unk>` included. */
  get size(): number {
    return this.words.length;
  }

  /** The word of an id; throws for an id outside [0, size). */
  wordOf(id: number): string {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= this.words.length) {
      throw invalidArgument('id', `an integer in [0, ${this.words.length})`, id);
    }
    return this.words[id];
  }

  /** The id of a word, or {@link UNK_ID} when the word is not in the vocabulary. */
  idOf(word: string): number {
    return this.ids.get(word) ?? UNK_ID;
  }

  /** True when the word has its own id. */
  has(word: string): boolean {
    return this.ids.has(word);
  }

  /**
   * Encodes tokens into exactly `window` ids. Shorter inputs are left-padded with
   * {@link PAD_ID}; longer ones keep their LAST `window` tokens, because the model
   * predicts from the last position and the most recent words matter most.
   */
  encode(tokens: string[], window: number): Encoded {
    if (!Array.isArray(tokens) || tokens.some((t) => typeof t !== 'string')) {
      throw invalidArgument('tokens', 'an array of strings', tokens);
    }
    checkPositiveInteger('window', window);
    const kept = tokens.slice(Math.max(0, tokens.length - window));
    const unknown: string[] = [];
    for (const token of kept) {
      if (!this.ids.has(token) && !unknown.includes(token)) unknown.push(token);
    }
    const ids = [...new Array<number>(window - kept.length).fill(PAD_ID), ...kept.map((t) => this.idOf(t))];
    return {ids, unknown, truncated: tokens.length > window};
  }

  /** The words in id order, for saving next to a model. */
  toJSON(): {words: string[]} {
    return {words: [...this.words]};
  }
}
