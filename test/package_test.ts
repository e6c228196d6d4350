/**
 * The built package as an app sees it: `npm run build` (run once by test/global_setup.js)
 * emits dist/ with declarations; `require('tfjs-attention')` and `import … from
 * 'tfjs-attention'` work from a Node project; TypeScript consumers get the types; the layer
 * registers into the app's own tfjs instance; `npm pack` ships what the package needs at run
 * time. Everything runs in child Node processes in a temporary project whose node_modules
 * links `tfjs-attention` (this repo, or the unpacked tarball) and `@tensorflow`.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const REPO = path.resolve(__dirname, '..');
const PUBLIC_NAMES = ['ScaledDotProductAttention', 'scaledDotProductAttention', 'dotProductAttention', 'traceAttention', 'selectBackend'];
let tmp = '';

/** A throwaway Node project in `dir` whose node_modules holds `tfjs-attention` (a link to `packageDir`) and @tensorflow. */
function makeProject(dir: string, packageDir: string|null): void {
  fs.mkdirSync(path.join(dir, 'node_modules'), {recursive: true});
  if (packageDir != null) fs.symlinkSync(packageDir, path.join(dir, 'node_modules', 'tfjs-attention'), 'dir');
  fs.symlinkSync(path.join(REPO, 'node_modules', '@tensorflow'), path.join(dir, 'node_modules', '@tensorflow'), 'dir');
}

/** Runs `node file` in `dir` and returns the JSON it prints after "RESULT ". */
function runNode(dir: string, file: string, source: string): Record<string, unknown> {
  fs.writeFileSync(path.join(dir, file), source);
  const child = spawnSync(process.execPath, [file], {
    cwd: dir, encoding: 'utf8', timeout: 90000, env: {...process.env, NODE_PATH: '', NODE_OPTIONS: ''},
  });
  const line = (child.stdout ?? '').split('\n').find(l => l.startsWith('RESULT '));
  if (child.status !== 0 || line == null) {
    throw new Error(`node ${file} failed (status ${child.status}):\n${child.stderr}\n${child.stdout}`);
  }
  return JSON.parse(line.slice('RESULT '.length));
}

/** What a child reports about the package it loaded: export kinds, registration, a forward pass. */
const REPORT = `
const layer = tfa.scaledDotProductAttention({inputShape: [2, 3], numHeads: 1, keyDim: 2});
const model = tf.sequential({layers: [layer]});
const output = model.predict(tf.ones([1, 2, 3]));
console.log('RESULT ' + JSON.stringify({
  kinds: Object.fromEntries(${JSON.stringify(PUBLIC_NAMES)}.map(name => [name, typeof tfa[name]])),
  className: tfa.ScaledDotProductAttention.className,
  registeredInAppTf: tf.serialization.SerializationMap.getMap().classNameMap.ScaledDotProductAttention?.[0] === tfa.ScaledDotProductAttention,
  isAppLayer: layer instanceof tf.layers.Layer && layer instanceof tfa.ScaledDotProductAttention,
  outputShape: output.shape,
  finite: Array.from(output.dataSync()).every(Number.isFinite),
}));
`;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-attention-package-'));
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, {recursive: true, force: true});
});

describe('the built package (dist/)', () => {
  it('`npm run build` succeeded without diagnostics', () => {
    const result = JSON.parse(fs.readFileSync(path.join(REPO, 'dist', 'build-result.json'), 'utf8'));
    expect(result.output.trim()).toBe('');
    expect(result.status).toBe(0);
  });

  it('package.json points main, types and exports at dist/, and those files exist with their declarations', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8'));
    expect(pkg.main).toBe('dist/src/index.js');
    expect(pkg.types).toBe('dist/src/index.d.ts');
    expect(pkg.exports['.']).toEqual({types: './dist/src/index.d.ts', default: './dist/src/index.js'});
    for (const file of [pkg.main, pkg.types, pkg.exports['.'].types, pkg.exports['.'].default]) {
      expect(fs.existsSync(path.join(REPO, file))).toBe(true);
    }
    for (const module of ['index', 'errors', 'keras_objects', 'attention/scaled_dot_product_attention',
      'attention/dot_product_attention', 'attention/trace_attention', 'backend/select_backend', 'io/file_system_io']) {
      expect(fs.existsSync(path.join(REPO, 'dist', 'src', `${module}.js`))).toBe(true);
      expect(fs.existsSync(path.join(REPO, 'dist', 'src', `${module}.d.ts`))).toBe(true);
    }
    const declarations = fs.readFileSync(path.join(REPO, 'dist', 'src', 'index.d.ts'), 'utf8');
    for (const name of PUBLIC_NAMES) expect(declarations).toMatch(new RegExp(`\\b${name}\\b`));
  });

  it('require("tfjs-attention") in a CommonJS child exposes the API and registers into the app\'s tfjs', () => {
    const dir = path.join(tmp, 'cjs');
    makeProject(dir, REPO);
    const report = runNode(dir, 'app.js', `const tf = require('@tensorflow/tfjs');
const tfa = require('tfjs-attention');
const resolved = require.resolve('tfjs-attention');
${REPORT.replace("console.log('RESULT ' + JSON.stringify({", "console.log('RESULT ' + JSON.stringify({resolved,")}`);
    expect(fs.realpathSync(report.resolved as string)).toBe(path.join(REPO, 'dist', 'src', 'index.js'));
    expect(report).toEqual(expect.objectContaining({
      kinds: Object.fromEntries(PUBLIC_NAMES.map(name => [name, 'function'])),
      className: 'ScaledDotProductAttention',
      registeredInAppTf: true,
      isAppLayer: true,
      outputShape: [1, 2, 2],
      finite: true,
    }));
  });

  it('import {…} from "tfjs-attention" in an ESM (.mjs) child gets the named exports', () => {
    const dir = path.join(tmp, 'esm');
    makeProject(dir, REPO);
    const report = runNode(dir, 'app.mjs', `import * as tf from '@tensorflow/tfjs';
import {${PUBLIC_NAMES.join(', ')}} from 'tfjs-attention';
import * as namespace from 'tfjs-attention';
const tfa = {${PUBLIC_NAMES.join(', ')}};
const named = Object.keys(namespace).filter(k => k !== 'default' && k !== '__esModule').sort();
${REPORT.replace("console.log('RESULT ' + JSON.stringify({", "console.log('RESULT ' + JSON.stringify({named,")}`);
    expect(report.named).toEqual(expect.arrayContaining([...PUBLIC_NAMES, 'ValueError', 'fileSystem', 'FileSystemIO']));
    expect(report).toEqual(expect.objectContaining({
      kinds: Object.fromEntries(PUBLIC_NAMES.map(name => [name, 'function'])),
      registeredInAppTf: true,
      isAppLayer: true,
      outputShape: [1, 2, 2],
    }));
  });

  it('TypeScript consumers (CommonJS .ts and ESM .mts, node16 resolution) get the declarations, not `any`', () => {
    const dir = path.join(tmp, 'types');
    makeProject(dir, REPO);
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {module: 'node16', moduleResolution: 'node16', target: 'ES2020', strict: true, noEmit: true,
                        skipLibCheck: true, types: [], lib: ['ES2020']},
      files: ['consumer.ts', 'consumer.mts'],
    }));
    const consumer = `import * as tf from '@tensorflow/tfjs';
import {ScaledDotProductAttention, scaledDotProductAttention, dotProductAttention, traceAttention, selectBackend} from 'tfjs-attention';
import type {ScaledDotProductAttentionArgs, BackendName} from 'tfjs-attention';
const args: ScaledDotProductAttentionArgs = {numHeads: 2, keyDim: 4, valueDim: 3, useBias: true, outputDim: 6, causal: true};
const layer: ScaledDotProductAttention = scaledDotProductAttention(args);
const asLayer: tf.layers.Layer = layer;
const backend: BackendName = 'wasm';
const active: Promise<string> = selectBackend(backend);
const out: tf.Tensor = dotProductAttention(tf.ones([1, 2, 4]), tf.ones([1, 3, 4]), tf.ones([1, 3, 5]));
export {asLayer, active, out, traceAttention};
// @ts-expect-error numHeads is a number
scaledDotProductAttention({numHeads: 'two'});
// @ts-expect-error not a backend name
selectBackend('gpu');
`;
    fs.writeFileSync(path.join(dir, 'consumer.ts'), consumer);
    fs.writeFileSync(path.join(dir, 'consumer.mts'), consumer);
    const tsc = spawnSync(process.execPath, [path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
      cwd: dir, encoding: 'utf8', timeout: 120000,
    });
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.status).toBe(0);
  });

  it('`npm pack` ships dist/src (code and declarations) and the corpus file, and the unpacked tarball works', () => {
    const packDir = path.join(tmp, 'pack');
    fs.mkdirSync(packDir);
    const pack = spawnSync('npm', ['pack', '--json', '--pack-destination', packDir], {
      cwd: REPO, encoding: 'utf8', timeout: 120000, env: {...process.env, npm_config_loglevel: 'error'},
    });
    expect(pack.status).toBe(0);
    const [info] = JSON.parse(pack.stdout) as Array<{filename: string; files: Array<{path: string}>}>;
    const files = info.files.map(f => f.path);
    expect(files).toEqual(expect.arrayContaining([
      'package.json', 'dist/src/index.js', 'dist/src/index.d.ts',
      'dist/src/attention/scaled_dot_product_attention.js', 'dist/src/io/file_system_io.js',
      'src/park/corpus/park_corpus.txt',  // read at run time by src/park/corpus.ts
    ]));
    expect(files.filter(f => f.startsWith('test/') || f.startsWith('src/') && !f.startsWith('src/park/corpus/'))).toEqual([]);
    expect(files.filter(f => f === 'dist/build-result.json')).toEqual([]);

    // Unpack it as npm would install it: node_modules/tfjs-attention, a real folder this time.
    const app = path.join(tmp, 'installed');
    makeProject(app, null);
    const installed = path.join(app, 'node_modules', 'tfjs-attention');
    fs.mkdirSync(installed);
    const tar = spawnSync('tar', ['-xzf', path.join(packDir, info.filename), '-C', installed, '--strip-components=1']);
    expect(tar.status).toBe(0);
    const report = runNode(app, 'app.js', `const tf = require('@tensorflow/tfjs');
const tfa = require('tfjs-attention');
const corpus = require(require('path').join(require('path').dirname(require.resolve('tfjs-attention')), 'park', 'corpus.js'));
const corpusPath = corpus.defaultCorpusPath();
const corpusFound = require('fs').existsSync(corpusPath);
${REPORT.replace("console.log('RESULT ' + JSON.stringify({", "console.log('RESULT ' + JSON.stringify({corpusPath, corpusFound, resolved: require.resolve('tfjs-attention'),")}`);
    expect(report.resolved).toBe(path.join(installed, 'dist', 'src', 'index.js'));
    expect(report.corpusPath).toBe(path.join(installed, 'src', 'park', 'corpus', 'park_corpus.txt'));
    expect(report.corpusFound).toBe(true);
    expect(report).toEqual(expect.objectContaining({
      kinds: Object.fromEntries(PUBLIC_NAMES.map(name => [name, 'function'])),
      registeredInAppTf: true,
      isAppLayer: true,
      outputShape: [1, 2, 2],
    }));
  });
});
