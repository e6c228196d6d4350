/**
 * loadKerasModel(source): a Keras 3 (or tf.keras 2) model as a tf.LayersModel, from a `.keras`
 * archive or a tensorflowjs_converter model.json (with its shards), given as a path (Node), a URL
 * or bytes.
 *
 * Order of work: read the source and tell its format; read the config and every weight value
 * (typed arrays, no tensors); normalize the config for tfjs; check each layer's config and the
 * masks (keras/check_layer_configs.ts, keras/keras_masks.ts). Only then are tensors made: a first
 * build with zero initializers gives tfjs' weight names and shapes, against which every value is
 * checked (it is disposed whatever happens), and the model returned is built by
 * tf.loadLayersModel from memory, strict, so tfjs skips the initializers it would overwrite. Its
 * layers then get Keras' mask handling where tfjs' differs (keras/keras_masks.ts).
 */
import * as tf from '@tensorflow/tfjs';
import {formatValue, ValueError} from '../errors';
import {checkLayerConfigs} from './check_layer_configs';
import {converterWeights, manifestPaths, WeightsManifestGroup} from './converter_weights';
import {readKerasArchive} from './read_keras_archive';
import {alignMaskPropagation, checkMasks, guardStaleMasks} from './keras_masks';
import {detectFormat, KerasModelSource, readKerasSource} from './keras_source';
import {readKerasH5Weights, WeightValue} from './read_keras_weights_h5';
import {matchWeights} from './match_weights';
import {Dict, normalizeKerasModelConfig, NormalizedKerasModel} from './normalize_keras_config';

export type {KerasModelSource} from './keras_source';

/** The model's config and its weight values, read from either format. */
interface KerasModelFiles {
  model: NormalizedKerasModel;
  values: Map<string, WeightValue[]>;
  /** Names the weights' file in messages. */
  weightsFile: string;
}

async function readArchive(bytes: Uint8Array, name: string): Promise<KerasModelFiles> {
  const archive = readKerasArchive(bytes, name);
  const version = archive.metadata?.keras_version;
  // Only Keras 3 writes .keras archives; metadata.json says which version.
  const model = normalizeKerasModelConfig(archive.config, typeof version !== 'string' || /^3\./.test(version));
  const weightsFile = `${name} (its model.weights.h5)`;
  const values = await readKerasH5Weights(archive.weights, weightsFile, model.layers);
  return {model, values, weightsFile};
}

async function readConverterFolder(modelJson: Dict, name: string, readSibling: ((p: string) => Promise<Uint8Array>)|null):
    Promise<KerasModelFiles> {
  const topology = modelJson.modelTopology as Dict|null;
  const modelConfig = topology != null && typeof topology === 'object' && 'model_config' in topology ? topology.model_config : topology;
  const version = topology?.keras_version;
  const model = normalizeKerasModelConfig(modelConfig, typeof version === 'string' && /^3\./.test(version));
  const manifest = (modelJson.weightsManifest ?? []) as WeightsManifestGroup[];
  const paths = manifestPaths(manifest, name);
  if (paths.length > 0 && readSibling == null) {
    throw new ValueError(
        `${name} is a converter model.json, whose weights are in separate shard files (${paths.join(', ')}): ` +
        `pass its path or URL so that they can be read beside it, or a .keras archive as bytes.`);
  }
  const shards = new Map<string, Uint8Array>();
  for (const p of paths) shards.set(p, await readSibling!(p));
  const layerNames = new Set(model.layers.map(l => l.name));
  return {model, values: converterWeights(manifest, shards, layerNames, name), weightsFile: `${name} (its weight shards)`};
}

/**
 * A deep copy of `value` with every `*_initializer` replaced by zeros (the first build's only job
 * is shapes), and `unit_forget_bias` off: tfjs' LSTMCell leaks the pieces of that initial bias
 * (4 tensors per build) when it runs.
 */
function withZeroInitializers(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withZeroInitializers);
  if (value == null || typeof value !== 'object') return value;
  const out: Dict = {};
  for (const [key, v] of Object.entries(value as Dict)) {
    out[key] = /_initializer$/.test(key) && v != null ? {class_name: 'Zeros', config: {}} :
        key === 'unit_forget_bias' ? false : withZeroInitializers(v);
  }
  return out;
}

/** tfjs' weight names and shapes for the model, matched with the values; the probe model is disposed. */
async function matchedWeights(files: KerasModelFiles) {
  let probe: tf.LayersModel;
  try {
    probe = await tf.models.modelFromJSON({modelTopology: withZeroInitializers(files.model.topology) as tf.io.ModelJSON['modelTopology']});
  } catch (error) {
    throw new ValueError(`tfjs-layers cannot build the model \`${files.model.name}\`: ${(error as Error).message}`);
  }
  try {
    return matchWeights(probe, files.values, files.weightsFile);
  } finally {
    probe.dispose();
  }
}

/**
 * Loads a Keras model (see the file's docstring). Throws a ValueError naming the file, layer,
 * class, key or value that tfjs cannot load as Keras runs it; leaks no tensor when it throws.
 */
export async function loadKerasModel(source: KerasModelSource): Promise<tf.LayersModel> {
  const {bytes, name, readSibling} = await readKerasSource(source);
  const detected = detectFormat(bytes, name);
  const files = detected.format === 'archive' ? await readArchive(bytes, name) :
      await readConverterFolder(detected.modelJson, name, readSibling);
  const checked = checkLayerConfigs(files.model);
  const maskless = checkMasks(files.model, checked);
  const {weightSpecs, weightData} = await matchedWeights(files);
  const handler = tf.io.fromMemory({
    modelTopology: files.model.topology as unknown as tf.io.ModelArtifacts['modelTopology'],
    weightSpecs,
    weightData,
  });
  try {
    const model = await tf.loadLayersModel(handler, {strict: true});
    alignMaskPropagation(model);
    guardStaleMasks(model, maskless);
    return model;
  } catch (error) {
    throw new ValueError(`tfjs-layers cannot load the model \`${files.model.name}\` from ${name}: ${formatValue((error as Error).message)}`);
  }
}
