/**
 * saveKerasModel(model, path?): a tfjs model as a Keras 3 `.keras` archive that
 * `keras.saving.load_model` opens without custom objects and that predicts as the tfjs model
 * does. The whole model is converted (and every layer checked) before anything is written.
 */
import * as tf from '@tensorflow/tfjs';
import {formatValue, invalidArgument, ValueError} from '../errors';
import {kerasFileAccess} from './file_access';
import {kerasArchive} from './write_keras_archive';
import {functionalConfig} from './keras_functional_config';
import {checkpointNames, kerasLayerOrder} from './keras_layer_order';
import {kerasWeightsH5} from './write_keras_weights_h5';
import {convertModel} from './convert_model';

/**
 * Writes `model` as a `.keras` archive and returns its bytes; with `path` (Node), also writes them
 * there atomically (a temporary file renamed into place: a failed write leaves an existing file
 * as it was). Standard layers map to their Keras 3 configs, ScaledDotProductAttention to Keras'
 * MultiHeadAttention, PositionEmbedding and LastPosition to Keras layers that compute the same.
 * A layer or config value with no Keras equivalent is a ValueError naming the layer and its class.
 */
export async function saveKerasModel(model: tf.LayersModel, path?: string): Promise<Uint8Array> {
  if (!(model instanceof tf.LayersModel)) {
    throw invalidArgument('model', 'a tf.LayersModel (tf.model or tf.sequential)', model == null ? model : (model as object).constructor?.name);
  }
  if (path !== undefined && (typeof path !== 'string' || path.trim() === '')) {
    throw invalidArgument('path', 'a file path (a non-empty string)', path);
  }
  const access = path === undefined ? null : kerasFileAccess(`Writing ${formatValue(path)}`);
  if (model.outputs == null || model.outputs.length === 0) {
    throw new ValueError(`Model "${model.name}" has no outputs to save; add layers to it first.`);
  }
  const converted = convertModel(model);
  const ordered = kerasLayerOrder(converted.layers, converted.outputs);
  if (ordered.length !== converted.layers.length) {
    const unused = converted.layers.filter(layer => !ordered.includes(layer)).map(layer => layer.name);
    throw new ValueError(`Model "${model.name}" has layers that no output depends on. Received: ${formatValue(unused)}`);
  }
  const config = functionalConfig(model.name, model.trainable, ordered, converted.inputs, converted.outputs);
  const weights = await kerasWeightsH5(ordered, checkpointNames(ordered));
  const bytes = kerasArchive(config, weights);
  if (access != null) await access.writeFileAtomic(path!, bytes);
  return bytes;
}
