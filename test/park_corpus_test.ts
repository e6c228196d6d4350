/** Specification of the built-in park corpus and of loading and validating corpus files. */

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';

import {corpusText} from '../scripts/make_corpus';
import {ValueError} from '../src/errors';
import {Corpus, defaultCorpusPath, loadCorpus, MAX_SENTENCE_WORDS, parseCorpus} from '../scripts/app/park/corpus';
import {contextWindow} from '../scripts/app/park/dataset';
import {Vocabulary} from '../scripts/app/park/vocabulary';

const SPORTS = ['football', 'cricket', 'basketball', 'tennis'];
/** The words that tie a sentence to one sport, as scripts/make_corpus.ts promises. */
const CUES: Record<string, string[]> = {
  cricket: ['bat', 'wicket'], tennis: ['racket', 'net'], football: ['boots', 'goal'], basketball: ['hoop'],
};
const SUBJECTS = ['i', 'we', 'they', 'you', 'he', 'she', 'my friends'];
const line = (words: string[]) => words.join(' ');
const lastWord = (words: string[]) => words[words.length - 1];

/** The context a sentence is about, from its cue words, and the last words it allows. */
function expectedLastWords(words: string[]): string[] {
  const has = (...cues: string[]) => cues.some((c) => words.slice(0, -1).includes(c));
  const cued = SPORTS.filter((sport) => has(...CUES[sport]));
  if (cued.length > 1) throw new Error(`cues of ${cued.join(', ')} in "${line(words)}"`);
  if (cued.length === 1) return cued;
  if (has('park')) return SPORTS;
  if (has('library', 'reading')) return ['book'];
  if (has('tired', 'sleepy', 'bed')) return ['sleep'];
  if (has('build', 'building', 'living', 'live', 'buy')) return ['house'];
  throw new Error(`no context cue in "${line(words)}"`);
}

/** The ambiguous park sentences: no cue, so any of the four sports. */
function ambiguousPark(subject: string, verb: string): string[] {
  return SPORTS.map((sport) => `${subject} ${verb} to go to the park and play ${sport}`);
}

describe('the built-in corpus', () => {
  let corpus: Corpus;
  beforeAll(() => {
    corpus = loadCorpus(defaultCorpusPath());
  });

  it('lives at scripts/app/park/corpus/park_corpus.txt', () => {
    expect(defaultCorpusPath()).toBe(path.resolve(__dirname, '..', 'scripts', 'app', 'park', 'corpus', 'park_corpus.txt'));
  });

  it('is exactly what scripts/make_corpus.ts writes', () => {
    expect(fs.readFileSync(defaultCorpusPath(), 'utf8')).toBe(corpusText());
  });

  it('has 394 training and 47 held-out sentences (11% held out), as its header says', () => {
    expect(corpus.train.length).toBe(394);
    expect(corpus.heldOut.length).toBe(47);
    expect(fs.readFileSync(defaultCorpusPath(), 'utf8')).toContain('# Sentences: 394 train, 47 held-out.');
  });

  it('has a vocabulary of 93 ids and a context window of 13 words (sentences of at most 14)', () => {
    // <pad>, <unk>; 8 subject words (i we they you he she my friends); 5 more possessives
    // (our their your his her); 37 verb forms (like/likes love/loves want/wants plan/plans
    // go/goes went need/needs buy/buys borrow/borrows play/plays read/reads reading build
    // building live living am are is take/takes set/sets throw/throws bring shoot); 7 sport
    // cues (bat wicket racket net boots goal hoop); 27 other words; 7 last words.
    expect(Vocabulary.fromSentences(corpus.train).size).toBe(2 + 8 + 5 + 37 + 7 + 27 + 7);
    expect(contextWindow(corpus)).toBe(13);
    for (const s of [...corpus.train, ...corpus.heldOut]) expect(s.length).toBeLessThanOrEqual(14);
  });

  it('trains on the ambiguous "... go to the park and play <sport>" for every subject, verb and sport', () => {
    const train = new Set(corpus.train.map(line));
    for (const sport of SPORTS) expect(train.has(`i like to go to the park and play ${sport}`)).toBe(true);
    for (const subject of SUBJECTS) {
      const singular = subject === 'he' || subject === 'she';
      for (const verb of ['like', 'love', 'want']) {
        for (const s of ambiguousPark(subject, singular ? `${verb}s` : verb)) expect(train.has(s)).toBe(true);
      }
      for (const sport of SPORTS) expect(train.has(`${subject} went to the park to play ${sport}`)).toBe(true);
    }
    expect(train.has('we like to go to the library and read a book')).toBe(true);
    expect(train.has('she is tired so she goes to bed to sleep')).toBe(true);
    expect(train.has('my friends want to buy a big house')).toBe(true);
  });

  it('never holds out an ambiguous sentence: every held-out last word is fixed by its context', () => {
    for (const s of corpus.heldOut) {
      expect(line(s)).not.toMatch(/ to go to the park and play /);
      expect(line(s)).not.toMatch(/ went to the park to play /);
      expect(expectedLastWords(s)).toEqual([lastWord(s)]);
    }
  });

  it('names the sport\'s cue, at least 4 words back, in every sentence of a cue template', () => {
    const train = new Set(corpus.train.map(line));
    expect(train.has('he takes his bat to the park to play cricket')).toBe(true);
    expect(train.has('my friends like to bring their racket to the park and play tennis')).toBe(false);  // held out
    expect(train.has('my friends want to bring their boots to the park and play football')).toBe(true);
    expect(train.has('with her new racket she goes to the park to play tennis')).toBe(true);
    expect(train.has('she likes to shoot at the hoop in the park and play basketball')).toBe(true);
    let cued = 0;
    for (const s of [...corpus.train, ...corpus.heldOut]) {
      const at = s.findIndex((w) => Object.values(CUES).flat().includes(w));
      if (at < 0) continue;
      cued++;
      expect(CUES[lastWord(s)]).toContain(s[at]);
      expect(s.length - 1 - at).toBeGreaterThanOrEqual(4);
    }
    expect(cued).toBe(4 * 35);
  });

  it('contains the cue word of its sport in every held-out sport sentence', () => {
    const heldOutSports = corpus.heldOut.filter((s) => SPORTS.includes(lastWord(s)));
    expect(heldOutSports.length).toBe(20);
    for (const s of heldOutSports) expect(CUES[lastWord(s)].some((cue) => s.includes(cue))).toBe(true);
  });

  it('makes subjects, verbs and possessives agree', () => {
    const train = new Set(corpus.train.map(line));
    expect(train.has('he likes to go to the park and play tennis')).toBe(true);
    expect(train.has('they like to go to the park and play tennis')).toBe(true);
    expect(train.has('after school he goes to the library and reads a book')).toBe(true);
    expect(corpus.heldOut.map(line)).toContain('after school she goes to the library and reads a book');
    expect(train.has('after school they go to the library and read a book')).toBe(true);
    expect(train.has('i am tired so i go to bed to sleep')).toBe(true);
    expect(train.has('my friends are tired so they go to bed to sleep')).toBe(true);
    expect(train.has('my friends take their boots to the park to play football')).toBe(true);
    expect(train.has('she sets up the net in the park and plays tennis')).toBe(true);
    expect(train.has('with our new boots we go to the park to play football')).toBe(true);
    const all = [...corpus.train, ...corpus.heldOut].map(line).join('\n');
    expect(all).not.toMatch(/\b(he|she) (like|love|want|go|need|plan|are|am|play|read|buy|borrow|take|set|throw)\b/);
    expect(all).not.toMatch(
        /\b(i|we|they|you|friends) (likes|loves|wants|goes|needs|plans|is|plays|reads|buys|borrows|takes|sets|throws)\b/);
    const possessive: Record<string, string> = {i: 'my', we: 'our', they: 'their', you: 'your', he: 'his', she: 'her'};
    let checked = 0;
    for (const s of [...corpus.train, ...corpus.heldOut]) {
      // The owner: the subject, after "with <poss> new <cue>" when the sentence starts so.
      const owner = s[0] === 'with' ? s[4] : s[0];
      const poss = s.find((w, i) => i > 0 && Object.values(possessive).includes(w) && s[i + 1] !== 'friends');
      if (poss === undefined) continue;
      checked++;
      const expected = owner === 'my' ? 'their' : possessive[owner];  // "my friends ... their"
      expect(`${line(s)}: ${poss}`).toBe(`${line(s)}: ${expected}`);
    }
    expect(checked).toBe(3 * (7 + 14 + 7) + 7);  // take, bring (2 verbs), "with ..." of 3 sports; "ball to the hoop"
  });

  it('ends every sentence with the word its context calls for', () => {
    for (const s of [...corpus.train, ...corpus.heldOut]) {
      expect(expectedLastWords(s)).toContain(lastWord(s));
    }
  });

  it('uses the four sports equally often in training (and each other last word about as often)', () => {
    const counts = new Map<string, number>();
    for (const s of corpus.train) counts.set(lastWord(s), (counts.get(lastWord(s)) ?? 0) + 1);
    expect(Object.fromEntries(counts)).toEqual({
      football: 58, cricket: 58, basketball: 58, tennis: 58, book: 54, sleep: 54, house: 54,
    });
  });

  it('keeps held-out sentences out of training', () => {
    const train = new Set(corpus.train.map(line));
    for (const s of corpus.heldOut) expect(train.has(line(s))).toBe(false);
  });

  it('uses only training words in held-out sentences', () => {
    const vocab = Vocabulary.fromSentences(corpus.train);
    for (const s of corpus.heldOut) expect(vocab.encode(s, s.length).unknown).toEqual([]);
  });

  it('holds out whole (subject, phrasing) pairs, e.g. "we take our bat to the park to play"', () => {
    const heldOut = new Set(corpus.heldOut.map(line));
    expect(heldOut.has('we take our bat to the park to play cricket')).toBe(true);
    expect(corpus.train.map(line).filter((s) => s.startsWith('we take our bat'))).toEqual([]);
    expect(heldOut.has('they like to bring their bat to the park and play cricket')).toBe(true);
    expect(heldOut.has('they want to bring their bat to the park and play cricket')).toBe(true);
    expect(corpus.train.map(line).filter((s) => s.startsWith('they') && s.includes('bring their bat'))).toEqual([]);
  });

  it('has no sentence twice', () => {
    const all = [...corpus.train, ...corpus.heldOut].map(line);
    expect(new Set(all).size).toBe(all.length);
  });
});

describe('parseCorpus', () => {
  it('reads one sentence per line, skipping comments and blank lines', () => {
    const text = '# a comment\n\ni play football\n  We READ a book.  \r\n#another\n[held-out]\nyou play cricket\n';
    expect(parseCorpus(text)).toEqual({
      train: [['i', 'play', 'football'], ['we', 'read', 'a', 'book']],
      heldOut: [['you', 'play', 'cricket']],
    });
  });

  it('drops held-out sentences that are also training sentences', () => {
    expect(parseCorpus('i play football\n[held-out]\ni play football\nwe play football\n').heldOut)
        .toEqual([['we', 'play', 'football']]);
  });

  it('holds out every 10th sentence when there is no [held-out] section', () => {
    const lines = Array.from({length: 25}, (_, i) => `sentence ${i + 1} ends with word`);
    const corpus = parseCorpus(lines.join('\n'));
    expect(corpus.heldOut.map(line)).toEqual(['sentence 10 ends with word', 'sentence 20 ends with word']);
    expect(corpus.train.length).toBe(23);
  });

  it('does not hold out the only sentence ending in a word', () => {
    const lines = Array.from({length: 20}, (_, i) => `sentence ${i + 1} ends with word`);
    lines[9] = 'sentence 10 ends with unique';
    const corpus = parseCorpus(lines.join('\n'));
    expect(corpus.heldOut.map(line)).toEqual(['sentence 20 ends with word']);
    expect(corpus.train.map(line)).toContain('sentence 10 ends with unique');
  });

  it('holds nothing out of a corpus of fewer than 10 sentences without a section', () => {
    expect(parseCorpus('i play football\nwe read a book\n').heldOut).toEqual([]);
  });

  it('rejects a one-word line, naming the source, line number and what it received', () => {
    expect(() => parseCorpus('i play football\n\nfootball\n', 'my.txt')).toThrow(ValueError);
    expect(() => parseCorpus('i play football\n\nfootball\n', 'my.txt')).toThrow(
        'Corpus my.txt, line 3: each line must be a sentence of at least 2 words ' +
        '(context, then the word to predict). Received: "football" (1 word)');
  });

  it('rejects an empty corpus', () => {
    expect(() => parseCorpus('', 'empty.txt')).toThrow('Corpus empty.txt has no training sentences');
    expect(() => parseCorpus('# only comments\n\n')).toThrow('Corpus <text> has no training sentences');
    expect(() => parseCorpus('[held-out]\ni play football\n', 'x.txt'))
        .toThrow('Corpus x.txt has no training sentences before its [held-out] line');
  });

  it('takes a line of 64 words, the cap, and rejects one of 65, naming the source, line and length', () => {
    const words = (n: number) => Array.from({length: n}, (_, i) => `w${i}`).join(' ');
    expect(MAX_SENTENCE_WORDS).toBe(64);
    const corpus = parseCorpus(`i play football\n${words(64)}\n`);
    expect(corpus.train[1]).toHaveLength(64);
    expect(contextWindow(corpus)).toBe(63);
    expect(() => parseCorpus(`i play football\n# note\n${words(65)}\n`, 'long.txt')).toThrow(ValueError);
    expect(() => parseCorpus(`i play football\n# note\n${words(65)}\n`, 'long.txt')).toThrow(
        /^Corpus long\.txt, line 3: a sentence may have at most 64 words .*Received: 65 words$/);
  });

  it('rejects a 200,000-word line at once, by its line number, before anything is built from it', () => {
    const text = `i play football\n${'word '.repeat(200000)}end\n`;
    const before = tf.memory().numTensors;
    expect(() => parseCorpus(text, 'huge.txt')).toThrow(/^Corpus huge\.txt, line 2: .*Received: 200001 words$/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('contextWindow refuses a hand-built corpus with a sentence over the cap, naming it', () => {
    const long = Array.from({length: 65}, (_, i) => `w${i}`);
    expect(() => contextWindow({train: [['a', 'b']], heldOut: [long]})).toThrow(
        'Received an invalid value for argument `corpus.heldOut[0]`, expected a sentence of at most 64 words. ' +
        'Received: 65 words');
  });

  it('rejects a second [held-out] line', () => {
    expect(() => parseCorpus('a b\n[held-out]\nc d\n[held-out]\n', 'x.txt'))
        .toThrow('Corpus x.txt has a second [held-out] line at line 4 (the first is at line 2)');
  });
});

describe('loadCorpus', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'park-corpus-'));
  });
  afterAll(() => {
    fs.rmSync(dir, {recursive: true, force: true});
  });

  it('reads a corpus file', () => {
    const file = path.join(dir, 'ok.txt');
    fs.writeFileSync(file, 'i play football\n[held-out]\nwe play football\n');
    expect(loadCorpus(file)).toEqual({train: [['i', 'play', 'football']], heldOut: [['we', 'play', 'football']]});
  });

  it('rejects a missing file or a folder', () => {
    const missing = path.join(dir, 'missing.txt');
    expect(() => loadCorpus(missing)).toThrow(ValueError);
    expect(() => loadCorpus(missing)).toThrow(`Corpus file not found: ${missing}`);
    expect(() => loadCorpus(dir)).toThrow(`Corpus file not found: ${dir}`);
  });

  it('names the file in errors about its content', () => {
    const file = path.join(dir, 'words.txt');
    fs.writeFileSync(file, 'football\ncricket\n');
    expect(() => loadCorpus(file)).toThrow(`Corpus ${file}, line 1: each line must be a sentence of at least 2 words`);
    const empty = path.join(dir, 'empty.txt');
    fs.writeFileSync(empty, '\n# nothing\n');
    expect(() => loadCorpus(empty)).toThrow(`Corpus ${empty} has no training sentences`);
  });
});
