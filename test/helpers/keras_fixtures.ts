/**
 * Reads the Keras-made fixtures under test/fixtures/keras/<case>/ (written by
 * scripts/fixtures/make_keras_fixtures.py with Keras 3.15): the case's description,
 * its weights, inputs and Keras' expected outputs, as typed arrays or tensors.
 *
 * Each case folder holds case.json, weights.json, inputs.json, expected.json, a
 * converter-layout tfjs/ folder (model.json + group1-shard1of1.bin) and, for every case
 * Keras 3 made, model.keras. case.json's `files` lists what the case has.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';

export const KERAS_FIXTURES_DIR = path.join(__dirname, '..', 'fixtures', 'keras');

/** A tensor as the fixture files hold it: row-major values (bools as 0/1). */
export interface FixtureTensor {
  name: string;
  shape: number[];
  dtype: 'float32'|'int32'|'bool';
  values: number[];
}

/** A weight: `name` is its Keras 3 variable path (e.g. `mha/query/kernel`), `layer` the layer's name. */
export interface FixtureWeight extends FixtureTensor {
  layer: string;
}

/** case.json: what the case covers and how the attention layer is built and called. */
export interface KerasCase {
  name: string;
  seed: number;
  keras_version: string;
  tensorflow_version: string;
  model_class: string;
  /** Paths, relative to the case folder, of the files this case has. */
  files: string[];
  description: string;
  /** The MultiHeadAttention constructor arguments, in Keras' spelling (num_heads, key_dim, ...). */
  layer: {[key: string]: unknown};
  /** How the layer is called: input names for query/value/key, and call flags. */
  call: {[key: string]: unknown};
  /** [b, t] query rows that are padding (every key masked), where there are any. */
  padded_query_rows?: Array<[number, number]>;
  /** 'unpadded_query_rows': only rows not in padded_query_rows are meant to be compared. */
  compare?: 'unpadded_query_rows';
  embedding?: {input_dim: number; output_dim: number; mask_zero: boolean};
  source_format?: string;
  notes?: string;
}

/** The converter-layout model.json. */
export interface ConverterModelJson {
  format: string;
  generatedBy: string;
  convertedBy: string;
  modelTopology: {keras_version: string; backend: string; model_config: {class_name: string; config: any}};
  weightsManifest: Array<{paths: string[]; weights: Array<{name: string; shape: number[]; dtype: string}>}>;
}

/** The path of `file` in case `name`'s folder; throws, naming both, when the case or file is missing. */
export function kerasCasePath(name: string, file = ''): string {
  const dir = path.resolve(KERAS_FIXTURES_DIR, name);  // an absolute name is a case folder elsewhere (made by a test)
  if (!fs.existsSync(path.join(dir, 'case.json'))) {
    throw new Error(`Unknown Keras fixture case \`${name}\`: no ${path.join(dir, 'case.json')}. ` +
                    `Known cases: ${listKerasCases().join(', ')}`);
  }
  const full = path.join(dir, file);
  if (!fs.existsSync(full)) throw new Error(`Keras fixture case \`${name}\` has no file ${full}`);
  return full;
}

/** The case names (folders with a case.json), sorted. */
export function listKerasCases(): string[] {
  return fs.readdirSync(KERAS_FIXTURES_DIR)
      .filter((d) => fs.existsSync(path.join(KERAS_FIXTURES_DIR, d, 'case.json')))
      .sort();
}

function readJson<T>(name: string, file: string): T {
  const full = kerasCasePath(name, file);
  try {
    return JSON.parse(fs.readFileSync(full, 'utf8')) as T;
  } catch (e) {
    throw new Error(`Keras fixture ${full} is not valid JSON: ${(e as Error).message}`);
  }
}

export function readKerasCase(name: string): KerasCase {
  return readJson<KerasCase>(name, 'case.json');
}

/** Every weight of the model, in Keras' weight order (layer by layer, each layer in its own order). */
export function readKerasWeights(name: string): FixtureWeight[] {
  return readJson<{weights: FixtureWeight[]}>(name, 'weights.json').weights;
}

/** The weights of one layer (by layer name, e.g. 'mha'), in that layer's weight order. */
export function readLayerWeights(name: string, layer: string): FixtureWeight[] {
  const weights = readKerasWeights(name).filter((w) => w.layer === layer);
  if (weights.length === 0) throw new Error(`Keras fixture case \`${name}\` has no weights for layer \`${layer}\``);
  return weights;
}

/** The model's inputs, in the model's input order. */
export function readKerasInputs(name: string): FixtureTensor[] {
  return readJson<{inputs: FixtureTensor[]}>(name, 'inputs.json').inputs;
}

/** Keras' outputs (`model(inputs, training=False)`), in the model's output order. */
export function readKerasExpected(name: string): FixtureTensor[] {
  return readJson<{outputs: FixtureTensor[]}>(name, 'expected.json').outputs;
}

/** The converter folder's model.json. */
export function readConverterModelJson(name: string): ConverterModelJson {
  return readJson<ConverterModelJson>(name, path.join('tfjs', 'model.json'));
}

/** The number of elements of `shape`. */
export function sizeOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The values as a Float32Array; throws when their count does not match the shape. */
export function toFloat32(t: FixtureTensor): Float32Array {
  checkSize(t);
  return Float32Array.from(t.values);
}

/** A tensor of the entry's shape and dtype (bool entries become bool tensors). */
export function toTensor(t: FixtureTensor): tf.Tensor {
  checkSize(t);
  if (t.dtype === 'bool') return tf.tensor(t.values.map((v) => v !== 0), t.shape, 'bool');
  return tf.tensor(t.values, t.shape, t.dtype);
}

/** A case's inputs as tensors, in the model's input order. */
export function inputTensors(name: string): tf.Tensor[] {
  return readKerasInputs(name).map(toTensor);
}

/** A layer's weights as tensors, in the layer's weight order (for `layer.setWeights`). */
export function layerWeightTensors(name: string, layer: string): tf.Tensor[] {
  return readLayerWeights(name, layer).map(toTensor);
}

function checkSize(t: FixtureTensor): void {
  if (t.values.length !== sizeOf(t.shape)) {
    throw new Error(`Keras fixture tensor \`${t.name}\` has ${t.values.length} values for shape ` +
                    `[${t.shape.join(', ')}] (${sizeOf(t.shape)} expected)`);
  }
}
