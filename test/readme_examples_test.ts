/**
 * The README's TypeScript examples run as written (imports of 'tfjs-attention' resolve to this
 * package); the Keras section's TypeScript and Python examples run in order in one folder, Python
 * with Keras 3 from .venv-keras (`.ci/run` creates it).
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import {KERAS_PYTHON, requireKerasPython} from './helpers/keras_python';

const root = path.resolve(__dirname, '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
/** The Keras section's examples: between its two markers, run together (one writes the file the next reads). */
const KERAS_EXAMPLES = /<!-- keras-examples:[^>]*-->([\s\S]*?)<!-- \/keras-examples -->/.exec(readme)?.[1] ?? '';
const examples = [...readme.replace(KERAS_EXAMPLES, '').matchAll(/```ts\n([\s\S]*?)```/g)].map(match => match[1]);
const kerasExamples = [...KERAS_EXAMPLES.matchAll(/```(ts|python)\n([\s\S]*?)```/g)]
    .map(match => ({language: match[1] as 'ts'|'python', code: match[2]}));

/** Each line `console.log(...)  // promised` or `print(...)  # promised` of `code` promises that output. */
function expectPromisedOutput(code: string, stdout: string): void {
  const squeeze = (text: string) => text.replace(/\s+/g, '');
  for (const [, promised] of code.matchAll(/(?:console\.log|print)\(.*\)[;]?\s*(?:\/\/|#)\s*(.+)$/gm)) {
    expect(squeeze(stdout)).toContain(squeeze(promised));
  }
}

/** How the README says to run an example: "saved as `example.ts` and run with `npx tsx example.ts`". */
const RUN = /saved as `([\w.-]+)` and run with\s+`npx tsx \1`/;

describe('README examples', () => {
  it('has the examples the README promises (sequential, functional/cross, masks, save/load)', () => {
    expect(examples.length).toBeGreaterThanOrEqual(4);
  });

  it('says how to run them: the file name and the command', () => {
    expect(readme).toMatch(RUN);
  });

  // Each example is saved as written, under the file name the README gives, and run with the
  // README's command in a child process: no wrapper, so top-level `await` in a CommonJS .ts
  // file fails here as it does for a reader.
  it.each(examples.map((example, i) => [i + 1, example]))('example %i runs as written with npx tsx', (_, example) => {
    const fileName = RUN.exec(readme)?.[1] ?? 'example.ts';
    // Inside the package folder, so that 'tfjs-attention' resolves to this package (built by
    // globalSetup) as it does in an app that installed it, and npx finds the local tsx.
    const folder = fs.mkdtempSync(path.join(root, `.tmp-readme-example-${_}-`));
    fs.writeFileSync(path.join(folder, fileName), example as string);
    try {
      const result = spawnSync('npx', ['tsx', fileName], {cwd: folder, encoding: 'utf8', timeout: 120_000});
      expect({status: result.status, stderr: result.stderr}).toEqual({status: 0, stderr: expect.any(String)});
      // A `console.log(...)  // expected` line in the README promises that output.
      expectPromisedOutput(example as string, result.stdout);
    } finally {
      fs.rmSync(folder, {recursive: true, force: true});
    }
  });
});

describe('README "Keras" examples', () => {
  it('has Python and TypeScript examples for both directions, and says how to run each', () => {
    expect(kerasExamples.map(e => e.language)).toEqual(['python', 'ts', 'ts', 'python']);
    expect(KERAS_EXAMPLES).toContain('saved as `example.py`, run with `python example.py`');
  });

  it('run in order in one folder: Keras saves a model that loadKerasModel loads, saveKerasModel writes one that Keras loads, and each side predicts as the other', () => {
    requireKerasPython();
    const folder = fs.mkdtempSync(path.join(root, '.tmp-readme-keras-'));
    try {
      for (const [i, {language, code}] of kerasExamples.entries()) {
        const file = language === 'ts' ? 'example.ts' : 'example.py';
        fs.writeFileSync(path.join(folder, file), code);
        const result = language === 'ts' ?
            spawnSync('npx', ['tsx', file], {cwd: folder, encoding: 'utf8', timeout: 120_000}) :
            spawnSync(KERAS_PYTHON, [file], {cwd: folder, encoding: 'utf8', timeout: 120_000,
                                             env: {...process.env, TF_CPP_MIN_LOG_LEVEL: '3'}});
        expect({example: i + 1, language, status: result.status, stderr: result.status === 0 ? '' : result.stderr})
            .toEqual({example: i + 1, language, status: 0, stderr: ''});
        expectPromisedOutput(code, result.stdout);
      }
    } finally {
      fs.rmSync(folder, {recursive: true, force: true});
    }
  }, 300_000);
});

describe('README "Reuse the saved model" snippet', () => {
  const script = fs.readFileSync(path.join(root, 'scripts', 'reuse_saved_model.js'), 'utf8');

  it('is scripts/reuse_saved_model.js verbatim (below its two comment lines)', () => {
    const body = script.split('\n').slice(2).join('\n').trim();
    expect(readme).toContain(body);
  });

  it('runs with only @tensorflow/tfjs and tfjs-attention and names the cued sport first', () => {
    const result = spawnSync(process.execPath, ['scripts/reuse_saved_model.js', 'she takes her racket to the park to play'], {
      cwd: root, encoding: 'utf8', timeout: 120_000,
    });
    expect(result.status).toBe(0);
    const [word, probability] = result.stdout.trim().split('\n')[0].split(' ');
    expect(word).toBe('tennis');
    expect(Number(probability)).toBeGreaterThan(0.5);
  });
});
