/**
 * The demo page in a real browser (issue 4): headless Chromium through playwright-core, WebGL 2
 * on SwiftShader. It builds the page (scripts/demo.ts), serves it with the trained model
 * (models/park-play; DEMO_MODELS_DIR=<folder holding park-play/> serves another), and checks
 * the WebGL backend, typing, Node-vs-browser probabilities, the four-step view, the layer's
 * PyTorch fixtures on WebGL, error messages, a phone-width layout and saves screenshots.
 *
 * Without Chromium the suite fails unless SKIP_BROWSER=1 skips it (test/helpers/chromium.ts).
 * One browser and one page are shared across the tests: SwiftShader is slow on 2 cores.
 */
import * as fs from 'fs';
import * as path from 'path';
import type {Browser, Page} from 'playwright-core';
import {buildDemo, DemoServer, startDemoServer} from '../scripts/demo';
// Types window.tfjsAttentionDemo inside page.evaluate (a type-only import: nothing runs).
import type {} from '../scripts/app/demo/main';
import {selectBackend} from '../src';
import type {ScaledDotProductAttention} from '../src';
import {explainSentence} from '../scripts/app/park/explanation';
import {loadParkModel} from '../scripts/app/park/park_files';
import {ATTENTION_LAYER, PARK_SENTENCE, ParkModel} from '../scripts/app/park/park_model';
import {predictNextWords} from '../scripts/app/park/prediction';
import {describeInBrowser, launchChromium} from './helpers/chromium';
import {referenceAttention} from './helpers/reference_attention';
import {expectClose, expectIeee, flatten, Nested, randomArray, shapeOf} from './helpers/tensors';

const ROOT = path.resolve(__dirname, '..');
const MODELS_DIR = path.resolve(process.env.DEMO_MODELS_DIR || path.join(ROOT, 'models'));
const MODEL_DIR = path.join(MODELS_DIR, 'park-play');
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const README_SCREENSHOT = path.join(ROOT, 'scripts', 'app', 'demo', 'screenshot.png');
const DESKTOP = {width: 1024, height: 900};
const PHONE = {width: 390, height: 844};
const SPORTS = ['cricket', 'football', 'basketball', 'tennis'];
/** Node (cpu) and browser probabilities, trace values and fixtures must agree this closely. */
const TOLERANCE = 1e-4;
const SENTENCES = [
  PARK_SENTENCE,
  'i like to go to the library and read a',
  'i am so tired i want to go to bed and',
  'we want to build a new',
  'he took his bat to the park to play',
];

interface FixtureCase {
  name: string;
  config: {numHeads: number; keyDim: number; valueDim: number; useBias: boolean; outputDim: number|null;
           causal: boolean; scale: number|null};
  query: number[][][];
  context: number[][][]|null;
  attentionMask: number[][][]|null;
  weights: {[name: string]: number[]|number[][]};
  expected: {output: number[][][]; weights?: number[][][][]};
}
const FIXTURES: FixtureCase[] = JSON.parse(
    fs.readFileSync(path.join(__dirname, 'fixtures', 'attention_fixtures.json'), 'utf8')).cases;

/** Types `sentence` into the box (replacing what is there) and waits until the page shows it. */
async function show(page: Page, sentence: string): Promise<void> {
  await page.locator('#sentence').fill(sentence);
  await waitRendered(page, sentence);
}

async function waitRendered(page: Page, sentence: string): Promise<void> {
  await page.waitForFunction((s) => document.body.dataset.rendered === s, sentence, {timeout: 30_000});
}

describeInBrowser('browser suite')('the demo page in headless Chromium (WebGL)', () => {
  let server: DemoServer;
  let browser: Browser;
  let page: Page;
  let park: ParkModel;
  const pageErrors: string[] = [];
  const record: string[] = [];

  beforeAll(async () => {
    const started = Date.now();
    browser = await launchChromium();  // fails first when Chromium is missing
    if (!fs.existsSync(path.join(MODEL_DIR, 'model.json'))) {
      throw new Error(`No trained model at ${MODEL_DIR}: run \`npm run train\` (or set DEMO_MODELS_DIR).`);
    }
    const demoDir = await buildDemo();
    server = await startDemoServer({port: 0, demoDir, modelsDir: MODELS_DIR});
    page = await browser.newPage({viewport: DESKTOP});
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(server.url);
    // The Node side, for comparison: the same model on tfjs' cpu backend.
    await selectBackend('cpu');
    park = await loadParkModel(MODEL_DIR);
    await page.evaluate(() => window.tfjsAttentionDemo.ready);
    await waitRendered(page, PARK_SENTENCE);
    record.push(`setup (build, server, browser, model on webgl): ${Date.now() - started} ms`);
  }, 90_000);

  afterAll(async () => {
    park?.model.dispose();
    await browser?.close();
    await server?.close();
    if (record.length > 0) console.log(`browser suite:\n  ${record.join('\n  ')}`);
  });

  it('runs on the WebGL backend and shows it', async () => {
    expect(await page.evaluate(() => window.tfjsAttentionDemo.backend())).toBe('webgl');
    expect(await page.locator('#backend').textContent()).toBe('webgl');
    const webglVersion = await page.evaluate(() => window.tfjsAttentionDemo.lib.tf.env().getNumber('WEBGL_VERSION'));
    record.push(`WebGL version ${webglVersion}`);
    expect(await page.locator('#sentence').inputValue()).toBe(PARK_SENTENCE);  // prefilled
  });

  it('typing the park sentence shows a sport as the top completion, with five probability bars', async () => {
    const box = page.locator('#sentence');
    await show(page, SENTENCES[1]);
    await box.fill('');
    await box.pressSequentially(PARK_SENTENCE, {delay: 15});
    await waitRendered(page, PARK_SENTENCE);
    const items = page.locator('#predictions li');
    expect(await items.count()).toBe(5);
    const top = await items.first().getAttribute('data-word');
    expect(SPORTS).toContain(top);
    expect(await items.first().locator('.word').textContent()).toBe(top);
    const width = await items.first().locator('.fill').evaluate((el) => (el as HTMLElement).style.width);
    const probability = Number(await items.first().getAttribute('data-probability'));
    expect(parseFloat(width)).toBeCloseTo(probability * 100, 2);
    expect(await page.locator('#error').isHidden()).toBe(true);
  }, 60_000);

  it('predict() matches the Node cpu probabilities within 1e-4 for every word', async () => {
    const k = park.vocabulary.size - 2;  // every word but <pad> and <unk>
    let worst = 0;
    for (const sentence of SENTENCES) {
      const node = predictNextWords(park, sentence, k).predictions;
      const browserPredictions = await page.evaluate(([s, n]) => window.tfjsAttentionDemo.predict(s, n), [sentence, k] as const);
      expect(browserPredictions.map((p) => p.word).sort()).toEqual(node.map((p) => p.word).sort());
      const inBrowser = new Map(browserPredictions.map((p) => [p.word, p.probability]));
      const diff = Math.max(...node.map((p) => Math.abs(p.probability - inBrowser.get(p.word)!)));
      expect(diff).toBeLessThanOrEqual(TOLERANCE);
      worst = Math.max(worst, diff);
    }
    record.push(`node cpu vs browser webgl, max |Δp| over ${SENTENCES.length} sentences x ${k} words: ${worst.toExponential(2)}`);
  }, 60_000);

  it('trace() has the model\'s shapes and values, and the page shows the four steps labelled with them', async () => {
    const layer = park.model.getLayer(ATTENTION_LAYER) as ScaledDotProductAttention;
    const sentence = SENTENCES[4];
    const node = explainSentence(park, sentence);
    const heads = layer.numHeads;
    const tokens = node.kept.length;
    const dv = node.steps[3].heads[0][0].length;
    expect(tokens).toBe(sentence.split(' ').length);
    const trace = await page.evaluate((s) => window.tfjsAttentionDemo.trace(s), sentence);
    expect(trace.labels).toEqual(node.labels);
    expect(trace.scale).toBeCloseTo(1 / Math.sqrt(node.keyDim), 6);
    expect(trace.steps.map((step) => step.name)).toEqual(['scores', 'scaled', 'weights', 'output']);
    const expectedShapes = [[heads, tokens, tokens], [heads, tokens, tokens], [heads, tokens, tokens], [heads, tokens, dv]];
    let worst = 0;
    trace.steps.forEach((step, i) => {
      expect(step.shape).toEqual(expectedShapes[i]);
      expect(shapeOf(step.heads as Nested)).toEqual(expectedShapes[i]);
      worst = Math.max(worst, expectClose(step.heads as Nested, node.steps[i].heads as Nested, TOLERANCE));
    });
    record.push(`trace on webgl vs node cpu, max abs diff over the four steps: ${worst.toExponential(2)}`);

    await show(page, sentence);
    const figures = page.locator('#steps figure.step');
    expect(await figures.count()).toBe(4);
    for (let i = 0; i < 4; i++) {
      const figure = figures.nth(i);
      expect(await figure.getAttribute('data-step')).toBe(trace.steps[i].name);
      expect(await figure.getAttribute('data-shape')).toBe(expectedShapes[i].join(','));
      expect(await figure.locator('.shape').textContent()).toBe(`shape ${expectedShapes[i].join(' × ')}`);
      expect(await figure.locator('svg rect.cell').count()).toBe(expectedShapes[i][1] * expectedShapes[i][2]);
    }
    const titles = await figures.locator('.step-title').allTextContents();
    expect(titles.join(' | ')).toMatch(/Q·Kᵀ.*\| .*1\/√d.*\| .*A = softmax.*\| .*R = A·V/);
    // The attention heatmap has the tokens on both axes.
    expect(await page.locator('#heatmap svg rect.cell').count()).toBe(tokens * tokens);
    expect(await page.locator('#heatmap svg text.col-label').allTextContents()).toEqual(node.labels);
    expect(await page.locator('#heatmap svg text.row-label').allTextContents()).toEqual(node.labels);
    // Another head redraws the steps (the committed model has several heads).
    expect(heads).toBeGreaterThan(1);
    const before = await figures.first().locator('.plot').innerHTML();
    await page.locator('#head').selectOption('1');
    expect(await figures.first().locator('.plot').innerHTML()).not.toBe(before);
    await page.locator('#head').selectOption('0');
  }, 60_000);

  it('NaN and ±∞ on WebGL: the layer\'s standard and memory-efficient paths put them where the plain-array reference does', async () => {
    // x [2, 5, 4], two heads of dk 3 and dv 2: a NaN in Wk makes head 0 NaN, +∞ in bv makes output column 3 +∞.
    const round = (x: Nested) => Array.from(new Float32Array(flatten(x))) as number[];
    const x = randomArray([2, 5, 4], 41) as number[][][];
    const weights: Record<string, number[]|number[][]> = {
      wq: randomArray([4, 6], 42) as number[][], wk: randomArray([4, 6], 43) as number[][], wv: randomArray([4, 4], 44) as number[][],
      bq: randomArray([6], 45) as number[], bk: randomArray([6], 46) as number[], bv: randomArray([4], 47) as number[],
    };
    for (const name of Object.keys(weights)) {  // float32, so that the reference sees what the page holds
      const shape = shapeOf(weights[name] as Nested);
      const flat = round(weights[name] as Nested);
      weights[name] = shape.length === 1 ? flat : Array.from({length: shape[0]}, (_, r) => flat.slice(r * shape[1], (r + 1) * shape[1]));
    }
    const xs = x.map(m => m.map(row => round(row)));
    (weights.wk as number[][])[0][0] = NaN;
    (weights.bv as number[])[3] = Infinity;
    const expected = referenceAttention(xs, null, {
      wq: weights.wq as number[][], wk: weights.wk as number[][], wv: weights.wv as number[][],
      bq: weights.bq as number[], bk: weights.bk as number[], bv: weights.bv as number[],
    }, {numHeads: 2});
    const result = await page.evaluate(async ({input, values}) => {
      const {tf: ptf, scaledDotProductAttention} = window.tfjsAttentionDemo.lib;
      const outputs: unknown[] = [];
      for (const blockSize of [null, 0, 2]) {
        const layer = scaledDotProductAttention({numHeads: 2, keyDim: 3, valueDim: 2, useBias: true, blockSize});
        const xt = ptf.tensor3d(input);
        layer.build(xt.shape);
        const tensors = ['wq', 'wk', 'wv', 'bq', 'bk', 'bv'].map((n) => ptf.tensor(values[n]));
        layer.setWeights(tensors);
        const out = layer.apply(xt) as import('@tensorflow/tfjs').Tensor;
        outputs.push(await out.array());
        ptf.dispose([...tensors, xt, out]);
      }
      return {backend: ptf.getBackend(), outputs};
    }, {input: xs, values: weights});
    expect(result.backend).toBe('webgl');
    for (const output of result.outputs) expectIeee(output as Nested, expected.output, TOLERANCE);
  }, 30_000);

  describe('the attention layer\'s PyTorch fixtures on WebGL, in the page', () => {
    const diffs: string[] = [];
    afterAll(() => {
      if (diffs.length > 0) record.push(`fixtures on webgl, max abs diff (output / weights):\n    ${diffs.join('\n    ')}`);
    });

    it.each(FIXTURES.map((c) => [c.name, c] as const))('%s', async (_, c) => {
      const result = await page.evaluate(async (fixture) => {
        const {tf: ptf, scaledDotProductAttention} = window.tfjsAttentionDemo.lib;
        const before = ptf.memory().numTensors;
        const query = ptf.tensor3d(fixture.query);
        const inputs = fixture.context == null ? query : [query, ptf.tensor3d(fixture.context)];
        const mask = fixture.attentionMask == null ? null : ptf.tensor3d(fixture.attentionMask);
        const {numHeads, keyDim, valueDim, useBias, outputDim, causal, scale} = fixture.config;
        const layer = scaledDotProductAttention({
          numHeads, keyDim, valueDim, useBias, outputDim, causal, scale, returnAttentionScores: true,
        });
        ptf.dispose(layer.apply(inputs) as import('@tensorflow/tfjs').Tensor[]);  // builds the weights
        // The documented setWeights order; a case holds the ones its configuration creates.
        const names = ['wq', 'wk', 'wv', 'bq', 'bk', 'bv', 'wo', 'bo'].filter((n) => fixture.weights[n] != null);
        const layerNames = layer.weights.map((w) => w.name.split('/').pop());
        const values = names.map((n) => ptf.tensor(fixture.weights[n]));
        layer.setWeights(values);
        const [output, weights] = layer.apply(inputs, mask == null ? {} : {attentionMask: mask}) as
            import('@tensorflow/tfjs').Tensor[];
        const arrays = {output: await output.array(), weights: await weights.array()};
        ptf.dispose([...values, ...(Array.isArray(inputs) ? inputs : [inputs]), output, weights]);
        if (mask != null) mask.dispose();
        layer.dispose();
        return {backend: ptf.getBackend(), names, layerNames, ...arrays, leaked: ptf.memory().numTensors - before};
      }, c);
      expect(result.backend).toBe('webgl');
      expect(result.layerNames).toEqual(result.names);
      expect(result.leaked).toBe(0);
      // The case with inputs ~1e3 (outputs ~1e3) is compared relative to the expected magnitude.
      const large = Math.max(...flatten(c.query).map(Math.abs)) > 100;
      const outputDiff = expectClose(result.output as Nested, c.expected.output, large ? {abs: TOLERANCE, rel: TOLERANCE} : TOLERANCE);
      const weightsDiff = c.expected.weights == null ? NaN :
          expectClose(result.weights as Nested, c.expected.weights, TOLERANCE);
      diffs.push(`${c.name}: ${outputDiff.toExponential(2)} / ${weightsDiff.toExponential(2)}` +
                 (large ? ` (|output| up to ${Math.max(...flatten(c.expected.output).map(Math.abs)).toFixed(0)})` : ''));
    }, 30_000);
  });

  it('an empty sentence shows a readable message on the page, and predict/trace reject with it', async () => {
    await show(page, '');
    const error = page.locator('#error');
    expect(await error.isVisible()).toBe(true);
    expect(await error.getAttribute('role')).toBe('alert');
    expect(await error.textContent()).toMatch(/empty input: the sentence has no words\. type a sentence/i);
    expect(await page.locator('#results').isHidden()).toBe(true);
    await show(page, '  ?! ');  // punctuation only: no words either
    expect(await error.textContent()).toMatch(/no words/);
    await expect(page.evaluate(() => window.tfjsAttentionDemo.predict('', 5))).rejects.toThrow(/has no words/);
    await expect(page.evaluate(() => window.tfjsAttentionDemo.trace('  '))).rejects.toThrow(/has no words/);
    await show(page, PARK_SENTENCE);
    expect(await error.isHidden()).toBe(true);
    expect(await page.locator('#results').isVisible()).toBe(true);
  }, 60_000);

  it('a model URL that does not exist shows "model not found" on the page', async () => {
    const missing = '/models/does-not-exist/model.json';
    const other = await browser.newPage({viewport: PHONE});
    try {
      await other.goto(`${server.url}?model=${encodeURIComponent(missing)}`);
      const error = other.locator('#error');
      await error.waitFor({state: 'visible', timeout: 30_000});
      const text = await error.textContent();
      expect(text).toMatch(/^Model not found: /);
      expect(text).toContain(missing);
      expect(text).toContain('npm run train');
      expect(await error.getAttribute('role')).toBe('alert');
      await expect(other.evaluate(() => window.tfjsAttentionDemo.ready)).rejects.toThrow(/Model not found/);
      expect(await other.locator('#backend').textContent()).toBe('webgl');
      expect(await other.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    } finally {
      await other.close();
    }
  }, 60_000);

  it('falls back to wasm (?backend=wasm): the .wasm files are served and probabilities agree', async () => {
    const other = await browser.newPage({viewport: DESKTOP});
    try {
      await other.goto(`${server.url}?backend=wasm`);
      await other.evaluate(() => window.tfjsAttentionDemo.ready);
      expect(await other.evaluate(() => window.tfjsAttentionDemo.backend())).toBe('wasm');
      expect(await other.locator('#backend').textContent()).toBe('wasm');
      const k = park.vocabulary.size - 2;
      const node = predictNextWords(park, PARK_SENTENCE, k).predictions;
      const wasm = await other.evaluate(([s, n]) => window.tfjsAttentionDemo.predict(s, n), [PARK_SENTENCE, k] as const);
      const inWasm = new Map(wasm.map((p) => [p.word, p.probability]));
      const diff = Math.max(...node.map((p) => Math.abs(p.probability - inWasm.get(p.word)!)));
      expect(diff).toBeLessThanOrEqual(TOLERANCE);
      record.push(`node cpu vs browser wasm, max |Δp| (park sentence): ${diff.toExponential(2)}`);
    } finally {
      await other.close();
    }
  }, 60_000);

  it('fits a 390px-wide phone screen without horizontal overflow; saves screenshots', async () => {
    fs.mkdirSync(ARTIFACTS, {recursive: true});
    await show(page, PARK_SENTENCE);
    await page.setViewportSize(PHONE);
    await page.waitForFunction((w) => window.innerWidth === w, PHONE.width);
    const widths = await page.evaluate(() => ({
      document: document.documentElement.scrollWidth, body: document.body.scrollWidth,
      widest: Math.max(...Array.from(document.querySelectorAll('body *')).map((el) => el.getBoundingClientRect().right)),
    }));
    expect(widths.document).toBeLessThanOrEqual(PHONE.width);
    expect(widths.body).toBeLessThanOrEqual(PHONE.width);
    expect(widths.widest).toBeLessThanOrEqual(PHONE.width + 0.5);
    await page.screenshot({path: path.join(ARTIFACTS, 'demo-390.png'), fullPage: true});

    await page.setViewportSize(DESKTOP);
    await page.waitForFunction((w) => window.innerWidth === w, DESKTOP.width);
    await page.locator('#sentence').blur();
    await page.screenshot({path: path.join(ARTIFACTS, 'demo.png'), fullPage: true});
    if (process.env.UPDATE_SCREENSHOT === '1') {
      // The README shows a sentence whose cue ("bat") the attention visibly picks out.
      await show(page, 'he takes his bat to the park to play');
      await page.locator('#head').selectOption('1');
      await page.locator('#sentence').blur();
      await page.screenshot({path: README_SCREENSHOT, fullPage: true});
      record.push(`updated ${path.relative(ROOT, README_SCREENSHOT)}`);
    }
    expect(fs.statSync(path.join(ARTIFACTS, 'demo.png')).size).toBeGreaterThan(10_000);
  }, 60_000);

  it('raised no uncaught errors in the page', () => {
    expect(pageErrors).toEqual([]);
  });
});
