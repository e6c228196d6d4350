/**
 * tfjs config values in Keras 3's serialized form: dtypes as DTypePolicy objects, and
 * initializers, regularizers and constraints as nested {module, class_name, config,
 * registered_name} objects with Keras' key spelling; activations by Keras' names. A value with
 * no Keras equivalent is an error naming the layer.
 */
import type * as tf from '@tensorflow/tfjs';
import {Dict, unmappableValue} from './keras_layer_spec';

/** Keras 3's DTypePolicy for a layer's dtype. */
export function dtypePolicy(name = 'float32'): Dict {
  return {module: 'keras', class_name: 'DTypePolicy', config: {name}, registered_name: null};
}

function kerasObject(module: string, className: string, config: Dict): Dict {
  return {module, class_name: className, config, registered_name: null};
}

/** tfjs' VarianceScaling spellings -> Keras'. */
const MODES: Dict = {fanIn: 'fan_in', fanOut: 'fan_out', fanAvg: 'fan_avg'};
const DISTRIBUTIONS: Dict = {normal: 'truncated_normal', truncatedNormal: 'truncated_normal', uniform: 'uniform'};

/** The initializers whose Keras config is only the seed. */
const SEEDED = new Set(['GlorotUniform', 'GlorotNormal', 'HeNormal', 'HeUniform', 'LeCunNormal', 'LeCunUniform']);

interface Serialized {
  className: string;
  config?: Dict;
}

/**
 * An initializer of `layer`'s `key` (tfjs' {className, config}) in Keras' form. Initializers do not
 * change predictions, but Keras rebuilds the layer with them, so they must exist in Keras.
 */
export function kerasInitializer(layer: tf.layers.Layer, key: string, value: unknown): Dict|null {
  if (value == null) return null;
  const {className, config = {}} = value as Serialized;
  const seed = config.seed ?? null;
  const keras = (name: string, c: Dict) => kerasObject('keras.initializers', name, c);
  switch (className) {
    case 'Zeros': case 'Ones': return keras(className, {});
    case 'Constant': return keras('Constant', {value: config.value});
    case 'RandomUniform': return keras('RandomUniform', {seed, minval: config.minval, maxval: config.maxval});
    case 'RandomNormal': return keras('RandomNormal', {seed, mean: config.mean, stddev: config.stddev});
    case 'TruncatedNormal': return keras('TruncatedNormal', {seed, mean: config.mean, stddev: config.stddev});
    case 'Orthogonal': return keras('Orthogonal', {seed, gain: config.gain ?? 1});
    case 'Identity': return keras('Identity', {gain: config.gain ?? 1});
    case 'VarianceScaling': {
      const mode = MODES[config.mode as string];
      const distribution = DISTRIBUTIONS[config.distribution as string];
      if (mode == null || distribution == null) throw unmappableValue(layer, key, value, 'an unknown VarianceScaling mode or distribution');
      return keras('VarianceScaling', {seed, scale: config.scale, mode, distribution});
    }
    default:
      if (SEEDED.has(className)) return keras(className, {seed});
      throw unmappableValue(layer, key, value, 'an initializer Keras does not have');
  }
}

/** A regularizer (tfjs has only L1L2) in Keras' form. */
export function kerasRegularizer(layer: tf.layers.Layer, key: string, value: unknown): Dict|null {
  if (value == null) return null;
  const {className, config = {}} = value as Serialized;
  if (className !== 'L1L2') throw unmappableValue(layer, key, value, 'a regularizer Keras does not have');
  return kerasObject('keras.regularizers', 'L1L2', {l1: config.l1 ?? 0, l2: config.l2 ?? 0});
}

/** A constraint in Keras' form. */
export function kerasConstraint(layer: tf.layers.Layer, key: string, value: unknown): Dict|null {
  if (value == null) return null;
  const {className, config = {}} = value as Serialized;
  const keras = (name: string, c: Dict) => kerasObject('keras.constraints', name, c);
  switch (className) {
    case 'NonNeg': return keras('NonNeg', {});
    case 'UnitNorm': return keras('UnitNorm', {axis: config.axis ?? 0});
    case 'MaxNorm': return keras('MaxNorm', {max_value: config.maxValue ?? 2, axis: config.axis ?? 0});
    case 'MinMaxNorm':
      return keras('MinMaxNorm', {min_value: config.minValue ?? 0, max_value: config.maxValue ?? 1, rate: config.rate ?? 1,
                                  axis: config.axis ?? 0});
    default: throw unmappableValue(layer, key, value, 'a constraint Keras does not have');
  }
}

/**
 * tfjs activation names -> Keras' (checked against Keras 3.15). Left out on purpose: tfjs'
 * hardSigmoid (clip(0.2·x + 0.5), Keras' is relu6(x + 3)/6) and gelu_new (the tanh
 * approximation, which Keras names by no string).
 */
const ACTIVATIONS: {[name: string]: string} = {
  linear: 'linear', relu: 'relu', relu6: 'relu6', elu: 'elu', selu: 'selu', sigmoid: 'sigmoid', softmax: 'softmax',
  softplus: 'softplus', softsign: 'softsign', tanh: 'tanh', swish: 'silu', mish: 'mish', logSoftmax: 'log_softmax', gelu: 'gelu',
};

/** An activation of `layer`'s `key` by Keras' name. */
export function kerasActivation(layer: tf.layers.Layer, key: string, value: unknown): string {
  const name = value == null ? 'linear' : String(value);
  const keras = ACTIVATIONS[name];
  if (keras == null) throw unmappableValue(layer, key, value, 'Keras has no activation that computes the same');
  return keras;
}

/**
 * The kernel and bias initializers, regularizers and constraints and the activity regularizer
 * of a layer with a kernel and a bias (Dense, convolutions, attention), in Keras' spelling, from
 * the tfjs config `c` (camelCase keys).
 */
export function kerasKernelAndBiasOptions(layer: tf.layers.Layer, c: Dict): Dict {
  return {
    kernel_initializer: kerasInitializer(layer, 'kernelInitializer', c.kernelInitializer),
    bias_initializer: kerasInitializer(layer, 'biasInitializer', c.biasInitializer),
    kernel_regularizer: kerasRegularizer(layer, 'kernelRegularizer', c.kernelRegularizer),
    bias_regularizer: kerasRegularizer(layer, 'biasRegularizer', c.biasRegularizer),
    activity_regularizer: kerasRegularizer(layer, 'activityRegularizer', c.activityRegularizer),
    kernel_constraint: kerasConstraint(layer, 'kernelConstraint', c.kernelConstraint),
    bias_constraint: kerasConstraint(layer, 'biasConstraint', c.biasConstraint),
  };
}
