/** Specification of the tokenizer and the word <-> id vocabulary of the park task. */

import {ValueError} from '../src/errors';
import {PAD_ID, UNK_ID, Vocabulary, tokenize} from '../scripts/app/park/vocabulary';

describe('tokenize', () => {
  it('lower-cases and splits on spaces', () => {
    expect(tokenize('I like to go to the Park')).toEqual(['i', 'like', 'to', 'go', 'to', 'the', 'park']);
  });

  it('drops punctuation but keeps apostrophes and digits inside words', () => {
    expect(tokenize('Don\'t stop, we play at 5pm!  "Really?"')).toEqual(['don\'t', 'stop', 'we', 'play', 'at', '5pm', 'really']);
  });

  it('treats a typographic apostrophe like a plain one and drops quotes around words', () => {
    expect(tokenize('she can’t \'go\'')).toEqual(['she', 'can\'t', 'go']);
  });

  it('gives no words for empty or punctuation-only text', () => {
    expect(tokenize('')).toEqual([]);
    expect(tokenize(' ... !? ')).toEqual([]);
  });

  it('rejects a non-string', () => {
    expect(() => tokenize(42 as unknown as string)).toThrow(ValueError);
    expect(() => tokenize(42 as unknown as string)).toThrow('sentence=42');
  });
});

describe('Vocabulary', () => {
  // Counts: play 3, the 2, park 2 (tie with "the": alphabetical), ball 1, football 1, i 1.
  const sentences = [['i', 'play', 'the', 'football'], ['play', 'the', 'park'], ['park', 'play', 'ball']];
  const vocab = Vocabulary.fromSentences(sentences);

  it('puts <pad> and <unk> first, then words by frequency, ties alphabetically', () => {
    expect(vocab.toJSON()).toEqual({words: ['<pad>', '<unk>', 'play', 'park', 'the', 'ball', 'football', 'i']});
    expect(vocab.size).toBe(8);
    expect(PAD_ID).toBe(0);
    expect(UNK_ID).toBe(1);
  });

  it('does not depend on the order of the sentences', () => {
    expect(Vocabulary.fromSentences([...sentences].reverse()).toJSON()).toEqual(vocab.toJSON());
  });

  it('maps words to ids and back; unknown words to <unk>', () => {
    expect(vocab.idOf('play')).toBe(2);
    expect(vocab.idOf('ball')).toBe(5);
    expect(vocab.idOf('cricket')).toBe(1);
    expect(vocab.wordOf(0)).toBe('<pad>');
    expect(vocab.wordOf(1)).toBe('<unk>');
    expect(vocab.wordOf(7)).toBe('i');
  });

  it('rejects ids outside the vocabulary', () => {
    expect(() => vocab.wordOf(8)).toThrow('expected an integer in [0, 8). Received: id=8');
    expect(() => vocab.wordOf(-1)).toThrow(ValueError);
    expect(() => vocab.wordOf(1.5)).toThrow(ValueError);
  });

  it('ignores the reserved tokens when they occur in sentences', () => {
    expect(Vocabulary.fromSentences([['<pad>', 'a', '<unk>']]).toJSON()).toEqual({words: ['<pad>', '<unk>', 'a']});
  });

  it('rejects sentences that are not arrays of words', () => {
    expect(() => Vocabulary.fromSentences('i play' as unknown as string[][])).toThrow(ValueError);
    expect(() => Vocabulary.fromSentences([['i', 'play'], ['x', 3 as unknown as string]])).toThrow('sentences[1]');
  });

  describe('encode', () => {
    it('left-pads short inputs with 0 to exactly `window` ids', () => {
      expect(vocab.encode(['i', 'play'], 5)).toEqual({ids: [0, 0, 0, 7, 2], unknown: [], truncated: false});
    });

    it('keeps the LAST `window` tokens of long inputs (the model predicts from the last position)', () => {
      expect(vocab.encode(['i', 'play', 'the', 'park', 'ball'], 3)).toEqual({ids: [4, 3, 5], unknown: [], truncated: true});
    });

    it('fills exactly when the input is as long as the window', () => {
      expect(vocab.encode(['the', 'park'], 2)).toEqual({ids: [4, 3], unknown: [], truncated: false});
    });

    it('maps unknown words to <unk> and lists each once', () => {
      expect(vocab.encode(['we', 'play', 'cricket', 'we'], 4))
          .toEqual({ids: [1, 2, 1, 1], unknown: ['we', 'cricket'], truncated: false});
    });

    it('lists only unknown words that were kept', () => {
      expect(vocab.encode(['we', 'play', 'the'], 2).unknown).toEqual([]);
    });

    it('gives all padding for no tokens', () => {
      expect(vocab.encode([], 3).ids).toEqual([0, 0, 0]);
    });

    it('rejects a window that is not a positive integer', () => {
      expect(() => vocab.encode(['i'], 0)).toThrow('expected a positive integer. Received: window=0');
      expect(() => vocab.encode(['i'], 2.5)).toThrow(ValueError);
    });

    it('rejects tokens that are not strings', () => {
      expect(() => vocab.encode('i play' as unknown as string[], 3)).toThrow('tokens');
    });
  });

  describe('JSON', () => {
    it('round-trips through JSON text', () => {
      const copy = Vocabulary.fromJSON(JSON.parse(JSON.stringify(vocab)));
      expect(copy.toJSON()).toEqual(vocab.toJSON());
      expect(copy.idOf('park')).toBe(3);
    });

    it('returns a copy of the words', () => {
      vocab.toJSON().words.push('extra');
      expect(vocab.size).toBe(8);
    });

    it('rejects something that is not {words: string[]}', () => {
      expect(() => Vocabulary.fromJSON(null)).toThrow(ValueError);
      expect(() => Vocabulary.fromJSON(['<pad>', '<unk>'])).toThrow('expected an object {words: string[]}');
      expect(() => Vocabulary.fromJSON({words: 'abc'})).toThrow(ValueError);
    });

    it('rejects words that do not start with <pad>, <unk>', () => {
      expect(() => Vocabulary.fromJSON({words: ['<unk>', '<pad>', 'a']}))
          .toThrow('must start with the words "<pad>", "<unk>". Received: words=["<unk>", "<pad>"]');
      expect(() => Vocabulary.fromJSON({words: []})).toThrow(ValueError);
    });

    it('rejects non-string, empty or repeated words', () => {
      expect(() => Vocabulary.fromJSON({words: ['<pad>', '<unk>', 'a', 7]})).toThrow('words[3]=7');
      expect(() => Vocabulary.fromJSON({words: ['<pad>', '<unk>', '']})).toThrow('non-empty strings');
      expect(() => Vocabulary.fromJSON({words: ['<pad>', '<unk>', 'a', 'a']})).toThrow('unique. Received: words[3]="a"');
    });
  });
});
