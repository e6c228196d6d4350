/**
 * The C kernels' build (scripts/build_kernels.ts, `npm run build:kernels`): the committed
 * module is what clang-16 and wasm-ld-16 make of src/backend/kernels/ today, and its exports
 * are the functions declared in kernels.h, parameter for parameter.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import {buildKernelsSource, CLANG, compileKernels, GENERATED_FILE, parseSignatures, RELAXED_SOURCES, WASM_LD} from '../scripts/build_kernels';
import {kernelVariant, sharedKernelBytes, sharedRelaxedKernelBytes, withSharedMemoryImport} from '../src/backend/kernels/kernel_module';
import {KERNEL_SIGNATURES, KERNELS_RELAXED_WASM, KERNELS_SHARED_MAX_PAGES, KERNELS_WASM} from '../src/backend/kernels/kernels_wasm.generated';

/** Whether a tool runs; its name and how to install it otherwise. */
function missingTool(tool: string): string|null {
  const result = spawnSync(tool, ['--version'], {encoding: 'utf8'});
  return result.error == null && result.status === 0 ? null : tool;
}

/** The LEB128 unsigned integer at `at`, and where the next item starts. */
function uleb(bytes: Uint8Array, at: number): [number, number] {
  let value = 0;
  for (let shift = 0; ; shift += 7) {
    const byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [value, at];
  }
}

/**
 * Each exported function's parameter types, read from the module's type, function and export
 * sections (the module imports no function, so function i is the i-th of the code).
 */
function exportedParamTypes(bytes: Uint8Array): Map<string, string[]> {
  const typeName: {[code: number]: string} = {0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128'};
  const sections = new Map<number, Uint8Array>();
  for (let at = 8; at < bytes.length;) {
    const id = bytes[at];
    const [size, start] = uleb(bytes, at + 1);
    sections.set(id, bytes.subarray(start, start + size));
    at = start + size;
  }
  const types: string[][] = [];
  const typeSection = sections.get(1)!;
  let [count, at] = uleb(typeSection, 0);
  for (let t = 0; t < count; t++) {
    expect(typeSection[at++]).toBe(0x60);  // a function type
    let params: number;
    [params, at] = uleb(typeSection, at);
    types.push(Array.from(typeSection.subarray(at, at + params), code => typeName[code]));
    let results: number;
    [results, at] = uleb(typeSection, at + params);
    expect(results).toBe(0);  // the kernels return nothing
  }
  const functionSection = sections.get(3)!;
  const functionTypes: number[] = [];
  [count, at] = uleb(functionSection, 0);
  for (let f = 0; f < count; f++) {
    let type: number;
    [type, at] = uleb(functionSection, at);
    functionTypes.push(type);
  }
  const exportSection = sections.get(7)!;
  const exported = new Map<string, string[]>();
  [count, at] = uleb(exportSection, 0);
  for (let e = 0; e < count; e++) {
    let length: number;
    [length, at] = uleb(exportSection, at);
    const name = new TextDecoder().decode(exportSection.subarray(at, at + length));
    const kind = exportSection[at + length];
    let index: number;
    [index, at] = uleb(exportSection, at + length + 1);
    if (kind === 0) exported.set(name, types[functionTypes[index]]);
  }
  return exported;
}

const MODULES = [
  {name: 'KERNELS_WASM', bytes: Buffer.from(KERNELS_WASM, 'base64'), memory: () => new WebAssembly.Memory({initial: 1})},
  {
    name: 'the shared-memory module (sharedKernelBytes)', bytes: Buffer.from(sharedKernelBytes()),
    memory: () => new WebAssembly.Memory({initial: 1, maximum: KERNELS_SHARED_MAX_PAGES, shared: true}),
  },
];

describe('the C kernels (src/backend/kernels/, npm run build:kernels)', () => {
  it('kernels_wasm.generated.ts is, byte for byte, what clang-16 and wasm-ld-16 build from the C today', () => {
    const missing = [CLANG, WASM_LD].map(missingTool).filter(tool => tool != null);
    if (missing.length > 0) {
      throw new Error(`${missing.join(', ')} not found: this test rebuilds the kernels to check the committed ` +
          'src/backend/kernels/kernels_wasm.generated.ts; install Debian\'s clang-16 and lld-16 (apt-get install clang-16 lld-16)');
    }
    const rebuilt = buildKernelsSource();
    const committed = fs.readFileSync(GENERATED_FILE, 'utf8');
    const [a, b] = [rebuilt.split('\n'), committed.split('\n')];
    const firstDifference = a.findIndex((line, i) => line !== b[i]);
    // Where the files part, so that a failure says which: rerun `npm run build:kernels` and commit.
    expect({lines: b.length, firstDifferentLine: firstDifference < 0 && a.length === b.length ? null : firstDifference + 1})
        .toEqual({lines: a.length, firstDifferentLine: null});
  });

  it('the worker\'s module, KERNELS_WASM with its memory import made shared, is byte for byte wasm-ld\'s --shared-memory build', () => {
    const missing = [CLANG, WASM_LD].map(missingTool).filter(tool => tool != null);
    if (missing.length > 0) throw new Error(`${missing.join(', ')} not found: apt-get install clang-16 lld-16`);
    const {plain, shared, relaxed, relaxedShared} = compileKernels();
    expect(Buffer.from(withSharedMemoryImport(plain, KERNELS_SHARED_MAX_PAGES)).equals(Buffer.from(shared))).toBe(true);
    expect(Buffer.from(withSharedMemoryImport(relaxed, KERNELS_SHARED_MAX_PAGES)).equals(Buffer.from(relaxedShared))).toBe(true);
    expect(Buffer.from(sharedKernelBytes()).equals(Buffer.from(shared))).toBe(true);
    // A module whose imports are not the one plain memory is refused, not rewritten wrongly.
    const noImports = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
    expect(() => withSharedMemoryImport(noImports, 4)).toThrow(/no import section/);
    expect(() => withSharedMemoryImport(Buffer.from(shared), 4)).toThrow(/not the single plain env.memory import/);
  });

  it.each(MODULES)('$name imports only its memory and exports the functions of kernels.h with their parameter types', ({bytes, memory}) => {
    const module = new WebAssembly.Module(bytes);
    expect(WebAssembly.Module.imports(module)).toEqual([{module: 'env', name: 'memory', kind: 'memory'}]);
    const expected = new Map(Object.entries(KERNEL_SIGNATURES).map(([name, params]) => [name, params.map(([, type]) => type)]));
    expect(exportedParamTypes(bytes)).toEqual(expected);
    const instance = new WebAssembly.Instance(module, {env: {memory: memory()}});
    for (const [name, params] of Object.entries(KERNEL_SIGNATURES)) {
      expect([name, (instance.exports[name] as (...args: number[]) => void).length]).toEqual([name, params.length]);
    }
  });

  it('KERNELS_RELAXED_WASM holds attend_backward_4x8 alone, with its declared parameters, using relaxed SIMD; Node 20 without the flag runs the plain kernels', () => {
    const bytes = Buffer.from(KERNELS_RELAXED_WASM, 'base64');
    expect(RELAXED_SOURCES).toEqual(['attend_backward_4x8_wasmsimd.c']);
    expect(exportedParamTypes(bytes)).toEqual(new Map([['attend_backward_4x8', KERNEL_SIGNATURES.attend_backward_4x8.map(([, type]) => type)]]));
    // f32x4.relaxed_madd is 0xfd 0x85 0x02 (opcode 0x105): the build used it.
    expect(bytes.includes(Buffer.from([0xfd, 0x85, 0x02]))).toBe(true);
    expect(Buffer.from(KERNELS_WASM, 'base64').includes(Buffer.from([0xfd, 0x85, 0x02]))).toBe(false);
    // This Node (20, tests run without --experimental-wasm-relaxed-simd) refuses it, so it runs the plain kernels.
    expect(WebAssembly.validate(bytes)).toBe(false);
    expect(kernelVariant()).toBe('simd');
    expect(sharedRelaxedKernelBytes()).toBeNull();
  });

  it('kernels.h is read as the signature table: float as f32, pointers and (u)int32_t as i32, anything else refused', () => {
    const header = fs.readFileSync(GENERATED_FILE.replace('kernels_wasm.generated.ts', 'kernels.h'), 'utf8');
    const parsed = parseSignatures(header);
    expect(parsed.map(s => s.name)).toEqual(Object.keys(KERNEL_SIGNATURES));
    expect(parseSignatures('KERNEL_EXPORT(f)\nvoid f(const float* a_b, uint32_t n,\n       float scale, int32_t q0);')).toEqual([
      {name: 'f', params: [{name: 'a_b', type: 'i32'}, {name: 'n', type: 'i32'}, {name: 'scale', type: 'f32'}, {name: 'q0', type: 'i32'}]},
    ]);
    expect(() => parseSignatures('KERNEL_EXPORT(f)\nvoid f(double x);')).toThrow(/parameter x of f has type double/);
    expect(() => parseSignatures('KERNEL_EXPORT(g)\nvoid f(float x);')).toThrow(/f is exported as g/);
    expect(() => parseSignatures('void f(float x);')).toThrow(/declares no KERNEL_EXPORT function/);
  });
});
