/**
 * Pairs the values read from a Keras file (each layer's, in its weight order) with a tfjs
 * model's weights, layer by layer, checking every count and shape; gives tfjs' weight specs
 * (named by the variables' original names) and one buffer, as tf.io.fromMemory takes them.
 */
import * as tf from '@tensorflow/tfjs';
import {formatValue, ValueError} from '../errors';
import type {WeightValue} from './read_keras_weights_h5';
import {layerLabel} from './normalize_keras_config';

export interface MatchedWeights {
  weightSpecs: tf.io.WeightsManifestEntry[];
  weightData: ArrayBuffer;
}

/**
 * `values` is keyed by layer name; `file` names the weights' file in messages. Throws a
 * ValueError naming the file, the layer and the weight for a missing weight, a surplus or a
 * shape mismatch (expected vs received).
 */
export function matchWeights(model: tf.LayersModel, values: Map<string, WeightValue[]>, file: string): MatchedWeights {
  const specs: tf.io.WeightsManifestEntry[] = [];
  const arrays: Float32Array[] = [];
  const used = new Set<string>();
  for (const layer of model.layers) {
    const targets = layer.weights;
    const given = values.get(layer.name) ?? [];
    used.add(layer.name);
    const where = layerLabel(layer.name, layer.getClassName());
    targets.forEach((target, i) => {
      const value = given[i];
      const weight = target.originalName.startsWith(`${layer.name}/`) ? target.originalName.slice(layer.name.length + 1) : target.originalName;
      if (value == null) {
        throw new ValueError(
            `The weights file ${file} has no value for weight \`${weight}\` (shape ${formatValue(target.shape)}) of the ` +
            `${where}: it holds ${given.length} of the layer's ${targets.length} weights` +
            `${given.length > 0 ? ` (${given.map(v => v.path).join(', ')})` : ''}.`);
      }
      if (formatValue(value.shape) !== formatValue(target.shape)) {
        throw new ValueError(
            `The weights file ${file} has \`${value.path}\` for weight \`${weight}\` of the ${where} with the wrong ` +
            `shape: expected ${formatValue(target.shape)}. Received: shape=${formatValue(value.shape)}`);
      }
      specs.push({name: target.originalName, shape: [...target.shape] as number[], dtype: 'float32'});
      arrays.push(value.values);
    });
    if (given.length > targets.length) {
      throw new ValueError(
          `The weights file ${file} has ${given.length} values for the ${where}, which has ${targets.length} weights. ` +
          `Received: ${given.map(v => `${v.path} ${formatValue(v.shape)}`).join(', ')}`);
    }
  }
  for (const [layer, given] of values) {
    if (!used.has(layer) && given.length > 0) {
      throw new ValueError(
          `The weights file ${file} has weights for \`${layer}\`, which is not a layer of the model. ` +
          `Received: ${given.map(v => v.path).join(', ')}`);
    }
  }
  const total = arrays.reduce((n, a) => n + a.length, 0);
  const data = new Float32Array(total);
  let at = 0;
  for (const a of arrays) {
    data.set(a, at);
    at += a.length;
  }
  return {weightSpecs: specs, weightData: data.buffer};
}
