/**
 * A browser app that uses tfjs-attention the way its users do: the package by name, next to
 * tfjs and its wasm and webgpu backends. test/browser_consumer_test.ts builds it from the
 * packed tarball with Vite (vite.config.mjs) and with esbuild, serves it, and drives it in
 * Chromium through `window.consumerApp` (see api.ts): each call runs on the backend it names
 * and shows its result on the page, in a <section data-kind data-backend>.
 */
import * as tf from '@tensorflow/tfjs';
import {setWasmPaths} from '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-webgpu';
import {scaledDotProductAttention} from 'tfjs-attention';
import {loadKerasModel} from 'tfjs-attention/keras';
import type {BrowserBackend, ConsumerApp, KerasInput, KerasResult, LayerCase, LayerResult, ModelResult} from './api';

// tfjs-backend-wasm fetches its .wasm files at run time: the app serves them at /wasm/, copied
// from node_modules/@tensorflow/tfjs-backend-wasm/dist.
setWasmPaths(new URL('/wasm/', window.location.href).href);

async function useBackend(name: BrowserBackend): Promise<void> {
  if (!(await tf.setBackend(name))) {
    throw new Error(`The ${name} backend could not be started in this browser${name === 'webgpu' ? ` (${await webgpuState()})` : ''}.`);
  }
  await tf.ready();
}

/** Why WebGPU may be missing: no navigator.gpu (an insecure context, or WebGPU off), or no adapter. */
async function webgpuState(): Promise<string> {
  const gpu = (navigator as unknown as {gpu?: {requestAdapter(): Promise<unknown>}}).gpu;
  if (gpu == null) return `navigator.gpu is missing; secure context: ${window.isSecureContext}`;
  return (await gpu.requestAdapter()) == null ? 'navigator.gpu.requestAdapter() gave no adapter' : 'an adapter is available';
}

/** Shows `values` on the page under a heading naming what and where. */
function show(kind: string, backend: string, values: Record<string, unknown>): void {
  const section = document.createElement('section');
  section.dataset.kind = kind;
  section.dataset.backend = backend;
  const heading = document.createElement('h2');
  heading.textContent = `${kind} on ${backend}`;
  section.append(heading);
  for (const [name, value] of Object.entries(values)) {
    const pre = document.createElement('pre');
    pre.className = name;
    pre.textContent = JSON.stringify(value);
    section.append(pre);
  }
  document.getElementById('results')!.append(section);
}

async function runLayer(backend: BrowserBackend, layerCase: LayerCase): Promise<LayerResult> {
  await useBackend(backend);
  const before = tf.memory().numTensors;
  const weights = layerCase.weights.map((w) => tf.tensor(w));
  // `weights` are set when the first call builds the layer.
  const layer = scaledDotProductAttention({...layerCase.config, weights});
  const input = tf.tensor3d(layerCase.input);                                    // [B, T, d]
  // Inference, profiled to see which kernels ran (on wasm: the fused attention kernel).
  const profile = await tf.profile(() => layer.apply(input) as tf.Tensor);     // [B, T, out]
  tf.dispose(weights);
  const output = profile.result as tf.Tensor;
  const cotangent = tf.tensor3d(layerCase.cotangent);                            // [B, T, out]
  const gradient = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(layer.apply(x) as tf.Tensor, cotangent)))(input);  // [B, T, d]
  const values = {output: await output.array() as number[][][], gradient: await gradient.array() as number[][][]};
  tf.dispose([input, output, cotangent, gradient]);
  layer.dispose();
  const result = {backend: tf.getBackend(), ...values, kernels: profile.kernelNames, leaked: tf.memory().numTensors - before};
  show('layer', result.backend, {...values, kernels: result.kernels});
  return result;
}

async function predictModel(backend: BrowserBackend, url: string, input: number[][][]): Promise<ModelResult> {
  await useBackend(backend);
  const before = tf.memory().numTensors;
  const model = await tf.loadLayersModel(url);
  const x = tf.tensor3d(input);                                                  // [B, T, d]
  const y = model.predict(x) as tf.Tensor;                                       // [B, classes]
  const prediction = await y.array() as number[][];
  tf.dispose([x, y]);
  model.dispose();
  const result = {backend: tf.getBackend(), prediction, leaked: tf.memory().numTensors - before};
  show('model', result.backend, {prediction});
  return result;
}

async function loadKeras(backend: BrowserBackend, url: string, inputs: KerasInput[]): Promise<KerasResult> {
  await useBackend(backend);
  const before = tf.memory().numTensors;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  const file = await response.blob();                     // what <input type="file"> hands an app: a Blob (a File)
  const model = await loadKerasModel(file);
  const xs = inputs.map((x) => x.dtype === 'bool' ?
      tf.tensor(x.values.map((v) => v !== 0), x.shape, 'bool') : tf.tensor(x.values, x.shape, x.dtype));
  const predicted = model.predict(xs.length === 1 ? xs[0] : xs);
  const ys = Array.isArray(predicted) ? predicted : [predicted];
  const outputs = await Promise.all(ys.map(async (y) => Array.from(await y.data())));
  const layers = model.layers.map((layer) => layer.getClassName());
  tf.dispose([...xs, ...ys]);
  model.dispose();
  const result = {backend: tf.getBackend(), outputs, layers, leaked: tf.memory().numTensors - before};
  show('keras', result.backend, {outputs});
  return result;
}

const BACKENDS: BrowserBackend[] = ['webgl', 'wasm', 'webgpu'];

window.consumerApp = {
  ready: Promise.resolve(BACKENDS.filter((name) => tf.findBackendFactory(name) != null)).then((registered) => {
    document.getElementById('status')!.textContent = `backends: ${registered.join(', ')}`;
    return registered;
  }),
  runLayer,
  predictModel,
  loadKeras,
};
