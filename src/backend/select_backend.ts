/** selectBackend: picks tfjs-node, wasm, cpu or webgl, with 'auto' taking the fastest that loads. */
import * as tf from '@tensorflow/tfjs';
import {invalidArgument, ValueError} from '../errors';

export type BackendName = 'auto'|'tensorflow'|'wasm'|'cpu'|'webgl';
export const BACKEND_NAMES: readonly BackendName[] = ['auto', 'tensorflow', 'wasm', 'cpu', 'webgl'];

/**
 * Loads the package that provides a backend. Returns false when it is not installed (as
 * tfjs-node is on machines where its libtensorflow download failed).
 */
function loadBackendPackage(name: 'tensorflow'|'wasm'): boolean {
  if (tf.findBackendFactory(name) != null) return true;
  try {
    // A plain require, hidden from bundlers: these are optional, Node-only packages.
    const load = typeof module !== 'undefined' && typeof module.require === 'function' ?
        (id: string) => module.require(id) : null;
    if (load == null) return false;
    load(name === 'tensorflow' ? '@tensorflow/tfjs-node' : '@tensorflow/tfjs-backend-wasm');
    return tf.findBackendFactory(name) != null;
  } catch {
    return false;
  }
}

/**
 * Makes `name` the active tfjs backend and returns the name that is active.
 * 'auto' takes tfjs-node ('tensorflow') when it loads, else wasm, else cpu: on a 2-core
 * machine wasm runs attention 19 to 55 times faster than tfjs' pure-JS cpu backend (see the
 * README's benchmark). A named backend that cannot be loaded is an error.
 */
export async function selectBackend(name: BackendName = 'auto'): Promise<string> {
  if (!BACKEND_NAMES.includes(name)) {
    throw invalidArgument('name', `one of ${BACKEND_NAMES.join(', ')}`, name);
  }
  const candidates: Array<Exclude<BackendName, 'auto'>> = name === 'auto' ? ['tensorflow', 'wasm', 'cpu'] : [name];
  for (const candidate of candidates) {
    if (candidate === 'tensorflow' || candidate === 'wasm') {
      if (!loadBackendPackage(candidate)) continue;
    }
    if (await tf.setBackend(candidate).catch(() => false)) {
      await tf.ready();
      return tf.getBackend();
    }
  }
  throw new ValueError(
      `Backend ${JSON.stringify(name)} could not be started here` +
      (name === 'tensorflow' ? ' (is @tensorflow/tfjs-node installed?)' : '') + `. Received: name=${JSON.stringify(name)}`);
}
