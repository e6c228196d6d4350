/**
 * Where tfjs may carry a padding mask through a model, worked out from the graph alone: masks
 * start at Embedding(maskZero) and Masking, pass through layers that support masking, and stop
 * at layers that do not (tfjs' executor then drops them), at LastPosition and at recurrent layers
 * that return only their last step. The export uses it where Keras would use a mask that tfjs
 * ignores (or the other way round): such layers are refused, or written so that both agree.
 * Conservative: a tensor "may" carry a mask.
 *
 * Merge layers combine masks differently: tfjs 4.22's Merge.computeMask keeps the first input's
 * mask (with an extra leading axis), Keras 3's drops the mask unless every input has one and ORs
 * them. They agree only when every input carries the same mask, so a merge of anything else
 * yields a 'conflict', which a layer that reads masks refuses.
 */
import * as tf from '@tensorflow/tfjs';
import {notExportable} from './keras_layer_spec';

/** No mask, the name of the layer the mask came from, or masks that tfjs and Keras combine differently. */
export type MaskState = null|string|'conflict';

const RECURRENT = new Set(['LSTM', 'GRU', 'SimpleRNN', 'Bidirectional']);
const MERGES = new Set(['Add', 'Multiply', 'Concatenate', 'Average', 'Maximum', 'Minimum']);
/** Layers whose output depends on their input mask, in tfjs or in Keras. */
const MASK_READERS = new Set([...RECURRENT, 'ScaledDotProductAttention', 'MultiHeadAttention', 'GlobalAveragePooling1D']);

/** The mask state of the outputs of `layer`'s node, given its inputs'. */
export function outputMask(layer: tf.layers.Layer, inputs: MaskState[]): MaskState {
  const className = layer.getClassName();
  const config = layer.getConfig() as {maskZero?: boolean; returnSequences?: boolean; layer?: {config?: {returnSequences?: boolean}}};
  if (className === 'Embedding') return config.maskZero === true ? layer.name : null;
  if (className === 'Masking') return layer.name;
  if (className === 'LastPosition') return null;
  if (!layer.supportsMasking) return null;
  if (RECURRENT.has(className)) {
    const returnSequences = className === 'Bidirectional' ? config.layer?.config?.returnSequences : config.returnSequences;
    if (returnSequences !== true) return null;
  }
  const masked = inputs.filter(state => state != null);
  if (masked.length === 0) return null;
  if (MERGES.has(className) && (masked.length !== inputs.length || new Set(masked).size !== 1)) return 'conflict';
  return masked.includes('conflict') ? 'conflict' : masked[0];
}

/** Refuses a layer that reads masks when the masks reaching it are combined differently by tfjs and Keras. */
export function checkMaskReader(layer: tf.layers.Layer, inputs: MaskState[]): void {
  if (MASK_READERS.has(layer.getClassName()) && inputs.includes('conflict')) {
    throw notExportable(layer, 'padding masks combined by a merge layer reach it, and tfjs and Keras combine masks ' +
                               'differently (tfjs keeps the first input\'s, Keras ORs them or drops them). Received: ' +
                               'a merge of differently masked inputs');
  }
}
