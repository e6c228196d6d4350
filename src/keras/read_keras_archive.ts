/**
 * Reads a `.keras` archive (Keras 3's `model.save('x.keras')`): a zip of config.json,
 * metadata.json and model.weights.h5, unpacked with fflate. Errors name the archive and, for a
 * missing member, the member.
 */
import {strFromU8, unzipSync} from 'fflate';
import {formatValue, ValueError} from '../errors';

export interface KerasArchive {
  /** config.json: the model's serialized config ({module, class_name, config, build_config, compile_config}). */
  config: unknown;
  /** metadata.json ({keras_version, date_saved}), or null when the archive has none. */
  metadata: {[key: string]: unknown}|null;
  /** model.weights.h5's bytes. */
  weights: Uint8Array;
}

function readJsonMember(files: {[name: string]: Uint8Array}, member: string, archive: string): unknown {
  try {
    return JSON.parse(strFromU8(files[member]));
  } catch (error) {
    throw new ValueError(`The archive ${archive}'s ${member} is not valid JSON: ${(error as Error).message}`);
  }
}

/** Unpacks `bytes` (a .keras zip); `archive` names it in messages (a path, a URL or "the given bytes"). */
export function readKerasArchive(bytes: Uint8Array, archive: string): KerasArchive {
  let files: {[name: string]: Uint8Array};
  try {
    files = unzipSync(bytes);
  } catch (error) {
    throw new ValueError(
        `The archive ${archive} is not a readable zip (truncated or corrupt; a .keras file is a zip of ` +
        `config.json, metadata.json and model.weights.h5): ${(error as Error).message}. Received: ${bytes.length} bytes`);
  }
  for (const member of ['config.json', 'model.weights.h5']) {
    if (!(member in files)) {
      throw new ValueError(
          `The archive ${archive} has no ${member}; a .keras archive holds config.json, metadata.json and ` +
          `model.weights.h5. Received: members ${formatValue(Object.keys(files))}`);
    }
  }
  const metadata = 'metadata.json' in files ? readJsonMember(files, 'metadata.json', archive) as {[key: string]: unknown} : null;
  return {config: readJsonMember(files, 'config.json', archive), metadata, weights: files['model.weights.h5']};
}
