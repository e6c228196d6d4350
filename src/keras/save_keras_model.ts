/** saveKerasModel: being written (issue 12); the signature is the contract. */
import * as tf from '@tensorflow/tfjs';

export async function saveKerasModel(model: tf.LayersModel, path?: string): Promise<Uint8Array> {
  throw new Error(`saveKerasModel is not written yet (${model.name}, ${path})`);
}
