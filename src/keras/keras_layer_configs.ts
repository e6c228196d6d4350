/**
 * The table of the export: for each tfjs layer class with a Keras 3 equivalent, the converter
 * that writes it (see keras_core_layers.ts, keras_recurrent_layers.ts, keras_conv_pooling_layers.ts,
 * keras_normalization_layers.ts, attention_to_keras.ts, position_layers_to_keras.ts). A class not
 * here is an error naming the layer.
 */
import {Converter} from './keras_layer_spec';
import {CORE_LAYERS} from './keras_core_layers';
import {RECURRENT_LAYERS} from './keras_recurrent_layers';
import {CONV_POOLING_LAYERS} from './keras_conv_pooling_layers';
import {NORMALIZATION_LAYERS} from './keras_normalization_layers';
import {ATTENTION_LAYERS} from './attention_to_keras';
import {POSITION_LAYERS} from './position_layers_to_keras';

export const KERAS_CONVERTERS: {[className: string]: Converter} = {
  ...CORE_LAYERS, ...RECURRENT_LAYERS, ...CONV_POOLING_LAYERS, ...NORMALIZATION_LAYERS, ...ATTENTION_LAYERS, ...POSITION_LAYERS,
};
