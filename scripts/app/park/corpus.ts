/** Loads and validates a corpus of "park and play ___" sentences: training and held-out. */

import * as fs from 'fs';
import * as nodePath from 'path';

import {ValueError} from '../tfjs_attention_node';
import {packageRoot} from '../package_root';
import {tokenize} from './vocabulary';

/** Tokenized sentences; the last word of each is the word to predict. */
export interface Corpus {
  train: string[][];
  heldOut: string[][];
}

/**
 * The most words a corpus sentence may have. The model's window is the longest sentence's
 * context (all its words but the last), and every example costs window² attention scores
 * per head: a 3,000-word line took 24 s and 1 GB, a 200,000-word one overflowed wasm's
 * memory. Longer lines are rejected, naming the line, before anything is trained.
 */
export const MAX_SENTENCE_WORDS = 64;

/** The line that starts the held-out section of a corpus file. */
export const HELD_OUT_MARKER = '[held-out]';

/**
 * Parses corpus text: one sentence per line; lines starting with `#` are comments; blank
 * lines are ignored; a line that is exactly `[held-out]` starts the held-out section
 * (sentences after it are for evaluation only). Every sentence needs at least 2 words
 * (context and the word to predict) and at most {@link MAX_SENTENCE_WORDS} (64).
 *
 * Without a `[held-out]` line, every 10th sentence is held out, except one whose last
 * word would then no longer end any training sentence (the model could never learn to
 * predict it). Held-out sentences identical to a training sentence are dropped.
 *
 * @param source names the text in error messages, e.g. the file path.
 */
export function parseCorpus(text: string, source = '<text>'): Corpus {
  if (typeof text !== 'string') {
    throw new ValueError(`Corpus ${source} must be text. Received: ${typeof text}`);
  }
  const train: string[][] = [];
  const heldOut: string[][] = [];
  let markerLine = 0;
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    const lineNo = index + 1;
    if (line === '' || line.startsWith('#')) return;
    if (line === HELD_OUT_MARKER) {
      if (markerLine > 0) {
        throw new ValueError(
            `Corpus ${source} has a second ${HELD_OUT_MARKER} line at line ${lineNo} ` +
            `(the first is at line ${markerLine}); a corpus has one held-out section.`);
      }
      markerLine = lineNo;
      return;
    }
    const words = tokenize(line);
    if (words.length < 2) {
      throw new ValueError(
          `Corpus ${source}, line ${lineNo}: each line must be a sentence of at least 2 words ` +
          `(context, then the word to predict). Received: ${JSON.stringify(raw)} ` +
          `(${words.length} word${words.length === 1 ? '' : 's'})`);
    }
    if (words.length > MAX_SENTENCE_WORDS) {
      throw new ValueError(
          `Corpus ${source}, line ${lineNo}: a sentence may have at most ${MAX_SENTENCE_WORDS} words ` +
          '(the model\'s window is the longest sentence, and attention costs its square); ' +
          `split the line into sentences. Received: ${words.length} words`);
    }
    (markerLine > 0 ? heldOut : train).push(words);
  });
  if (train.length === 0) {
    throw new ValueError(
        `Corpus ${source} has no training sentences` +
        (markerLine > 0 ? ` before its ${HELD_OUT_MARKER} line` : '') +
        '; expected one sentence of at least 2 words per line.');
  }
  const corpus = markerLine > 0 ? {train, heldOut} : holdOutEveryTenth(train);
  const trained = new Set(corpus.train.map((s) => s.join(' ')));
  return {train: corpus.train, heldOut: corpus.heldOut.filter((s) => !trained.has(s.join(' ')))};
}

/** Reads and parses a corpus file (see {@link parseCorpus} for the format). */
export function loadCorpus(path: string): Corpus {
  if (typeof path !== 'string' || !fs.existsSync(path) || !fs.statSync(path).isFile()) {
    throw new ValueError(`Corpus file not found: ${path}`);
  }
  return parseCorpus(fs.readFileSync(path, 'utf8'), path);
}

/** Absolute path of the built-in corpus, `scripts/app/park/corpus/park_corpus.txt` (beside this file). */
export function defaultCorpusPath(): string {
  const beside = nodePath.join(__dirname, 'corpus', 'park_corpus.txt');
  if (fs.existsSync(beside)) return beside;
  // Compiled elsewhere (e.g. by tsc into dist/), where the .txt file was not copied.
  return nodePath.join(packageRoot(), 'scripts', 'app', 'park', 'corpus', 'park_corpus.txt');
}

/** Holds out sentences 10, 20, 30, ... unless that takes the last example of their last word. */
function holdOutEveryTenth(sentences: string[][]): Corpus {
  const lastWordCount = new Map<string, number>();
  for (const s of sentences) lastWordCount.set(s[s.length - 1], (lastWordCount.get(s[s.length - 1]) ?? 0) + 1);
  const train: string[][] = [];
  const heldOut: string[][] = [];
  sentences.forEach((s, i) => {
    const last = s[s.length - 1];
    const count = lastWordCount.get(last) ?? 0;
    if ((i + 1) % 10 === 0 && count > 1) {
      lastWordCount.set(last, count - 1);
      heldOut.push(s);
    } else {
      train.push(s);
    }
  });
  return {train, heldOut};
}
