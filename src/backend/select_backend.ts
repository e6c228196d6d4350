/** selectBackend: picks tfjs-node, wasm, cpu or webgl, with 'auto' taking the fastest that loads. */
import * as tf from '@tensorflow/tfjs';
import {invalidArgument, ValueError} from '../errors';

export type BackendName = 'auto'|'tensorflow'|'wasm'|'cpu'|'webgl';
export const BACKEND_NAMES: readonly BackendName[] = ['auto', 'tensorflow', 'wasm', 'cpu', 'webgl'];

/** Where a backend's package comes from: `import()` of an installed package (Node), or none. */
export type BackendPackageLoader = (id: string) => Promise<unknown>;

/**
 * How selectBackend loads a backend's package when its factory is not registered yet. The
 * browser-safe entry has none (a browser app imports '@tensorflow/tfjs-backend-wasm' itself,
 * since a bundler must see that import); the Node entry (src/node.ts) sets one.
 */
let backendPackageLoader: BackendPackageLoader|null = null;

/** Sets how selectBackend loads backend packages (src/node.ts); returns the previous loader. */
export function setBackendPackageLoader(loader: BackendPackageLoader|null): BackendPackageLoader|null {
  const previous = backendPackageLoader;
  backendPackageLoader = loader;
  return previous;
}

const BACKEND_PACKAGES = {tensorflow: '@tensorflow/tfjs-node', wasm: '@tensorflow/tfjs-backend-wasm'} as const;

/**
 * Loads the package that provides a backend. Returns false when it is not installed (as
 * tfjs-node is on machines where its libtensorflow download failed) or cannot be loaded here.
 */
async function loadBackendPackage(name: 'tensorflow'|'wasm'): Promise<boolean> {
  if (tf.findBackendFactory(name) != null) return true;
  if (backendPackageLoader == null) return false;
  try {
    await backendPackageLoader(BACKEND_PACKAGES[name]);
    return tf.findBackendFactory(name) != null;
  } catch {
    return false;
  }
}

/** What to do when `name` could not start: install its package (Node) or import it (a bundled app). */
function missingPackageHint(name: Exclude<BackendName, 'auto'>): string {
  if (name !== 'tensorflow' && name !== 'wasm') return '';
  if (tf.findBackendFactory(name) != null) return '';
  return backendPackageLoader != null ? ` (is ${BACKEND_PACKAGES[name]} installed?)` :
      ` (import '${BACKEND_PACKAGES[name]}' in your app first)`;
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
      if (!(await loadBackendPackage(candidate))) continue;
    }
    if (await tf.setBackend(candidate).catch(() => false)) {
      await tf.ready();
      return tf.getBackend();
    }
  }
  throw new ValueError(
      `Backend ${JSON.stringify(name)} could not be started here` +
      (name === 'auto' ? '' : missingPackageHint(name)) + `. Received: name=${JSON.stringify(name)}`);
}
