/**
 * Padding masks in a Keras model, followed through the graph twice: as Keras 3 propagates them
 * (from Embedding(mask_zero=True) and Masking, through the layers that support masking) and as
 * tfjs-layers 4.22 does (each layer's supportsMasking and computeMask). Where a layer's output
 * depends on the mask and the two disagree, or where tfjs ignores a mask Keras uses
 * (GlobalAveragePooling1D, Softmax) or Keras zeroes masked steps (zero_output_for_mask), the
 * model is refused by name: a loaded model never silently predicts otherwise than Keras.
 *
 * tfjs 4.22's executor also hands a layer whose inputs carry no mask the last mask it handed any
 * earlier layer (its `kwargs` object is shared across the loop), so an RNN or attention layer
 * after a masked one would skip steps Keras does not: guardStaleMasks makes the layers that use
 * masks, where Keras gives them none, ignore the `mask` they are handed.
 */
import * as tf from '@tensorflow/tfjs';
import {ValueError} from '../errors';
import type {CheckedLayer} from './check_layer_configs';
import {Dict, layerLabel, NormalizedKerasModel} from './normalize_keras_config';

/** A mask on a tensor: the layer it comes from, or null for none. */
type Mask = string|null;

/** Keras 3 layers that pass their first input's mask on (supports_masking, default compute_mask). */
const KERAS_PASS = new Set([
  'ReLU', 'LeakyReLU', 'PReLU', 'ELU', 'Softmax', 'Dropout', 'Dense', 'EinsumDense', 'Activation', 'GaussianNoise',
  'GaussianDropout', 'AlphaDropout', 'BatchNormalization', 'LayerNormalization', 'UnitNormalization', 'Rescaling',
  'TimeDistributed', 'MultiHeadAttention',
]);
/** Keras 3 merge layers: the output is masked where any input is. */
const MERGE = new Set(['Add', 'Subtract', 'Multiply', 'Average', 'Maximum', 'Minimum', 'Concatenate']);
/**
 * The merges whose output mask is, in Keras 3, the AND of their inputs' masks ([B, T]). tfjs-layers
 * 4.22's Merge.computeMask returns the first input's mask with a leading axis added ([1, B, T],
 * which no later mask user accepts) and ignores the last input's: loaded models get Keras' rule
 * (alignMaskPropagation). Concatenate has a rule of its own in both.
 */
const AND_MERGE = new Set(['Add', 'Subtract', 'Multiply', 'Average', 'Maximum', 'Minimum']);

/** A merge's output mask: the masks of its inputs, combined (the same mask twice is that mask). */
function mergedMask(inputs: Mask[]): Mask {
  const names = [...new Set(inputs.filter((m): m is string => m != null))].sort();
  return names.length === 0 ? null : names.join(' & ');
}

/** Keras 3's Merge.compute_mask: the AND of the inputs' masks that are not null, or null. */
function kerasMergeMask(mask: tf.Tensor|tf.Tensor[]|null|undefined): tf.Tensor|null {
  const masks = (Array.isArray(mask) ? mask : [mask]).filter((m): m is tf.Tensor => m != null);
  if (masks.length === 0) return null;
  return tf.tidy(() => masks.slice(1).reduce((all, m) => tf.logicalAnd(all, m), masks[0].cast('bool')));  // [B, T]
}
const RNN = new Set(['SimpleRNN', 'GRU', 'LSTM', 'ConvLSTM2D', 'RNN', 'Bidirectional']);
/**
 * Layers that pass a mask through in Keras 3 but not in tfjs-layers 4.22 (true), or the other way
 * round (false); their call ignores masks in both, so the loaded model's layers get Keras'
 * `supportsMasking` (alignMaskPropagation), which is what tfjs' executor reads.
 */
const KERAS_SUPPORTS_MASKING: {[className: string]: boolean} = {
  LeakyReLU: true, ELU: true, Rescaling: true, SpatialDropout1D: false,
};
/** Keras layers that use a mask that tfjs-layers 4.22 ignores. */
const TFJS_IGNORES: {[className: string]: string} = {
  GlobalAveragePooling1D: 'Keras averages only the unmasked steps, tfjs-layers 4.22 averages all of them',
  Softmax: 'Keras gives masked positions zero weight, tfjs-layers 4.22 ignores the mask',
};

function config(layer: CheckedLayer): Dict {
  return layer.spec.config;
}

function returnSequences(layer: CheckedLayer): boolean {
  const c = config(layer);
  const inner = (c.layer as Dict|undefined)?.config as Dict|undefined;
  return Boolean(c.return_sequences ?? inner?.return_sequences ?? false);
}

/** The output masks of one call of `layer` in Keras 3, given its inputs' masks. */
function kerasOutputMasks(layer: CheckedLayer, inputs: Mask[], outputs: number): Mask[] {
  const {className, name} = layer.spec;
  const first = inputs[0] ?? null;
  let mask: Mask = null;
  if (className === 'Embedding') mask = config(layer).mask_zero === true ? name : null;
  else if (className === 'Masking') mask = name;
  else if (KERAS_PASS.has(className)) mask = first;
  else if (AND_MERGE.has(className)) mask = mergedMask(inputs);
  else if (MERGE.has(className)) mask = inputs.find(m => m != null) ?? null;
  else if (RNN.has(className)) mask = returnSequences(layer) ? first : null;
  return [mask, ...Array(outputs - 1).fill(null)];
}

/**
 * The output masks of one call in tfjs-layers (the executor passes the first input's mask, merges
 * take all), once alignMaskPropagation has run.
 */
function tfjsOutputMasks(layer: CheckedLayer, inputs: Mask[], outputs: number): Mask[] {
  const {className, name} = layer.spec;
  const tfjsLayer = layer.layer as tf.layers.Layer & {supportsMasking?: boolean; returnSequences?: boolean};
  const first = inputs[0] ?? null;
  let mask: Mask = null;
  if (className === 'Embedding') mask = config(layer).mask_zero === true ? name : null;
  else if (className === 'Masking') mask = name;
  else if (!(KERAS_SUPPORTS_MASKING[className] ?? tfjsLayer.supportsMasking)) mask = null;
  else if (AND_MERGE.has(className)) mask = mergedMask(inputs);  // Keras' rule, given by alignMaskPropagation
  else if (MERGE.has(className)) mask = inputs.find(m => m != null) ?? null;
  else if (RNN.has(className)) mask = returnSequences(layer) ? first : null;
  else mask = first;
  return [mask, ...Array(outputs - 1).fill(null)];
}

/** Layers whose call uses the mask tfjs hands them. */
const MASK_USERS = new Set([...RNN, 'TimeDistributed', 'MultiHeadAttention']);

/**
 * Makes the named layers ignore the `mask` tfjs' executor hands them (Keras gives them none; what
 * tfjs hands them is a stale mask of an earlier layer).
 */
export function guardStaleMasks(model: tf.LayersModel, names: Set<string>): void {
  for (const layer of model.layers) {
    if (!names.has(layer.name)) continue;
    const apply = layer.apply.bind(layer);
    layer.apply = (inputs, kwargs) => {
      if (kwargs == null || !('mask' in kwargs)) return apply(inputs, kwargs);
      const {mask: _stale, ...rest} = kwargs;
      return apply(inputs, rest);
    };
  }
}

/** Gives the model's layers Keras' mask propagation where tfjs' differs (KERAS_SUPPORTS_MASKING, AND_MERGE). */
export function alignMaskPropagation(model: tf.LayersModel): void {
  for (const layer of model.layers) {
    const keras = KERAS_SUPPORTS_MASKING[layer.getClassName()];
    if (keras != null) layer.supportsMasking = keras;
    if (AND_MERGE.has(layer.getClassName())) {
      layer.computeMask = (_inputs, mask) => kerasMergeMask(mask) as tf.Tensor;
    }
  }
}

/** Checks one call of a layer that uses masks. */
function checkCall(layer: CheckedLayer, refs: string[], keras: Mask[], tfjs: Mask[]): void {
  const {className, name} = layer.spec;
  const where = layerLabel(name, className);
  const masked = keras.find(m => m != null);
  if (masked != null && className in TFJS_IGNORES) {
    throw new ValueError(
        `The ${where} gets a padding mask (from \`${masked}\`): ${TFJS_IGNORES[className]}, so its output would ` +
        `differ from Keras'. Remove the mask (mask_zero=False) or this layer to load the model in tfjs.`);
  }
  if (RNN.has(className) || className === 'TimeDistributed') {
    if (keras[0] != null && layer.zeroOutputForMask) {
      throw new ValueError(
          `The ${where} gets a padding mask (from \`${keras[0]}\`) and has zero_output_for_mask=true: Keras outputs ` +
          `zeros at masked steps, tfjs-layers 4.22 repeats the last output. Received: zero_output_for_mask=true`);
    }
    if (keras[0] !== tfjs[0]) mismatch(where, keras[0], tfjs[0]);
  }
  if (className === 'MultiHeadAttention') {
    // tfjs hands the layer its first input's mask only; the layer applies it to the value and
    // key where they are the query tensor itself.
    const [query, value = query, key = value] = refs;
    const expected = [keras[0] ?? null, keras[1] ?? keras[0] ?? null, keras[2] ?? keras[1] ?? keras[0] ?? null];
    const q = tfjs[0] ?? null;
    const actual = [q, value === query ? q : null, key === query ? q : null];
    expected.forEach((m, i) => {
      if (m !== actual[i]) mismatch(`${where} (its ${['query', 'value', 'key'][i]})`, m, actual[i]);
    });
  }
}

function mismatch(where: string, keras: Mask, tfjs: Mask): never {
  const describe = (m: Mask) => (m == null ? 'no mask' : `the mask of \`${m}\``);
  throw new ValueError(
      `The ${where} would get ${describe(tfjs)} in tfjs but ${describe(keras)} in Keras (the two propagate ` +
      `padding masks differently here), so its output would differ. Received: a model whose masks tfjs cannot follow`);
}

/**
 * Follows the masks through a Functional or Sequential model; throws where tfjs would diverge.
 * Returns the layers that use masks but get none from Keras (for guardStaleMasks).
 */
export function checkMasks(model: NormalizedKerasModel, layers: CheckedLayer[]): Set<string> {
  const maskless = new Set(layers.filter(l => MASK_USERS.has(l.spec.className)).map(l => l.spec.name));
  const masked = (layer: CheckedLayer, keras: Mask[]) => {
    if (keras.some(m => m != null)) maskless.delete(layer.spec.name);
  };
  if (model.className === 'Sequential') {
    let keras: Mask = null;
    let tfjs: Mask = null;
    for (const layer of layers) {
      checkCall(layer, ['input'], [keras], [tfjs]);
      masked(layer, [keras]);
      [keras] = kerasOutputMasks(layer, [keras], 1);
      [tfjs] = tfjsOutputMasks(layer, [tfjs], 1);
    }
    return maskless;
  }
  const byName = new Map(layers.map(l => [l.spec.name, l]));
  // Masks of each [layer, node, tensor] output, computed in dependency order.
  const done = new Map<string, {keras: Mask[]; tfjs: Mask[]}>();
  const pending = layers.flatMap(l => l.spec.inboundNodes.map((node, index) => ({layer: l, node, index})));
  for (const l of layers) if (l.spec.inboundNodes.length === 0) done.set(`${l.spec.name}/0`, {keras: [null], tfjs: [null]});
  let progress = true;
  while (pending.length > 0 && progress) {
    progress = false;
    for (let i = 0; i < pending.length; i++) {
      const {layer, node, index} = pending[i];
      const sources = node.map(([from, nodeIndex]) => done.get(`${from}/${nodeIndex}`));
      if (sources.some(s => s == null)) continue;
      const keras = node.map(([, , tensor], j) => sources[j]!.keras[tensor] ?? null);
      const tfjs = node.map(([, , tensor], j) => sources[j]!.tfjs[tensor] ?? null);
      const refs = node.map(([from, n, t]) => `${from}/${n}/${t}`);
      // MultiHeadAttention's attention mask input (the last) carries no padding mask of its own.
      const maskInput = node.some(([, , , kwargs]) => kwargs.attention_mask_input === true) ? 1 : 0;
      checkCall(layer, refs.slice(0, refs.length - maskInput), keras.slice(0, keras.length - maskInput),
                tfjs.slice(0, tfjs.length - maskInput));
      masked(layer, keras);
      const outputs = outputCount(layer);
      done.set(`${layer.spec.name}/${index}`, {keras: kerasOutputMasks(layer, keras, outputs), tfjs: tfjsOutputMasks(layer, tfjs, outputs)});
      pending.splice(i--, 1);
      progress = true;
    }
  }
  if (pending.length > 0) {
    const names = [...new Set(pending.map(p => p.layer.spec.name))].filter(n => byName.has(n));
    throw new ValueError(`The model's graph cannot be followed: the inputs of ${names.map(n => `\`${n}\``).join(', ')} never become available.`);
  }
  return maskless;
}

/** How many tensors one call of the layer outputs (MultiHeadAttention with scores: 2; RNNs with states: more). */
function outputCount(layer: CheckedLayer): number {
  const c = layer.spec.config;
  if (layer.spec.inboundNodes.some(node => node.some(([, , , kwargs]) => kwargs.return_attention_scores === true))) return 2;
  if (c.return_state === true) return 4;
  return 1;
}
