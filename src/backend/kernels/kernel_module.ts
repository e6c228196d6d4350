/**
 * The C kernels of this folder (compiled into kernels_wasm.generated.ts by
 * `npm run build:kernels`), instantiated on a memory: tfjs' wasm heap, the batched matMul's
 * own memory, or the worker's shared memory (attention_threads.ts).
 */
import {KERNELS_RELAXED_WASM, KERNELS_SHARED_MAX_PAGES, KERNELS_WASM} from './kernels_wasm.generated';
import type {KernelExports} from './kernels_wasm.generated';

export type {KernelExports};
export {KERNEL_SIGNATURES, KERNELS_SHARED_MAX_PAGES} from './kernels_wasm.generated';

/**
 * add_rows' arguments (kernels.h), byte addresses and strides from float ones: dst's `rows` rows
 * of `cols` floats, `dstRow` floats apart, = a's rows + b's (b null: a copy of a's), theirs
 * `srcRow` floats apart; with `parts` > 1, + the rows of parts - 1 more matrices after b's,
 * `partFloats` apart, added left to right. The one place that spells the kernel's argument order
 * for its callers: rows copied into padded rows, parts of a gradient added, heads' columns gathered.
 */
export function addRowsArgs(
    dst: number, dstRow: number, a: number, b: number|null, srcRow: number, rows: number, cols: number, parts = 1,
    partFloats = 0): Parameters<KernelExports['add_rows']> {
  return [4 * dst, 4 * dstRow, 4 * a, b == null ? 0 : 4 * b, b == null ? 0 : parts, 4 * partFloats, 4 * srcRow, rows, cols];
}

/**
 * project_4x8's x_tile_stride and x_step (bytes) for x packed by fours (pack_rows' group 4,
 * [tiles][dIn][4]): a tile's dIn inputs of four rows side by side, one after another.
 */
export function packedByFours(dIn: number): [number, number] {
  return [16 * dIn, 16];
}

/**
 * project_4x8's x_tile_stride and x_step (bytes) for x the transpose of a row-major matrix with
 * rows of `rowFloats` floats, read in place: a tile is four of its columns, one input the next row.
 */
export function transposedInPlace(rowFloats: number): [number, number] {
  return [16, 4 * rowFloats];
}

/** The bytes of a base64 string. */
function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const chars = atob(text);
  const bytes = new Uint8Array(chars.length);
  for (let i = 0; i < chars.length; i++) bytes[i] = chars.charCodeAt(i);
  return bytes;
}

/** The module of `base64` compiled, where this runtime validates it (wasm SIMD, and relaxed SIMD for the relaxed build); else null. */
function compileIfValid(base64: string): WebAssembly.Module|null {
  try {
    const bytes = decodeBase64(base64);
    return typeof WebAssembly === 'object' && WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
  } catch {
    return null;  // no WebAssembly SIMD (old browsers): callers take the other paths
  }
}

/** undefined: not compiled yet; null: this runtime cannot compile it (no wasm SIMD). */
let compiled: WebAssembly.Module|null|undefined;

/** The module that imports a plain memory, compiled once; null where the runtime has no wasm SIMD. */
function kernelModule(): WebAssembly.Module|null {
  if (compiled === undefined) compiled = compileIfValid(KERNELS_WASM);
  return compiled;
}

/** undefined: not tried yet; null: this runtime has no relaxed SIMD (or no SIMD at all). */
let compiledRelaxed: WebAssembly.Module|null|undefined;

/**
 * KERNELS_RELAXED_WASM compiled once, where the runtime validates it: relaxed SIMD (Chromium
 * from 114, Node 20 only with --experimental-wasm-relaxed-simd) and the kernels themselves.
 */
function relaxedModule(): WebAssembly.Module|null {
  if (compiledRelaxed === undefined) compiledRelaxed = kernelModule() == null ? null : compileIfValid(KERNELS_RELAXED_WASM);
  return compiledRelaxed;
}

/**
 * Which build of the kernels runs here: 'relaxed-simd' (KERNELS_WASM, with the functions of
 * KERNELS_RELAXED_WASM in place of theirs), 'simd' (KERNELS_WASM alone), or null (no wasm SIMD:
 * no kernels). The same in every thread of a process.
 */
export function kernelVariant(): 'relaxed-simd'|'simd'|null {
  if (kernelModule() == null) return null;
  return relaxedModule() != null ? 'relaxed-simd' : 'simd';
}

/**
 * The kernels instantiated on `memory` (not shared), or null where this runtime cannot run
 * them (no wasm SIMD): KERNELS_WASM's, with KERNELS_RELAXED_WASM's in their place where the
 * runtime has relaxed SIMD (`kernelVariant`).
 */
export function instantiateKernels(memory: WebAssembly.Memory): KernelExports|null {
  const module = kernelModule();
  if (module == null) return null;
  try {
    const kernels = new WebAssembly.Instance(module, {env: {memory}}).exports as unknown as KernelExports;
    const relaxed = relaxedModule();
    if (relaxed == null) return kernels;
    return {...kernels, ...(new WebAssembly.Instance(relaxed, {env: {memory}}).exports as unknown as Partial<KernelExports>)};
  } catch {
    return null;
  }
}

/** `value` as unsigned LEB128. */
function uleb(value: number): number[] {
  const bytes: number[] = [];
  do {
    const low = value & 0x7f;
    value >>>= 7;
    bytes.push(value === 0 ? low : low | 0x80);
  } while (value !== 0);
  return bytes;
}

/** Reads an unsigned LEB128 at `at`: [value, the offset after it]. */
function readUleb(bytes: Uint8Array, at: number): [number, number] {
  let value = 0;
  let shift = 0;
  let byte: number;
  do {
    byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, at];
}

/**
 * The module `plain` (one import: a plain memory as env.memory) importing instead a shared memory
 * of at most `maxPages` pages. The code is the same: wasm-ld with --shared-memory emits the same
 * sections but the import's limits (test/wasm_kernels_build_test.ts checks it against that
 * build), so the package carries one module, not two.
 */
export function withSharedMemoryImport(plain: Uint8Array, maxPages: number): Uint8Array<ArrayBuffer> {
  const env = [...new TextEncoder().encode('env')];
  const name = [...new TextEncoder().encode('memory')];
  const out: number[] = [...plain.subarray(0, 8)];
  let at = 8;
  let replaced = false;
  while (at < plain.length) {
    const id = plain[at];
    const [size, start] = readUleb(plain, at + 1);
    const body = plain.subarray(start, start + size);
    if (id === 2) {
      const expected = [1, env.length, ...env, name.length, ...name, 0x02, 0x00];  // one import, env.memory, limits: min only
      if (!expected.every((byte, i) => body[i] === byte)) {
        throw new Error('The kernel module\'s import section is not the single plain env.memory import this rewrite expects');
      }
      const [minPages] = readUleb(body, expected.length);
      const shared = [...expected.slice(0, -1), 0x03, ...uleb(minPages), ...uleb(maxPages)];  // limits: shared, min, max
      out.push(2, ...uleb(shared.length), ...shared);
      replaced = true;
    } else {
      out.push(...plain.subarray(at, start + size));
    }
    at = start + size;
  }
  if (!replaced) throw new Error('The kernel module has no import section: it must import its memory');
  return new Uint8Array(out);
}

/**
 * The bytes of the module that imports a shared memory of at most KERNELS_SHARED_MAX_PAGES
 * pages as env.memory: the worker thread instantiates them on its side.
 */
export function sharedKernelBytes(): Uint8Array<ArrayBuffer> {
  return withSharedMemoryImport(decodeBase64(KERNELS_WASM), KERNELS_SHARED_MAX_PAGES);
}

/**
 * The relaxed module's bytes importing a shared memory likewise, where this runtime runs the
 * relaxed kernels (`kernelVariant`), else null: both threads instantiate them over the first.
 */
export function sharedRelaxedKernelBytes(): Uint8Array<ArrayBuffer>|null {
  return relaxedModule() == null ? null : withSharedMemoryImport(decodeBase64(KERNELS_RELAXED_WASM), KERNELS_SHARED_MAX_PAGES);
}
