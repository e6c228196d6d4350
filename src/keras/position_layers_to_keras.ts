/**
 * This project's PositionEmbedding and LastPosition, which Keras lacks, written with layers Keras
 * has, exactly:
 *  - PositionEmbedding(x) = Add([x, LayerNormalization(axis=[1, 2], scale=False)(Dense(d, zero kernel,
 *    no bias)(x))]) with the position table P[:T] as the normalization's beta [T, d]: x·0 is 0, and a
 *    zero input normalizes to 0, so the branch is P exactly. Every layer on the way passes the input's
 *    padding mask on, which Keras' Add needs on both of its inputs to keep it (with a mask missing on
 *    one side it drops it; an EinsumDense holding P as its bias would drop it so);
 *  - LastPosition(x) = Reshape((d,))(Cropping1D((T - 1, 0))(x)): x[:, T-1, :].
 * Both need the sequence length T known in the model (it is for the park model, [null, 13]).
 */
import {Converter, Dict, KerasLayerSpec, KerasTensor, notExportable} from './keras_layer_spec';
import {buildConfigFor, layerWeights} from './keras_layer_builder';
import {kerasInitializer} from './keras_values';
import {layerConfig} from './tfjs_layer_config';

function knownLength(input: KerasTensor, layer: Parameters<Converter>[0]['layer']): number {
  const length = input.shape[1];
  if (input.shape.length !== 3 || length == null || input.shape[2] == null) {
    throw notExportable(layer, 'Keras has no such layer, and it is written with Keras layers only for inputs [B, T, d] ' +
                               `with T and d known. Received: input shape [${input.shape.map(String).join(', ')}]`);
  }
  return length;
}

function spec(name: string, className: string, config: Dict, args: KerasTensor[], outputShape: Array<number|null>,
              trainable: boolean, weightGroups: KerasLayerSpec['weightGroups'] = []): KerasLayerSpec {
  return {
    className, name, config, buildConfig: buildConfigFor(args), args, kwargs: {},
    outputs: [{layer: name, index: 0, shape: outputShape, dtype: 'float32'}], weightGroups, trainable,
  };
}

const positionEmbedding: Converter = context => {
  const {layer, inputs: [x]} = context;
  const c = layerConfig(layer, ['sequenceLength', 'embeddingsInitializer']);
  const length = knownLength(x, layer);
  const depth = x.shape[2] as number;
  const [table] = layerWeights(layer);  // [T_max, d]
  const positions = {shape: [length, depth], values: table.values.slice(0, length * depth)};  // P[:T]
  const zerosName = context.uniqueName(`${layer.name}_zeros`);
  const zeros = spec(zerosName, 'Dense', {
    units: depth, activation: 'linear', use_bias: false,
    kernel_initializer: kerasInitializer(layer, 'kernelInitializer', {className: 'Zeros'}), bias_initializer: null,
    kernel_regularizer: null, bias_regularizer: null, kernel_constraint: null, bias_constraint: null,
    quantization_config: null,
  }, [x], x.shape, false, [{path: '', weights: [{shape: [depth, depth], values: new Float32Array(depth * depth)}]}]);
  const tableName = context.uniqueName(`${layer.name}_table`);
  const broadcast = spec(tableName, 'LayerNormalization', {
    axis: [1, 2], epsilon: 0.001, center: true, scale: false, rms_scaling: false,
    beta_initializer: kerasInitializer(layer, 'embeddingsInitializer', c.embeddingsInitializer),
    gamma_initializer: kerasInitializer(layer, 'gammaInitializer', {className: 'Ones'}),
    beta_regularizer: null, gamma_regularizer: null, beta_constraint: null, gamma_constraint: null,
  }, zeros.outputs, x.shape, layer.trainable, [{path: '', weights: [positions]}]);
  const add = {...spec(layer.name, 'Add', {}, [x, broadcast.outputs[0]], x.shape, layer.trainable), listArgument: true};
  return {layers: [zeros, broadcast, add], outputs: add.outputs};
};

const lastPosition: Converter = context => {
  const {layer, inputs: [x]} = context;
  layerConfig(layer, []);
  const length = knownLength(x, layer);
  const depth = x.shape[2] as number;
  const cropName = context.uniqueName(`${layer.name}_crop`);
  const crop = spec(cropName, 'Cropping1D', {cropping: [length - 1, 0]}, [x], [x.shape[0], 1, depth], layer.trainable);
  const reshape = spec(layer.name, 'Reshape', {target_shape: [depth]}, crop.outputs, [x.shape[0], depth], layer.trainable);
  return {layers: [crop, reshape], outputs: reshape.outputs};
};

export const POSITION_LAYERS: {[className: string]: Converter} = {PositionEmbedding: positionEmbedding, LastPosition: lastPosition};
