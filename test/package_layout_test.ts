/**
 * The package as its users get it (issue 10): the library apart from the example app, checked
 * on its import graph; the tarball of `npm pack`, its file list and its declared dependencies;
 * and Node consumers of that tarball (never of src/) in child processes: CommonJS and ESM,
 * `tfjs-attention` and `tfjs-attention/node`, TypeScript types, with and without the optional
 * peer @tensorflow/tfjs-backend-wasm, and a fresh `npm install` that downloads no tfjs-node.
 * dist/ is built by test/global_setup.js; packing skips lifecycle scripts (--ignore-scripts).
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ts from 'typescript';
import {appViolations, libraryViolations, reachableFrom, tsFilesUnder} from './helpers/import_graph';
import {kerasCasePath, readKerasExpected, readKerasInputs} from './helpers/keras_fixtures';
import {linkDependencies} from './helpers/packed_package';
import {runNode} from './helpers/run_node';
import {expectClose as expectAllClose} from './helpers/tensors';

const REPO = path.resolve(__dirname, '..');
const PUBLIC_NAMES = ['ScaledDotProductAttention', 'scaledDotProductAttention', 'dotProductAttention', 'traceAttention',
  'selectBackend', 'causalMask', 'PositionEmbedding', 'LastPosition', 'setAttentionThreads', 'ValueError'];
const NODE_NAMES = ['fileSystem', 'FileSystemIO'];
let tmp = '';
let tarball = '';
let packedFiles: string[] = [];

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-attention-layout-'));
  const pack = spawnSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], {
    cwd: REPO, encoding: 'utf8', timeout: 120000, env: {...process.env, npm_config_loglevel: 'error'},
  });
  if (pack.status !== 0) throw new Error(`npm pack failed (status ${pack.status}):\n${pack.stderr}`);
  const [info] = JSON.parse(pack.stdout) as Array<{filename: string; files: Array<{path: string}>}>;
  tarball = path.join(tmp, info.filename);
  packedFiles = info.files.map(f => f.path).sort();
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, {recursive: true, force: true});
});

/** A folder that holds the unpacked tarball as node_modules/tfjs-attention, its dependencies beside it (as npm installs it). */
function unpackInto(project: string): string {
  const installed = path.join(project, 'node_modules', 'tfjs-attention');
  fs.mkdirSync(installed, {recursive: true});
  const tar = spawnSync('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);
  if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr}`);
  linkDependencies(installed, project);
  return installed;
}

/**
 * A consumer project in `dir`: the unpacked tarball, and beside it links to this repo's
 * @tensorflow packages (`without` left out, and tfjs-node), as npm lays out peers.
 */
function linkedConsumer(dir: string, without: string[] = []): string {
  const installed = unpackInto(dir);
  const scope = path.join(dir, 'node_modules', '@tensorflow');
  fs.mkdirSync(scope, {recursive: true});
  for (const name of fs.readdirSync(path.join(REPO, 'node_modules', '@tensorflow'))) {
    // tfjs-node, which the repo may have (npm run setup:tfjs-node), is an optional peer these consumers lack.
    if (!without.includes(`@tensorflow/${name}`) && name !== 'tfjs-node') {
      fs.symlinkSync(path.join(REPO, 'node_modules', '@tensorflow', name), path.join(scope, name), 'dir');
    }
  }
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({name: 'consumer', version: '1.0.0', private: true}));
  return installed;
}

/**
 * What a consumer reports, given `tf`, `tfa` (the main entry), `tfaNode` (tfjs-attention/node),
 * `RESOLVED` and `WITH_WASM`: the exports, one module instance for both entries, the file://
 * handler registered with no extra line (save, load, same prediction), the op on cpu (and
 * wasm, through the fused kernel) and what selectBackend does.
 */
const CONSUMER_BODY = `
const out = {resolved: RESOLVED};
const take = (tensor) => { const values = tensor.arraySync(); tensor.dispose(); return values; };
out.kinds = Object.fromEntries(${JSON.stringify([...PUBLIC_NAMES, ...NODE_NAMES])}.map(name => [name, typeof tfa[name]]));
out.oneInstance = tfaNode.ScaledDotProductAttention === tfa.ScaledDotProductAttention && tfaNode.fileSystem === tfa.fileSystem;
out.fileHandlers = tf.io.getSaveHandlers('file:///tmp/x').length;
out.registered = tf.serialization.SerializationMap.getMap().classNameMap.ScaledDotProductAttention?.[0] === tfa.ScaledDotProductAttention;

out.cpu = await tfa.selectBackend('cpu');
const before = tf.memory().numTensors;
const layer = tfa.scaledDotProductAttention({inputShape: [3, 4], numHeads: 2, keyDim: 2});
const model = tf.sequential({layers: [layer]});
const input = tf.tensor3d([[[1, 0, 2, -1], [0, 1, -1, 2], [3, 1, 0, 0]]]);
out.prediction = take(model.predict(input));
const folder = require_path.join(process.cwd(), 'saved-' + Math.random().toString(16).slice(2));
await model.save('file://' + folder);
const loaded = await tf.loadLayersModel('file://' + folder + '/model.json');
out.reloaded = take(loaded.predict(input));
out.savedFiles = require_fs.readdirSync(folder).sort();
// q attends keys [1, 0] and [0, 1] with scale 1/sqrt(2); the test computes the expected values itself.
const q = tf.tensor3d([[[1, 0]]]), k = tf.tensor3d([[[1, 0], [0, 1]]]), v = tf.tensor3d([[[1, 2], [3, 4]]]);
out.opCpu = take(tfa.dotProductAttention(q, k, v));
out.auto = await tfa.selectBackend('auto');
if (WITH_WASM) {
  out.wasm = await tfa.selectBackend('wasm');
  out.opWasm = take(tfa.dotProductAttention(q, k, v));
  out.fusedKernelRan = tf.getKernel('TfjsAttentionFusedAttention', 'wasm') != null;
  out.layerWasm = take(model.predict(input));
} else {
  await tfa.selectBackend('cpu');
  const beforeError = tf.memory().numTensors;
  out.wasmError = await tfa.selectBackend('wasm').then(() => null, error => error.constructor.name + ': ' + error.message);
  out.backendAfterError = tf.getBackend();
  out.leakedByError = tf.memory().numTensors - beforeError;
}
await tfa.selectBackend('cpu');
for (const t of [input, q, k, v]) t.dispose();
model.dispose();
loaded.dispose();
out.leaked = tf.memory().numTensors - before;
console.log('RESULT ' + JSON.stringify(out));
`;

/** The same consumer as a CommonJS file. */
function cjsConsumer(withWasm: boolean): string {
  return `const tf = require('@tensorflow/tfjs');
const tfa = require('tfjs-attention');
const tfaNode = require('tfjs-attention/node');
const require_fs = require('fs'), require_path = require('path');
const RESOLVED = require.resolve('tfjs-attention'), WITH_WASM = ${withWasm};
(async () => {${CONSUMER_BODY}})().catch(error => { console.error(error.stack); process.exit(1); });
`;
}

/** The same consumer as an ES module (.mjs). */
function esmConsumer(withWasm: boolean): string {
  return `import * as tf from '@tensorflow/tfjs';
import * as tfa from 'tfjs-attention';
import * as tfaNode from 'tfjs-attention/node';
import * as require_fs from 'fs';
import * as require_path from 'path';
import {fileURLToPath} from 'url';
const RESOLVED = fileURLToPath(import.meta.resolve('tfjs-attention')), WITH_WASM = ${withWasm};
${CONSUMER_BODY}`;
}

/** dotProductAttention of q = [1, 0] over keys [1, 0], [0, 1] and values [1, 2], [3, 4], by hand. */
function expectedOp(): number[][][] {
  const p = Math.exp(1 / Math.sqrt(2)) / (Math.exp(1 / Math.sqrt(2)) + Math.exp(0));  // weight of the first key
  return [[[1 * p + 3 * (1 - p), 2 * p + 4 * (1 - p)]]];
}

function expectClose(actual: number[][][], expected: number[][][], tolerance: number): void {
  const a = actual.flat(2), e = expected.flat(2);
  expect(a).toHaveLength(e.length);
  const worst = Math.max(...a.map((x, i) => Math.abs(x - e[i])));
  expect(worst).toBeLessThanOrEqual(tolerance);
}

/** What every consumer shares, whatever its module format and backends. */
function expectWorkingConsumer(report: Record<string, any>, resolved: string): void {
  expect(fs.realpathSync(report.resolved)).toBe(fs.realpathSync(resolved));
  expect(report.kinds).toEqual(Object.fromEntries([...PUBLIC_NAMES, ...NODE_NAMES].map(name => [name, 'function'])));
  expect(report.oneInstance).toBe(true);
  expect(report.fileHandlers).toBe(1);  // the file:// handler, with no extra line
  expect(report.registered).toBe(true);
  expect(report.cpu).toBe('cpu');
  expect(report.prediction[0]).toHaveLength(3);
  expect(report.prediction[0][0]).toHaveLength(2 * 2);
  expect(report.prediction.flat(2).every(Number.isFinite)).toBe(true);
  expect(report.reloaded).toEqual(report.prediction);
  expect(report.savedFiles).toEqual(['model.json', expect.stringMatching(/^weights-[0-9a-f]{16}\.bin$/)]);
  expectClose(report.opCpu, expectedOp(), 1e-6);
  expect(report.leaked).toBe(0);
}

describe("the library's imports, walked from its entries (src/index.ts, node.ts, keras.ts, keras_node.ts)", () => {
  it('no file reachable from a browser-safe entry imports a Node built-in, an optional peer or the app; only the Keras entries reach fflate and h5wasm; nothing in src/ imports scripts/ or test/; every file of src/ belongs to an entry', () => {
    expect(libraryViolations(REPO)).toEqual([]);
    const main = reachableFrom(['index.ts', 'node.ts'].map(file => path.join(REPO, 'src', file)));
    expect(main.files.has(path.join(REPO, 'src', 'keras', 'hdf5_library.ts'))).toBe(false);
    const keras = reachableFrom([path.join(REPO, 'src', 'keras.ts')]);
    expect(keras.files.has(path.join(REPO, 'src', 'keras', 'hdf5_library.ts'))).toBe(true);
  });

  it('the example app reaches the library only through scripts/app/tfjs_attention{,_node}.ts, and the demo page imports no Node built-in', () => {
    expect(appViolations(REPO)).toEqual([]);
  });

  it('the walk sees the Node built-ins where they are: src/node.ts (worker_threads) and the file:// handler it registers (fs)', () => {
    const node = reachableFrom([path.join(REPO, 'src', 'node.ts')]);
    const builtins = new Set(node.edges.map(e => e.specifier));
    expect([...builtins]).toEqual(expect.arrayContaining(['worker_threads', 'fs', 'path', 'crypto', 'os']));
    expect(node.files.has(path.join(REPO, 'src', 'io', 'file_system_io.ts'))).toBe(true);
    const browser = reachableFrom([path.join(REPO, 'src', 'index.ts')]);
    expect(browser.files.has(path.join(REPO, 'src', 'attention', 'scaled_dot_product_attention.ts'))).toBe(true);
    expect(browser.files.has(path.join(REPO, 'src', 'io', 'file_system_io.ts'))).toBe(false);
  });

  it('reports each kind of violation, on a small tree built to break every rule', () => {
    const root = path.join(tmp, 'bad-tree');
    const write = (file: string, text: string) => {
      fs.mkdirSync(path.dirname(path.join(root, file)), {recursive: true});
      fs.writeFileSync(path.join(root, file), text);
    };
    write('src/index.ts', "export * from './a';\nimport './missing';\n");
    write('src/keras.ts', "import {zipSync} from 'fflate';\nexport {zipSync};\n");
    write('src/a.ts', "import * as fs from 'node:fs';\nimport {x} from '../scripts/app/x';\nimport 'fflate';\n" +
                      "const w = `require('worker_threads')`;\nexport const load = (id: string) => require(id);\nexport {fs, x, w};\n");
    write('src/node.ts', "export * from './index';\nimport '@tensorflow/tfjs-backend-wasm';\n");
    write('src/orphan.ts', "export const o = 1;\n");
    write('scripts/app/x.ts', "export const x = 1;\n");
    write('scripts/app/tfjs_attention.ts', "export * from '../../src/index';\n");
    write('scripts/run.ts', "import {load} from '../src/a';\nexport {load};\n");
    write('scripts/app/demo/main.ts', "import * as path from 'path';\nimport '../tfjs_attention';\nexport {path};\n");
    const entries = [
      {file: 'index.ts', browserSafe: true, packages: ['@tensorflow/tfjs']},
      {file: 'node.ts', browserSafe: false, packages: ['@tensorflow/tfjs']},
      {file: 'keras.ts', browserSafe: true, packages: ['@tensorflow/tfjs', 'fflate']},
    ];
    expect(libraryViolations(root, entries).sort()).toEqual([
      'src/a.ts (reachable from src/index.ts) imports a module it names at run time: id',
      'src/a.ts (reachable from src/index.ts) imports the Node built-in "node:fs"',
      'src/a.ts (reachable from src/index.ts) imports the package "fflate"',
      'src/a.ts (reachable from src/node.ts) imports the package "fflate"',
      'src/a.ts imports "../scripts/app/x", outside src/: scripts/app/x.ts',
      'src/index.ts imports "./missing", which resolves to no .ts file',
      'src/node.ts (reachable from src/node.ts) imports the package "@tensorflow/tfjs-backend-wasm"',
      'src/orphan.ts is reachable from no entry (src/index.ts, src/node.ts, src/keras.ts)',
    ]);
    expect(appViolations(root).sort()).toEqual([
      'scripts/app/demo/main.ts (in the demo page) imports the Node built-in "path"',
      "scripts/run.ts imports the library's src/a.ts directly, not through scripts/app/tfjs_attention.ts or scripts/app/tfjs_attention_node.ts",
      'src/a.ts (in the demo page) imports the Node built-in "node:fs"',  // through the library's entry
    ]);
  });
});

describe('"sideEffects" in package.json', () => {
  /** Whether `file` (./-relative) matches one of package.json's sideEffects globs, as bundlers read them. */
  function declared(patterns: string[], file: string): boolean {
    return patterns.some(pattern => new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*/g, '\u0000').replace(/\*/g, '[^/]*').replace(/\u0000/g, '.*')}$`).test(file));
  }

  it('lists every library file that does something on import (a top-level call: a registration), as source and as CJS build', () => {
    const patterns = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')).sideEffects as string[];
    const withEffects = tsFilesUnder(path.join(REPO, 'src')).filter(file => {
      const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
      return source.statements.some(statement => ts.isExpressionStatement(statement));
    }).map(file => path.relative(path.join(REPO, 'src'), file).replace(/\.ts$/, ''));
    // Found by parsing, so a new registration elsewhere fails here until it is declared.
    expect(withEffects).toEqual(expect.arrayContaining(['index', 'node', 'attention/scaled_dot_product_attention', 'layers/position_embedding']));
    for (const stem of withEffects) {
      expect({stem, source: declared(patterns, `./src/${stem}.ts`), cjs: declared(patterns, `./dist/cjs/${stem}.js`)})
          .toEqual({stem, source: true, cjs: true});
    }
    for (const file of fs.readdirSync(path.join(REPO, 'dist', 'esm')).filter(f => f.endsWith('.js'))) {
      expect({file, declared: declared(patterns, `./dist/esm/${file}`)}).toEqual({file, declared: true});  // the shared chunk registers
    }
    expect(declared(patterns, './src/errors.ts')).toBe(false);  // the rest may be dropped when unused
  });
});

describe('the tarball of `npm pack`', () => {
  it('holds only the library build (dist/cjs, dist/esm), its types, README, LICENSE and package.json', () => {
    const library = /^dist\/cjs\/[a-z0-9_/.]+\.(js|d\.ts)$|^dist\/esm\/[A-Za-z0-9_-]+\.(js|d\.ts)$|^dist\/esm\/package\.json$/;
    expect(packedFiles.filter(f => !library.test(f) && !['package.json', 'README.md', 'LICENSE'].includes(f))).toEqual([]);
    expect(packedFiles.filter(f => /park|corpus|cli|bench|demo|plots|scripts|^src\/|^test\//.test(f))).toEqual([]);
    // Every library source (src/, walked here, not taken from the build) ships as CJS code and declarations; the C
    // kernels ship compiled, inside kernels_wasm.generated.js, never as C.
    const sources = (function list(dir: string): string[] {
      return fs.readdirSync(dir, {withFileTypes: true}).flatMap(e =>
        e.isDirectory() ? list(path.join(dir, e.name)) : [path.relative(path.join(REPO, 'src'), path.join(dir, e.name))]);
    })(path.join(REPO, 'src'));
    expect(sources.filter(f => f.endsWith('.c')).length).toBeGreaterThan(0);
    expect(packedFiles.filter(f => /\.[ch]$/.test(f))).toEqual([]);
    for (const source of sources.filter(f => f.endsWith('.ts'))) {
      const stem = source.replace(/\.ts$/, '');
      expect(packedFiles).toEqual(expect.arrayContaining([`dist/cjs/${stem}.js`, `dist/cjs/${stem}.d.ts`]));
    }
    expect(packedFiles).toEqual(expect.arrayContaining([
      'LICENSE', 'README.md', 'package.json', 'dist/esm/package.json',
      ...['index', 'node', 'keras', 'keras_node'].flatMap(entry => [`dist/esm/${entry}.js`, `dist/esm/${entry}.d.ts`])]));
    expect(fs.readFileSync(path.join(REPO, 'LICENSE'), 'utf8')).toMatch(/Apache License\s+Version 2\.0, January 2004/);
  });

  it('declares tfjs a peer, tfjs-backend-wasm and tfjs-node optional peers, the Keras entry\'s fflate and h5wasm dependencies, and nothing that an install downloads', () => {
    const dir = path.join(tmp, 'manifest');
    const installed = unpackInto(dir);
    const pkg = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'));
    expect(pkg.peerDependencies).toEqual({
      '@tensorflow/tfjs': '^4.22.0', '@tensorflow/tfjs-backend-wasm': '^4.22.0', '@tensorflow/tfjs-node': '^4.22.0',
    });
    expect(pkg.peerDependenciesMeta).toEqual({
      '@tensorflow/tfjs-backend-wasm': {optional: true}, '@tensorflow/tfjs-node': {optional: true},
    });
    // Plain JavaScript and WebAssembly, with no install script: nothing is downloaded or built on install.
    expect(Object.keys(pkg.dependencies).sort()).toEqual(['fflate', 'h5wasm']);
    for (const name of Object.keys(pkg.dependencies)) {
      const manifest = JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules', name, 'package.json'), 'utf8'));
      expect({name, scripts: Object.keys(manifest.scripts ?? {}).filter(s => /install/.test(s))}).toEqual({name, scripts: []});
    }
    expect(pkg.optionalDependencies).toBeUndefined();
    expect(pkg.license).toBe('Apache-2.0');
    // The repo's own tests run tfjs-backend-wasm at a version inside the declared range.
    const wasm = JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'package.json'), 'utf8'));
    expect(wasm.version).toMatch(/^4\.(2[2-9]|[3-9]\d)\./);
  });
});

describe('Node consumers of the unpacked tarball, with @tensorflow/tfjs-backend-wasm installed', () => {
  let dir = '';
  let installed = '';
  beforeAll(() => {
    dir = path.join(tmp, 'with-wasm');
    installed = linkedConsumer(dir);
  });

  for (const [kind, file, build] of [['require (CommonJS)', 'app.cjs', 'cjs'], ['import (ESM)', 'app.mjs', 'esm']]) {
    it(`${kind}: the node build; the layer runs, file:// saves and loads with no extra line, the op matches by hand on cpu and on wasm's fused kernel`, () => {
      const report = runNode(dir, file, build === 'cjs' ? cjsConsumer(true) : esmConsumer(true));
      expectWorkingConsumer(report, path.join(installed, 'dist', build, 'node.js'));
      expect(report.auto).toBe('wasm');  // no tfjs-node here
      expect(report.wasm).toBe('wasm');
      expect(report.fusedKernelRan).toBe(true);
      expectClose(report.opWasm, expectedOp(), 1e-5);
      expectClose(report.layerWasm, report.prediction, 1e-4);
    });
  }

  /** What a consumer of tfjs-attention/keras reports: the entry it resolved, Keras' fixture predicted, a save and reload. */
  const KERAS_BODY = (resolved: string) => `
const out = {resolved: ${resolved}};
const model = await loadKerasModel(FIXTURE);
out.layers = model.layers.map(layer => layer.getClassName());
out.oneInstance = model.layers.find(layer => layer.getClassName() === 'MultiHeadAttention') instanceof tfa.MultiHeadAttention;
const x = tf.tensor(INPUT.values, INPUT.shape);
const y = model.predict(x);
out.prediction = Array.from(y.dataSync());
const bytes = await saveKerasModel(model, 'saved.keras');
out.savedSize = [bytes.length, require_fs.statSync('saved.keras').size];
const again = await loadKerasModel('saved.keras');
const y2 = again.predict(x);
out.again = Array.from(y2.dataSync());
tf.dispose([x, y, y2]);
model.dispose();
again.dispose();
console.log('RESULT ' + JSON.stringify(out));
`;

  for (const [kind, file, build] of [['require (CommonJS)', 'keras.cjs', 'cjs'], ['import (ESM)', 'keras.mjs', 'esm']]) {
    it(`${kind} of tfjs-attention/keras: the keras_node build loads a Keras 3 .keras archive (h5wasm, fflate), predicts as Keras, saves and reloads`, () => {
      const fixture = JSON.stringify(kerasCasePath('transformer_block', 'model.keras'));
      const input = JSON.stringify(readKerasInputs('transformer_block')[0]);
      const source = build === 'cjs' ?
          `const tf = require('@tensorflow/tfjs');
const tfa = require('tfjs-attention');
const {loadKerasModel, saveKerasModel} = require('tfjs-attention/keras');
const require_fs = require('fs');
const FIXTURE = ${fixture}, INPUT = ${input};
(async () => {${KERAS_BODY("require.resolve('tfjs-attention/keras')")}})().catch(error => { console.error(error.stack); process.exit(1); });
` :
          `import * as tf from '@tensorflow/tfjs';
import * as tfa from 'tfjs-attention';
import {loadKerasModel, saveKerasModel} from 'tfjs-attention/keras';
import * as require_fs from 'fs';
import {fileURLToPath} from 'url';
const FIXTURE = ${fixture}, INPUT = ${input};
${KERAS_BODY("fileURLToPath(import.meta.resolve('tfjs-attention/keras'))")}`;
      const report = runNode(dir, file, source);
      expect(report.resolved).toBe(path.join(installed, 'dist', build, 'keras_node.js'));
      expect(report.layers).toContain('MultiHeadAttention');
      expect(report.oneInstance).toBe(true);
      expectAllClose(report.prediction, readKerasExpected('transformer_block')[0].values, 1e-4);
      expect(report.savedSize[0]).toBe(report.savedSize[1]);
      expectAllClose(report.again, report.prediction, 1e-5);
    });
  }

  it('the browser-safe entry loaded by itself in Node: no file:// handler, and selectBackend("wasm") asks the app to import the backend', () => {
    const report = runNode(dir, 'browser_entry.cjs', `const tf = require('@tensorflow/tfjs');
const tfa = require('./node_modules/tfjs-attention/dist/cjs/index.js');
(async () => {
  const out = {fileSystem: typeof tfa.fileSystem, handlers: tf.io.getSaveHandlers('file:///tmp/x').length};
  out.before = await tfa.selectBackend('wasm').then(() => null, error => error.message);
  require('@tensorflow/tfjs-backend-wasm');  // what a browser app does
  out.after = await tfa.selectBackend('wasm');
  console.log('RESULT ' + JSON.stringify(out));
})().catch(error => { console.error(error.stack); process.exit(1); });
`);
    expect(report).toEqual({
      fileSystem: 'undefined', handlers: 0, after: 'wasm',
      before: 'Backend "wasm" could not be started here (import \'@tensorflow/tfjs-backend-wasm\' in your app first). Received: name="wasm"',
    });
  });

  it('TypeScript consumers get the types of each entry: node16 (CJS .ts, ESM .mts) sees the Node API; bundler resolution sees the browser-safe one', () => {
    fs.writeFileSync(path.join(dir, 'tsconfig.node.json'), JSON.stringify({
      compilerOptions: {module: 'node16', moduleResolution: 'node16', target: 'ES2020', strict: true, noEmit: true,
                        skipLibCheck: true, types: [], lib: ['ES2020', 'DOM']},
      files: ['consumer.ts', 'consumer.mts'],
    }));
    fs.writeFileSync(path.join(dir, 'tsconfig.bundler.json'), JSON.stringify({
      compilerOptions: {module: 'esnext', moduleResolution: 'bundler', target: 'ES2020', strict: true, noEmit: true,
                        skipLibCheck: true, types: [], lib: ['ES2020', 'DOM']},
      files: ['browser.ts'],
    }));
    const consumer = `import * as tf from '@tensorflow/tfjs';
import {ScaledDotProductAttention, scaledDotProductAttention, dotProductAttention, selectBackend, fileSystem} from 'tfjs-attention';
import {FileSystemIO} from 'tfjs-attention/node';
import type {ScaledDotProductAttentionArgs, BackendName} from 'tfjs-attention';
const args: ScaledDotProductAttentionArgs = {numHeads: 2, keyDim: 4, causal: true};
const layer: ScaledDotProductAttention = scaledDotProductAttention(args);
const asLayer: tf.layers.Layer = layer;
const backend: BackendName = 'wasm';
const active: Promise<string> = selectBackend(backend);
const out: tf.Tensor = dotProductAttention(tf.ones([1, 2, 4]), tf.ones([1, 3, 4]), tf.ones([1, 3, 5]));
const io: FileSystemIO = fileSystem('/tmp/model');
export {asLayer, active, out, io};
// @ts-expect-error numHeads is a number
scaledDotProductAttention({numHeads: 'two'});
`;
    fs.writeFileSync(path.join(dir, 'consumer.ts'), consumer);
    fs.writeFileSync(path.join(dir, 'consumer.mts'), consumer);
    fs.writeFileSync(path.join(dir, 'browser.ts'), `import {scaledDotProductAttention, selectBackend} from 'tfjs-attention';
// @ts-expect-error the browser-safe entry has no file:// API
import {fileSystem} from 'tfjs-attention';
export const layer = scaledDotProductAttention({numHeads: 1, keyDim: 2});
export const active: Promise<string> = selectBackend('webgl');
export {fileSystem};
`);
    for (const project of ['tsconfig.node.json', 'tsconfig.bundler.json']) {
      const tsc = spawnSync(process.execPath, [path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], {
        cwd: dir, encoding: 'utf8', timeout: 120000,
      });
      expect({project, output: tsc.stdout + tsc.stderr, status: tsc.status}).toEqual({project, output: '', status: 0});
    }
  });
});

describe('without @tensorflow/tfjs-backend-wasm (an optional peer): a fresh `npm install` of the tarball and tfjs', () => {
  let dir = '';
  beforeAll(() => {
    dir = path.join(tmp, 'fresh');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({name: 'fresh-consumer', version: '1.0.0', private: true}));
    // --prefer-offline: from npm's local cache, which \`npm ci\` filled with these packages' tarballs; their registry
    // entries, which it does not keep (a new machine's cache lacks them), from the registry.
    const install = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, '@tensorflow/tfjs@4.22.0'], {
      cwd: dir, encoding: 'utf8', timeout: 240000, env: {...process.env, npm_config_loglevel: 'error'},
    });
    if (install.status !== 0) throw new Error(`npm install --prefer-offline failed (status ${install.status}):\n${install.stderr}`);
  }, 300000);

  it('`npm ls` shows no tfjs-node (nor its download helper) and no tfjs-backend-wasm installed', () => {
    const top = spawnSync('npm', ['ls'], {cwd: dir, encoding: 'utf8', timeout: 60000});
    expect(top.status).toBe(0);  // no problem: no required peer is missing
    expect(top.stdout).toMatch(/tfjs-attention@0\.1\.0/);
    expect(top.stdout).not.toMatch(/tfjs-node|tfjs-backend-wasm/);
    const tree = spawnSync('npm', ['ls', '--all'], {cwd: dir, encoding: 'utf8', timeout: 60000});
    // The optional peers appear only as what they are: declared, not installed.
    expect(tree.stdout.split('\n').filter(l => /tfjs-node|tfjs-backend-wasm/.test(l)).map(l => l.replace(/^[\s│├└─┬]+/, '')).sort())
        .toEqual(['UNMET OPTIONAL DEPENDENCY @tensorflow/tfjs-backend-wasm@^4.22.0', 'UNMET OPTIONAL DEPENDENCY @tensorflow/tfjs-node@^4.22.0']);
    const ls = spawnSync('npm', ['ls', '@tensorflow/tfjs-node'], {cwd: dir, encoding: 'utf8', timeout: 60000});
    expect(ls.stdout).toMatch(/\(empty\)/);
    expect(ls.stdout).not.toMatch(/tfjs-node@/);
    const all = spawnSync('npm', ['ls', '--all', '--parseable'], {cwd: dir, encoding: 'utf8', timeout: 60000});
    const paths = all.stdout.split('\n').filter(Boolean).map(p => path.relative(dir, p));
    expect(paths).toEqual(expect.arrayContaining(['node_modules/tfjs-attention', 'node_modules/@tensorflow/tfjs']));
    expect(paths.filter(p => /tfjs-node|node-pre-gyp|tfjs-backend-wasm/.test(p))).toEqual([]);
    expect(fs.existsSync(path.join(dir, 'node_modules', '@tensorflow', 'tfjs-node'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'node_modules', '@tensorflow', 'tfjs-backend-wasm'))).toBe(false);
  });

  for (const [kind, file, build] of [['require (CommonJS)', 'app.cjs', 'cjs'], ['import (ESM)', 'app.mjs', 'esm']]) {
    it(`${kind}: imports, runs on cpu with file:// save and load, and selectBackend("wasm") says to install it (nothing leaks)`, () => {
      const report = runNode(dir, file, build === 'cjs' ? cjsConsumer(false) : esmConsumer(false));
      expectWorkingConsumer(report, path.join(dir, 'node_modules', 'tfjs-attention', 'dist', build, 'node.js'));
      expect(report.auto).toBe('cpu');
      expect(report.wasmError).toBe(
          'ValueError: Backend "wasm" could not be started here (is @tensorflow/tfjs-backend-wasm installed?). Received: name="wasm"');
      expect(report.backendAfterError).toBe('cpu');
      expect(report.leakedByError).toBe(0);
    });
  }
});
