/**
 * Keras 3.15 configs of tfjs' convolution and pooling layers: Conv1D, Conv2D, MaxPooling1D/2D,
 * AveragePooling1D/2D, GlobalAveragePooling1D and GlobalMaxPooling1D.
 */
import {Converter, Dict, notExportable, unmappableValue} from './keras_layer_spec';
import {ownWeights, standardLayer} from './keras_layer_builder';
import {dataFormat} from './keras_core_layers';
import {kerasActivation, kerasKernelAndBiasOptions} from './keras_values';
import {layerConfig} from './tfjs_layer_config';

function tuple(value: unknown, rank: number): unknown[] {
  return Array.isArray(value) ? value : Array(rank).fill(value);
}

function padding(layer: Parameters<Converter>[0]['layer'], value: unknown): string {
  if (value === 'valid' || value === 'same' || value === 'causal') return value;
  throw unmappableValue(layer, 'padding', value, 'expected valid, same or causal');
}

function conv(className: string, rank: number): Converter {
  return context => {
    const {layer} = context;
    const c = layerConfig(layer, ['filters', 'kernelSize', 'strides', 'padding', 'dataFormat', 'dilationRate', 'activation', 'useBias',
                                  'kernelInitializer', 'biasInitializer', 'kernelRegularizer', 'biasRegularizer',
                                  'activityRegularizer', 'kernelConstraint', 'biasConstraint', 'rank']);
    const config: Dict = {
      filters: c.filters, kernel_size: tuple(c.kernelSize, rank), strides: tuple(c.strides ?? 1, rank),
      padding: padding(layer, c.padding ?? 'valid'), data_format: dataFormat(layer, c.dataFormat),
      dilation_rate: tuple(c.dilationRate ?? 1, rank), groups: 1, activation: kerasActivation(layer, 'activation', c.activation),
      use_bias: c.useBias,
      ...kerasKernelAndBiasOptions(layer, c),
    };
    return standardLayer(context, {className, config, weightGroups: ownWeights(layer)});
  };
}

function pooling(className: string, rank: number): Converter {
  return context => {
    const {layer} = context;
    const c = layerConfig(layer, ['poolSize', 'strides', 'padding', 'dataFormat']);
    const poolSize = tuple(c.poolSize, rank);
    const config: Dict = {
      pool_size: poolSize, padding: padding(layer, c.padding ?? 'valid'), strides: c.strides == null ? poolSize : tuple(c.strides, rank),
      data_format: dataFormat(layer, c.dataFormat),
    };
    return standardLayer(context, {className, config});
  };
}

/**
 * tfjs' global poolings read every step and ignore a padding mask; Keras' GlobalAveragePooling1D
 * averages only the unmasked steps, so a mask reaching it would change the prediction.
 */
function globalPooling(className: string, usesMask: boolean): Converter {
  return context => {
    const {layer} = context;
    const c = layerConfig(layer, ['dataFormat']);
    if (usesMask && context.inputMasked[0]) {
      throw notExportable(layer, 'a padding mask (e.g. from Embedding\'s maskZero) reaches it: Keras averages only the ' +
                                 'unmasked steps, tfjs averages all of them. Received: a masked input');
    }
    return standardLayer(context, {className, config: {data_format: dataFormat(layer, c.dataFormat), keepdims: false}});
  };
}

export const CONV_POOLING_LAYERS: {[className: string]: Converter} = {
  Conv1D: conv('Conv1D', 1), Conv2D: conv('Conv2D', 2),
  MaxPooling1D: pooling('MaxPooling1D', 1), MaxPooling2D: pooling('MaxPooling2D', 2),
  AveragePooling1D: pooling('AveragePooling1D', 1), AveragePooling2D: pooling('AveragePooling2D', 2),
  GlobalAveragePooling1D: globalPooling('GlobalAveragePooling1D', true),
  GlobalMaxPooling1D: globalPooling('GlobalMaxPooling1D', false),
};
