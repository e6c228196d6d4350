/**
 * Keras 3.15 configs of tfjs' core and merge layers: Dense, Embedding, Dropout, Activation,
 * Flatten, Reshape, Masking, Add, Multiply, Concatenate. Keys are Keras' spelling, as
 * `layer.get_config()` writes them in Keras 3.15.
 */
import {Converter, Dict, unmappableValue} from './keras_layer_spec';
import {ownWeights, standardLayer} from './keras_layer_builder';
import {kerasActivation, kerasConstraint, kerasInitializer, kerasKernelAndBiasOptions, kerasRegularizer} from './keras_values';
import {layerConfig} from './tfjs_layer_config';

const dense: Converter = context => {
  const {layer} = context;
  const c = layerConfig(layer, ['units', 'activation', 'useBias', 'kernelInitializer', 'biasInitializer', 'kernelRegularizer',
                                'biasRegularizer', 'activityRegularizer', 'kernelConstraint', 'biasConstraint']);
  const config: Dict = {
    units: c.units, activation: kerasActivation(layer, 'activation', c.activation), use_bias: c.useBias,
    ...kerasKernelAndBiasOptions(layer, c), quantization_config: null,
  };
  // Keras 3.15's Dense takes an activity regularizer but does not write the key when there is none.
  if (config.activity_regularizer == null) delete config.activity_regularizer;
  return standardLayer(context, {className: 'Dense', config, weightGroups: ownWeights(layer)});
};

const embedding: Converter = context => {
  const {layer} = context;
  const c = layerConfig(layer, ['inputDim', 'outputDim', 'embeddingsInitializer', 'embeddingsRegularizer', 'activityRegularizer',
                                'embeddingsConstraint', 'maskZero', 'inputLength']);
  const config: Dict = {
    input_dim: c.inputDim, output_dim: c.outputDim,
    embeddings_initializer: kerasInitializer(layer, 'embeddingsInitializer', c.embeddingsInitializer),
    embeddings_regularizer: kerasRegularizer(layer, 'embeddingsRegularizer', c.embeddingsRegularizer),
    activity_regularizer: kerasRegularizer(layer, 'activityRegularizer', c.activityRegularizer),
    embeddings_constraint: kerasConstraint(layer, 'embeddingsConstraint', c.embeddingsConstraint),
    mask_zero: c.maskZero === true, quantization_config: null,
  };
  return standardLayer(context, {className: 'Embedding', config, weightGroups: ownWeights(layer)});
};

const dropout: Converter = context => {
  const c = layerConfig(context.layer, ['rate', 'noiseShape', 'seed']);
  const config = {rate: c.rate, seed: c.seed ?? null, noise_shape: c.noiseShape ?? null};
  return standardLayer(context, {className: 'Dropout', config});
};

const activation: Converter = context => {
  const c = layerConfig(context.layer, ['activation']);
  return standardLayer(context, {className: 'Activation', config: {activation: kerasActivation(context.layer, 'activation', c.activation)}});
};

/** tfjs' dataFormat -> Keras' data_format. */
export function dataFormat(layer: Parameters<Converter>[0]['layer'], value: unknown): string {
  if (value == null || value === 'channelsLast') return 'channels_last';
  if (value === 'channelsFirst') return 'channels_first';
  throw unmappableValue(layer, 'dataFormat', value, 'expected channelsLast or channelsFirst');
}

const flatten: Converter = context => {
  const c = layerConfig(context.layer, ['dataFormat']);
  return standardLayer(context, {className: 'Flatten', config: {data_format: dataFormat(context.layer, c.dataFormat)}});
};

const reshape: Converter = context => {
  const c = layerConfig(context.layer, ['targetShape']);
  return standardLayer(context, {className: 'Reshape', config: {target_shape: c.targetShape}});
};

/** tfjs-attention's Cropping1D (src/layers/cropping_1d.ts) is Keras' own. */
const cropping1D: Converter = context => {
  const c = layerConfig(context.layer, ['cropping']);
  return standardLayer(context, {className: 'Cropping1D', config: {cropping: c.cropping}});
};

const masking: Converter = context => {
  const c = layerConfig(context.layer, ['maskValue']);
  return standardLayer(context, {className: 'Masking', config: {mask_value: c.maskValue ?? 0}});
};

/** Add and Multiply: no arguments of their own. */
function merge(className: string): Converter {
  return context => {
    layerConfig(context.layer, []);
    return standardLayer(context, {className, config: {}, listArgument: true});
  };
}

const concatenate: Converter = context => {
  const c = layerConfig(context.layer, ['axis']);
  return standardLayer(context, {className: 'Concatenate', config: {axis: c.axis ?? -1}, listArgument: true});
};

export const CORE_LAYERS: {[className: string]: Converter} = {
  Dense: dense, Embedding: embedding, Dropout: dropout, Activation: activation, Flatten: flatten, Reshape: reshape,
  Cropping1D: cropping1D, Masking: masking, Add: merge('Add'), Multiply: merge('Multiply'), Concatenate: concatenate,
};
