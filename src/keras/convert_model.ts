/**
 * Walks a tfjs model's graph from its outputs and converts each layer (see keras_layer_configs.ts)
 * into Keras layers, before anything is written: every layer must be mappable. InputLayers become
 * Keras InputLayers; shared layers (one layer at several nodes) and nested models are refused.
 */
import * as tf from '@tensorflow/tfjs';
import {formatValue} from '../errors';
import {Dict, KerasLayerSpec, KerasTensor, notExportable} from './keras_layer_spec';
import {KERAS_CONVERTERS} from './keras_layer_configs';
import {checkMaskReader, MaskState, outputMask} from './mask_flow';

export interface ConvertedModel {
  layers: KerasLayerSpec[];
  inputs: KerasTensor[];
  outputs: KerasTensor[];
}

type Symbolic = tf.SymbolicTensor;

function inputLayer(layer: tf.layers.Layer, tensor: Symbolic): KerasLayerSpec {
  const config = layer.getConfig() as Dict;
  if (config.sparse === true) throw notExportable(layer, 'sparse inputs are not exported. Received: sparse=true');
  const output: KerasTensor = {layer: layer.name, index: 0, shape: [...tensor.shape], dtype: tensor.dtype};
  return {
    className: 'InputLayer', name: layer.name,
    config: {batch_shape: [...tensor.shape], dtype: tensor.dtype, sparse: false, ragged: false, optional: false},
    buildConfig: null, args: [], kwargs: {}, outputs: [output], weightGroups: [], trainable: true,
  };
}

export function convertModel(model: tf.LayersModel): ConvertedModel {
  const layers: KerasLayerSpec[] = [];
  const names = new Set(model.layers.map(layer => layer.name));
  const converted = new Map<string, KerasTensor[]>();  // tfjs layer name -> Keras tensors of its outputs
  const masks = new Map<string, MaskState>();
  const nodeOf = new Map<string, number>();
  const uniqueName = (base: string): string => {
    let name = base;
    for (let i = 1; names.has(name); i++) name = `${base}_${i}`;
    names.add(name);
    return name;
  };
  const convert = (tensor: Symbolic): KerasTensor => {
    const layer = tensor.sourceLayer as tf.layers.Layer;
    const known = nodeOf.get(layer.name);
    if (known != null && known !== tensor.nodeIndex) {
      throw notExportable(layer, 'it is shared (called at more than one node of the model); Keras files are written ' +
                                 `here for one node per layer. Received: nodes ${known} and ${tensor.nodeIndex}`);
    }
    nodeOf.set(layer.name, tensor.nodeIndex);
    if (!converted.has(layer.name)) {
      if (layer instanceof tf.LayersModel) {
        throw notExportable(layer, 'nested models are not exported; build the model from the inner model\'s layers');
      }
      const node = layer.inboundNodes[tensor.nodeIndex];
      if (layer.getClassName() === 'InputLayer' || node.inboundLayers.length === 0) {
        const spec = inputLayer(layer, tensor);
        layers.push(spec);
        converted.set(layer.name, spec.outputs);
        masks.set(layer.name, null);
      } else {
        const inputs = node.inputTensors.map(convert);
        const inputMasks = node.inputTensors.map(t => masks.get(t.sourceLayer.name) ?? null);
        const inputMasked = inputMasks.map(state => state != null);
        const converter = KERAS_CONVERTERS[layer.getClassName()];
        if (converter == null) {
          throw notExportable(layer, `Keras has no layer for class ${formatValue(layer.getClassName())} and the export ` +
                                     'knows no way to write it with Keras layers');
        }
        checkMaskReader(layer, inputMasks);
        const conversion = converter({layer, inputs, inputMasked, uniqueName});
        layers.push(...conversion.layers);
        converted.set(layer.name, conversion.outputs);
        masks.set(layer.name, outputMask(layer, inputMasks));
      }
    }
    const outputs = converted.get(layer.name)!;
    if (tensor.tensorIndex >= outputs.length) {
      throw notExportable(layer, `its output ${tensor.tensorIndex} has no Keras counterpart. Received: tensorIndex=${tensor.tensorIndex}`);
    }
    return outputs[tensor.tensorIndex];
  };
  const outputs = model.outputs.map(convert);
  const inputs = model.inputs.map(convert);
  return {layers, inputs, outputs};
}
