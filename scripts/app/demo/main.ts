/**
 * The browser demo (npm run demo): the park model finishes a sentence the reader types, and
 * the page shows the top-5 next words, the attention heatmap and the attention layer's four
 * steps (Q·Kᵀ, scaled by 1/√d, A = softmax, R = A·V) for one head.
 *
 * It is bundled by scripts/demo.ts with esbuild for the browser. It imports the library through
 * its browser-safe entry (src/index.ts, via ../tfjs_attention), which registers
 * ScaledDotProductAttention, PositionEmbedding and LastPosition with tf.serialization (which
 * tf.loadLayersModel needs) and the wasm UnsortedSegmentSum kernel.
 *
 * Query parameters:
 *   ?model=<URL of a model.json>  the model to load (default /models/park-play/model.json);
 *   ?backend=webgl|wasm|cpu       force a backend (default: webgl, else wasm, else cpu).
 *
 * For automated checks (test/browser_test.ts) the page sets `window.tfjsAttentionDemo`, see
 * {@link TfjsAttentionDemo}.
 */
import * as tf from '@tensorflow/tfjs';
import {setWasmPaths} from '@tensorflow/tfjs-backend-wasm';
import {scaledDotProductAttention, traceAttention} from '../tfjs_attention';
import {readingNotices} from '../cli/format';
import {ExplainedStep, Explanation, explainSentence, meanOverHeads} from '../park/explanation';
import {disposeParkModel, PARK_SENTENCE, ParkModel, parkModelFromLoaded} from '../park/park_model';
import {NextWordPrediction, predictNextWords, WordProbability} from '../park/prediction';
import {tokenize} from '../park/vocabulary';
import {heatmapSvg} from '../plots/heatmap_svg';

/** What `trace` returns: the four steps of the attention layer as nested arrays. */
export interface DemoTrace {
  /** The words on the heatmaps' axes (the words the model read, padding left out). */
  labels: string[];
  /** The multiplier of step 2, 1/√dk. */
  scale: number;
  keyDim: number;
  /** scores, scaled, weights: [H, T, T]; output: [H, T, dv]. */
  steps: ExplainedStep[];
}

/** `window.tfjsAttentionDemo`, the page's interface for automated checks. */
export interface TfjsAttentionDemo {
  /** Resolves when the backend has started and the model has loaded; rejects with the page's error. */
  ready: Promise<void>;
  /** The active tfjs backend: 'webgl', 'wasm' or 'cpu'. */
  backend(): string;
  /** The k most likely next words; rejects with a readable error for bad input (e.g. no words). */
  predict(sentence: string, k?: number): Promise<WordProbability[]>;
  /** The attention layer's four steps for the sentence; rejects like `predict`. */
  trace(sentence: string): Promise<DemoTrace>;
  /**
   * For tests that build layers in the page (the attention fixtures on WebGL): the bundled
   * tf (so tensors are made on the page's engine and backend), the layer factory and the tracer.
   */
  lib: {tf: typeof tf; scaledDotProductAttention: typeof scaledDotProductAttention; traceAttention: typeof traceAttention};
}

declare global {
  interface Window {
    tfjsAttentionDemo: TfjsAttentionDemo;
  }
}

const DEFAULT_MODEL_URL = '/models/park-play/model.json';
const BACKENDS = ['webgl', 'wasm', 'cpu'];
const DEBOUNCE_MS = 150;
const STEP_TITLES: {[name in ExplainedStep['name']]: string} = {
  scores: '1. Q·Kᵀ',
  scaled: '2. Scaled by 1/√d',
  weights: '3. A = softmax',
  output: '4. R = A·V',
};
const STEP_AXES: {[name in ExplainedStep['name']]: string} = {
  scores: 'heads × queries × keys',
  scaled: 'heads × queries × keys',
  weights: 'heads × queries × keys',
  output: 'heads × queries × dv',
};

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (found == null) throw new Error(`The page has no #${id}`);
  return found as T;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** webgl, then wasm, then cpu (or only the one `?backend=` names); returns the active one. */
async function startBackend(forced: string|null): Promise<string> {
  // The .wasm files are served next to the page, in wasm/ (scripts/demo.ts copies them there).
  setWasmPaths(new URL('wasm/', window.location.href).href);
  if (forced != null && !BACKENDS.includes(forced)) {
    throw new Error(`Unknown backend "${forced}" in ?backend=. Use one of ${BACKENDS.join(', ')}.`);
  }
  const tried: string[] = [];
  for (const name of forced != null ? [forced] : BACKENDS) {
    tried.push(name);
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        return tf.getBackend();
      }
    } catch {
      // the next one
    }
  }
  throw new Error(`No TensorFlow.js backend could start in this browser (tried ${tried.join(', ')}).`);
}

/** Loads a park model over HTTP, with messages that say what to do when it is not there. */
async function loadModel(url: string): Promise<ParkModel> {
  let model: tf.LayersModel;
  try {
    model = await tf.loadLayersModel(url);
  } catch (error) {
    const message = messageOf(error);
    // tfjs: "Request to <url> failed with status code 404. Please verify this URL points to ..."
    const status = /status code (\d+)/.exec(message)?.[1];
    if (status === '404' && message.includes(url)) {
      throw new Error(
          `Model not found: ${url} does not exist on this server (HTTP 404). Train a model with ` +
          '“npm run train” (it saves models/park-play, which “npm run demo” serves), or open this page with ' +
          '?model=<URL of a model.json>.');
    }
    throw new Error(`The model at ${url} could not be loaded: ${message}`);
  }
  try {
    return parkModelFromLoaded(model, url);
  } catch (error) {
    disposeParkModel({model});
    throw error;
  }
}

const params = new URLSearchParams(window.location.search);
const modelUrl = params.get('model') || DEFAULT_MODEL_URL;
let park: ParkModel|null = null;

const ready: Promise<void> = (async () => {
  await new Promise<void>((resolve) => {
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => resolve(), {once: true});
    else resolve();
  });
  tf.enableProdMode();
  setStatus('Starting TensorFlow.js…');
  const backend = await startBackend(params.get('backend'));
  element('backend').textContent = backend;
  document.body.dataset.backend = backend;
  setStatus(`Loading ${modelUrl}…`);
  park = await loadModel(modelUrl);
})();

async function loaded(): Promise<ParkModel> {
  await ready;
  return park!;
}

window.tfjsAttentionDemo = {
  ready,
  backend: () => tf.getBackend(),
  predict: async (sentence: string, k = 5) => predictNextWords(await loaded(), sentence, k).predictions,
  trace: async (sentence: string) => {
    const {labels, scale, keyDim, steps} = explainSentence(await loaded(), sentence);
    return {labels, scale, keyDim, steps};
  },
  lib: {tf, scaledDotProductAttention, traceAttention},
};

// ---------------------------------------------------------------------------------------------
// The page.

function setStatus(text: string): void {
  element('status').textContent = text;
}

function showError(message: string): void {
  const box = element('error');
  box.textContent = message;
  box.hidden = false;
}

function clearError(): void {
  const box = element('error');
  box.textContent = '';
  box.hidden = true;
}

function formatPercent(p: number): string {
  return `${(p * 100).toFixed(p >= 0.1 ? 1 : 2)}%`;
}

function renderPredictions(prediction: NextWordPrediction): void {
  const list = element<HTMLOListElement>('predictions');
  list.replaceChildren(...prediction.predictions.map(({word, probability}) => {
    const item = document.createElement('li');
    item.className = 'prediction';
    item.dataset.word = word;
    item.dataset.probability = String(probability);
    const name = document.createElement('span');
    name.className = 'word';
    name.textContent = word;
    const bar = document.createElement('span');
    bar.className = 'bar';
    const fill = document.createElement('span');
    fill.className = 'fill';
    fill.style.width = `${Math.max(0, Math.min(1, probability)) * 100}%`;
    bar.append(fill);
    const value = document.createElement('span');
    value.className = 'probability';
    value.textContent = formatPercent(probability);
    item.append(name, bar, value);
    return item;
  }));
  element('reading').textContent = `“${prediction.kept.join(' ')} ___”`;
  const notices = readingNotices(prediction).map(n => n.replace(/^Notice: /, ''));
  const notice = element('notices');
  notice.textContent = notices.join(' ');
  notice.hidden = notices.length === 0;
}

function renderHeatmap(explanation: Explanation): void {
  const weights = explanation.steps.find(step => step.name === 'weights')!;
  element('heatmap-heads').textContent = weights.heads.length === 1 ? 'one head' : `mean of ${weights.heads.length} heads`;
  element('heatmap').innerHTML = heatmapSvg(meanOverHeads(weights.heads), {
    rowLabels: explanation.labels, colLabels: explanation.labels, showValues: true,
    xLabel: 'key (word attended to)', yLabel: 'query (word attending)',
  });
}

function renderHeadChoice(heads: number): void {
  const select = element<HTMLSelectElement>('head');
  if (select.options.length !== heads) {
    const chosen = Math.min(Number(select.value) || 0, heads - 1);
    select.replaceChildren(...Array.from({length: heads}, (_, h) => new Option(`head ${h + 1} of ${heads}`, String(h))));
    select.value = String(chosen);
  }
}

function renderSteps(explanation: Explanation): void {
  const head = Number(element<HTMLSelectElement>('head').value) || 0;
  element('steps').replaceChildren(...explanation.steps.map((step) => {
    const figure = document.createElement('figure');
    figure.className = 'step';
    figure.dataset.step = step.name;
    figure.dataset.shape = step.shape.join(',');
    const caption = document.createElement('figcaption');
    const title = document.createElement('span');
    title.className = 'step-title';
    title.textContent = STEP_TITLES[step.name];
    const shape = document.createElement('span');
    shape.className = 'shape';
    shape.textContent = `shape ${step.shape.join(' × ')}`;
    shape.title = STEP_AXES[step.name];
    const formula = document.createElement('span');
    formula.className = 'formula';
    formula.textContent = `${step.formula} · ${STEP_AXES[step.name]}`;
    caption.append(title, shape, formula);
    const plot = document.createElement('div');
    plot.className = 'plot';
    const columns = step.name === 'output' ?
        Array.from({length: step.shape[2]}, (_, j) => String(j + 1)) : explanation.labels;
    plot.innerHTML = heatmapSvg(step.heads[head], {rowLabels: explanation.labels, colLabels: columns});
    figure.append(caption, plot);
    return figure;
  }));
}

let shown: Explanation|null = null;

/** Predicts and explains the text box's sentence and draws it; errors go to #error. */
function update(): void {
  if (park == null) return;
  const sentence = element<HTMLInputElement>('sentence').value;
  const results = element('results');
  try {
    if (tokenize(sentence).length === 0) {
      throw new Error(
          `Empty input: the sentence has no words. Type a sentence such as “${PARK_SENTENCE}” ` +
          'to see how the model finishes it.');
    }
    const prediction = predictNextWords(park, sentence, 5);
    const explanation = explainSentence(park, sentence);
    renderPredictions(prediction);
    renderHeatmap(explanation);
    renderHeadChoice(explanation.steps[0].shape[0]);
    renderSteps(explanation);
    shown = explanation;
    clearError();
    results.hidden = false;
  } catch (error) {
    showError(messageOf(error));
    results.hidden = true;
  }
  // For tests: the sentence whose results (or error) the page now shows.
  document.body.dataset.rendered = sentence;
}

function start(): void {
  const input = element<HTMLInputElement>('sentence');
  if (input.value === '') input.value = PARK_SENTENCE;
  let timer: ReturnType<typeof setTimeout>|undefined;
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(update, DEBOUNCE_MS);
  });
  element<HTMLSelectElement>('head').addEventListener('change', () => {
    if (shown != null) renderSteps(shown);
  });
  ready.then(() => {
    setStatus(`Model ${modelUrl}: ${park!.vocabulary.size} words, window ${park!.window}.`);
    document.body.dataset.ready = 'true';
    update();
  }, (error: unknown) => {
    setStatus('Not ready.');
    if (document.body.dataset.backend == null) element('backend').textContent = 'none';
    showError(messageOf(error));
    document.body.dataset.ready = 'error';
  });
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start, {once: true});
else start();
