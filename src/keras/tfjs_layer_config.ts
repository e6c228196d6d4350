/**
 * A tfjs layer's config for the export, checked: every key must be one the converter reads
 * (or a base key every layer has), so that an option Keras would not see is an error naming
 * the layer, never silently dropped.
 */
import * as tf from '@tensorflow/tfjs';
import {formatValue} from '../errors';
import {Dict, notExportable} from './keras_layer_spec';

/** Keys of tfjs' LayerArgs; their meaning reaches Keras another way (names, shapes, dtype) or not at all. */
const BASE_KEYS = new Set(['name', 'trainable', 'batchInputShape', 'inputShape', 'batchSize', 'dtype', 'inputDType', 'weights']);

/** `layer.getConfig()`, after checking that its keys are among `known` and the base keys, and its dtype is float32. */
export function layerConfig(layer: tf.layers.Layer, known: string[]): Dict {
  const config = layer.getConfig() as Dict;
  const allowed = new Set(known);
  for (const [key, value] of Object.entries(config)) {
    if (!allowed.has(key) && !BASE_KEYS.has(key) && value != null) {
      throw notExportable(layer, `its config key \`${key}\` has no Keras equivalent here. Received: ${key}=${formatValue(value)}`);
    }
  }
  if (layer.dtype != null && layer.dtype !== 'float32') {
    throw notExportable(layer, `only float32 layers are exported. Received: dtype=${formatValue(layer.dtype)}`);
  }
  return config;
}
