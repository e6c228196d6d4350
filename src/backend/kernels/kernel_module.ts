/**
 * The C kernels of this folder (compiled into kernels_wasm.generated.ts by
 * `npm run build:kernels`), instantiated on a memory: tfjs' wasm heap, the batched matMul's
 * own memory, or the worker's shared memory (attention_threads.ts).
 */
import {KERNELS_SHARED_WASM, KERNELS_WASM} from './kernels_wasm.generated';
import type {KernelExports} from './kernels_wasm.generated';

export type {KernelExports};
export {KERNEL_SIGNATURES, KERNELS_SHARED_MAX_PAGES} from './kernels_wasm.generated';

/** The bytes of a base64 string. */
function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const chars = atob(text);
  const bytes = new Uint8Array(chars.length);
  for (let i = 0; i < chars.length; i++) bytes[i] = chars.charCodeAt(i);
  return bytes;
}

/** undefined: not compiled yet; null: this runtime cannot compile it (no wasm SIMD). */
let compiled: WebAssembly.Module|null|undefined;

/** The module that imports a plain memory, compiled once; null where the runtime has no wasm SIMD. */
function kernelModule(): WebAssembly.Module|null {
  if (compiled !== undefined) return compiled;
  compiled = null;
  try {
    const bytes = decodeBase64(KERNELS_WASM);
    if (typeof WebAssembly === 'object' && WebAssembly.validate(bytes)) compiled = new WebAssembly.Module(bytes);
  } catch {
    compiled = null;  // no WebAssembly SIMD (old browsers): callers take the other paths
  }
  return compiled;
}

/**
 * The kernels instantiated on `memory` (not shared), or null where this runtime cannot run
 * them (no wasm SIMD).
 */
export function instantiateKernels(memory: WebAssembly.Memory): KernelExports|null {
  const module = kernelModule();
  if (module == null) return null;
  try {
    return new WebAssembly.Instance(module, {env: {memory}}).exports as unknown as KernelExports;
  } catch {
    return null;
  }
}

/**
 * The bytes of the module that imports a shared memory of at most KERNELS_SHARED_MAX_PAGES
 * pages as env.memory: the worker thread instantiates them on its side.
 */
export function sharedKernelBytes(): Uint8Array<ArrayBuffer> {
  return decodeBase64(KERNELS_SHARED_WASM);
}
