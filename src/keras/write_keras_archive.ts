/** A `.keras` archive: a zip of metadata.json, config.json and model.weights.h5, as Keras 3's `model.save` writes it. */
import {strToU8, zipSync} from 'fflate';

/** The version of Keras whose format the archive follows (checked by loading the files with it). */
export const KERAS_FORMAT_VERSION = '3.15.1';

export function kerasArchive(config: unknown, weightsH5: Uint8Array, date = new Date()): Uint8Array {
  const pad = (n: number) => String(n).padStart(2, '0');
  const saved = `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}@` +
                `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}`;
  const metadata = {keras_version: KERAS_FORMAT_VERSION, date_saved: saved};
  return zipSync({
    'metadata.json': strToU8(JSON.stringify(metadata)),
    'config.json': strToU8(JSON.stringify(config)),
    'model.weights.h5': weightsH5,
  }, {level: 6});
}
