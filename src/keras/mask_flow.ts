/**
 * Where tfjs may carry a padding mask through a model, worked out from the graph alone: masks
 * start at Embedding(maskZero) and Masking, pass through layers that support masking, and stop
 * at layers that do not (tfjs' executor then drops them), at LastPosition and at recurrent layers
 * that return only their last step. The export uses it where Keras would use a mask that tfjs
 * ignores (or the other way round): such layers are refused, or written so that both agree.
 * Conservative: "may" carry a mask.
 */
import * as tf from '@tensorflow/tfjs';

const RECURRENT = new Set(['LSTM', 'GRU', 'SimpleRNN', 'Bidirectional']);

/** Whether the outputs of `layer`'s node may carry a mask, given whether each of its inputs may. */
export function outputMayBeMasked(layer: tf.layers.Layer, inputMasked: boolean[]): boolean {
  const className = layer.getClassName();
  const config = layer.getConfig() as {maskZero?: boolean; returnSequences?: boolean; layer?: {config?: {returnSequences?: boolean}}};
  if (className === 'Embedding') return config.maskZero === true;
  if (className === 'Masking') return true;
  if (className === 'LastPosition') return false;
  if (!layer.supportsMasking) return false;
  if (RECURRENT.has(className)) {
    const returnSequences = className === 'Bidirectional' ? config.layer?.config?.returnSequences : config.returnSequences;
    if (returnSequences !== true) return false;
  }
  return inputMasked.some(m => m);
}
