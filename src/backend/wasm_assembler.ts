/**
 * A few helpers to write WebAssembly modules as bytes, so that the package's SIMD kernels
 * need no toolchain. Each helper returns the bytes of one instruction (or one construct) and
 * is named after the instruction in the wasm text format.
 */

/** Unsigned LEB128, the integer encoding of the wasm binary format. */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 (for i32.const). */
export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

/** A SIMD instruction: the 0xfd prefix and its LEB128 opcode. */
const simd = (opcode: number) => [0xfd, ...uleb(opcode)];
/** A memory argument: alignment (log2 bytes) and constant byte offset. */
const memarg = (align: number, offset: number) => [align, ...uleb(offset)];

export const op = {
  get: (i: number) => [0x20, ...uleb(i)],                            // local.get
  set: (i: number) => [0x21, ...uleb(i)],                            // local.set
  tee: (i: number) => [0x22, ...uleb(i)],                            // local.tee
  i32: (n: number) => [0x41, ...sleb(n)],                            // i32.const
  i32Add: [0x6a], i32Sub: [0x6b], i32Mul: [0x6c], i32LtU: [0x49], i32Eqz: [0x45], i32ShrU: [0x76],
  /** select: the first operand if the third (an i32) is not 0, else the second. */
  select: [0x1b],
  f32Load: (offset = 0) => [0x2a, ...memarg(2, offset)],             // f32.load
  v128Load: (offset = 0) => [...simd(0x00), ...memarg(2, offset)],   // v128.load (align 4)
  v128Store: (offset = 0) => [...simd(0x0b), ...memarg(2, offset)],  // v128.store (align 4)
  load32Splat: (offset = 0) => [...simd(0x09), ...memarg(2, offset)],  // v128.load32_splat
  /** v128.const with four equal f32 lanes. */
  f32x4Const: (x: number) => [...simd(0x0c), ...Array.from({length: 4}, () => [...new Uint8Array(new Float32Array([x]).buffer)]).flat()],
  /** v128.const with four f32 lanes, lane 0 first. */
  f32x4Lanes: (...x: number[]) => [...simd(0x0c), ...new Uint8Array(new Float32Array(x).buffer)],
  /** v128.const with four equal i32 lanes. */
  i32x4Const: (x: number) => [...simd(0x0c), ...Array.from({length: 4}, () => [...new Uint8Array(new Int32Array([x]).buffer)]).flat()],
  f32x4Splat: simd(0x13),
  f32x4Add: simd(0xe4), f32x4Sub: simd(0xe5), f32x4Mul: simd(0xe6), f32x4Div: simd(0xe7),
  /** f32x4.pmax: b > a ? b : a, lane-wise (one x86 maxps, unlike f32x4.max's NaN rules). */
  f32x4Pmax: simd(0xeb),
  /** f32x4.eq and f32x4.lt: lane-wise compares, all ones where true (false for a NaN lane). */
  f32x4Eq: simd(0x41), f32x4Lt: simd(0x43),
  /** v128.andnot: a & ~b. v128.bitselect: (a & c) | (b & ~c), c on top of the stack. */
  v128AndNot: simd(0x4f), v128Bitselect: simd(0x52),
  i32x4Add: simd(0xae), i32x4Sub: simd(0xb1), i32x4Shl: simd(0xab),
  loop: (body: number[]) => [0x03, 0x40, ...body, 0x0b],
  block: (body: number[]) => [0x02, 0x40, ...body, 0x0b],
  brIf: (depth: number) => [0x0d, ...uleb(depth)],
  br: (depth: number) => [0x0c, ...uleb(depth)],
  i32LeU: [0x4d], i32LeS: [0x4c], i32GeU: [0x4f],
  /** while (condition) body, where `condition` leaves an i32 on the stack. */
  whileLoop: (condition: number[], body: number[]) =>
    [0x02, 0x40, 0x03, 0x40, ...condition, 0x45, 0x0d, 0x01, ...body, 0x0c, 0x00, 0x0b, 0x0b],
};

/** Value types of params and locals. */
export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;

/** One exported function of a module: (params) -> (), its locals as runs [count, type], and its body. */
export interface WasmFunction {
  name: string;
  params: number[];
  locals: Array<[number, number]>;
  /** The instructions, without the final `end`. */
  code: number[];
}

/**
 * Where a module's memory comes from: its own (one page to start, exported as `mem`), or
 * imported as `env.mem`, of any size, or shared (for threads) with at most `sharedPages`.
 */
export type ModuleMemory = 'own'|'imported'|{sharedPages: number};

/** A module exporting `functions`, with a memory as `memory` says. */
export function moduleBytes(functions: WasmFunction[], memory: ModuleMemory = 'own'): Uint8Array<ArrayBuffer> {
  const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
  const vector = (items: number[][]) => [...uleb(items.length), ...items.flat()];
  const text = (s: string) => [...uleb(s.length), ...Array.from(s, c => c.charCodeAt(0))];
  const types = functions.map(f => [0x60, ...vector(f.params.map(p => [p])), 0x00]);  // (params) -> ()
  const bodies = functions.map(f => {
    const body = [...vector(f.locals.map(([count, type]) => [...uleb(count), type])), ...f.code, 0x0b];
    return [...uleb(body.length), ...body];
  });
  const exports = functions.map((f, index) => [...text(f.name), 0x00, ...uleb(index)]);
  // Limits of an imported memory: min 0 pages, and for a shared one (flag 3) its maximum.
  const limits = typeof memory === 'object' ? [0x03, 0x00, ...uleb(memory.sharedPages)] : [0x00, 0x00];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,                  // "\0asm", version 1
    ...section(1, vector(types)),
    ...(memory === 'own' ? [] : section(2, vector([[...text('env'), ...text('mem'), 0x02, ...limits]]))),
    ...section(3, vector(functions.map((_, index) => uleb(index)))),  // function i has type i
    ...(memory === 'own' ? section(5, vector([[0x00, 0x01]])) : []),  // own memory, 1 page to start
    ...section(7, vector(memory === 'own' ? [...exports, [...text('mem'), 0x02, 0x00]] : exports)),
    ...section(10, vector(bodies)),
  ]);
}
