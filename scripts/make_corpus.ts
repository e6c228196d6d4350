/** Writes scripts/app/park/corpus/park_corpus.txt, the built-in corpus, from templates (run: npx tsx scripts/make_corpus.ts). */

import * as fs from 'fs';
import * as path from 'path';

import {defaultCorpusPath, parseCorpus} from './app/park/corpus';

/** A sentence subject with what its verbs need to agree. */
export interface Subject {
  text: string;
  /** The pronoun that refers back to it later in the sentence ("my friends ... they"). */
  pronoun: string;
  /** Its possessive: "he ... his bat", "my friends ... their bat". */
  poss: string;
  /** Form of "to be". */
  be: string;
  /** Third person singular: "he likes", "she goes". */
  singular: boolean;
}

export const SUBJECTS: Subject[] = [
  {text: 'i', pronoun: 'i', poss: 'my', be: 'am', singular: false},
  {text: 'we', pronoun: 'we', poss: 'our', be: 'are', singular: false},
  {text: 'they', pronoun: 'they', poss: 'their', be: 'are', singular: false},
  {text: 'you', pronoun: 'you', poss: 'your', be: 'are', singular: false},
  {text: 'he', pronoun: 'he', poss: 'his', be: 'is', singular: true},
  {text: 'she', pronoun: 'she', poss: 'her', be: 'is', singular: true},
  {text: 'my friends', pronoun: 'they', poss: 'their', be: 'are', singular: false},
];

export const SPORTS = ['football', 'cricket', 'basketball', 'tennis'];

/** The words that name a sport's kit or place; a sentence with one of them is about that sport only. */
const SPORT_CUES: Record<string, string[]> = {
  cricket: ['bat', 'wicket'],
  tennis: ['racket', 'net'],
  football: ['boots', 'goal'],
  basketball: ['hoop'],
};

/** The fewest words between a cue and the last word: the model must look back to find it. */
const MIN_CUE_DISTANCE = 4;

/** The longest sentence, in words (the model's context window is one less). */
const MAX_WORDS = 14;

/**
 * One sentence pattern. Placeholders: {S} subject, {P} its pronoun, {poss} its possessive,
 * {be}, {V} each verb of `verbs` in turn, {go}/{take}/... a verb agreeing with the subject,
 * {X} each last word.
 *
 * `ambiguous` templates ("... go to the park and play ___") allow all four sports equally:
 * nothing in them says which, so they are only ever trained on (their best top-1 is 25%).
 * All other templates are determined: their context fixes the last word (a sport's cue
 * word such as "bat", or "library", "bed", "build"), and only they are held out.
 */
export interface Template {
  context: string;
  pattern: string;
  verbs?: string[];
  last: string[];
  ambiguous?: boolean;
}

const TEMPLATES: Template[] = [
  // Ambiguous: any sport (the explainer's "i like to go to the park and play ___").
  {context: 'park', pattern: '{S} {V} to go to the park and play {X}', verbs: ['like', 'love', 'want'], last: SPORTS, ambiguous: true},
  {context: 'park', pattern: '{S} went to the park to play {X}', last: SPORTS, ambiguous: true},
  // Determined by a cue word several words before the sport: its kit (the sport's first
  // SPORT_CUES word) or its place (the second), four patterns for each of these three sports.
  ...['cricket', 'tennis', 'football'].flatMap((sport): Template[] => {
    const [kit, place] = SPORT_CUES[sport];
    return [
      {context: sport, pattern: `{S} {take} {poss} ${kit} to the park to play {X}`, last: [sport]},
      {context: sport, pattern: `{S} {V} to bring {poss} ${kit} to the park and play {X}`, verbs: ['like', 'want'], last: [sport]},
      {context: sport, pattern: `with {poss} new ${kit} {S} {go} to the park to play {X}`, last: [sport]},
      {context: sport, pattern: `{S} {set} up the ${place} in the park and {play} {X}`, last: [sport]},
    ];
  }),
  {context: 'basketball', pattern: '{S} {take} {poss} ball to the hoop at the park to play {X}', last: ['basketball']},
  {context: 'basketball', pattern: '{S} {V} to shoot at the hoop in the park and play {X}', verbs: ['like', 'want'], last: ['basketball']},
  {context: 'basketball', pattern: '{S} {throw} the ball through the hoop at the park and {play} {X}', last: ['basketball']},
  {context: 'basketball', pattern: '{S} {set} up the hoop in the park and {play} {X}', last: ['basketball']},
  // Determined by the contrast contexts.
  {context: 'library', pattern: '{S} {V} to go to the library and read a {X}', verbs: ['like', 'love', 'want'], last: ['book']},
  {context: 'library', pattern: '{S} went to the library to read a {X}', last: ['book']},
  {context: 'library', pattern: 'after school {S} {go} to the library and {read} a {X}', last: ['book']},
  {context: 'library', pattern: '{S} {V} reading so {P} {borrow} a {X}', verbs: ['like', 'love'], last: ['book']},
  {context: 'library', pattern: 'at night {S} {V} reading a good {X}', verbs: ['like', 'love'], last: ['book']},
  {context: 'bed', pattern: '{S} {be} tired so {P} {go} to bed to {X}', last: ['sleep']},
  {context: 'bed', pattern: '{S} {be} sleepy so {P} {go} to bed to {X}', last: ['sleep']},
  {context: 'bed', pattern: '{S} {V} to go to bed early and {X}', verbs: ['like', 'love', 'want'], last: ['sleep']},
  {context: 'bed', pattern: 'after a long day {S} {be} tired and {want} to {X}', last: ['sleep']},
  {context: 'bed', pattern: '{S} {be} tired so {P} {want} to go to bed and {X}', last: ['sleep']},
  {context: 'bed', pattern: '{S} went to bed to {X}', last: ['sleep']},
  {context: 'bed', pattern: 'at night {S} {go} to bed to {X}', last: ['sleep']},
  {context: 'home', pattern: '{S} {V} to build a new {X}', verbs: ['want', 'plan'], last: ['house']},
  {context: 'home', pattern: '{S} {V} to buy a big {X}', verbs: ['want'], last: ['house']},
  {context: 'home', pattern: '{S} {V} living in a big {X}', verbs: ['like', 'love'], last: ['house']},
  {context: 'home', pattern: '{S} {V} to live in a small {X}', verbs: ['like', 'want'], last: ['house']},
  {context: 'home', pattern: '{S} {be} building a new {X}', last: ['house']},
  {context: 'home', pattern: '{S} {need} a place to live so {P} {buy} a {X}', last: ['house']},
];

/** "go" -> "goes" for he/she, "like" -> "likes", else the base form. */
function agree(verb: string, subject: Subject): string {
  if (!subject.singular) return verb;
  return verb.endsWith('o') ? `${verb}es` : `${verb}s`;
}

function render(template: Template, subject: Subject, verb: string, last: string): string {
  return template.pattern.replace(/\{(\w+)\}/g, (_, name: string) => {
    switch (name) {
      case 'S': return subject.text;
      case 'P': return subject.pronoun;
      case 'poss': return subject.poss;
      case 'be': return subject.be;
      case 'V': return agree(verb, subject);
      case 'X': return last;
      default: return agree(name, subject);
    }
  });
}

/**
 * The subject held out for the k-th determined template: they rotate (we, they, you, he,
 * she, my friends, i, we, ...) so every determined template is evaluated with a subject it
 * was never trained with. Ambiguous templates are never held out.
 */
function heldOutSubject(k: number): Subject {
  return SUBJECTS[(k + 1) % SUBJECTS.length];
}

/** The sport a sentence's cue words name, or undefined when it has none. */
function cuedSport(words: string[]): string | undefined {
  const sports = SPORTS.filter((sport) => SPORT_CUES[sport].some((cue) => words.includes(cue)));
  if (sports.length > 1) throw new Error(`make_corpus: "${words.join(' ')}" names cues of ${sports.join(', ')}`);
  return sports[0];
}

/** A generated sentence and the template it came from. */
interface Generated {
  text: string;
  template: Template;
}

/** The corpus file's text; deterministic, so regenerating gives the same bytes. */
export function corpusText(): string {
  const train: Generated[] = [];
  const heldOut: Generated[] = [];
  const trainLines: string[] = [];
  const heldOutLines: string[] = [];
  let determined = 0;
  for (const template of TEMPLATES) {
    const out = template.ambiguous ? undefined : heldOutSubject(determined++);
    const kind = template.ambiguous ? 'ambiguous, never held out' : 'determined';
    trainLines.push('', `# ${template.context} (${kind}): ${template.pattern}`);
    if (out) heldOutLines.push('', `# ${template.context}: ${template.pattern} (subject: ${out.text})`);
    for (const subject of SUBJECTS) {
      for (const verb of template.verbs ?? ['']) {
        for (const last of template.last) {
          const text = render(template, subject, verb, last);
          (subject === out ? heldOut : train).push({text, template});
          (subject === out ? heldOutLines : trainLines).push(text);
        }
      }
    }
  }
  check(train, heldOut);
  const ambiguous = TEMPLATES.filter((t) => t.ambiguous);
  const count = (list: Generated[], ambig: boolean) => list.filter((g) => !!g.template.ambiguous === ambig).length;
  const lastCounts = (list: Generated[]) => {
    const counts = new Map<string, number>();
    for (const g of list) {
      const last = g.text.split(' ').pop() as string;
      counts.set(last, (counts.get(last) ?? 0) + 1);
    }
    return [...counts].map(([w, n]) => `${w} ${n}`).join(', ');
  };
  const header = [
    '# park_corpus.txt: the built-in corpus of the "i like to go to the park and play ___" task.',
    '#',
    '# Format: one sentence per line, the word to predict last. Lines starting with # are',
    '# comments; blank lines are ignored; the line [held-out] starts the held-out section:',
    '# the sentences after it are for evaluation only.',
    '#',
    '# Made by scripts/make_corpus.ts (npx tsx scripts/make_corpus.ts regenerates this file',
    `# identically; do not edit by hand) from ${TEMPLATES.length} templates x ${SUBJECTS.length} subjects, no randomness.`,
    '#',
    `# Two kinds of template. Ambiguous (${ambiguous.length}), each with all four sports equally often:`,
    ...ambiguous.map((t) => `#   ${t.pattern}`),
    '# Nothing in their context says which sport, so the model should spread its prediction',
    '# over cricket, football, basketball and tennis (never book, house or sleep); no model',
    '# can beat 25% top-1 on them, so they are only trained on, never held out.',
    '# Determined (all others): the context fixes the last word. Sport templates name a cue',
    `# at least ${MIN_CUE_DISTANCE} words before the sport (cricket: ${SPORT_CUES.cricket.join('/')}; tennis: ${SPORT_CUES.tennis.join('/')};`,
    `# football: ${SPORT_CUES.football.join('/')}; basketball: ${SPORT_CUES.basketball.join('/')}), so the model has to attend back to it;`,
    '# library / reading -> book; tired / bed -> sleep; build / live / buy -> house.',
    '#',
    '# Held out: for each determined template, all its sentences with one subject (rotating),',
    '# so held-out sentences pair a subject and a phrasing never seen together in training and',
    '# their last word is always determined by the context (a perfect model gets all of them).',
    '# Each group below starts with its template: {S} subject, {P} its pronoun, {poss} its',
    '# possessive, {be}, {V} and {go}, {take}, ... verbs agreeing with the subject, {X} the last word.',
    `# Sentences: ${train.length} train, ${heldOut.length} held-out.`,
    `# Train: ${count(train, true)} ambiguous + ${count(train, false)} determined sentences; last words:`,
    `#   ${lastCounts(train)}.`,
    `# Held-out last words: ${lastCounts(heldOut)}.`,
  ];
  return [...header, ...trainLines, '', '[held-out]', ...heldOutLines, ''].join('\n');
}

/** The promises the tests and the model rely on; a template edit that breaks one fails here. */
function check(train: Generated[], heldOut: Generated[]): void {
  const trainText = train.map((g) => g.text);
  const all = [...train, ...heldOut];
  if (new Set(all.map((g) => g.text)).size !== all.length) throw new Error('make_corpus: a sentence is generated twice');
  const trainWords = new Set(trainText.flatMap((s) => s.split(' ')));
  for (const {text} of heldOut) {
    const unseen = text.split(' ').filter((w) => !trainWords.has(w));
    if (unseen.length > 0) throw new Error(`make_corpus: held-out "${text}" has words not in training: ${unseen.join(', ')}`);
  }
  for (const sport of SPORTS) {
    if (!trainText.includes(`i like to go to the park and play ${sport}`)) {
      throw new Error(`make_corpus: "i like to go to the park and play ${sport}" is not in training`);
    }
  }
  for (const {text, template} of heldOut) {
    if (template.ambiguous || template.last.length !== 1) {
      throw new Error(`make_corpus: held-out "${text}" comes from a template that does not determine its last word`);
    }
  }
  for (const {text, template} of all) {
    const words = text.split(' ');
    if (words.length > MAX_WORDS) throw new Error(`make_corpus: "${text}" has more than ${MAX_WORDS} words`);
    const last = words[words.length - 1];
    const sport = cuedSport(words.slice(0, -1));
    if (template.ambiguous) {
      if (sport !== undefined) throw new Error(`make_corpus: ambiguous "${text}" names a cue of ${sport}`);
    } else if (SPORTS.includes(last)) {
      if (sport !== last) throw new Error(`make_corpus: "${text}" does not name a cue of ${last}`);
      const at = words.findIndex((w) => SPORT_CUES[last].includes(w));
      if (words.length - 1 - at < MIN_CUE_DISTANCE) {
        throw new Error(`make_corpus: in "${text}" the cue is fewer than ${MIN_CUE_DISTANCE} words before the sport`);
      }
    } else if (sport !== undefined) {
      throw new Error(`make_corpus: "${text}" ends with ${last} but names a cue of ${sport}`);
    }
  }
}

/** Where the corpus lives in the source tree. */
const CORPUS_PATH = defaultCorpusPath();

if (require.main === module) {
  const text = corpusText();
  fs.mkdirSync(path.dirname(CORPUS_PATH), {recursive: true});
  fs.writeFileSync(CORPUS_PATH, text);
  const corpus = parseCorpus(text, CORPUS_PATH);  // the file must load as written
  console.log(`Wrote ${CORPUS_PATH}: ${corpus.train.length} train, ${corpus.heldOut.length} held-out sentences.`);
}
