/**
 * The CLIs check their output paths before they work (issue 9, findings 1, 2, 10 and 11):
 * `train --out` that saving may not touch fails before training, with a message and exit 1,
 * the folder unchanged; `explain --svg` that cannot be written fails before anything is
 * printed; `train` writes to the git-ignored trained/park-play by default, never over the
 * committed models/park-play. The scripts run as child processes, on scratch folders.
 */
import {spawn, spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {describeResult, REPO_ROOT, runLimited, ScriptResult, splitTensorFlowLog} from './helpers/run_script';

jest.setTimeout(300000);

const TSX = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
let tmp = '';

/** Runs `tsx scripts/<script>.ts args` in `cwd` (the scratch folder unless a case says otherwise). */
function run(script: 'train'|'explain', args: string[], cwd: string): Promise<ScriptResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(TSX, [path.join(REPO_ROOT, 'scripts', `${script}.ts`), ...args], {
      cwd, env: {...process.env, FORCE_COLOR: '0', NO_COLOR: '1'}, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 240000);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      const {rest, log} = splitTensorFlowLog(stderr);
      resolve({status, signal, stdout, stderr: rest, tensorFlowLog: log, ms: Date.now() - started});
    });
  });
}

/** Name, mode, inode, mtime and bytes of everything under `folder`. */
function tree(folder: string): {[name: string]: string} {
  const out: {[name: string]: string} = {};
  const stats = fs.statSync(folder);
  out['.'] = `mode ${(stats.mode & 0o777).toString(8)} ino ${stats.ino} mtime ${stats.mtimeMs}`;
  for (const name of fs.readdirSync(folder).sort()) {
    const file = path.join(folder, name);
    const s = fs.lstatSync(file);
    out[name] = `mode ${(s.mode & 0o777).toString(8)} ino ${s.ino} mtime ${s.mtimeMs}` +
        (s.isFile() ? ` ${fs.readFileSync(file).toString('base64')}` : s.isSymbolicLink() ? ` -> ${fs.readlinkSync(file)}` : '');
  }
  return out;
}

interface Case {
  name: string;
  script: 'train'|'explain';
  /** Makes the scratch state; returns the args, the cwd and the folder whose tree must not change. */
  setUp: (dir: string) => {args: string[]; cwd?: string; watch: string};
  message: RegExp;
}

const SENTENCE = 'i like to go to the park and play';

const CASES: Case[] = [
  {name: 'train --out . (the working directory)', script: 'train', message: /Cannot save a model to "\." \(.*\): it is the working directory\./,
    setUp: (dir) => {
      fs.writeFileSync(path.join(dir, 'package.json'), '{}');
      fs.mkdirSync(path.join(dir, 'src'));
      return {args: ['--out', '.'], cwd: dir, watch: dir};
    }},
  {name: 'train --out .. (an ancestor of the working directory)', script: 'train', message: /Cannot save a model to "\.\." \(.*\): it holds the working directory/,
    setUp: (dir) => {
      fs.mkdirSync(path.join(dir, 'work'));
      return {args: ['--out', '..'], cwd: path.join(dir, 'work'), watch: dir};
    }},
  {name: 'train --out "" (an empty path)', script: 'train', message: /Cannot save a model to "": an empty path names no folder\./,
    setUp: (dir) => ({args: ['--out', ''], cwd: dir, watch: dir})},
  {name: 'train --out / (the root)', script: 'train', message: /Cannot save a model to \/: it is the root of the file system\./,
    setUp: (dir) => ({args: ['--out', '/'], watch: dir})},
  {name: 'train --out <home>', script: 'train', message: /: it is the home folder\./,
    setUp: (dir) => ({args: ['--out', os.homedir()], watch: dir})},
  {name: 'train --out <a folder holding other files>', script: 'train',
    message: /: it holds 2 entries that are not part of a saved model \(notes\.txt, photos\/\)/,
    setUp: (dir) => {
      fs.writeFileSync(path.join(dir, 'notes.txt'), 'keep');
      fs.mkdirSync(path.join(dir, 'photos'));
      return {args: ['--out', dir], watch: dir};
    }},
  {name: 'train --out <a file>', script: 'train', message: /: it is a file, not a folder\./,
    setUp: (dir) => {
      fs.writeFileSync(path.join(dir, 'model'), 'a file');
      return {args: ['--out', path.join(dir, 'model')], watch: dir};
    }},
  {name: 'train --out <x.json>', script: 'train', message: /: the path ends in \.json; give the folder to hold model\.json/,
    setUp: (dir) => ({args: ['--out', path.join(dir, 'model.json')], watch: dir})},
  {name: 'train --out <a dangling symbolic link>', script: 'train', message: /: it is a symbolic link to .*nowhere, which does not exist\./,
    setUp: (dir) => {
      fs.symlinkSync(path.join(dir, 'nowhere'), path.join(dir, 'model'));
      return {args: ['--out', path.join(dir, 'model')], watch: dir};
    }},
  {name: 'train --out <a write-protected model folder (555, files 444)>', script: 'train',
    message: /: it is write-protected \(mode 555\); the model there is left as it was\./,
    setUp: (dir) => {
      const folder = path.join(dir, 'model');
      fs.cpSync(path.join(REPO_ROOT, 'models', 'park-play'), folder, {recursive: true});
      for (const name of fs.readdirSync(folder)) fs.chmodSync(path.join(folder, name), 0o444);
      fs.chmodSync(folder, 0o555);
      return {args: ['--out', folder], watch: folder};
    }},
  {name: 'explain --svg /', script: 'explain', message: /Cannot write the SVG \/: it is the root of the file system, a folder\./,
    setUp: (dir) => ({args: [SENTENCE, '--svg', '/'], watch: dir})},
  {name: 'explain --svg <a folder>', script: 'explain', message: /Cannot write the SVG .*: it is a folder\./,
    setUp: (dir) => ({args: [SENTENCE, '--svg', dir], watch: dir})},
  {name: 'explain --svg <in a missing folder>', script: 'explain', message: /its folder .*missing cannot be used: it \(or a folder on its path\) does not exist\./,
    setUp: (dir) => ({args: [SENTENCE, '--svg', path.join(dir, 'missing', 'a.svg')], watch: dir})},
];

const results = new Map<string, {result: ScriptResult; before: object; after: object}>();

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'output-paths-cli-'));
  const runs = CASES.map((c, i) => () => {
    const dir = path.join(tmp, String(i));
    fs.mkdirSync(dir);
    const {args, cwd, watch} = c.setUp(dir);
    const before = tree(watch);
    return run(c.script, args, cwd ?? tmp).then(result => {
      results.set(c.name, {result, before, after: tree(watch)});
    });
  });
  await runLimited(runs, 3);
});

afterAll(() => {
  if (tmp) {
    spawnSync('chmod', ['-R', 'u+w', tmp]);
    fs.rmSync(tmp, {recursive: true, force: true});
  }
});

describe('output paths are checked before any work', () => {
  it.each(CASES.map(c => [c.name, c]))('%s: exit 1 at once with a message naming the path and why; nothing changed', (_name, c) => {
    const {result, before, after} = results.get((c as Case).name)!;
    if (result.status !== 1) throw new Error(`expected exit code 1, got ${describeResult(result)}`);
    expect(result.stderr).toMatch(/^Error: /);
    expect(result.stderr).toMatch((c as Case).message);
    expect(result.stderr).not.toMatch(/\b(EACCES|ENOENT|EPERM|EBUSY|EISDIR|ENOTDIR)\b/);  // no raw errno text
    expect(result.stderr).not.toMatch(/\n\s+at /);  // no stack trace
    expect(result.stdout).toBe('');  // no "Training on", no epoch, no heatmap printed
    expect(after).toEqual(before);
  });
});

describe('train\'s default --out', () => {
  it('is trained/park-play, which git ignores, and not the committed models/park-play', () => {
    const help = spawnSync(TSX, [path.join('scripts', 'train.ts'), '--help'], {cwd: REPO_ROOT, encoding: 'utf8'});
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/--out.*default: trained\/park-play/);
    const ignored = (file: string) => spawnSync('git', ['check-ignore', '-q', file], {cwd: REPO_ROOT}).status === 0;
    expect(ignored('trained/park-play/model.json')).toBe(true);
    expect(ignored('trained/park-play/weights-0123456789abcdef.bin')).toBe(true);
    expect(ignored('models/park-play/model.json')).toBe(false);
  });
});
