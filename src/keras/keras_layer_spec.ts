/**
 * What saveKerasModel builds before it writes anything: the Keras 3 layers of the exported model
 * (class, config, the node that calls it, its weights), and the Keras tensors that connect them.
 * A tfjs layer becomes one Keras layer, or a few where Keras has no single equivalent.
 */
import type * as tf from '@tensorflow/tfjs';
import {formatValue, ValueError} from '../errors';

export type Dict = {[key: string]: unknown};

/** A tensor of the Keras model: the output `index` of Keras layer `layer`, and its shape and dtype. */
export interface KerasTensor {
  layer: string;
  index: number;
  shape: Array<number|null>;
  dtype: string;
}

/** A weight's values, C order. */
export interface KerasWeight {
  shape: number[];
  values: Float32Array;
}

/**
 * The weights of one object of a Keras layer: `path` is where Keras keeps them below the layer's
 * group in model.weights.h5 ('' for the layer's own `vars`, e.g. 'query_dense' for a
 * MultiHeadAttention's query projection, 'forward_layer/cell' for a Bidirectional LSTM).
 */
export interface KerasWeightGroup {
  path: string;
  weights: KerasWeight[];
}

/** One layer of the Keras model and its one node. */
export interface KerasLayerSpec {
  className: string;
  /** The layer's name (unique in the model). */
  name: string;
  /** Keras' config, less name, trainable and dtype (added for every layer). */
  config: Dict;
  buildConfig: Dict|null;
  /** The node's positional tensor arguments, then its keyword arguments (tensors allowed as values). */
  args: KerasTensor[];
  /** Whether the node takes `args` as one list argument, as Keras' merge layers do (`Add()([a, b])`). */
  listArgument?: boolean;
  kwargs: {[key: string]: unknown};
  outputs: KerasTensor[];
  weightGroups: KerasWeightGroup[];
  trainable: boolean;
}

/** What a converter is given: the tfjs layer, the Keras tensors of its node's inputs, and the export. */
export interface ConversionContext {
  layer: tf.layers.Layer;
  inputs: KerasTensor[];
  /** Whether a padding mask (e.g. from Embedding's maskZero) may reach input i of the node. */
  inputMasked: boolean[];
  /** A layer name not yet used in the model, from `base`. */
  uniqueName(base: string): string;
}

/** A converter's result: the Keras layers it adds and the Keras tensors standing for the tfjs outputs. */
export interface Conversion {
  layers: KerasLayerSpec[];
  outputs: KerasTensor[];
}

export type Converter = (context: ConversionContext) => Conversion;

/** The error for a layer or config value with no Keras equivalent; it names the layer and its class. */
export function notExportable(layer: tf.layers.Layer, what: string): ValueError {
  return new ValueError(`Layer "${layer.name}" (class ${layer.getClassName()}) cannot be saved as a Keras model: ${what}`);
}

/** The error for a config value of `layer` that Keras cannot honour. */
export function unmappableValue(layer: tf.layers.Layer, key: string, value: unknown, why: string): ValueError {
  return notExportable(layer, `its \`${key}\` has no Keras equivalent (${why}). Received: ${key}=${formatValue(value)}`);
}
