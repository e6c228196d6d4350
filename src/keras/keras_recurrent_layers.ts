/**
 * Keras 3.15 configs of tfjs' recurrent layers: LSTM, GRU (reset_after false, as tfjs computes),
 * SimpleRNN, and Bidirectional around them. Their weights live in Keras' `cell` object.
 */
import * as tf from '@tensorflow/tfjs';
import {Converter, Dict, KerasWeightGroup, notExportable, unmappableValue} from './keras_layer_spec';
import {layerWeights, standardLayer} from './keras_layer_builder';
import {dtypePolicy, kerasActivation, kerasConstraint, kerasInitializer, kerasRegularizer} from './keras_values';
import {layerConfig} from './tfjs_layer_config';

const RNN_KEYS = [
  'units', 'activation', 'useBias', 'kernelInitializer', 'recurrentInitializer', 'biasInitializer', 'kernelRegularizer',
  'recurrentRegularizer', 'biasRegularizer', 'activityRegularizer', 'kernelConstraint', 'recurrentConstraint', 'biasConstraint',
  'dropout', 'recurrentDropout', 'returnSequences', 'returnState', 'goBackwards', 'stateful', 'unroll', 'seed',
];
const GATED_KEYS = ['recurrentActivation'];

/** Keras' config of an LSTM, GRU or SimpleRNN layer (without name, trainable and dtype). */
function recurrentConfig(layer: tf.layers.Layer, zeroOutputForMask: boolean): Dict {
  const className = layer.getClassName();
  const gated = className !== 'SimpleRNN';
  const extra = className === 'LSTM' ? ['unitForgetBias', 'implementation'] : className === 'GRU' ? ['resetAfter', 'implementation'] : [];
  const c = layerConfig(layer, [...RNN_KEYS, ...(gated ? GATED_KEYS : []), ...extra]);
  if (c.stateful === true) throw unmappableValue(layer, 'stateful', c.stateful, 'a saved Keras model starts from zero states');
  if (c.resetAfter === true) throw unmappableValue(layer, 'resetAfter', c.resetAfter, 'tfjs 4.22 computes reset_after=false');
  const config: Dict = {
    return_sequences: c.returnSequences === true, return_state: c.returnState === true, go_backwards: c.goBackwards === true,
    stateful: false, unroll: c.unroll === true, zero_output_for_mask: zeroOutputForMask, units: c.units,
    activation: kerasActivation(layer, 'activation', c.activation),
  };
  if (gated) config.recurrent_activation = kerasActivation(layer, 'recurrentActivation', c.recurrentActivation);
  Object.assign(config, {
    use_bias: c.useBias,
    kernel_initializer: kerasInitializer(layer, 'kernelInitializer', c.kernelInitializer),
    recurrent_initializer: kerasInitializer(layer, 'recurrentInitializer', c.recurrentInitializer),
    bias_initializer: kerasInitializer(layer, 'biasInitializer', c.biasInitializer),
  });
  if (className === 'LSTM') config.unit_forget_bias = c.unitForgetBias ?? true;
  Object.assign(config, {
    kernel_regularizer: kerasRegularizer(layer, 'kernelRegularizer', c.kernelRegularizer),
    recurrent_regularizer: kerasRegularizer(layer, 'recurrentRegularizer', c.recurrentRegularizer),
    bias_regularizer: kerasRegularizer(layer, 'biasRegularizer', c.biasRegularizer),
    activity_regularizer: kerasRegularizer(layer, 'activityRegularizer', c.activityRegularizer),
    kernel_constraint: kerasConstraint(layer, 'kernelConstraint', c.kernelConstraint),
    recurrent_constraint: kerasConstraint(layer, 'recurrentConstraint', c.recurrentConstraint),
    bias_constraint: kerasConstraint(layer, 'biasConstraint', c.biasConstraint),
    dropout: c.dropout ?? 0, recurrent_dropout: c.recurrentDropout ?? 0,
  });
  if (className === 'GRU') config.reset_after = false;
  if (gated) config.seed = c.seed ?? null;  // Keras 3.15's SimpleRNN does not write a seed
  else if (c.seed != null) throw unmappableValue(layer, 'seed', c.seed, 'Keras\' SimpleRNN does not keep a seed');
  return config;
}

/** The weights of an RNN layer: its cell's kernel, recurrent kernel and bias, under `prefix` + 'cell'. */
function cellWeights(layer: tf.layers.Layer, prefix: string): KerasWeightGroup[] {
  return [{path: `${prefix}cell`, weights: layerWeights(layer)}];
}

const recurrent: Converter = context => {
  const {layer} = context;
  // tfjs holds the last output at masked steps, as Keras does with zero_output_for_mask=false.
  const config = recurrentConfig(layer, false);
  return standardLayer(context, {className: layer.getClassName(), config, weightGroups: cellWeights(layer, '')});
};

const bidirectional: Converter = context => {
  const {layer} = context;
  const c = layerConfig(layer, ['layer', 'mergeMode']);
  const {forwardLayer, backwardLayer} = layer as unknown as {forwardLayer: tf.layers.Layer; backwardLayer: tf.layers.Layer};
  const innerClass = forwardLayer.getClassName();
  if (!(innerClass in RECURRENT_CLASSES)) {
    throw notExportable(layer, `it wraps a ${innerClass}; only LSTM, GRU and SimpleRNN are exported. Received: layer=${innerClass}`);
  }
  const returnSequences = (forwardLayer.getConfig() as Dict).returnSequences === true;
  if (returnSequences && context.inputMasked[0]) {
    throw notExportable(layer, 'a padding mask reaches it: Keras\' Bidirectional zeroes the outputs of masked steps ' +
                               '(zero_output_for_mask), tfjs holds the last output there. Received: a masked input');
  }
  const inner = (rnn: tf.layers.Layer) => ({
    module: 'keras.layers', class_name: rnn.getClassName(),
    config: {name: rnn.name, trainable: rnn.trainable, dtype: dtypePolicy(), ...recurrentConfig(rnn, returnSequences)},
    registered_name: null,
  });
  const mergeMode = c.mergeMode === undefined ? 'concat' : c.mergeMode;
  if (mergeMode != null && !['concat', 'sum', 'mul', 'ave'].includes(mergeMode as string)) {
    throw unmappableValue(layer, 'mergeMode', mergeMode, 'expected concat, sum, mul, ave or null');
  }
  const config: Dict = {merge_mode: mergeMode, layer: inner(forwardLayer), backward_layer: inner(backwardLayer)};
  const weightGroups = [...cellWeights(forwardLayer, 'forward_layer/'), ...cellWeights(backwardLayer, 'backward_layer/')];
  return standardLayer(context, {className: 'Bidirectional', config, weightGroups});
};

const RECURRENT_CLASSES: {[className: string]: Converter} = {LSTM: recurrent, GRU: recurrent, SimpleRNN: recurrent};

export const RECURRENT_LAYERS: {[className: string]: Converter} = {...RECURRENT_CLASSES, Bidirectional: bidirectional};
