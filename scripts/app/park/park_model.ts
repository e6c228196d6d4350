/** The "park and play ___" next-word model: embedding, positions, attention, last position, softmax. */
import * as tf from '@tensorflow/tfjs';
import {ScaledDotProductAttention, scaledDotProductAttention, checkPositiveInteger, ValueError, lastPosition, positionEmbedding} from '../tfjs_attention';
import {Vocabulary} from './vocabulary';

/** Architecture sizes. The defaults train to the acceptance targets in seconds. */
export interface ParkModelOptions {
  /** Number of ids, `<pad>` and `<unk>` included. */
  vocabularySize: number;
  /** Context length in tokens; inputs are left-padded to it. */
  window: number;
  /** Width d of the word and position embeddings. Defaults to 32. */
  embeddingDim?: number;
  /** Attention heads. Defaults to 2. */
  numHeads?: number;
  /** Per-head query/key size. Defaults to 16. */
  keyDim?: number;
  /** Seed of every initializer, so a seed gives the same model. Defaults to 42. */
  seed?: number;
}

/** What is saved in model.json's user-defined metadata beside the weights. */
export interface ParkMetadata {
  task: 'park-play';
  vocabulary: {words: string[]};
  window: number;
  [key: string]: unknown;
}

/** A trained model with what it needs to read sentences. */
export interface ParkModel {
  model: tf.LayersModel;
  vocabulary: Vocabulary;
  window: number;
  /** Where the model was loaded from (a folder or URL), for error messages; absent for a model just trained. */
  source?: string;
}

/** The explainer's sentence. */
export const PARK_SENTENCE = 'i like to go to the park and play';

/** The name of the attention layer, which `explain` traces. */
export const ATTENTION_LAYER = 'attention';

/**
 * Builds the model: tokens [B, W] -> embedding (maskZero) + learned positions [B, W, d]
 * -> ScaledDotProductAttention (+ residual, layer norm) [B, W, d] -> last position [B, d]
 * -> softmax over the vocabulary [B, V]. Attention is the only place where positions
 * exchange information: no RNN, no flattening across positions.
 */
export function createParkModel(options: ParkModelOptions): tf.LayersModel {
  checkPositiveInteger('vocabularySize', options.vocabularySize);
  checkPositiveInteger('window', options.window);
  const d = options.embeddingDim ?? 32;
  const seed = options.seed ?? 42;
  checkPositiveInteger('embeddingDim', d);
  const uniform = (offset: number) => tf.initializers.randomUniform({minval: -0.05, maxval: 0.05, seed: seed + offset});
  const glorot = (offset: number) => tf.initializers.glorotUniform({seed: seed + offset});

  const tokens = tf.input({shape: [options.window], dtype: 'int32', name: 'tokens'});  // [B, W]
  const embedded = tf.layers.embedding({
    inputDim: options.vocabularySize, outputDim: d, maskZero: true, embeddingsInitializer: uniform(0), name: 'embedding',
  }).apply(tokens) as tf.SymbolicTensor;                                                // [B, W, d]
  const positioned = positionEmbedding({
    sequenceLength: options.window, embeddingsInitializer: uniform(1), name: 'positions',
  }).apply(embedded) as tf.SymbolicTensor;                                              // [B, W, d]
  const attended = scaledDotProductAttention({
    numHeads: options.numHeads ?? 2, keyDim: options.keyDim ?? 16, outputDim: d, useBias: true,
    kernelInitializer: glorot(2), name: ATTENTION_LAYER,
  }).apply(positioned) as tf.SymbolicTensor;                                            // [B, W, d]
  const residual = tf.layers.add({name: 'residual'}).apply([positioned, attended]) as tf.SymbolicTensor;
  const normalized = tf.layers.layerNormalization({name: 'norm'}).apply(residual) as tf.SymbolicTensor;
  const last = lastPosition({name: 'last_position'}).apply(normalized) as tf.SymbolicTensor;  // [B, d]
  const probabilities = tf.layers.dense({
    units: options.vocabularySize, activation: 'softmax', kernelInitializer: glorot(3), name: 'next_word',
  }).apply(last) as tf.SymbolicTensor;                                                  // [B, V]
  return tf.model({inputs: tokens, outputs: probabilities, name: 'park_play'});
}

/** Stores the vocabulary and window in the model, so model.json alone is enough to predict. */
export function attachMetadata(park: ParkModel, extra: {[key: string]: unknown} = {}): void {
  const metadata: ParkMetadata = {...extra, task: 'park-play', vocabulary: park.vocabulary.toJSON(), window: park.window};
  park.model.setUserDefinedMetadata(metadata);
}

/** "[3, 17]" for flat index 113 of shape [32, 93]; "" for a scalar. */
function indexIn(shape: number[], flat: number): string {
  if (shape.length === 0) return '';
  const index = new Array<number>(shape.length);
  for (let axis = shape.length - 1; axis >= 0; axis--) {
    index[axis] = flat % shape[axis];
    flat = Math.floor(flat / shape[axis]);
  }
  return `[${index.join(', ')}]`;
}

/**
 * Throws a ValueError naming `source` and the first weight that holds NaN or ±Infinity
 * (its name, the element and how many of its values are not finite): such a model
 * would print NaN as a probability. Reads every weight once.
 */
export function checkFiniteWeights(model: tf.LayersModel, source: string): void {
  for (const weight of model.weights) {
    const values = weight.read().dataSync();
    let first = -1;
    let count = 0;
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) {
        if (first < 0) first = i;
        count++;
      }
    }
    if (first >= 0) {
      throw new ValueError(
          `The model at ${source} has weights that are not finite numbers, so it cannot predict: ` +
          `${weight.originalName}${indexIn(weight.shape as number[], first)} is ${values[first]}` +
          `${count > 1 ? ` (${count} of its ${values.length} values are not finite)` : ''}. ` +
          'Train it again with `npm run train` (or `npm run train -- --out <folder>`).');
    }
  }
}

/** "embedding (Embedding), positions (PositionEmbedding), ..." */
function layerList(model: tf.LayersModel): string {
  return model.layers.map(layer => `${layer.name} (${layer.getClassName()})`).join(', ');
}

/**
 * Reads the vocabulary and window back from a loaded model and checks that it is a park
 * model: tokens [B, window] in, a ScaledDotProductAttention layer named "attention", a
 * probability for each vocabulary word [B, V] out, and finite weights. `source` (a path or
 * URL) names the model in errors.
 */
export function parkModelFromLoaded(model: tf.LayersModel, source: string): ParkModel {
  const metadata = model.getUserDefinedMetadata() as Partial<ParkMetadata>|undefined;
  if (metadata == null || metadata.task !== 'park-play' || metadata.vocabulary == null) {
    throw new ValueError(
        `${source} is not a park-play model: its model.json has no park-play metadata (vocabulary, window). ` +
        'Train one with `npm run train`.');
  }
  let vocabulary: Vocabulary;
  try {
    checkPositiveInteger('window', metadata.window);
    vocabulary = Vocabulary.fromJSON(metadata.vocabulary);
  } catch (error) {
    throw new ValueError(`The model at ${source} has broken park-play metadata in its model.json: ${(error as Error).message}`);
  }
  const park = {model, vocabulary, window: metadata.window as number, source};
  const expected = `expected the park-play architecture: tokens [B, ${park.window}] -> embedding, positions, ` +
      `a ScaledDotProductAttention layer named "${ATTENTION_LAYER}", norm, last position -> ` +
      `softmax over the ${park.vocabulary.size} vocabulary words [B, ${park.vocabulary.size}]`;
  const problem = architectureProblem(model, park.window, park.vocabulary.size);
  if (problem != null) {
    throw new ValueError(
        `The model at ${source} is of another architecture: ${problem}; ${expected}. ` +
        `Its layers: ${layerList(model)}. Train one with \`npm run train\`.`);
  }
  checkFiniteWeights(model, source);
  return park;
}

/** What makes `model` other than a park model of this window and vocabulary, or null. */
function architectureProblem(model: tf.LayersModel, window: number, vocabularySize: number): string|null {
  // Not getLayer, which throws tfjs' bare "No such layer: attention".
  const attention = model.layers.find(layer => layer.name === ATTENTION_LAYER);
  if (attention == null) return `it has no layer named "${ATTENTION_LAYER}"`;
  if (!(attention instanceof ScaledDotProductAttention)) return `its layer "${ATTENTION_LAYER}" is a ${attention.getClassName()}`;
  if (model.inputs.length !== 1) return `it has ${model.inputs.length} inputs`;
  if (model.outputs.length !== 1) return `it has ${model.outputs.length} outputs`;
  const [input, output] = [model.inputs[0].shape, model.outputs[0].shape];
  if (input.length !== 2 || input[1] !== window) return `its input has shape ${formatShape(input)}`;
  if (output.length !== 2 || output[1] !== vocabularySize) return `its output has shape ${formatShape(output)}`;
  return null;
}

/** "[B, 13]" for [null, 13]. */
function formatShape(shape: Array<number|null>): string {
  return `[${shape.map(d => (d == null ? 'B' : d)).join(', ')}]`;
}

/**
 * Frees the model's weights and its optimizer's state. A model loaded with
 * `tf.loadLayersModel` is compiled from its saved training config, and `model.dispose()`
 * leaves that optimizer's tensors behind.
 */
export function disposeParkModel(park: Pick<ParkModel, 'model'>): void {
  const optimizer = park.model.optimizer;
  park.model.dispose();
  optimizer?.dispose();
}
