/**
 * tfjs-attention as browser apps get it (issue 10): `npm pack` of the repo, unpacked into a
 * throwaway app's node_modules (tfjs and the bundlers linked from this repo's install), and
 * the app in test/consumers/browser-app built twice, by Vite and by esbuild for
 * `platform: 'browser'`. Neither build may pull in a Node built-in, and the app type-checks
 * against the tarball's declarations. Each build is served from 127.0.0.1 with the
 * tfjs-backend-wasm binaries and a model saved in Node with model.save('file://…'), and
 * opened in headless Chromium (WebGL and WebGPU on SwiftShader): on webgl, wasm and webgpu
 * the page shows a layer's output and input gradient, which must
 * match the layer in Node on cpu (this process, same weights and inputs) within 1e-4, the
 * wasm one through the fused kernel; and the saved model loads with tf.loadLayersModel and
 * predicts what Node predicted within 1e-4; and a Keras 3 `.keras` archive, fetched as a Blob (what
 * a file input gives), loads with tfjs-attention/keras' loadKerasModel and predicts what Keras
 * predicted and what Node's loadKerasModel predicts, within 1e-4. The README's browser example (the `js` block under
 * its `<!-- browser-example -->` marker) is built the same way, as a Vite app's main.js, and shows
 * the layer's output shape on webgl and wasm. Also: the minified size of the library's own
 * browser code (tfjs excluded) stays under a budget.
 *
 * Without Chromium the page tests fail unless SKIP_BROWSER=1 skips them (test/helpers/chromium.ts);
 * the builds and the size check run either way.
 */
import * as fs from 'fs';
import * as http from 'http';
import {isBuiltin} from 'module';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import * as tf from '@tensorflow/tfjs';
import * as esbuild from 'esbuild';
import type {Browser, Page} from 'playwright-core';
import {scaledDotProductAttention} from '../src';
import {loadKerasModel} from '../src/keras_node';
import type {BrowserBackend, KerasInput, KerasResult, LayerCase, LayerResult, ModelResult} from './consumers/browser-app/api';
import {describeInBrowser, launchChromium} from './helpers/chromium';
import {inputTensors, kerasCasePath, readKerasExpected, readKerasInputs} from './helpers/keras_fixtures';
import {installTarball, linkFromRepo, packRepo, REPO, runIn} from './helpers/packed_package';
import {referenceAttention, ReferenceWeights} from './helpers/reference_attention';
import {expectClose, Nested, randomArray} from './helpers/tensors';

const APP_SOURCE = path.join(__dirname, 'consumers', 'browser-app');
const BUNDLERS = ['vite', 'esbuild'] as const;
type Bundler = typeof BUNDLERS[number];
const BACKENDS: BrowserBackend[] = ['webgl', 'wasm', 'webgpu'];
/** Browser against Node (cpu) results. */
const TOLERANCE = 1e-4;
/** The kernel that the layer's inference on wasm runs when it takes the fused path (tf.profile names it). */
const FUSED_KERNEL = 'TfjsAttentionFusedLayer';
/**
 * The library's own browser code, minified, tfjs excluded (esbuild, `export * from
 * 'tfjs-attention'`, @tensorflow/* external): measured 65,416 bytes (23,534 gzipped) on
 * 2026-11-30; 86,014 (29,318 gzipped) the same day with MultiHeadAttention in the main entry
 * (about 17 kB: it registers on import, so no bundler drops it); 104,688 (37,351 gzipped) with
 * Cropping1D, the C kernels' module and the fused backward (issue 13), the budget raised then
 * to ~15% above; 122,420 (44,294 gzipped) on 2026-12-01, after the fused kernels took padding
 * masks and the layer's inference its projections on two threads, the budget raised then to
 * ~10% above; 127,007 (46,334 gzipped) the same day with the layer's training step on two threads;
 * 134,991 (46,950 gzipped) with the relaxed-SIMD build of the backward kernel (7.4 kB of base64), the
 * budget raised then to ~10% above. Raise it deliberately, with the README's "Bundle size" line, when
 * the library grows.
 */
const BUNDLE_BUDGET = 150_000;

/** The README's browser example: the ```js block right after its `<!-- browser-example: ... -->` marker. */
function readmeBrowserExample(): string {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const match = /<!-- browser-example:[^>]*-->\s*```js\n([\s\S]*?)```/.exec(readme);
  if (match == null) throw new Error('README.md has no ```js block after a <!-- browser-example: ... --> marker');
  return match[1];
}

/** Values as float32 holds them, so that the plain-array reference sees what tfjs holds. */
function float32(x: Nested): Nested {
  return Array.isArray(x) ? x.map(float32) : Math.fround(x);
}

interface Build {
  ok: boolean;
  ms: number;
  /** What went wrong, or the bundler's warnings. */
  log: string;
  /** esbuild only: what went into the bundle. */
  metafile?: esbuild.Metafile;
  /** The bundle's JavaScript. */
  code: string;
}

/** A static server for `root` on 127.0.0.1 (a random port). */
async function serveFolder(root: string): Promise<{url: string; close: () => Promise<void>}> {
  const types: Record<string, string> = {
    '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json',
    '.bin': 'application/octet-stream', '.css': 'text/css',
  };
  const server = http.createServer((request, response) => {
    const file = path.join(root, decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname));
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      response.writeHead(404).end('not found');
      return;
    }
    response.writeHead(200, {'content-type': types[path.extname(file)] ?? 'application/octet-stream'});
    fs.createReadStream(file).pipe(response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const {port} = server.address() as {port: number};
  return {url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve()))};
}

let tmp = '';
let app = '';           // the consumer app: its sources and node_modules
let readmeApp = '';     // the README's browser example as a Vite app (node_modules shared with app)
let site = '';          // what the server serves: vite/, esbuild/, readme/, wasm/, model/
const builds: Partial<Record<Bundler|'readme', Build>> = {};
const record: string[] = [];

async function buildWithEsbuild(): Promise<Build> {
  const started = Date.now();
  const outdir = path.join(site, 'esbuild');
  try {
    // What an app's build script passes esbuild for a browser page.
    const result = await esbuild.build({
      absWorkingDir: app, entryPoints: ['main.ts'], outdir, bundle: true, platform: 'browser', format: 'esm',
      minify: true, metafile: true, logLevel: 'silent',
    });
    fs.writeFileSync(path.join(outdir, 'index.html'),
                     fs.readFileSync(path.join(app, 'index.html'), 'utf8').replace('./main.ts', './main.js'));
    return {
      ok: true, ms: Date.now() - started, metafile: result.metafile, code: fs.readFileSync(path.join(outdir, 'main.js'), 'utf8'),
      log: result.warnings.map((w) => w.text).join('\n'),
    };
  } catch (error) {
    const errors = (error as esbuild.BuildFailure).errors ?? [];
    const log = errors.length > 0 ?
        errors.map((e) => `${e.location?.file ?? ''}:${e.location?.line ?? ''}: ${e.text}`).join('\n') : String(error);
    return {ok: false, ms: Date.now() - started, log, code: ''};
  }
}

/** `npx vite build` in `root` (with its vite.config.mjs, if any; pages served from a subfolder, hence base ./). */
async function buildWithVite(root: string, outDir: string): Promise<Build> {
  const result = await runIn(root, process.execPath, [path.join(root, 'node_modules', 'vite', 'bin', 'vite.js'), 'build',
    '--base', './', '--outDir', outDir, '--emptyOutDir'], 300_000);
  const assets = path.join(outDir, 'assets');
  const code = fs.existsSync(assets) ?
      fs.readdirSync(assets).filter((f) => f.endsWith('.js')).map((f) => fs.readFileSync(path.join(assets, f), 'utf8')).join('\n') : '';
  return {ok: result.status === 0 && code !== '', ms: result.ms, log: result.output, code};
}

beforeAll(async () => {
  const started = Date.now();
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-attention-browser-consumer-')));
  app = path.join(tmp, 'app');
  site = path.join(tmp, 'site');
  fs.cpSync(APP_SOURCE, app, {recursive: true});
  // npm pack packs dist/ as test/global_setup.js built it.
  const build = JSON.parse(fs.readFileSync(path.join(REPO, 'dist', 'build-result.json'), 'utf8'));
  if (build.status !== 0) throw new Error(`\`npm run build\` failed, so there is nothing to pack:\n${build.output}`);
  const tarball = await packRepo(path.join(tmp, 'pack'));
  await installTarball(tarball, app);
  linkFromRepo(app, ['@tensorflow', 'vite']);
  // The .wasm files, served at /wasm/ where the app's setWasmPaths points, as a real app would copy them.
  const wasmDist = path.join(app, 'node_modules', '@tensorflow', 'tfjs-backend-wasm', 'dist');
  fs.mkdirSync(path.join(site, 'wasm'), {recursive: true});
  for (const file of fs.readdirSync(wasmDist).filter((f) => f.endsWith('.wasm'))) {
    fs.copyFileSync(path.join(wasmDist, file), path.join(site, 'wasm', file));
  }
  record.push(`pack and install: ${Date.now() - started} ms`);
  builds.esbuild = await buildWithEsbuild();
  builds.vite = await buildWithVite(app, path.join(site, 'vite'));
  // The README's example as the main.js of a Vite app (`npm create vite@latest`, vanilla: index.html loads /main.js).
  readmeApp = path.join(tmp, 'readme-app');
  fs.mkdirSync(readmeApp);
  fs.symlinkSync(path.join(app, 'node_modules'), path.join(readmeApp, 'node_modules'), 'dir');
  fs.writeFileSync(path.join(readmeApp, 'main.js'), readmeBrowserExample());
  fs.writeFileSync(path.join(readmeApp, 'index.html'),
                   '<!doctype html>\n<html lang="en">\n  <head><meta charset="UTF-8"><title>Vite App</title></head>\n' +
                   '  <body>\n    <script type="module" src="/main.js"></script>\n  </body>\n</html>\n');
  builds.readme = await buildWithVite(readmeApp, path.join(site, 'readme'));
  record.push(`esbuild: ${builds.esbuild.ms} ms, vite: ${builds.vite.ms} ms, vite (README example): ${builds.readme.ms} ms`);
}, 300_000);

afterAll(() => {
  if (tmp && process.env.KEEP_CONSUMER !== '1') fs.rmSync(tmp, {recursive: true, force: true});
  if (record.length > 0) console.log(`browser consumer suite:\n  ${record.join('\n  ')}`);
});

describe('the browser app builds from the packed tarball with no Node built-in', () => {
  it('esbuild (platform browser) bundles it; the library\'s modules come from the tarball\'s ESM build and import no Node built-in', () => {
    const build = builds.esbuild!;
    if (!build.ok) throw new Error(`esbuild could not bundle the app for the browser:\n${build.log}`);
    const inputs = Object.entries(build.metafile!.inputs);
    const library = inputs.filter(([file]) => file.includes('node_modules/tfjs-attention/'));
    expect(library.length).toBeGreaterThan(0);
    // The browser's side of the conditional exports: the ES module build's main entry, never the Node entry.
    const libraryFiles = library.map(([file]) => file.slice(file.indexOf('node_modules/tfjs-attention/')));
    expect(libraryFiles).toContain('node_modules/tfjs-attention/dist/esm/index.js');
    expect(libraryFiles).toContain('node_modules/tfjs-attention/dist/esm/keras.js');
    expect(libraryFiles.filter((file) => !file.startsWith('node_modules/tfjs-attention/dist/esm/') || /\/(keras_)?node\.js$/.test(file))).toEqual([]);
    // Nothing from the repo's own sources: only the unpacked package.
    expect(inputs.filter(([file]) => path.resolve(app, file).startsWith(path.join(REPO, 'src') + path.sep))).toEqual([]);
    const libraryBuiltins = library.flatMap(([file, input]) =>
      input.imports.filter((i) => isBuiltin(i.original ?? i.path) || i.path.startsWith('(disabled)')).map((i) => `${file} -> ${i.original ?? i.path}`));
    expect(libraryBuiltins).toEqual([]);
    // Elsewhere (tfjs) built-ins appear only as empty stubs ("(disabled):fs") from a package's `browser` field.
    expect(inputs.map(([file]) => file).filter((file) => isBuiltin(file))).toEqual([]);
  });

  it('the app type-checks against the tarball\'s declarations (tsc, moduleResolution bundler, as its tsconfig.json says)', async () => {
    const tsc = await runIn(app, process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json']);
    expect(tsc.output).toBe('');
    expect(tsc.status).toBe(0);
  });

  it.each([['the app', 'vite'], ['the README\'s example', 'readme']] as const)('Vite bundles %s without externalizing any module for browser compatibility', (_, name) => {
    const build = builds[name]!;
    if (!build.ok) throw new Error(`vite build failed:\n${build.log}`);
    expect(build.log).toMatch(/built in/);  // the log is the build's, at the level that shows warnings
    // Vite swaps a Node built-in for an empty stub, warning "Module "fs" has been externalized for browser compatibility".
    expect(build.log).not.toMatch(/externalized for browser compatibility/);
    expect(build.code).toContain('ScaledDotProductAttention');  // the layer's class name, registered for loading
  });

  it(`the library's minified browser code, tfjs excluded, stays within ${BUNDLE_BUDGET} bytes`, async () => {
    const result = await esbuild.build({
      absWorkingDir: app, stdin: {contents: 'export * from \'tfjs-attention\';', resolveDir: app, loader: 'js'},
      bundle: true, platform: 'browser', format: 'esm', minify: true, external: ['@tensorflow/*'],
      metafile: true, write: false, logLevel: 'silent',
    });
    const inputs = Object.keys(result.metafile.inputs).filter((file) => file !== '<stdin>');
    expect(inputs.filter((file) => !file.includes('node_modules/tfjs-attention/'))).toEqual([]);
    const bytes = result.outputFiles[0].contents.length;
    const gzipped = zlib.gzipSync(result.outputFiles[0].contents).length;
    record.push(`bundle size (library only, minified): ${bytes} bytes, ${gzipped} gzipped, ${inputs.length} modules; budget ${BUNDLE_BUDGET}`);
    expect(bytes).toBeLessThanOrEqual(BUNDLE_BUDGET);
  });
});

describeInBrowser('browser consumer suite')('the app\'s pages in headless Chromium on webgl, wasm and webgpu', () => {
  let browser: Browser;
  let server: {url: string; close: () => Promise<void>};
  const pages: Partial<Record<Bundler, Page>> = {};
  const pageErrors: string[] = [];
  let layerCase: LayerCase;
  let expected: {output: Nested; gradient: Nested};
  let modelInput: number[][][];
  let modelPrediction: number[][];
  /** The Keras fixture the pages load from a .keras archive, and what Node's loadKerasModel predicts for it. */
  const KERAS_CASE = 'transformer_block';
  let kerasInputs: KerasInput[];
  let kerasNode: number[][];

  beforeAll(async () => {
    const started = Date.now();
    browser = await launchChromium({webgpu: true});  // fails first when Chromium is missing
    for (const bundler of BUNDLERS) {
      if (!builds[bundler]!.ok) throw new Error(`The ${bundler} build failed (see its test above):\n${builds[bundler]!.log}`);
    }
    // The model, saved in Node by the installed package (a child process, as an app would).
    modelInput = float32(randomArray([2, 5, 6], 400)) as number[][][];
    fs.writeFileSync(path.join(tmp, 'model-case.json'), JSON.stringify({input: modelInput, seed: 7}));
    const saved = await runIn(app, process.execPath, ['save_model.cjs', path.join(tmp, 'model-case.json'), path.join(site, 'model')]);
    const line = saved.output.split('\n').find((l) => l.startsWith('RESULT '));
    if (saved.status !== 0 || line == null) throw new Error(`node save_model.cjs failed (status ${saved.status}):\n${saved.output}`);
    const node = JSON.parse(line.slice('RESULT '.length));
    expect(node.resolved.startsWith(path.join(app, 'node_modules', 'tfjs-attention') + path.sep)).toBe(true);
    expect(node.backend).toBe('cpu');
    expect(node.layers).toEqual(['InputLayer', 'PositionEmbedding', 'ScaledDotProductAttention', 'LastPosition', 'Dense']);
    modelPrediction = node.prediction;
    expect(fs.existsSync(path.join(site, 'model', 'model.json'))).toBe(true);

    // The layer's reference in this process on cpu, from seeded float32 values.
    expect(tf.getBackend()).toBe('cpu');
    const config = {numHeads: 2, keyDim: 4, valueDim: 3, useBias: true, outputDim: 5};
    const input = float32(randomArray([2, 5, 6], 101)) as number[][][];
    const probe = scaledDotProductAttention(config);
    tf.tidy(() => probe.apply(tf.zeros([2, 5, 6])) as tf.Tensor);  // builds it: the weights' names and shapes
    const names = probe.weights.map((w) => w.name.split('/').pop()!);
    const weights = probe.weights.map((w, i) => float32(randomArray(w.shape as number[], 200 + i)) as number[]|number[][]);
    probe.dispose();
    expect(names).toEqual(['wq', 'wk', 'wv', 'bq', 'bk', 'bv', 'wo', 'bo']);
    const cotangent = float32(randomArray([2, 5, 5], 300)) as number[][][];
    layerCase = {config, input, weights, cotangent};
    const layer = scaledDotProductAttention(config);
    tf.tidy(() => {
      const x = tf.tensor3d(input);
      const dy = tf.tensor3d(cotangent);
      tf.dispose(layer.apply(x) as tf.Tensor);
      layer.setWeights(weights.map((w) => tf.tensor(w)));
      expected = {
        output: (layer.apply(x) as tf.Tensor).arraySync() as Nested,
        gradient: tf.grad((xs: tf.Tensor) => tf.sum(tf.mul(layer.apply(xs) as tf.Tensor, dy)))(x).arraySync() as Nested,
      };
    });
    // The Node layer itself against the plain-array reference.
    const named = Object.fromEntries(names.map((name, i) => [name, weights[i]])) as unknown as ReferenceWeights;
    expectClose(expected.output, referenceAttention(input, null, named, {numHeads: 2}).output, 1e-5);
    layer.dispose();

    // A Keras 3 model as a .keras archive, served for the pages; Node's loadKerasModel of the same file on cpu.
    fs.mkdirSync(path.join(site, 'keras'), {recursive: true});
    fs.copyFileSync(kerasCasePath(KERAS_CASE, 'model.keras'), path.join(site, 'keras', 'model.keras'));
    kerasInputs = readKerasInputs(KERAS_CASE).map(({shape, dtype, values}) => ({shape, dtype, values}));
    const kerasModel = await loadKerasModel(kerasCasePath(KERAS_CASE, 'model.keras'));
    const xs = inputTensors(KERAS_CASE);
    const ys = [kerasModel.predict(xs.length === 1 ? xs[0] : xs)].flat();
    kerasNode = ys.map((y) => Array.from(y.dataSync()));
    tf.dispose([...xs, ...ys]);
    kerasModel.dispose();

    server = await serveFolder(site);
    for (const bundler of BUNDLERS) {
      const page = await browser.newPage();
      page.on('pageerror', (error) => pageErrors.push(`${bundler}: ${error.message}`));
      await page.goto(`${server.url}/${bundler}/index.html`);
      expect(await page.evaluate(() => window.consumerApp.ready)).toEqual(BACKENDS);
      pages[bundler] = page;
    }
    record.push(`pages ready (Node model and reference, server, browser): ${Date.now() - started} ms`);
    record.push(`WebGPU adapter: ${await pages.vite!.evaluate(async () => {
      const gpu = (navigator as unknown as {gpu?: {requestAdapter(): Promise<unknown>}}).gpu;
      const adapter = await gpu?.requestAdapter() as {info?: {vendor: string; architecture: string}}|null|undefined;
      return adapter == null ? 'none' : `${adapter.info?.vendor} ${adapter.info?.architecture}`;
    })}`);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  const runs = BUNDLERS.flatMap((bundler) => BACKENDS.map((backend) => [bundler, backend] as const));

  it.each(runs)('%s page, %s: the layer\'s output and input gradient match Node (cpu) within 1e-4', async (bundler, backend) => {
    const page = pages[bundler]!;
    const result: LayerResult = await page.evaluate(([b, c]) => window.consumerApp.runLayer(b, c), [backend, layerCase] as const);
    expect(result.backend).toBe(backend);
    expect(result.leaked).toBe(0);
    // What the page shows.
    const section = page.locator(`section[data-kind="layer"][data-backend="${backend}"]`).last();
    const shown = {
      output: JSON.parse((await section.locator('pre.output').textContent())!),
      gradient: JSON.parse((await section.locator('pre.gradient').textContent())!),
    };
    const outputDiff = expectClose(shown.output, expected.output, TOLERANCE);
    const gradientDiff = expectClose(shown.gradient, expected.gradient, TOLERANCE);
    // Inference on wasm runs the fused kernel; other backends never register it.
    if (backend === 'wasm') expect(result.kernels).toContain(FUSED_KERNEL);
    else expect(result.kernels).not.toContain(FUSED_KERNEL);
    record.push(`${bundler} ${backend} layer vs node cpu, max abs diff output ${outputDiff.toExponential(2)}, ` +
                `gradient ${gradientDiff.toExponential(2)}; forward kernels: ${result.kernels.join(', ')}`);
  }, 60_000);

  it.each(runs)('%s page, %s: the model saved in Node loads over HTTP and predicts the same within 1e-4', async (bundler, backend) => {
    const page = pages[bundler]!;
    const url = `${server.url}/model/model.json`;
    const result: ModelResult = await page.evaluate(([b, u, x]) => window.consumerApp.predictModel(b, u, x), [backend, url, modelInput] as const);
    expect(result.backend).toBe(backend);
    expect(result.leaked).toBe(0);
    const shown = JSON.parse((await page.locator(`section[data-kind="model"][data-backend="${backend}"] pre.prediction`).last().textContent())!);
    const diff = expectClose(shown, modelPrediction, TOLERANCE);
    record.push(`${bundler} ${backend} saved model vs node cpu, max abs diff ${diff.toExponential(2)}`);
  }, 60_000);

  it.each(runs)('%s page, %s: a .keras archive (Keras 3\'s transformer_block fixture), given to loadKerasModel as a Blob, predicts as Keras did and as Node does within 1e-4', async (bundler, backend) => {
    const page = pages[bundler]!;
    const url = `${server.url}/keras/model.keras`;
    const result: KerasResult = await page.evaluate(([b, u, x]) => window.consumerApp.loadKeras(b, u, x), [backend, url, kerasInputs] as const);
    expect(result.backend).toBe(backend);
    expect(result.leaked).toBe(0);
    expect(result.layers).toContain('MultiHeadAttention');
    const shown = JSON.parse((await page.locator(`section[data-kind="keras"][data-backend="${backend}"] pre.outputs`).last().textContent())!);
    const keras = readKerasExpected(KERAS_CASE).map((output) => output.values);
    const kerasDiff = expectClose(shown, keras, TOLERANCE);
    const nodeDiff = expectClose(shown, kerasNode, TOLERANCE);
    record.push(`${bundler} ${backend} .keras model, max abs diff vs Keras ${kerasDiff.toExponential(2)}, vs node cpu ${nodeDiff.toExponential(2)}`);
  }, 60_000);

  it.each(['webgl', 'wasm'])('the README\'s browser example (Vite) shows the layer\'s output shape on %s', async (backend) => {
    if (!builds.readme!.ok) throw new Error(`The README example's vite build failed (see its test above):\n${builds.readme!.log}`);
    const page = await browser.newPage();
    try {
      page.on('pageerror', (error) => pageErrors.push(`README example: ${error.message}`));
      await page.goto(`${server.url}/readme/index.html?backend=${backend}`);
      await page.waitForFunction((b) => document.body.textContent!.startsWith(`${b}:`), backend, {timeout: 30_000});
      expect(await page.textContent('body')).toBe(`${backend}: output 1,5,16`);
    } finally {
      await page.close();
    }
  }, 60_000);

  it('raised no uncaught errors in the pages', () => {
    expect(pageErrors).toEqual([]);
  });
});
