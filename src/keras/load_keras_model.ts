/** loadKerasModel: being written (issue 12); the signature is the contract. */
import * as tf from '@tensorflow/tfjs';

/** A `.keras` archive or a converter model.json: a path (Node), a URL, or the file's bytes. */
export type KerasModelSource = string|ArrayBuffer|Uint8Array|Blob;

export async function loadKerasModel(source: KerasModelSource): Promise<tf.LayersModel> {
  throw new Error(`loadKerasModel is not written yet (source ${String(source)})`);
}
