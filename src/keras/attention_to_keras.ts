/**
 * This project's attention layers as Keras 3's MultiHeadAttention:
 *  - MultiHeadAttention is Keras-shaped already (config, weights, call arguments);
 *  - ScaledDotProductAttention maps onto it: its projections reshaped to Keras' [d, H, dk]
 *    kernels, its `scale` folded into the query projection (Keras multiplies the query by
 *    1/√key_dim, so the kernel and bias are multiplied by scale·√key_dim), an exact identity
 *    output projection when it has none, `causal` as the node's `use_causal_mask`.
 * Masks: where a padding mask may reach the layer, the node asks for the attention scores, which
 * sends Keras 3.15 down its explicit path: a query whose every key is masked then outputs zeros as
 * here (its fused path would give the mean of the values). The scores are an extra output no
 * layer reads.
 */
import * as tf from '@tensorflow/tfjs';
import {ConversionContext, Conversion, Converter, Dict, KerasWeight, notExportable} from './keras_layer_spec';
import {layerWeights, outputsOf, standardLayer, tfjsOutputs} from './keras_layer_builder';
import {kerasKernelAndBiasOptions} from './keras_values';
import {layerConfig} from './tfjs_layer_config';

/** Keras' MultiHeadAttention config (less name, trainable, dtype). */
function mhaConfig(layer: tf.layers.Layer, c: Dict, sizes: {numHeads: number; keyDim: number; valueDim: number},
                   outputShape: unknown, attentionAxes: unknown): Dict {
  return {
    num_heads: sizes.numHeads, key_dim: sizes.keyDim, value_dim: sizes.valueDim, dropout: c.dropout ?? 0,
    use_bias: c.useBias, use_gate: false, output_shape: outputShape, attention_axes: attentionAxes, sliding_window: null,
    ...kerasKernelAndBiasOptions(layer, c),
    seed: c.seed ?? null,
  };
}

/**
 * The Keras layer, given its weights as query, key, value, output [kernel, bias?] pairs: args
 * [query, value] (+ `key` keyword), the node's flags, and the scores forced on (an extra output)
 * where a mask may reach it.
 */
function mhaLayer(context: ConversionContext, config: Dict, weights: KerasWeight[][], query: number, value: number,
                  key: number|null, flags: {causal: boolean; returnScores: boolean}): Conversion {
  const {layer, inputs, inputMasked} = context;
  const distinct = [value, key].filter((i): i is number => i != null && inputs[i] !== inputs[query]);
  if (distinct.some(i => inputMasked[i])) {
    throw notExportable(layer, 'a padding mask reaches its value or key input: tfjs passes a layer only its first ' +
                               'input\'s mask, Keras would also mask the keys. Received: a masked value/key input');
  }
  const kwargs: Dict = {};
  if (key != null) kwargs.key = inputs[key];
  if (flags.causal) kwargs.use_causal_mask = true;
  const forceScores = !flags.returnScores && inputMasked.some(m => m);
  if (flags.returnScores || forceScores) kwargs.return_attention_scores = true;
  const shapesDict: Dict = {query_shape: inputs[query].shape, value_shape: inputs[value].shape};
  if (key != null) shapesDict.key_shape = inputs[key].shape;
  const groups = ['query_dense', 'key_dense', 'value_dense', 'output_dense'].map((path, i) => ({path, weights: weights[i]}));
  const conversion = standardLayer({...context, inputs: [inputs[query], inputs[value]]},
                                   {className: 'MultiHeadAttention', config, weightGroups: groups, kwargs,
                                    buildConfig: {shapes_dict: shapesDict}});
  if (forceScores) {
    const spec = conversion.layers[0];
    const out = tfjsOutputs(layer)[0];
    const [batch, heads, t, s] = [out.shape[0], config.num_heads as number, inputs[query].shape[1], inputs[value].shape[1]];
    spec.outputs = outputsOf(spec.name, [out, {shape: [batch, heads, t, s], dtype: 'float32'}]);
    return {layers: [spec], outputs: [spec.outputs[0]]};
  }
  return conversion;
}

const multiHeadAttention: Converter = context => {
  const {layer, inputs} = context;
  const c = layerConfig(layer, ['numHeads', 'keyDim', 'valueDim', 'dropout', 'useBias', 'outputShape', 'attentionAxes',
                                'kernelInitializer', 'biasInitializer', 'kernelRegularizer', 'biasRegularizer',
                                'activityRegularizer', 'kernelConstraint', 'biasConstraint', 'seed']);
  const callArgs = (layer.inboundNodes[0].callArgs ?? {}) as Dict;
  const sizes = {numHeads: c.numHeads as number, keyDim: c.keyDim as number, valueDim: (c.valueDim ?? c.keyDim) as number};
  const outputShape = c.outputShape == null ? null : typeof c.outputShape === 'number' ? [c.outputShape] : c.outputShape;
  // Keras writes the axes it resolved at build: all but the batch and feature axes of the query.
  const queryRank = inputs[0].shape.length;
  const axes = c.attentionAxes ?? Array.from({length: queryRank - 2}, (_, i) => i + 1);
  const config = mhaConfig(layer, c, sizes, outputShape, axes);
  const weights = layerWeights(layer);
  const perProjection = c.useBias === false ? 1 : 2;
  const groups = [0, 1, 2, 3].map(i => weights.slice(i * perProjection, (i + 1) * perProjection));
  const flags = {causal: callArgs.useCausalMask === true, returnScores: callArgs.returnAttentionScores === true};
  // One input x is self-attention; [query, value] or [query, value, key].
  const [query, value, key] = inputs.length === 1 ? [0, 0, null] : [0, 1, inputs.length === 3 ? 2 : null];
  return mhaLayer(context, config, groups, query, value, key, flags);
};

/** [rows, H*d] -> Keras' [rows, H, d] (the same values: tfjs splits heads by reshaping). */
function splitHeads(weight: KerasWeight, heads: number): KerasWeight {
  const [rows, columns] = weight.shape.length === 1 ? [null, weight.shape[0]] : weight.shape;
  const shape = rows == null ? [heads, columns / heads] : [rows, heads, columns / heads];
  return {shape, values: weight.values};
}

function scaled(weight: KerasWeight, factor: number): KerasWeight {
  return factor === 1 ? weight : {shape: weight.shape, values: weight.values.map(v => v * factor)};
}

/** The identity [H, dv, H·dv]: Keras' output projection that leaves the concatenated heads as they are. */
function identityProjection(heads: number, valueDim: number): KerasWeight {
  const width = heads * valueDim;
  const values = new Float32Array(width * width);
  for (let i = 0; i < width; i++) values[i * width + i] = 1;
  return {shape: [heads, valueDim, width], values};
}

const scaledDotProductAttention: Converter = context => {
  const {layer, inputs} = context;
  const c = layerConfig(layer, ['keyDim', 'valueDim', 'numHeads', 'useBias', 'outputDim', 'causal', 'dropout', 'scale',
                                'kernelInitializer', 'biasInitializer', 'kernelRegularizer', 'biasRegularizer',
                                'kernelConstraint', 'biasConstraint', 'returnAttentionScores', 'blockSize']);
  const heads = c.numHeads as number;
  const values = layerWeights(layer);
  const named = new Map(layer.weights.map((w, i) => [w.originalName.split('/').pop()!, values[i]]));
  const wq = named.get('wq')!;
  const wv = named.get('wv')!;
  const keyDim = wq.shape[1] / heads;
  const valueDim = wv.shape[1] / heads;
  const useBias = c.useBias === true;
  const factor = c.scale == null ? 1 : (c.scale as number) * Math.sqrt(keyDim);
  const projection = (kernel: string, bias: string, scale = 1): KerasWeight[] => [
    scaled(splitHeads(named.get(kernel)!, heads), scale),
    ...(useBias ? [scaled(splitHeads(named.get(bias)!, heads), scale)] : []),
  ];
  const outputDim = c.outputDim as number|null;
  const width = outputDim ?? heads * valueDim;
  const output: KerasWeight[] = outputDim == null ?
      [identityProjection(heads, valueDim), ...(useBias ? [{shape: [width], values: new Float32Array(width)}] : [])] :
      [{shape: [heads, valueDim, outputDim], values: named.get('wo')!.values},
       ...(useBias ? [named.get('bo')!] : [])];
  const weights = [projection('wq', 'bq', factor), projection('wk', 'bk'), projection('wv', 'bv'), output];
  const config = mhaConfig(layer, {...c, seed: null}, {numHeads: heads, keyDim, valueDim}, [width], [1]);
  const [query, value] = inputs.length === 1 ? [0, 0] : [0, 1];
  return mhaLayer(context, config, weights, query, value, null,
                  {causal: c.causal === true, returnScores: c.returnAttentionScores === true});
};

export const ATTENTION_LAYERS: {[className: string]: Converter} = {
  MultiHeadAttention: multiHeadAttention, ScaledDotProductAttention: scaledDotProductAttention,
};
