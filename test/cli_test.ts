/**
 * Acceptance 6: the CLIs' behaviour on bad input, exit codes included, by running the real
 * scripts (scripts/train.ts, predict.ts, explain.ts) as child processes. Also a tiny
 * successful `train` run and an `explain` run, checked for what they print and write.
 *
 * Exit codes: 2 for usage errors (with the usage text on stderr), 1 for other errors
 * (a message on stderr). Notices (unknown words, truncation) go to stderr.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import {describeResult, REPO_ROOT, runLimited, runScript, ScriptResult} from './helpers/run_script';

jest.setTimeout(600000);

const COMMITTED = path.join(REPO_ROOT, 'models', 'park-play');
const SPORTS = ['cricket', 'football', 'basketball', 'tennis'];

let tmp: string;
const results = new Map<string, ScriptResult>();

/** The cases, each one run of a script; all run in beforeAll, a few at a time. */
function cases(): Array<[string, 'train'|'predict'|'explain', string[]]> {
  return [
    ['predict empty', 'predict', ['']],
    ['predict whitespace', 'predict', ['  \t  ']],
    ['predict unknown words', 'predict', ['i like to go to the zoo with my dog and play', '--json']],
    ['predict long', 'predict',
      ['after school on a sunny day we said that i like to go to the park and play']],
    ['predict missing model', 'predict', [PARK(), '--model', path.join(tmp, 'nonexistent')]],
    ['predict truncated weights', 'predict', [PARK(), '--model', path.join(tmp, 'truncated')]],
    ['explain invalid model.json', 'explain', [PARK(), '--model', path.join(tmp, 'bad-json'), '--svg', path.join(tmp, 'never.svg')]],
    ['predict unknown option', 'predict', [PARK(), '--topk', '3']],
    ['train missing corpus', 'train', ['--corpus', path.join(tmp, 'no-such-corpus.txt'), '--epochs', '1', '--out', path.join(tmp, 'out-missing')]],
    ['train empty corpus', 'train', ['--corpus', path.join(tmp, 'empty.txt'), '--epochs', '1', '--out', path.join(tmp, 'out-empty')]],
    ['train one-word corpus', 'train', ['--corpus', path.join(tmp, 'one-word.txt'), '--epochs', '1', '--out', path.join(tmp, 'out-one-word')]],
    ['train epochs -1', 'train', ['--epochs', '-1', '--out', path.join(tmp, 'out-bad')]],
    ['train epochs 0', 'train', ['--epochs', '0', '--out', path.join(tmp, 'out-bad')]],
    ['train epochs abc', 'train', ['--epochs', 'abc', '--out', path.join(tmp, 'out-bad')]],
    ['train backend foo', 'train', ['--backend', 'foo', '--out', path.join(tmp, 'out-bad')]],
    ['train help', 'train', ['--help']],
    ['explain', 'explain', ['she takes her racket to the park to play', '--svg', path.join(tmp, 'heatmap.svg')]],
    ['train tiny', 'train', ['--epochs', '1', '--seed', '3', '--out', path.join(tmp, 'trained')]],
  ];
}

function PARK(): string {
  return 'i like to go to the park and play';
}

function result(name: string): ScriptResult {
  const r = results.get(name);
  if (r == null) throw new Error(`no result for ${name}`);
  return r;
}

/** Asserts the exit code, showing the whole output when it differs. */
function expectExit(r: ScriptResult, code: number): void {
  if (r.status !== code) throw new Error(`expected exit code ${code}, got ${describeResult(r)}`);
}

/** The usage text of a script, which starts "Usage: npm run <script>". */
function expectUsage(text: string, script: string): void {
  expect(text).toContain(`Usage: npm run ${script}`);
  expect(text).toContain('--help');
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'park-cli-'));
  // A model folder whose weights.bin was cut short.
  fs.cpSync(COMMITTED, path.join(tmp, 'truncated'), {recursive: true});
  const weights = path.join(tmp, 'truncated', 'weights.bin');
  fs.truncateSync(weights, Math.floor(fs.statSync(weights).size / 3));
  // A model folder whose model.json is not JSON.
  fs.cpSync(COMMITTED, path.join(tmp, 'bad-json'), {recursive: true});
  fs.writeFileSync(path.join(tmp, 'bad-json', 'model.json'), '{"modelTopology": {"class_name": "Model", ');
  // Bad corpora.
  fs.writeFileSync(path.join(tmp, 'empty.txt'), '');
  fs.writeFileSync(path.join(tmp, 'one-word.txt'), 'cricket\nfootball\nbook\nhouse\nsleep\n');

  const all = cases();
  const outs = await runLimited(all.map(([, script, args]) => () => runScript(script, args, 300000)), 3);
  all.forEach(([name], i) => results.set(name, outs[i]));
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, {recursive: true, force: true});
});

describe('predict: bad sentences', () => {
  it.each(['predict empty', 'predict whitespace'])('%s: exit 1, a clear message on stderr, nothing on stdout', (name) => {
    const r = result(name);
    expectExit(r, 1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^Error: /);
    expect(r.stderr).toMatch(/no words|empty/i);
    expect(r.stderr).not.toMatch(/\n\s+at /);  // no stack trace
  });

  it('unknown words: still predicts (pure JSON on stdout), and a notice on stderr names them', () => {
    const r = result('predict unknown words');
    expectExit(r, 0);
    const predictions = JSON.parse(r.stdout) as Array<{word: string; probability: number}>;
    expect(predictions).toHaveLength(5);
    expect(SPORTS).toContain(predictions[0].word);
    expect(r.stderr).toMatch(/unknown/i);
    expect(r.stderr).toContain('<unk>');
    expect(r.stderr).toContain('zoo');
    expect(r.stderr).toContain('dog');
    // Known words are not named.
    for (const known of ['like', 'play', 'with']) expect(r.stderr).not.toMatch(new RegExp(`\\b${known}\\b`));
  });

  it('a sentence longer than the window: a notice says which last words are kept, and it still predicts', () => {
    const r = result('predict long');
    expectExit(r, 0);
    const words = 'after school on a sunny day we said that i like to go to the park and play'.split(' ');
    const notice = r.stderr.split('\n').find(line => /last \d+/.test(line));
    expect(notice).toBeDefined();
    const kept = Number(/last (\d+)/.exec(notice!)![1]);
    expect(kept).toBeLessThan(words.length);
    expect(notice).toContain(`${words.length} words`);
    expect(notice).toContain(words.slice(-kept).join(' '));
    expect(notice).not.toContain(words.slice(-kept - 1).join(' '));
    // The table: the kept words, then ranked completions; the park context still gives a sport.
    expect(r.stdout).toContain(words.slice(-kept).join(' '));
    const ranked = r.stdout.split('\n').filter(line => /^\s*\d+\.\s/.test(line));
    expect(ranked).toHaveLength(5);
    expect(ranked[0]).toMatch(/%/);
    expect(SPORTS.some(s => ranked[0].includes(s))).toBe(true);
  });
});

describe('predict / explain: missing or corrupt model folder', () => {
  it.each([
    ['predict missing model', 'nonexistent'],
    ['predict truncated weights', 'truncated'],
    ['explain invalid model.json', 'bad-json'],
  ])('%s: exit 1; the message names the path and says how to train', (name, folder) => {
    const r = result(name);
    expectExit(r, 1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^Error: /);
    expect(r.stderr).toContain(path.join(tmp, folder));
    expect(r.stderr).toContain('npm run train');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stderr).not.toContain('Usage:');
  });

  it('says what is wrong with the corrupt files', () => {
    expect(result('predict truncated weights').stderr).toMatch(/weights\.bin/);
    expect(result('predict truncated weights').stderr).toMatch(/truncated|bytes/i);
    expect(result('explain invalid model.json').stderr).toMatch(/model\.json/);
    expect(fs.existsSync(path.join(tmp, 'never.svg'))).toBe(false);
  });
});

describe('train: bad corpus files fail before training starts', () => {
  it.each([
    ['train missing corpus', 'no-such-corpus.txt', /not found|no such|does not exist|missing/i, 'out-missing'],
    ['train empty corpus', 'empty.txt', /no training sentences|empty/i, 'out-empty'],
    ['train one-word corpus', 'one-word.txt', /at least 2 words|one word|1 word/i, 'out-one-word'],
  ])('%s: exit 1 with a clear error, no epochs run, nothing saved', (name, file, message, out) => {
    const r = result(name);
    expectExit(r, 1);
    expect(r.stderr).toMatch(/^Error: /);
    expect(r.stderr).toContain(path.join(tmp, file));
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toContain('Usage:');
    expect(r.stdout).not.toMatch(/Epoch/);
    expect(fs.existsSync(path.join(tmp, out))).toBe(false);
  });
});

describe('bad options: exit 2 with the error and the usage', () => {
  it.each([
    ['train epochs -1', 'train', /--epochs/, '-1'],
    ['train epochs 0', 'train', /--epochs/, '0'],
    ['train epochs abc', 'train', /--epochs/, 'abc'],
    ['train backend foo', 'train', /--backend/, 'foo'],
    ['predict unknown option', 'predict', /unknown option/i, '--topk'],
  ])('%s', (name, script, option, value) => {
    const r = result(name);
    expectExit(r, 2);
    expect(r.stdout).not.toMatch(/Epoch/);
    const [error] = r.stderr.split('\n');
    expect(error).toMatch(/^Error: /);
    expect(error).toMatch(option);
    expect(error).toContain(value);
    expectUsage(r.stderr, script);
    expect(fs.existsSync(path.join(tmp, 'out-bad'))).toBe(false);
  });

  it('the backend error lists the backends allowed', () => {
    const [error] = result('train backend foo').stderr.split('\n');
    for (const b of ['auto', 'wasm', 'cpu', 'tensorflow']) expect(error).toContain(b);
  });

  it('--help: exit 0 with the usage, which lists every option', () => {
    const r = result('train help');
    expectExit(r, 0);
    expectUsage(r.stdout, 'train');
    for (const option of ['--corpus', '--epochs', '--seed', '--backend', '--out']) expect(r.stdout).toContain(option);
    expect(r.stdout).not.toMatch(/Epoch \d/);
  });
});

describe('explain', () => {
  it('prints the four steps with their shapes and writes the heatmap SVG', () => {
    const r = result('explain');
    expectExit(r, 0);
    const words = 'she takes her racket to the park to play'.split(' ');
    const T = words.length;
    const shapes = [...r.stdout.matchAll(/shape \[(\d+), (\d+), (\d+)\]/g)].map(m => m.slice(1).map(Number));
    expect(shapes).toHaveLength(4);
    const H = shapes[0][0];
    expect(H).toBeGreaterThan(0);
    expect(shapes.slice(0, 3)).toEqual([[H, T, T], [H, T, T], [H, T, T]]);
    expect(shapes[3].slice(0, 2)).toEqual([H, T]);
    expect(shapes[3][2]).toBeGreaterThan(0);
    // The steps in order, each line with its formula: Q·Kᵀ, scaled by 1/√d, softmax, A·V.
    const stepLines = r.stdout.split('\n').filter(line => /shape \[/.test(line));
    expect(stepLines).toHaveLength(4);
    expect(stepLines[0]).toContain('Q·Kᵀ');
    expect(stepLines[1]).toContain('√d');
    expect(stepLines[2]).toContain('softmax');
    expect(stepLines[3]).toContain('A·V');
    for (const w of words) expect(r.stdout).toContain(w);
    expect(r.stderr).toBe('');

    const svg = fs.readFileSync(path.join(tmp, 'heatmap.svg'), 'utf8').trim();
    expect(svg).toMatch(/^(<\?xml[^>]*>\s*)?<svg\b/);
    expect(svg.endsWith('</svg>')).toBe(true);
    const texts = [...svg.matchAll(/<text\b[^>]*>([^<]*)<\/text>/g)].map(m => m[1].trim());
    expect(texts.filter(t => t === 'racket').length).toBeGreaterThanOrEqual(2);  // both axes
  });
});

describe('a tiny successful train run', () => {
  it('prints a progress line per epoch with loss and accuracy', () => {
    const r = result('train tiny');
    expectExit(r, 0);
    const epochs = r.stdout.split('\n').filter(line => /Epoch\s+1\/1\b/.test(line));
    expect(epochs).toHaveLength(1);
    expect(epochs[0]).toMatch(/loss\s+\d+\.\d+/);
    expect(epochs[0]).toMatch(/accuracy\s+\d+(\.\d+)?%/);
  });

  it('prints the held-out accuracy and the top completions for the park sentence', () => {
    const r = result('train tiny');
    expectExit(r, 0);
    expect(r.stdout).toMatch(/held-out accuracy\s+\d+(\.\d+)?%/i);
    const after = r.stdout.slice(r.stdout.indexOf(PARK()));
    expect(r.stdout.indexOf(PARK())).toBeGreaterThan(r.stdout.search(/Epoch/));
    const ranked = after.split('\n').filter(line => /^\s*\d+\.\s+\S+\s+\d+(\.\d+)?%/.test(line));
    expect(ranked.length).toBeGreaterThanOrEqual(3);
  });

  it('writes model.json, the weights file it lists, training-curve.svg and attention-heatmap.svg into --out, and nothing else', () => {
    const out = path.join(tmp, 'trained');
    const weights = JSON.parse(fs.readFileSync(path.join(out, 'model.json'), 'utf8')).weightsManifest[0].paths;
    expect(weights).toEqual([expect.stringMatching(/^weights-[0-9a-f]{16}\.bin$/)]);
    const files = ['model.json', ...weights, 'training-curve.svg', 'attention-heatmap.svg'];
    expect(fs.readdirSync(out).sort()).toEqual(files.sort());
    for (const file of files) {
      expect(fs.existsSync(path.join(out, file))).toBe(true);
      expect(fs.statSync(path.join(out, file)).size).toBeGreaterThan(0);
    }
    const modelJson = JSON.parse(fs.readFileSync(path.join(out, 'model.json'), 'utf8'));
    expect(modelJson.userDefinedMetadata.vocabulary.words.slice(0, 2)).toEqual(['<pad>', '<unk>']);
    expect(Number.isInteger(modelJson.userDefinedMetadata.window)).toBe(true);
    for (const svg of ['training-curve.svg', 'attention-heatmap.svg']) {
      const text = fs.readFileSync(path.join(out, svg), 'utf8').trim();
      expect(text).toMatch(/^(<\?xml[^>]*>\s*)?<svg\b/);
      expect(text.endsWith('</svg>')).toBe(true);
    }
    // Saved in place: no temporary folder beside it, no temporary or lock file in it (checked above).
    expect(fs.readdirSync(tmp).filter(name => name.includes('saving'))).toEqual([]);
  });
});
