/**
 * The common case of the export: one tfjs layer becomes one Keras layer of the same name, called
 * on the same inputs, with the same output shapes; and the helpers the converters share.
 */
import * as tf from '@tensorflow/tfjs';
import {ConversionContext, Conversion, Dict, KerasLayerSpec, KerasTensor, KerasWeight, KerasWeightGroup} from './keras_layer_spec';

/** The layer's weights, in its order, as copies (the export may change them, e.g. to fold a scale). */
export function layerWeights(layer: tf.layers.Layer): KerasWeight[] {
  return layer.weights.map(weight => {
    const value = weight.read();
    return {shape: [...value.shape], values: Float32Array.from(value.dataSync() as Float32Array)};
  });
}

/** The shapes and dtypes of the outputs of the layer's (one) node. */
export function tfjsOutputs(layer: tf.layers.Layer): Array<{shape: Array<number|null>; dtype: string}> {
  const node = layer.inboundNodes[0];
  return node.outputTensors.map(t => ({shape: [...t.shape], dtype: t.dtype}));
}

/** Output tensors of Keras layer `name` with the given shapes and dtypes. */
export function outputsOf(name: string, outputs: Array<{shape: Array<number|null>; dtype: string}>): KerasTensor[] {
  return outputs.map(({shape, dtype}, index) => ({layer: name, index, shape: [...shape], dtype}));
}

/** The Keras 3 build_config from the input shapes, as Keras writes it for a layer with one or several inputs. */
export function buildConfigFor(inputs: KerasTensor[]): Dict {
  return {input_shape: inputs.length === 1 ? inputs[0].shape : inputs.map(t => t.shape)};
}

export interface StandardLayer {
  className: string;
  config: Dict;
  weightGroups?: KerasWeightGroup[];
  kwargs?: {[key: string]: unknown};
  listArgument?: boolean;
  buildConfig?: Dict|null;
}

/** One Keras layer for the context's tfjs layer: same name, inputs and output shapes. */
export function standardLayer(context: ConversionContext, keras: StandardLayer): Conversion {
  const {layer, inputs} = context;
  const spec: KerasLayerSpec = {
    className: keras.className,
    name: layer.name,
    config: keras.config,
    buildConfig: keras.buildConfig === undefined ? buildConfigFor(inputs) : keras.buildConfig,
    args: inputs,
    kwargs: keras.kwargs ?? {},
    listArgument: keras.listArgument,
    outputs: outputsOf(layer.name, tfjsOutputs(layer)),
    weightGroups: keras.weightGroups ?? [],
    trainable: layer.trainable,
  };
  return {layers: [spec], outputs: spec.outputs};
}

/** The layer's weights as its own `vars` group (Dense, Embedding, convolutions, normalizations). */
export function ownWeights(layer: tf.layers.Layer): KerasWeightGroup[] {
  const weights = layerWeights(layer);
  return weights.length === 0 ? [] : [{path: '', weights}];
}
