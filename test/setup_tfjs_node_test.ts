/**
 * `npm run setup:tfjs-node` (scripts/setup_tfjs_node.js): its refusals, each naming what is missing and how to
 * get it, before anything is downloaded or built, run against a scratch project (--root) so that the repo's own
 * install is never touched; a build failure shows the end of the build log. Its success path is what .ci/run
 * runs (the suites then load tfjs-node). Also: the filter that sets TensorFlow's start-up log apart from stderr.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {NATIVE, reportNativeMissing} from './helpers/native';
import {REPO_ROOT, splitTensorFlowLog} from './helpers/run_script';

const SCRIPT = path.join(REPO_ROOT, 'scripts', 'setup_tfjs_node.js');
let tmp = '';
let root = '';

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-attention-setup-'));
  // A scratch project: the script reads the tfjs version from node_modules/@tensorflow/tfjs.
  root = path.join(tmp, 'project');
  fs.mkdirSync(path.join(root, 'node_modules', '@tensorflow', 'tfjs'), {recursive: true});
  fs.writeFileSync(path.join(root, 'node_modules', '@tensorflow', 'tfjs', 'package.json'), '{"version": "4.22.0"}');
});
afterEach(() => {
  fs.rmSync(tmp, {recursive: true, force: true});
});

/** Runs the script with `args` (and --root root), PATH as given. */
function setup(args: string[], env: NodeJS.ProcessEnv = {}): {status: number|null; stdout: string; stderr: string} {
  const result = spawnSync(process.execPath, [SCRIPT, '--root', root, ...args],
                           {encoding: 'utf8', env: {...process.env, ...env}, timeout: 120000});
  return {status: result.status, stdout: result.stdout, stderr: result.stderr};
}

/** A folder of links to the named commands (those found on PATH), to stand for a PATH without the others. */
function pathWith(commands: string[]): string {
  const bin = fs.mkdtempSync(path.join(tmp, 'bin-'));
  for (const command of commands) {
    const found = spawnSync('sh', ['-c', `command -v ${command}`], {encoding: 'utf8'}).stdout.trim();
    if (found !== '') fs.symlinkSync(found, path.join(bin, command));
  }
  return bin;
}

/** A zip file at `file` holding `members` (name -> text), written by python3's zipfile. */
function zip(file: string, members: {[name: string]: string}): void {
  const code = 'import json, sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], "w") as z:\n' +
      '    for name, text in json.loads(sys.argv[2]).items(): z.writestr(name, text)\n';
  const result = spawnSync('python3', ['-c', code, file, JSON.stringify(members)], {encoding: 'utf8'});
  if (result.status !== 0) throw new Error(`python3 zipfile failed: ${result.stderr}`);
}

/** The project after a refusal: nothing but what the test made (no .tfjs-node, no link). */
function expectUntouched(): void {
  expect(fs.readdirSync(root)).toEqual(['node_modules']);
  expect(fs.readdirSync(path.join(root, 'node_modules', '@tensorflow'))).toEqual(['tfjs']);
}

describe('npm run setup:tfjs-node refuses, saying what is missing and how to get it', () => {
  it('an unknown argument, and a flag without its value: the usage', () => {
    const unknown = setup(['--wheels', 'x.whl']);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain('Unknown argument "--wheels"');
    expect(unknown.stderr).toContain('Usage: npm run setup:tfjs-node');
    const empty = setup(['--wheel']);
    expect(empty.status).toBe(1);
    expect(empty.stderr).toContain('--wheel needs a value');
    expect(setup(['--wheel', 'a.whl', '--tensorflow-dir', tmp]).stderr).toContain('Give --wheel or --tensorflow-dir, not both');
    expectUntouched();
  });

  it('a project without its packages installed: run npm ci first', () => {
    fs.rmSync(path.join(root, 'node_modules'), {recursive: true});
    const r = setup([]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(path.join(root, 'node_modules', '@tensorflow', 'tfjs', 'package.json'));
    expect(r.stderr).toContain('npm ci');
  });

  it('no make, g++ or python3 on PATH: names them and the package to install', () => {
    const r = setup([], {PATH: pathWith(['node', 'npm'])});
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('make, g++, python3 not found on PATH');
    expect(r.stderr).toContain('apt-get install make g++ python3');
    const onlyGpp = setup([], {PATH: pathWith(['node', 'npm', 'make', 'python3'])});
    expect(onlyGpp.stderr).toContain('g++ not found on PATH');
    expectUntouched();
  });

  it('no Node headers where --nodedir points: names the file looked for', () => {
    const r = setup(['--nodedir', path.join(tmp, 'no-node')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("Node's C headers were not found (looked for include/node/node_api.h under " +
                               path.join(tmp, 'no-node'));
    expect(r.stderr).toContain('--nodedir');
    expectUntouched();
  });

  it('python3 without pip: says so, and offers --wheel / --tensorflow-dir', () => {
    const bin = pathWith(['node', 'npm', 'make', 'g++']);
    fs.writeFileSync(path.join(bin, 'python3'), '#!/bin/sh\necho "No module named pip" >&2\nexit 1\n', {mode: 0o755});
    const r = setup([], {PATH: bin});
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('pip is not available');
    expect(r.stderr).toContain('--wheel FILE.whl or --tensorflow-dir DIR');
    expect(r.stderr).toContain('No module named pip');
  });

  it('pip cannot get the wheel (a version no index has): pip\'s words and the way around', () => {
    const r = setup(['--tensorflow-version', '0.0.1']);
    expect(r.status).toBe(1);
    if (spawnSync('python3', ['-m', 'pip', '--version']).status !== 0) {
      expect(r.stderr).toContain('pip is not available');  // this machine has no pip: the check before
    } else {
      expect(r.stderr).toContain('pip could not get tensorflow-cpu==0.0.1');
      expect(r.stderr).toMatch(/No matching distribution|Could not find a version/);
    }
    expect(r.stderr).toContain('--wheel FILE.whl or --tensorflow-dir DIR');
  });

  it('a wheel without the C library or headers, a missing wheel, and a file that is not a zip', () => {
    const wheel = path.join(tmp, 'tensorflow_cpu-2.21.0-py3-none-any.whl');
    zip(wheel, {'tensorflow/__init__.py': '', 'tensorflow/libtensorflow_framework.so.2': 'not really'});
    const lacking = setup(['--wheel', wheel]);
    expect(lacking.status).toBe(1);
    expect(lacking.stderr).toContain(`${wheel} lacks tensorflow/libtensorflow_cc.so.2, the C headers (tensorflow/include/tensorflow/c/)`);
    expect(lacking.stderr).toContain('Use tensorflow-cpu (or tensorflow) 2.x for Linux x86_64');
    expect(setup(['--wheel', path.join(tmp, 'absent.whl')]).stderr).toContain(`--wheel ${path.join(tmp, 'absent.whl')} does not exist`);
    const text = path.join(tmp, 'text.whl');
    fs.writeFileSync(text, 'not a zip');
    expect(setup(['--wheel', text]).stderr).toContain(`Cannot read ${text} as a wheel (a zip file)`);
    expectUntouched();
  });

  it('a --tensorflow-dir without the library files: lists what it lacks', () => {
    const dir = path.join(tmp, 'tensorflow');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'libtensorflow_cc.so.2'), '');
    const r = setup(['--tensorflow-dir', dir]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`--tensorflow-dir ${dir} lacks libtensorflow_framework.so.2, ${path.join('include', 'tensorflow', 'c', 'c_api.h')}`);
    expectUntouched();
  });
});

reportNativeMissing('a failing build of the binding (it copies the installed tfjs-node)');

(NATIVE.loaded ? describe : describe.skip)('a build that fails', () => {
  it('exits 1 with the end of the build log, kept in .tfjs-node/build.log, and links nothing', () => {
    // The installed tfjs-node's prefix (.tfjs-node/node_modules) without its library, so that npm is not needed.
    const installed = fs.realpathSync(path.join(REPO_ROOT, 'node_modules', '@tensorflow', 'tfjs-node'));
    const modules = path.dirname(path.dirname(installed));
    fs.cpSync(modules, path.join(root, '.tfjs-node', 'node_modules'), {
      recursive: true,
      filter: source => !/[/\\]tfjs-node[/\\](deps|build|lib[/\\]napi-v\d+)$/.test(source),
    });
    fs.writeFileSync(path.join(root, '.tfjs-node', 'package.json'), '{"private": true}\n');
    // A "tensorflow" folder whose header does not compile.
    const dir = path.join(tmp, 'tensorflow');
    fs.mkdirSync(path.join(dir, 'include', 'tensorflow', 'c'), {recursive: true});
    for (const name of ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2']) fs.writeFileSync(path.join(dir, name), '');
    fs.writeFileSync(path.join(dir, 'include', 'tensorflow', 'c', 'c_api.h'), '#error this is not TensorFlow\n');
    const r = setup(['--tensorflow-dir', dir], {});
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("Building tfjs-node's binding failed");
    expect(r.stderr).toContain(path.join(root, '.tfjs-node', 'build.log'));
    expect(r.stderr).toContain('#error this is not TensorFlow');
    expect(fs.readFileSync(path.join(root, '.tfjs-node', 'build.log'), 'utf8')).toContain('#error this is not TensorFlow');
    expect(fs.existsSync(path.join(root, 'node_modules', '@tensorflow', 'tfjs-node'))).toBe(false);
  });
});

describe("TensorFlow's start-up log is set apart from a child's stderr, and nothing else is", () => {
  // The lines tfjs-node 4.22 on TensorFlow 2.21 writes when it loads (recorded from a run here).
  const startUp = [
    'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR',
    'I0000 00:00:1796038959.803478   30926 port.cc:153] oneDNN custom operations are on. You may see slightly ' +
        'different numerical results due to floating-point round-off errors from different computation orders. ' +
        'To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.',
    'I0000 00:00:1796038959.845941   30926 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use ' +
        'available CPU instructions in performance-critical operations.',
    'To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX_VNNI FMA, in other operations, ' +
        'rebuild TensorFlow with the appropriate compiler flags.',
    '2026-11-30 11:40:00.123456: I tensorflow/core/platform/cpu_feature_guard.cc:193] This TensorFlow binary is optimized',
  ];

  it('removes those lines and keeps the rest, in order, with its line breaks', () => {
    const ours = ['Error: Argument `sentence` has no words', 'Notice: unknown words: zoo', 'I like to play'];
    const {rest, log} = splitTensorFlowLog([startUp[0], ours[0], ...startUp.slice(1), ours[1], ours[2]].join('\n') + '\n');
    expect(rest).toBe(`${ours.join('\n')}\n`);
    expect(log).toEqual(startUp);
  });

  it('keeps TensorFlow\'s errors (severity E and F) and lines that only resemble the log', () => {
    const kept = [
      'E0000 00:00:1796038959.803478   30926 some_op.cc:12] Invalid argument: shapes differ',
      'F0000 00:00:1796038959.803478   30926 check.cc:9] Check failed',
      'WARNING: something else',
      'To enable the following instructions: do this first',
      '',
    ].join('\n');
    expect(splitTensorFlowLog(kept)).toEqual({rest: kept, log: []});
  });
});
