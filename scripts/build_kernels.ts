/**
 * `npm run build:kernels`: compiles the C kernels of src/backend/kernels/ with Debian's
 * clang-16 and wasm-ld-16 into a WebAssembly module that imports its memory (tfjs' wasm heap,
 * the matMul's own memory; the worker thread of attention_threads.ts instantiates the same
 * module with its memory import made shared, which test/wasm_kernels_build_test.ts checks
 * against wasm-ld's own --shared-memory build, also made here), and writes it, base64-encoded,
 * into src/backend/kernels/kernels_wasm.generated.ts with the TypeScript types of its exports,
 * read from the one declaration of each in kernels.h. The output is committed, so that users,
 * browsers and the published package need no toolchain; test/wasm_kernels_build_test.ts
 * rebuilds it and fails if the committed file differs.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..');
export const KERNELS_DIR = path.join(ROOT, 'src', 'backend', 'kernels');
export const GENERATED_FILE = path.join(KERNELS_DIR, 'kernels_wasm.generated.ts');
export const CLANG = 'clang-16';
export const WASM_LD = 'wasm-ld-16';

/** Most 64 KiB pages of the worker's shared memory (1 GiB of address space, reserved). */
export const SHARED_MAX_PAGES = 16384;

/**
 * -mllvm -disable-lsr: LLVM's loop strength reduction rewrites the kernels' pointers so that
 * the constant offsets of their loads (qp + 1, qp + 2, ...) become separate i32.add
 * instructions, which V8 then executes in every iteration; without it they stay in the loads'
 * offset immediates (project_4x8 4-5% faster, measured against the hand-assembled kernels).
 */
const COMPILE_FLAGS = ['--target=wasm32', '-msimd128', '-O3', '-mllvm', '-disable-lsr', '-nostdlib', '-ffreestanding', '-Wall', '-Wextra', '-Werror'];
/**
 * The module starts no runtime and owns no memory: no entry point, the memory imported as
 * env.memory (one page at least), no shadow stack (size 0, placed first: its pointer is
 * address 0, so that a kernel that spilled to it would address the top of the 4 GiB space
 * rather than write into tfjs' heap; checkNoStack refuses any use of it anyway), and no
 * symbols or names.
 */
const LINK_FLAGS = ['--no-entry', '--import-memory', '--initial-memory=65536', '--stack-first', '-z', 'stack-size=0', '--strip-all'];
/** A shared memory needs the atomics and bulk-memory features in every object. */
const SHARED_COMPILE_FLAGS = ['-matomics', '-mbulk-memory'];
const SHARED_LINK_FLAGS = ['--shared-memory', `--max-memory=${SHARED_MAX_PAGES * 65536}`];

/** A parameter of an exported function: its name in kernels.h and its wasm type. */
export interface KernelParam {
  name: string;
  type: 'i32'|'f32';
}

/** An exported function, as declared in kernels.h. */
export interface KernelSignature {
  name: string;
  params: KernelParam[];
}

/**
 * The exported functions declared in kernels.h: `KERNEL_EXPORT(name)` followed by
 * `void name(params);`. A `float` is an f32; pointers and 32-bit integers are i32.
 */
export function parseSignatures(header: string): KernelSignature[] {
  const signatures: KernelSignature[] = [];
  const declaration = /KERNEL_EXPORT\((\w+)\)\s*void\s+(\w+)\s*\(([^)]*)\)\s*;/g;
  for (const [, exported, name, list] of header.matchAll(declaration)) {
    if (exported !== name) throw new Error(`kernels.h: ${name} is exported as ${exported}; the names must agree`);
    const params = list.split(',').map(p => p.trim().replace(/\s+/g, ' ')).map(param => {
      const match = /^(.*?)\s*\b(\w+)$/.exec(param);
      if (match == null) throw new Error(`kernels.h: cannot read the parameter "${param}" of ${name}`);
      const [, type, paramName] = match;
      if (type === 'float') return {name: paramName, type: 'f32' as const};
      if (type.endsWith('*') || /^(u?int32_t)$/.test(type)) return {name: paramName, type: 'i32' as const};
      throw new Error(`kernels.h: the parameter ${paramName} of ${name} has type ${type}; only float, (u)int32_t and pointers cross to JavaScript`);
    });
    signatures.push({name, params});
  }
  if (signatures.length === 0) throw new Error('kernels.h declares no KERNEL_EXPORT function');
  return signatures;
}

/** Runs a tool, throwing with its output if it fails or cannot be found. */
function run(tool: string, args: string[]): string {
  const result = spawnSync(tool, args, {encoding: 'utf8'});
  if (result.error != null) {
    throw new Error(`${tool} could not be run (${result.error.message}): building the kernels needs Debian's clang-16 and lld-16 ` +
        '(apt-get install clang-16 lld-16)');
  }
  if (result.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed:\n${result.stdout}${result.stderr}`);
  return result.stdout;
}

/** Section ids that a kernel module may have: type, import, function, table, global, export, code. */
const ALLOWED_SECTIONS = new Set([1, 2, 3, 4, 6, 7, 10]);

/**
 * Refuses a module that could write outside the addresses its callers give it: one with a
 * data section, a start function or custom sections.
 */
function checkModule(file: string, bytes: Uint8Array): void {
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at++];
    let size = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = bytes[at++];
      size += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) break;
    }
    if (!ALLOWED_SECTIONS.has(id)) throw new Error(`${file}: unexpected section ${id}: the kernels must hold no data, start function or names`);
    at += size;
  }
}

/**
 * Refuses a kernel that uses the shadow stack (an array, or a local whose address is taken):
 * its assembly names __stack_pointer. The module has none to give it (see LINK_FLAGS).
 */
function checkNoStack(source: string, flags: string[]): void {
  const assembly = run(CLANG, [...flags, '-S', '-o', '-', path.join(KERNELS_DIR, source)]);
  if (assembly.includes('__stack_pointer')) {
    throw new Error(`${source}: a kernel uses the shadow stack (__stack_pointer): keep every local in registers (no arrays, no address taken)`);
  }
}

/**
 * The kernels whose relaxed-SIMD variant pays (measured in Chromium 156 on this machine, the
 * kernels called alone at T = S = 1024, d = 64: attend_backward_4x8 1.11× faster with
 * f32x4.relaxed_madd, attend_4x8 and project_4x8 no faster), compiled into a module of their own.
 */
export const RELAXED_SOURCES = ['attend_backward_4x8_wasmsimd.c'];
/** The relaxed variant: relaxed SIMD allowed, and madd_wasmsimd.h's fused multiply-add chosen. */
const RELAXED_COMPILE_FLAGS = ['-mrelaxed-simd', '-DRELAXED_SIMD'];

/**
 * The modules' bytes: every .c file of src/backend/kernels/ in name order (`plain`, and
 * `shared`, wasm-ld's build with a shared memory, which test/wasm_kernels_build_test.ts compares
 * with the rewrite that the package makes of `plain`), and RELAXED_SOURCES built with relaxed
 * SIMD (`relaxed`, and `relaxedShared` likewise).
 */
export function compileKernels(): {plain: Uint8Array; shared: Uint8Array; relaxed: Uint8Array; relaxedShared: Uint8Array} {
  const sources = fs.readdirSync(KERNELS_DIR).filter(f => f.endsWith('.c')).sort();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-attention-kernels-'));
  try {
    const link = (variant: string, files: string[], shared: boolean, extraFlags: string[]) => {
      const objects = files.map(source => {
        const object = path.join(work, `${variant}-${source.replace(/\.c$/, '.o')}`);
        const flags = [...COMPILE_FLAGS, ...(shared ? SHARED_COMPILE_FLAGS : []), ...extraFlags];
        checkNoStack(source, flags);
        run(CLANG, [...flags, '-c', path.join(KERNELS_DIR, source), '-o', object]);
        return object;
      });
      const output = path.join(work, `${variant}.wasm`);
      run(WASM_LD, [...LINK_FLAGS, ...(shared ? SHARED_LINK_FLAGS : []), ...objects, '-o', output]);
      const bytes = new Uint8Array(fs.readFileSync(output));
      checkModule(output, bytes);
      return bytes;
    };
    return {
      plain: link('plain', sources, false, []), shared: link('shared', sources, true, []),
      relaxed: link('relaxed', RELAXED_SOURCES, false, RELAXED_COMPILE_FLAGS),
      relaxedShared: link('relaxed-shared', RELAXED_SOURCES, true, RELAXED_COMPILE_FLAGS),
    };
  } finally {
    fs.rmSync(work, {recursive: true, force: true});
  }
}

/** snake_case to camelCase, for TypeScript parameter names. */
function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Base64 in lines of at most 100 characters, as TypeScript string literals joined by +. */
function base64Lines(bytes: Uint8Array): string {
  const text = Buffer.from(bytes).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < text.length; i += 96) lines.push(`  '${text.slice(i, i + 96)}'`);
  return lines.join(' +\n');
}

/** The text of kernels_wasm.generated.ts for these modules and signatures. */
export function generatedSource(modules: {plain: Uint8Array; relaxed: Uint8Array}, signatures: KernelSignature[]): string {
  const names = signatures.map(s => `'${s.name}'`).join('|');
  const table = signatures.map(s => `  ${s.name}: [${s.params.map(p => `['${camel(p.name)}', '${p.type}']`).join(', ')}],`).join('\n');
  const methods = signatures.map(s => `  ${s.name}(${s.params.map(p => `${camel(p.name)}: number`).join(', ')}): void;`).join('\n');
  return `// Generated by scripts/build_kernels.ts (npm run build:kernels) from src/backend/kernels/*.c and
// kernels.h. Do not edit: change the C and rebuild. test/wasm_kernels_build_test.ts checks that
// this file is what the build gives.

/** Names of the kernel module's exported functions. */
export type KernelName = ${names};

/** Each exported function's parameters, as declared in kernels.h: name (camelCase) and wasm type. */
export const KERNEL_SIGNATURES = {
${table}
} as const satisfies {readonly [name in KernelName]: ReadonlyArray<readonly [string, 'i32'|'f32']>};

/** The kernel module's exports: byte addresses and sizes in, nothing out (see kernels.h). */
export interface KernelExports {
${methods}
}

/**
 * Most 64 KiB pages of the shared memory that the worker's module imports: KERNELS_WASM with its
 * memory import made shared (kernel_module.ts' withSharedMemoryImport).
 */
export const KERNELS_SHARED_MAX_PAGES = ${SHARED_MAX_PAGES};

/** The module importing a plain memory as env.memory (${modules.plain.length} bytes). */
export const KERNELS_WASM =
${base64Lines(modules.plain)};

/**
 * ${RELAXED_SOURCES.join(', ')} alone, built with relaxed SIMD (f32x4.relaxed_madd: see
 * madd_wasmsimd.h), importing a plain memory as env.memory (${modules.relaxed.length} bytes): used in place of
 * KERNELS_WASM's functions of the same names where the runtime validates it (kernel_module.ts).
 */
export const KERNELS_RELAXED_WASM =
${base64Lines(modules.relaxed)};
`;
}

/** Compiles the kernels and returns the text of the generated file. */
export function buildKernelsSource(): string {
  const signatures = parseSignatures(fs.readFileSync(path.join(KERNELS_DIR, 'kernels.h'), 'utf8'));
  return generatedSource(compileKernels(), signatures);
}

if (require.main === module) {
  try {
    fs.writeFileSync(GENERATED_FILE, buildKernelsSource());
    console.log(`Wrote ${path.relative(ROOT, GENERATED_FILE)}`);
  } catch (error) {
    console.error((error as Error).message);
    process.exit(1);
  }
}
