/**
 * Acceptance 6: the CLIs' behaviour on bad input, exit codes included, by running the real
 * scripts (scripts/train.ts, predict.ts, explain.ts) as child processes. Also a tiny
 * successful `train` run and an `explain` run, checked for what they print and write.
 *
 * Exit codes: 2 for usage errors (with the usage text on stderr), 1 for other errors
 * (a message on stderr). Notices (unknown words, truncation) go to stderr.
 *
 * Issue 9: models with a NaN weight, overflowing outputs or another architecture (copies of
 * the committed model in a temp folder), integers written as 1e9, words holding terminal
 * escape codes, corpus lines over the cap, a corpus with no held-out sentence, and
 * `demo --port` on a port in use.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import * as net from 'net';

import {accuracySummary} from '../scripts/app/cli/format';
import {parseIntegerOption, UsageError} from '../scripts/app/cli/arguments';
import {terminalSafe, terminalSafeJson} from '../scripts/app/cli/terminal_text';
import {describeResult, REPO_ROOT, runCommand, runLimited, runScript, ScriptResult} from './helpers/run_script';
import {withNative} from './helpers/native';

jest.setTimeout(600000);

const COMMITTED = path.join(REPO_ROOT, 'models', 'park-play');
const SPORTS = ['cricket', 'football', 'basketball', 'tennis'];

let tmp: string;
/** `train --backend` cases: wasm, and tensorflow when tfjs-node loads (else a skipped test says why). */
const TRAIN_BACKENDS = withNative(['wasm'] as const);
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
    // Issue 11: an explicit backend, tfjs-node not loaded (wasm) and loaded (tensorflow, when installed).
    ...TRAIN_BACKENDS.map(backend => [`train tiny ${backend}`, 'train',
      ['--backend', backend, '--epochs', '1', '--seed', '3', '--out', path.join(tmp, `trained-${backend}`)]] as
      [string, 'train', string[]]),
    // Issue 9.
    ['predict NaN weight', 'predict', [PARK(), '--model', path.join(tmp, 'nan-weight')]],
    ['predict NaN weight json', 'predict', [PARK(), '--json', '--model', path.join(tmp, 'nan-weight')]],
    ['explain NaN weight', 'explain', [PARK(), '--model', path.join(tmp, 'nan-weight'), '--svg', path.join(tmp, 'nan.svg')]],
    ['predict overflow json', 'predict', [PARK(), '--json', '--model', path.join(tmp, 'overflow')]],
    ['explain overflow', 'explain', [PARK(), '--model', path.join(tmp, 'overflow'), '--svg', path.join(tmp, 'overflow.svg')]],
    ['predict other architecture', 'predict', [PARK(), '--model', path.join(tmp, 'other-architecture')]],
    ['predict k 1e9', 'predict', [PARK(), '--k', '1e9', '--model', path.join(tmp, 'escape-words')]],
    ['predict k 1000000000', 'predict', [PARK(), '--k', '1000000000', '--model', path.join(tmp, 'escape-words')]],
    ['predict escape json', 'predict', [PARK(), '--json', '--k', '1000', '--model', path.join(tmp, 'escape-words')]],
    ['predict k 1e20', 'predict', [PARK(), '--k', '1e20']],
    ['train long line', 'train', ['--corpus', path.join(tmp, 'long-line.txt'), '--epochs', '1', '--out', path.join(tmp, 'out-long')]],
    ['train huge line', 'train', ['--corpus', path.join(tmp, 'huge-line.txt'), '--epochs', '1', '--out', path.join(tmp, 'out-huge')]],
    ['train one line at the cap', 'train', ['--corpus', path.join(tmp, 'one-line.txt'), '--epochs', '1', '--out', path.join(tmp, 'out-one-line')]],
  ];
}

/** `n` distinct words, "w0 w1 ...". */
function words(n: number): string {
  return Array.from({length: n}, (_, i) => `w${i}`).join(' ');
}

/** The names and sizes of the committed model's weights, in weights.bin's order (from its manifest). */
function manifest(): Array<{name: string; size: number}> {
  const json = JSON.parse(fs.readFileSync(path.join(COMMITTED, 'model.json'), 'utf8'));
  return json.weightsManifest.flatMap((group: {weights: Array<{name: string; shape: number[]}>}) =>
    group.weights.map(w => ({name: w.name, size: w.shape.reduce((a, b) => a * b, 1)})));
}

/** Copies the committed model into tmp/`name` and rewrites its float32 weights with `edit`. */
function copyWithWeights(name: string, edit: (values: Float32Array) => void): void {
  fs.cpSync(COMMITTED, path.join(tmp, name), {recursive: true});
  const file = path.join(tmp, name, 'weights.bin');
  const bytes = fs.readFileSync(file);
  const values = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  edit(values);
  fs.writeFileSync(file, Buffer.from(values.buffer));
}

/** Copies the committed model into tmp/`name` and rewrites its model.json with `edit`. */
function copyWithModelJson(name: string, edit: (json: any) => any): void {
  fs.cpSync(COMMITTED, path.join(tmp, name), {recursive: true});
  const file = path.join(tmp, name, 'model.json');
  fs.writeFileSync(file, JSON.stringify(edit(JSON.parse(fs.readFileSync(file, 'utf8')))));
}

/** Every file under `folder` with its size and mtime, or 'absent'. */
function snapshot(folder: string): string {
  if (!fs.existsSync(folder)) return 'absent';
  const entries = fs.readdirSync(folder, {recursive: true}) as string[];
  return entries.sort().map(name => {
    const stat = fs.statSync(path.join(folder, name));
    return `${name} ${stat.size} ${stat.mtimeMs}`;
  }).join('\n');
}

/** The position of next_word/bias[5] in weights.bin, counted from the manifest. */
const NAN_WEIGHT = 'next_word/bias';
const NAN_INDEX = 5;
const ESCAPE_WORDS = ['\x1b[31mred', 'evil\u202e\u009b'];
const DEMO_DIR = path.join(REPO_ROOT, 'dist', 'demo');
let demoRun: ScriptResult;
let busyPort = 0;
let demoBefore = '';
let demoAfter = '';

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

  // Issue 9: one NaN weight; weights so large that the predictions overflow; a model whose
  // attention layer has another name; a vocabulary with terminal escape codes.
  const stored = manifest();
  const nanOffset = stored.slice(0, stored.findIndex(w => w.name === NAN_WEIGHT)).reduce((n, w) => n + w.size, 0) + NAN_INDEX;
  copyWithWeights('nan-weight', values => (values[nanOffset] = NaN));
  copyWithWeights('overflow', values => values.fill(3e38, 0, stored[0].size));  // every embedding 3e38: finite
  copyWithModelJson('other-architecture', json =>
    JSON.parse(JSON.stringify(json).replace(/"attention(["/])/g, '"mixer$1')));
  copyWithModelJson('escape-words', json => {
    const vocabulary: string[] = json.userDefinedMetadata.vocabulary.words;
    vocabulary.splice(vocabulary.length - 2, 2, ...ESCAPE_WORDS);
    return json;
  });
  // A 65-word line (one over the cap) at line 3, a 200,000-word line at line 2, and a corpus
  // of one line at the cap.
  fs.writeFileSync(path.join(tmp, 'long-line.txt'), `i play football\n# a comment\n${words(65)}\nwe play cricket\n`);
  fs.writeFileSync(path.join(tmp, 'huge-line.txt'), `i play football\n${words(200000)}\n`);
  fs.writeFileSync(path.join(tmp, 'one-line.txt'), `${words(64)}\n`);

  const all = cases();
  const outs = await runLimited(all.map(([, script, args]) => () => runScript(script, args, 300000)), 3);
  all.forEach(([name], i) => results.set(name, outs[i]));

  // demo --port <a port in use>: the bundle folder must be left as it was. Last, so that the
  // browser suite, which builds dist/demo as it starts, is not building it meanwhile.
  const busy = net.createServer();
  await new Promise<void>(resolve => busy.listen(0, '127.0.0.1', resolve));
  busyPort = (busy.address() as net.AddressInfo).port;
  demoBefore = snapshot(DEMO_DIR);
  try {
    demoRun = await runCommand('tsx', [path.join('scripts', 'demo.ts'), '--port', String(busyPort)], 120000);
    demoAfter = snapshot(DEMO_DIR);
  } finally {
    await new Promise<void>(resolve => busy.close(() => resolve()));
  }
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
    // Heads are counted from 1, as on the demo page ("head 1 of 2"), in each of the four steps.
    const headLines = r.stdout.split('\n').filter(line => /^\s*head \d/.test(line)).map(line => line.trim());
    const oneStep = Array.from({length: H}, (_, h) => `head ${h + 1} of ${H}`);
    expect(headLines).toEqual([...oneStep, ...oneStep, ...oneStep, ...oneStep]);

    const svg = fs.readFileSync(path.join(tmp, 'heatmap.svg'), 'utf8').trim();
    expect(svg).toMatch(/^(<\?xml[^>]*>\s*)?<svg\b/);
    expect(svg.endsWith('</svg>')).toBe(true);
    const texts = [...svg.matchAll(/<text\b[^>]*>([^<]*)<\/text>/g)].map(m => m[1].trim());
    expect(texts.filter(t => t === 'racket').length).toBeGreaterThanOrEqual(2);  // both axes
  });
});

describe.each(TRAIN_BACKENDS)('train --backend %s', (backend) => {
  it('trains on that backend, saves a model that records it, and writes nothing to stderr but TensorFlow\'s log', () => {
    const r = result(`train tiny ${backend}`);
    expectExit(r, 0);
    expect(r.stdout).toContain(`backend ${backend}, 1 epochs, seed 3`);
    expect(r.stdout).toMatch(/held-out accuracy\s+\d+(\.\d+)?%/i);
    const saved = JSON.parse(fs.readFileSync(path.join(tmp, `trained-${backend}`, 'model.json'), 'utf8'));
    expect(saved.userDefinedMetadata.backend).toBe(backend);
    expect(r.stderr).toBe('');
    // tfjs-node is loaded only when asked for: TensorFlow's start-up lines come with it alone.
    if (backend === 'wasm') expect(r.tensorFlowLog).toEqual([]);
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

describe('issue 9: a model with a NaN weight, or whose predictions overflow, is an error naming the model', () => {
  it.each(['predict NaN weight', 'predict NaN weight json', 'explain NaN weight'])(
      '%s: exit 1, nothing on stdout, the model folder and the weight named', (name) => {
        const r = result(name);
        expectExit(r, 1);
        expect(r.stdout).toBe('');
        expect(r.stderr).toMatch(/^Error: /);
        expect(r.stderr).toContain(path.join(tmp, 'nan-weight'));
        expect(r.stderr).toContain(`${NAN_WEIGHT}[${NAN_INDEX}] is NaN`);
        expect(r.stderr).not.toMatch(/\n\s+at /);
      });

  it('explain wrote no heatmap', () => {
    expect(fs.existsSync(path.join(tmp, 'nan.svg'))).toBe(false);
  });

  it.each(['predict overflow json', 'explain overflow'])(
      '%s: finite weights whose outputs are NaN: exit 1, the model named, no NaN printed as a result', (name) => {
        const r = result(name);
        expectExit(r, 1);
        expect(r.stdout).toBe('');
        expect(r.stderr).toContain(path.join(tmp, 'overflow'));
        expect(r.stderr).toMatch(/not finite/);
        expect(fs.existsSync(path.join(tmp, 'overflow.svg'))).toBe(false);
      });
});

describe('issue 9: a model of another architecture', () => {
  it('names the model path, what was expected and the layers it has', () => {
    const r = result('predict other architecture');
    expectExit(r, 1);
    expect(r.stderr).toContain(path.join(tmp, 'other-architecture'));
    expect(r.stderr).toMatch(/another architecture/);
    expect(r.stderr).toContain('ScaledDotProductAttention layer named "attention"');
    expect(r.stderr).toContain('mixer (ScaledDotProductAttention)');
    expect(r.stderr).not.toMatch(/^Error: No such layer/);
  });
});

describe('issue 9: --k 1e9 and --k 1000000000, and words holding terminal escape codes', () => {
  const vocabulary = () => JSON.parse(fs.readFileSync(path.join(tmp, 'escape-words', 'model.json'), 'utf8'))
      .userDefinedMetadata.vocabulary.words as string[];

  it('--k 1e9 and --k 1000000000 print the same: every word but <pad> and <unk>', () => {
    const [a, b] = [result('predict k 1e9'), result('predict k 1000000000')];
    expectExit(a, 0);
    expectExit(b, 0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout.split('\n').filter(line => /^\s*\d+\.\s/.test(line))).toHaveLength(vocabulary().length - 2);
  });

  it('prints control characters in words as escapes, never raw', () => {
    const r = result('predict k 1e9');
    expect(r.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/);
    expect(r.stdout).toContain('\\x1b[31mred');
    expect(r.stdout).toContain('evil\\u202e\\x9b');
  });

  it('--json: the same words back through JSON.parse, with no raw control character on stdout', () => {
    const r = result('predict escape json');
    expectExit(r, 0);
    expect(r.stdout.trimEnd()).not.toMatch(/[\x00-\x1f\x7f-\x9f\u202e]/);
    const printed = (JSON.parse(r.stdout) as Array<{word: string}>).map(p => p.word);
    for (const word of ESCAPE_WORDS) expect(printed).toContain(word);
    expect(printed).toHaveLength(vocabulary().length - 2);
  });

  it('--k 1e20 (past 2^53 - 1) is a usage error, like any other bad integer', () => {
    const r = result('predict k 1e20');
    expectExit(r, 2);
    expect(r.stderr.split('\n')[0]).toBe(
        'Error: Received an invalid value for option `--k`, expected an integer >= 1 (at most 2^53 - 1). Received: --k 1e20');
  });
});

describe('issue 9: corpus lines over the cap are rejected before training', () => {
  it.each([
    ['train long line', 'long-line.txt', 'line 3', 'Received: 65 words', 'out-long'],
    ['train huge line', 'huge-line.txt', 'line 2', 'Received: 200000 words', 'out-huge'],
  ])('%s: exit 1 naming the file, the line and its length; no epoch, nothing saved', (name, file, line, length, out) => {
    const r = result(name);
    expectExit(r, 1);
    expect(r.stderr).toContain(`Corpus ${path.join(tmp, file)}, ${line}: a sentence may have at most 64 words`);
    expect(r.stderr).toContain(length);
    expect(r.stderr).not.toMatch(/memory access out of bounds/);
    expect(r.stdout).not.toMatch(/Epoch/);
    expect(fs.existsSync(path.join(tmp, out))).toBe(false);
  });

  it('a one-line corpus at the cap trains (window 63) and says it has 0 held-out sentences, with no NaN', () => {
    const r = result('train one line at the cap');
    expectExit(r, 0);
    expect(r.stdout).not.toMatch(/NaN/);
    expect(r.stdout).toMatch(/0 held-out sentences/);
    expect(r.stdout).not.toMatch(/held-out accuracy\s+\d/);
    const json = JSON.parse(fs.readFileSync(path.join(tmp, 'out-one-line', 'model.json'), 'utf8'));
    expect(json.userDefinedMetadata.window).toBe(63);
  });
});

describe('issue 9: demo --port <a port in use>', () => {
  it('fails before the bundle is touched: exit 1, the port named, dist/demo unchanged', () => {
    expectExit(demoRun, 1);
    expect(demoRun.stderr).toMatch(new RegExp(`^Error: Port ${busyPort} on 127\\.0\\.0\\.1 is in use`));
    expect(demoRun.stderr).toContain('--port');
    expect(demoRun.stdout).not.toMatch(/Built the page/);
    expect(demoAfter).toBe(demoBefore);
  });
});

describe('issue 9: the CLI helpers', () => {
  it('parseIntegerOption reads a number the same however it is written', () => {
    for (const written of ['1000000000', '1e9', '1E9', '1.0e9', '+1000000000', ' 1e9 ']) {
      expect(parseIntegerOption('k', written, {min: 1})).toBe(1000000000);
    }
    expect(parseIntegerOption('port', '0', {min: 0, max: 65535})).toBe(0);
    expect(parseIntegerOption('port', '6.5535e4', {min: 0, max: 65535})).toBe(65535);
  });

  it('parseIntegerOption rejects the same way whatever the spelling: fractions, hex, Infinity, out of range', () => {
    for (const written of ['1.5', '0x10', 'Infinity', '1e20', '100000000000000000000', '', 'abc', '1e9x', '0']) {
      expect(() => parseIntegerOption('k', written, {min: 1})).toThrow(UsageError);
    }
    expect(() => parseIntegerOption('k', '1e20', {min: 1})).toThrow(
        'Received an invalid value for option `--k`, expected an integer >= 1 (at most 2^53 - 1). Received: --k 1e20');
    expect(() => parseIntegerOption('port', '65536', {min: 0, max: 65535})).toThrow(
        'Received an invalid value for option `--port`, expected an integer from 0 to 65535. Received: --port 65536');
    expect(() => parseIntegerOption('port', '6.5536e4', {min: 0, max: 65535})).toThrow('Received: --port 6.5536e4');
  });

  it('terminalSafe writes control characters as escapes and leaves other text alone', () => {
    expect(terminalSafe('\x1b[31mred\x07')).toBe('\\x1b[31mred\\x07');
    expect(terminalSafe('a\nb\tc\x7f\x9b')).toBe('a\\x0ab\\x09c\\x7f\\x9b');
    expect(terminalSafe('evil\u202e\u2066')).toBe('evil\\u202e\\u2066');
    expect(terminalSafe('café naïve 東京 don\'t')).toBe('café naïve 東京 don\'t');
    expect(terminalSafeJson([{word: '\x1b\u009b\u202e'}])).toBe('[{"word":"\\u001b\\u009b\\u202e"}]');
    expect(JSON.parse(terminalSafeJson([{word: '\x1b\u009b\u202e'}]))).toEqual([{word: '\x1b\u009b\u202e'}]);
  });

  it('accuracySummary says 0 held-out sentences in words', () => {
    expect(accuracySummary(1.25, 0.5, NaN, 0)).toBe(
        'Trained in 1.3 s. Training accuracy 50.0%, no held-out accuracy: the corpus has 0 held-out sentences ' +
        '(a `[held-out]` line starts a held-out section; without one, every 10th sentence is held out).');
    expect(accuracySummary(2, 1, 0.75, 4)).toBe(
        'Trained in 2.0 s. Training accuracy 100.0%, held-out accuracy 75.0% (4 sentences never seen in training).');
  });
});
