/**
 * The built package as an app sees it: `npm run build` (run once by test/global_setup.js)
 * emits dist/ with declarations; `require('tfjs-attention')` and `import … from
 * 'tfjs-attention'` work from a Node project; TypeScript consumers get the types; the layer
 * registers into the app's own tfjs instance. (The packed tarball, its file list and its
 * consumers: test/package_layout_test.ts.) Everything runs in child Node processes in a temporary project whose node_modules
 * links `tfjs-attention` (this repo, or the unpacked tarball) and `@tensorflow`.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {runNode} from './helpers/run_node';

const REPO = path.resolve(__dirname, '..');
const PUBLIC_NAMES = ['ScaledDotProductAttention', 'scaledDotProductAttention', 'dotProductAttention', 'traceAttention', 'selectBackend', 'planAttention',
                      'MultiHeadAttention', 'multiHeadAttention'];
let tmp = '';

/** A throwaway Node project in `dir` whose node_modules holds `tfjs-attention` (a link to `packageDir`) and @tensorflow. */
function makeProject(dir: string, packageDir: string|null): void {
  fs.mkdirSync(path.join(dir, 'node_modules'), {recursive: true});
  if (packageDir != null) fs.symlinkSync(packageDir, path.join(dir, 'node_modules', 'tfjs-attention'), 'dir');
  fs.symlinkSync(path.join(REPO, 'node_modules', '@tensorflow'), path.join(dir, 'node_modules', '@tensorflow'), 'dir');
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

  it('package.json points main, module, types and the conditional exports at dist/cjs and dist/esm, and those files exist', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8'));
    expect(pkg.main).toBe('dist/cjs/index.js');
    expect(pkg.module).toBe('dist/esm/index.js');
    expect(pkg.types).toBe('dist/cjs/index.d.ts');
    const nodeEntry = {
      import: {types: './dist/esm/node.d.ts', default: './dist/esm/node.js'},
      default: {types: './dist/cjs/node.d.ts', default: './dist/cjs/node.js'},
    };
    const kerasNodeEntry = {
      import: {types: './dist/esm/keras_node.d.ts', default: './dist/esm/keras_node.js'},
      default: {types: './dist/cjs/keras_node.d.ts', default: './dist/cjs/keras_node.js'},
    };
    expect(pkg.exports).toEqual({
      '.': {
        node: nodeEntry,  // Node: the file:// handler and the second thread, with no extra line
        import: {types: './dist/esm/index.d.ts', default: './dist/esm/index.js'},  // bundlers: browser-safe
        default: {types: './dist/cjs/index.d.ts', default: './dist/cjs/index.js'},
      },
      './node': nodeEntry,
      './keras': {
        node: kerasNodeEntry,  // Node: paths as sources and targets
        import: {types: './dist/esm/keras.d.ts', default: './dist/esm/keras.js'},  // bundlers: URLs and bytes
        default: {types: './dist/cjs/keras.d.ts', default: './dist/cjs/keras.js'},
      },
      './package.json': './package.json',
    });
    const targets = [pkg.main, pkg.module, pkg.types];
    for (const entry of [pkg.exports['.'].import, pkg.exports['.'].default, nodeEntry.import, nodeEntry.default,
      pkg.exports['./keras'].import, pkg.exports['./keras'].default, kerasNodeEntry.import, kerasNodeEntry.default]) {
      targets.push(entry.types, entry.default);
    }
    for (const file of targets) expect(fs.existsSync(path.join(REPO, file))).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(REPO, 'dist', 'esm', 'package.json'), 'utf8'))).toEqual({type: 'module'});
    for (const module of ['index', 'node', 'errors', 'keras_objects', 'attention/scaled_dot_product_attention',
      'attention/dot_product_attention', 'attention/trace_attention', 'backend/select_backend', 'io/file_system_io']) {
      expect(fs.existsSync(path.join(REPO, 'dist', 'cjs', `${module}.js`))).toBe(true);
      expect(fs.existsSync(path.join(REPO, 'dist', 'cjs', `${module}.d.ts`))).toBe(true);
    }
    const declarations = fs.readFileSync(path.join(REPO, 'dist', 'cjs', 'index.d.ts'), 'utf8');
    for (const name of PUBLIC_NAMES) expect(declarations).toMatch(new RegExp(`\\b${name}\\b`));
    expect(fs.readFileSync(path.join(REPO, 'dist', 'cjs', 'node.d.ts'), 'utf8')).toMatch(/\bfileSystem\b/);
    expect(fs.readFileSync(path.join(REPO, 'dist', 'cjs', 'keras.d.ts'), 'utf8')).toMatch(/\bloadKerasModel\b[\s\S]*\bsaveKerasModel\b/);
  });

  it('require("tfjs-attention") in a CommonJS child exposes the API and registers into the app\'s tfjs', () => {
    const dir = path.join(tmp, 'cjs');
    makeProject(dir, REPO);
    const report = runNode(dir, 'app.js', `const tf = require('@tensorflow/tfjs');
const tfa = require('tfjs-attention');
const resolved = require.resolve('tfjs-attention');
${REPORT.replace("console.log('RESULT ' + JSON.stringify({", "console.log('RESULT ' + JSON.stringify({resolved,")}`);
    expect(fs.realpathSync(report.resolved as string)).toBe(path.join(REPO, 'dist', 'cjs', 'node.js'));  // the `node` condition
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
});
