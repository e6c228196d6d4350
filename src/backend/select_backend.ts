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
 * The order in which 'auto' tries backends. tfjs-node's `tensorflow` first: in
 * `npm run bench -- --backend tensorflow,wasm` (2-core machine, 2026-11-30; B, T, d, H) it ran
 * the layer faster than wasm everywhere but the smallest inference: forward 0.65 ms on wasm
 * (fused kernel) against 1.98 on tensorflow at (32, 16, 64, 1), 1.95 against 2.05 at
 * (8, 128, 64, 4), then 7.0 against 3.2 at (1, 1024, 64, 1) and 53 against 37 at
 * (1, 4096, 64, 1); forward+backward 4.9 against 6.3 ms at (32, 16, 64, 1), then 10.1 against
 * 4.8, 33 against 8.3 and 607 against 109 (memory-efficient on wasm, standard on tensorflow).
 * Then wasm: 20 to 140 times faster than tfjs' pure-JS cpu backend on the same grid (README).
 * Models as small as the example app's park model train faster on wasm (its scripts choose
 * wasm themselves, scripts/app/park/park_backend.ts).
 */
export const AUTO_BACKEND_ORDER: ReadonlyArray<Exclude<BackendName, 'auto'>> = ['tensorflow', 'wasm', 'cpu'];

/** Starts a backend: loads its package if needed and makes it active; false when it cannot. */
export type BackendStarter = (name: Exclude<BackendName, 'auto'>) => Promise<boolean>;

/** selectBackend's starter: the package (tfjs-node, wasm) if needed, then tf.setBackend and tf.ready. */
async function startBackend(candidate: Exclude<BackendName, 'auto'>): Promise<boolean> {
  if ((candidate === 'tensorflow' || candidate === 'wasm') && !(await loadBackendPackage(candidate))) return false;
  if (!(await tf.setBackend(candidate).catch(() => false))) return false;
  await tf.ready();
  return true;
}

/**
 * selectBackend's choice with the starting of a backend given: `name` itself, or for 'auto'
 * the first of AUTO_BACKEND_ORDER that `start` starts. Returns the name started; throws when
 * none starts. For tests, which inject which backends are available.
 */
export async function chooseBackend(name: BackendName, start: BackendStarter): Promise<Exclude<BackendName, 'auto'>> {
  if (!BACKEND_NAMES.includes(name)) {
    throw invalidArgument('name', `one of ${BACKEND_NAMES.join(', ')}`, name);
  }
  const candidates = name === 'auto' ? AUTO_BACKEND_ORDER : [name];
  for (const candidate of candidates) {
    if (await start(candidate)) return candidate;
  }
  throw new ValueError(
      `Backend ${JSON.stringify(name)} could not be started here` +
      (name === 'auto' ? '' : missingPackageHint(name)) + `. Received: name=${JSON.stringify(name)}`);
}

/**
 * Makes `name` the active tfjs backend and returns the name that is active.
 * 'auto' takes the first of AUTO_BACKEND_ORDER that loads: tfjs-node ('tensorflow'), else
 * wasm, else cpu (see AUTO_BACKEND_ORDER for the measurements). A named backend that cannot
 * be loaded is an error.
 */
export async function selectBackend(name: BackendName = 'auto'): Promise<string> {
  await chooseBackend(name, startBackend);
  return tf.getBackend();
}
