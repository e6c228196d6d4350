/**
 * The C kernels (src/backend/kernels/) called directly on a memory of their own, at sizes
 * below, at and past each tile (4 rows, 8 columns or keys) and block boundary, against
 * plain-array references; every call must leave the memory around its outputs untouched.
 */
import {instantiateKernels} from '../src/backend/kernels/kernel_module';
import type {KernelExports} from '../src/backend/kernels/kernel_module';
import {maskedSoftmax, Matrix, matmul, transpose} from './helpers/reference_attention';
import {randomArray} from './helpers/tensors';

/** A float never written by a kernel, to find writes outside the outputs. */
const SENTINEL = -12345.5;

/** A fresh memory with the kernels on it, and a bump allocator of float arrays (64-byte aligned). */
function kernelMemory(): {kernels: KernelExports; floats: () => Float32Array; alloc: (n: number, fill?: number) => number} {
  const memory = new WebAssembly.Memory({initial: 64});
  const kernels = instantiateKernels(memory)!;
  let next = 64;
  return {
    kernels,
    floats: () => new Float32Array(memory.buffer),
    alloc: (n: number, fill = SENTINEL) => {
      const at = next;
      next += Math.ceil((4 * n + 256) / 64) * 64;  // and a guard zone after
      new Float32Array(memory.buffer, at, (next - at) / 4).fill(fill);
      return at;
    },
  };
}

const matrix = (rows: number, cols: number, seed: number) => randomArray([rows, cols], seed) as Matrix;

/** Writes a matrix with rows `stride` floats apart at byte `at`. */
function put(floats: Float32Array, at: number, x: Matrix, stride: number): void {
  x.forEach((row, r) => floats.set(row, at / 4 + r * stride));
}

/** The matrix of `rows` rows of `cols` floats, `stride` apart, at byte `at`. */
function get(floats: Float32Array, at: number, rows: number, cols: number, stride: number): Matrix {
  return Array.from({length: rows}, (_, r) => Array.from(floats.subarray(at / 4 + r * stride, at / 4 + r * stride + cols)));
}

/** The packing of pack_rows: row r, column c at (r - r % group)·cols + c·group + r % group; padding rows 0. */
function packed(x: Matrix, group: number): number[] {
  const rows = Math.ceil(x.length / group) * group;
  const cols = x[0].length;
  const out = new Array<number>(rows * cols).fill(0);
  x.forEach((row, r) => row.forEach((value, c) => {
    out[(r - (r % group)) * cols + c * group + (r % group)] = value;
  }));
  return out;
}

/** Largest |a - b| over two matrices of the same shape (NaN if any is NaN). */
function maxDiff(a: Matrix, b: Matrix): number {
  expect([a.length, a[0]?.length]).toEqual([b.length, b[0]?.length]);
  return Math.max(0, ...a.flatMap((row, r) => row.map((x, c) => Math.abs(x - b[r][c]))));
}

/** How many floats of the n from byte `at` differ from SENTINEL, skipping those where `keep(i)` (the outputs). */
function written(floats: Float32Array, at: number, n: number, keep: (i: number) => boolean): number {
  let count = 0;
  for (let i = 0; i < n; i++) if (!keep(i) && floats[at / 4 + i] !== SENTINEL) count++;
  return count;
}

describe('pack_rows', () => {
  // Rows and columns below, at and past the 4×4 blocks that the kernel transposes in registers (and a row
  // of 64 columns, the width it packs most), for the groups it is called with (1: a copy of the rows).
  const cases = [1, 3, 4, 5, 7, 8, 9, 12, 16, 17].flatMap(rows => [1, 3, 4, 5, 8, 13, 64].flatMap(cols => [1, 4, 8].map(group => ({rows, cols, group}))));
  it.each(cases)('rows=$rows, cols=$cols, group=$group: the packed layout, padding rows zero, nothing else written', ({rows, cols, group}) => {
    const {kernels, floats, alloc} = kernelMemory();
    const stride = cols + 3;
    const x = matrix(rows, cols, rows * 100 + cols);
    const src = alloc(rows * stride);
    put(floats(), src, x, stride);
    const expected = packed(x, group);
    const dst = alloc(expected.length + 64);
    kernels.pack_rows(src, 4 * stride, dst, rows, cols, group);
    const f = floats();
    expect(Array.from(f.subarray(dst / 4, dst / 4 + expected.length))).toEqual(expected.map(v => Math.fround(v)));
    expect(written(f, dst + 4 * expected.length, 64, () => false)).toBe(0);
  });

  it('moves every float bit for bit: NaN payloads, -0 and subnormals included', () => {
    const {kernels, floats, alloc} = kernelMemory();
    const [rows, cols] = [9, 7];
    const bits = Uint32Array.from({length: rows * cols}, (_, i) => [0x7fc00001 + i, 0xffa00000 + i, 0x80000000, 0x00000001 + i][i % 4]);
    const src = alloc(rows * cols);
    new Uint32Array(floats().buffer, src, rows * cols).set(bits);
    for (const group of [1, 4, 8]) {
      const padded = Math.ceil(rows / group) * group;
      const dst = alloc(padded * cols);
      kernels.pack_rows(src, 4 * cols, dst, rows, cols, group);
      const out = new Uint32Array(floats().buffer, dst, padded * cols);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) expect(out[(r - (r % group)) * cols + c * group + (r % group)]).toBe(bits[r * cols + c]);
      }
    }
  });
});

describe('add_rows', () => {
  // parts: 0 copies a; 1 adds b; 3 adds b and the two matrices after it, left to right.
  const cases = [0, 1, 3].flatMap(rows => [1, 3, 4, 5, 8, 13].flatMap(cols => [0, 1, 3].map(parts => ({rows, cols, parts}))));
  it.each(cases)('rows=$rows, cols=$cols, parts=$parts: ((a + b_0) + b_1) + … (or a) between strides, rounded as Math.fround at each step; nothing else written', ({rows, cols, parts}) => {
    const {kernels, floats, alloc} = kernelMemory();
    const [srcStride, dstStride] = [cols + 5, cols + 2];
    const partFloats = rows * srcStride + 7;  // the parts' matrices apart, further than their rows
    const a = matrix(rows, cols, 11 + cols);
    const bs = Array.from({length: Math.max(parts, 1)}, (_, j) => matrix(rows, cols, 12 + cols + j).map(row => row.map(v => v * 1e-3 * (j + 1))));  // sums that must round
    const [aAt, bAt, dst] = [alloc(rows * srcStride), alloc(bs.length * partFloats), alloc(rows * dstStride)];
    put(floats(), aAt, a, srcStride);
    bs.forEach((b, j) => put(floats(), bAt + 4 * j * partFloats, b, srcStride));
    kernels.add_rows(dst, 4 * dstStride, aAt, parts > 0 ? bAt : 0, parts, 4 * partFloats, 4 * srcStride, rows, cols);
    const f = floats();
    const expected = a.map((row, r) => row.map((v, c) => bs.slice(0, parts).reduce((sum, b) => Math.fround(sum + Math.fround(b[r][c])), Math.fround(v))));
    expect(get(f, dst, rows, cols, dstStride)).toEqual(expected);
    expect(written(f, dst, rows * dstStride + 64, i => i < rows * dstStride && i % dstStride < cols)).toBe(0);
  });

  it('a null b copies a whatever the parts say', () => {
    const {kernels, floats, alloc} = kernelMemory();
    const a = [[1, 2, 3, 4, 5]];
    const [aAt, dst] = [alloc(5), alloc(5)];
    put(floats(), aAt, a, 5);
    kernels.add_rows(dst, 20, aAt, 0, 3, 64, 20, 1, 5);
    expect(get(floats(), dst, 1, 5, 5)).toEqual(a);
  });

  it('adds in place (dst = a) with NaN and ±∞ as IEEE 754 adds them', () => {
    const {kernels, floats, alloc} = kernelMemory();
    const a = [[1, NaN, Infinity, -Infinity, 3e38, 1]];
    const b = [[2, 1, -Infinity, -Infinity, 3e38, NaN]];
    const [aAt, bAt] = [alloc(6), alloc(6)];
    put(floats(), aAt, a, 6);
    put(floats(), bAt, b, 6);
    kernels.add_rows(aAt, 24, aAt, bAt, 1, 0, 24, 1, 6);
    expect(get(floats(), aAt, 1, 6, 6)).toEqual([[3, NaN, NaN, -Infinity, Infinity, NaN]]);
  });
});

describe('row_dots', () => {
  /** The kernel's float32 order: lanes c ≡ l (mod 4) summed by fours, (l0 + l1) + (l2 + l3), then the columns past the last four. */
  const rowDot = (x: number[], y: number[]): number => {
    const f = Math.fround;
    const lanes = [0, 0, 0, 0];
    const whole = x.length - (x.length % 4);
    for (let c = 0; c < whole; c++) lanes[c % 4] = f(lanes[c % 4] + f(f(x[c]) * f(y[c])));
    let sum = f(f(lanes[0] + lanes[1]) + f(lanes[2] + lanes[3]));
    for (let c = whole; c < x.length; c++) sum = f(sum + f(f(x[c]) * f(y[c])));
    return sum;
  };
  const cases = [0, 1, 5].flatMap(rows => [1, 3, 4, 5, 8, 13, 64].map(cols => ({rows, cols})));
  it.each(cases)('rows=$rows, cols=$cols: each row\'s dot product between strides, within 1e-6 of float64; nothing else written', ({rows, cols}) => {
    const {kernels, floats, alloc} = kernelMemory();
    const [aStride, bStride] = [cols + 3, cols + 6];
    const [a, b] = [matrix(rows, cols, 21 + cols), matrix(rows, cols, 22 + cols)];
    const [aAt, bAt, dst] = [alloc(rows * aStride), alloc(rows * bStride), alloc(rows)];
    put(floats(), aAt, a, aStride);
    put(floats(), bAt, b, bStride);
    kernels.row_dots(dst, aAt, 4 * aStride, bAt, 4 * bStride, rows, cols);
    const f = floats();
    const got = Array.from(f.subarray(dst / 4, dst / 4 + rows));
    expect(got).toEqual(a.map((row, r) => rowDot(row, b[r])));                        // the order above, bit for bit
    a.forEach((row, r) => {                                                            // and the dot product itself
      const exact = row.reduce((sum, v, c) => sum + Math.fround(v) * Math.fround(b[r][c]), 0);
      expect(Math.abs(got[r] - exact)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(exact)));
    });
    expect(written(f, dst + 4 * rows, 64, () => false)).toBe(0);
  });

  it('gives NaN for a row with NaN or ∞·0, ±∞ where a product overflows', () => {
    const {kernels, floats, alloc} = kernelMemory();
    const a = [[1, NaN, 0, 0, 0], [Infinity, 1, 1, 1, 1], [3e38, 3e38, 0, 0, 0], [1, 2, 3, 4, 5]];
    const b = [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [3e38, 0, 0, 0, 0], [1, 1, 1, 1, -15]];
    const [aAt, bAt, dst] = [alloc(20), alloc(20), alloc(4)];
    put(floats(), aAt, a, 5);
    put(floats(), bAt, b, 5);
    kernels.row_dots(dst, aAt, 20, bAt, 20, 4, 5);
    expect(Array.from(floats().subarray(dst / 4, dst / 4 + 4))).toEqual([NaN, NaN, Infinity, -65]);
  });
});

describe('project_4x8', () => {
  // x's three layouts: packed by fours (pack_rows), x's transpose read in place (its rows `ld` floats apart), and
  // one input per row read again for every d (x_step 0: x's row r is its value d_in times).
  const layouts = ['packed', 'transposed', 'repeated'] as const;
  const cases = [1, 2, 3].flatMap(tiles => [0, 1, 5, 8, 9].flatMap(dIn => [8, 16, 24].flatMap(dOut =>
    [false, true].flatMap(bias => layouts.map(layout => ({tiles, dIn, dOut, bias, layout}))))));
  it.each(cases)('tiles=$tiles, dIn=$dIn, dOut=$dOut, bias=$bias, x $layout: x·w (+ b), nothing outside the output written', ({tiles, dIn, dOut, bias, layout}) => {
    const {kernels, floats, alloc} = kernelMemory();
    const rows = 4 * tiles;
    const [wStride, outStride, ld] = [dOut + 8, dOut + 4, rows + 3];
    const values = matrix(rows, Math.max(dIn, 1), 1);
    const x = layout === 'repeated' ? values.map(row => new Array<number>(dIn).fill(row[0])) : values.map(row => row.slice(0, dIn));
    const w = matrix(dIn, dOut, 2);
    const b = (randomArray([dOut], 3) as number[]);
    const xAt = alloc(Math.max(rows * dIn, dIn * ld, rows));
    const wAt = alloc(dIn * wStride);
    const bAt = alloc(dOut);
    const outAt = alloc(rows * outStride);
    const f = floats();
    let [tileStride, step] = [16 * dIn, 16];
    if (layout === 'packed' && dIn > 0) f.set(packed(x, 4), xAt / 4);
    if (layout === 'transposed') {
      if (dIn > 0) put(f, xAt, transpose(x), ld);                  // xᵀ [dIn, rows], rows ld floats apart
      [tileStride, step] = [16, 4 * ld];
    }
    if (layout === 'repeated') {
      f.set(values.map(row => row[0]), xAt / 4);                   // one float per row, side by side
      [tileStride, step] = [16, 0];
    }
    put(f, wAt, w, wStride);
    f.set(b, bAt / 4);
    kernels.project_4x8(xAt, tileStride, step, wAt, 4 * wStride, bias ? bAt : 0, outAt, 4 * outStride, tiles, dIn, dOut);
    const expected = x.map((row, r) => Array.from({length: dOut}, (_, c) => (bias ? b[c] : 0) + row.reduce((s, v, k) => s + v * w[k][c], 0)));
    expect(maxDiff(get(floats(), outAt, rows, dOut, outStride), expected)).toBeLessThan(1e-5);
    expect(written(floats(), outAt, rows * outStride + 64, i => i < rows * outStride && i % outStride < dOut)).toBe(0);
  });

  it('gives the same bits for x packed and for its transpose read in place', () => {
    const {kernels, floats, alloc} = kernelMemory();
    const [rows, dIn, dOut] = [12, 37, 16];
    const x = matrix(rows, dIn, 4);
    const w = matrix(dIn, dOut, 5);
    const [packedAt, transposedAt, wAt, outA, outB] = [alloc(rows * dIn), alloc(rows * dIn), alloc(dIn * dOut), alloc(rows * dOut), alloc(rows * dOut)];
    floats().set(packed(x, 4), packedAt / 4);
    put(floats(), transposedAt, transpose(x), rows);
    put(floats(), wAt, w, dOut);
    kernels.project_4x8(packedAt, 16 * dIn, 16, wAt, 4 * dOut, 0, outA, 4 * dOut, rows / 4, dIn, dOut);
    kernels.project_4x8(transposedAt, 16, 4 * rows, wAt, 4 * dOut, 0, outB, 4 * dOut, rows / 4, dIn, dOut);
    expect(Array.from(floats().subarray(outB / 4, outB / 4 + rows * dOut))).toEqual(Array.from(floats().subarray(outA / 4, outA / 4 + rows * dOut)));
  });
});

describe('batch_matmul_4x4', () => {
  const cases = [1, 3].flatMap(batches => [4, 8].flatMap(m => [0, 1, 7].flatMap(k => [4, 12].map(n => ({batches, m, k, n})))));
  it.each(cases)('batches=$batches, m=$m, k=$k, n=$n: scale·A·B per batch, nothing after C written', ({batches, m, k, n}) => {
    const {kernels, floats, alloc} = kernelMemory();
    const scale = 0.75;
    const a = Array.from({length: batches}, (_, i) => matrix(m, k, 10 + i));
    const b = Array.from({length: batches}, (_, i) => matrix(k, n, 20 + i));
    const [aAt, bAt, cAt] = [alloc(batches * m * k), alloc(batches * k * n), alloc(batches * m * n)];
    a.forEach((x, i) => put(floats(), aAt + 4 * i * m * k, x, k));
    b.forEach((x, i) => put(floats(), bAt + 4 * i * k * n, x, n));
    kernels.batch_matmul_4x4(aAt, bAt, cAt, batches, m, k, n, scale);
    for (let i = 0; i < batches; i++) {
      const expected = k === 0 ? a[i].map(() => new Array<number>(n).fill(0)) : matmul(a[i], b[i]).map(row => row.map(v => scale * v));
      expect(maxDiff(get(floats(), cAt + 4 * i * m * n, m, n, n), expected)).toBeLessThan(1e-5);
    }
    expect(written(floats(), cAt + 4 * batches * m * n, 64, () => false)).toBe(0);
  });
});

describe('attend_4x8', () => {
  interface Case {T: number; S: number; block: number; dk: number; dv: number; causal: boolean; q0: number; keyBias: boolean}
  const base: Case = {T: 5, S: 9, block: 8, dk: 3, dv: 8, causal: false, q0: 0, keyBias: false};
  const cases: Case[] = [
    // Queries below, at and past a tile of 4; keys below, at and past a panel of 8 and a block.
    ...[1, 3, 4, 5, 8, 9].map(T => ({...base, T})),
    ...[1, 7, 8, 9, 15, 16, 17].map(S => ({...base, S})),
    ...[7, 8, 9, 16, 17, 24, 25].map(S => ({...base, S, block: 16})),
    {...base, T: 12, S: 300, block: 256}, {...base, T: 9, S: 513, block: 256, dk: 8, dv: 16},
    ...[1, 2, 8, 9].map(dk => ({...base, dk})),
    ...[8, 16, 24].map(dv => ({...base, dv})),
    // Causal, from query 0 and from a later tile (the second thread's share), blocks skipped.
    ...[[5, 9, 8], [8, 8, 8], [13, 40, 16], [9, 30, 8]].map(([T, S, block]) => ({...base, T, S, block, causal: true})),
    ...[4, 8, 12].map(q0 => ({...base, T: 7, S: 30, block: 8, causal: true, q0})),
    {...base, T: 6, S: 20, block: 8, keyBias: true}, {...base, T: 6, S: 20, block: 16, keyBias: true, causal: true, q0: 4},
  ];
  it.each(cases)('T=$T, S=$S, block=$block, dk=$dk, dv=$dv, causal=$causal from query $q0, keyBias=$keyBias: ' +
                 'the masked softmax(scale·(Q·Kᵀ + bias))·V, nothing outside the output written', (c: Case) => {
    const {T, S, block, dk, dv, causal, q0, keyBias} = c;
    const {kernels, floats, alloc} = kernelMemory();
    const scale = 0.6;
    const tiles = Math.ceil(T / 4);
    const [vStride, outStride] = [dv + 4, dv + 8];
    const q = matrix(T, dk, 1).map(row => row.map(x => 3 * x));
    const k = matrix(S, dk, 2).map(row => row.map(x => 3 * x));
    const v = matrix(S, dv, 3);
    const bias = Array.from({length: S}, (_, s) => (s % 3 === 1 ? -1e9 : (s % 5) * 0.25));  // masked keys and small biases
    const [qAt, kAt, vAt, biasAt] = [alloc(tiles * 4 * dk), alloc(Math.ceil(S / 8) * 8 * dk), alloc(S * vStride), alloc(S)];
    const [outAt, scratchAt, stateAt] = [alloc(tiles * 4 * outStride), alloc(4 * block + 4), alloc(8 * tiles)];
    const f = floats();
    f.set(packed(q, 4), qAt / 4);
    f.set(packed(k, 8), kAt / 4);
    put(f, vAt, v, vStride);
    f.set(bias, biasAt / 4);
    kernels.attend_4x8(qAt, kAt, vAt, 4 * vStride, outAt, 4 * outStride, scratchAt, stateAt, tiles, S, block, dk, dv,
                       scale, causal ? 1 : 0, q0, keyBias ? biasAt : 0, 0, 0, 0);
    const scores = matmul(q, transpose(k));                                  // [T, S]
    const expected = scores.map((row, t) => {
      const weights = maskedSoftmax(row.map((x, s) => scale * (x + (keyBias ? bias[s] : 0))),
                                    row.map((_, s) => !causal || s <= q0 + t));
      return Array.from({length: dv}, (_, col) => weights.reduce((sum, w, s) => sum + w * v[s][col], 0));
    });
    expect(maxDiff(get(floats(), outAt, T, dv, outStride), expected)).toBeLessThan(1e-5);
    expect(written(floats(), outAt, tiles * 4 * outStride + 64, i => i < tiles * 4 * outStride && i % outStride < dv)).toBe(0);
    expect(written(floats(), scratchAt + 4 * (4 * block + 4), 64, () => false)).toBe(0);
    expect(written(floats(), stateAt + 4 * 8 * tiles, 64, () => false)).toBe(0);
  });
});

describe('attend_4x8 with a bias row per query (an explicit mask)', () => {
  interface Case {T: number; S: number; block: number; causal: boolean; q0: number; keyBias: boolean}
  const cases: Case[] = [
    // Queries and keys below, at and past a tile of 4 and a panel of 8 (four keys at a time, then one by one).
    ...[1, 3, 4, 7].flatMap(T => [1, 3, 4, 13, 20].map(S => ({T, S, block: 8, causal: false, q0: 0, keyBias: false}))),
    {T: 9, S: 40, block: 16, causal: false, q0: 0, keyBias: false},
    // From a later tile (the second thread's share): rows from the pair's first query, causal blocks skipped.
    ...[4, 8].map(q0 => ({T: 7, S: 30, block: 8, causal: true, q0, keyBias: false})), {T: 5, S: 13, block: 8, causal: false, q0: 4, keyBias: false},
    // With a key bias too: both added.
    {T: 7, S: 13, block: 8, causal: false, q0: 0, keyBias: true}, {T: 7, S: 30, block: 8, causal: true, q0: 4, keyBias: true},
  ];
  it.each(cases)('T=$T, S=$S, block=$block, causal=$causal from query $q0, keyBias=$keyBias: query t gets its own row, ' +
                 'never a float outside the rows', (c: Case) => {
    const {T, S, block, causal, q0, keyBias} = c;
    const [dk, dv] = [3, 8];
    const {kernels, floats, alloc} = kernelMemory();
    const scale = 0.6;
    const tiles = Math.ceil(T / 4);
    const rows = q0 + T;                                                      // the pair's queries, from its first
    const stride = S + 3;                                                     // floats between rows: a gap of 3
    const q = matrix(T, dk, 1).map(row => row.map(x => 3 * x));
    const k = matrix(S, dk, 2).map(row => row.map(x => 3 * x));
    const v = matrix(S, dv, 3);
    // Each query its own pattern of masked keys (key 0 kept, so no row is empty) and small biases.
    const bias = Array.from({length: rows}, (_, t) => Array.from({length: S}, (_, s) => (s > 0 && (s + t) % 3 === 1 ? -1e9 : ((s * t) % 5) * 0.25)));
    const [qAt, kAt, vAt] = [alloc(tiles * 4 * dk), alloc(Math.ceil(S / 8) * 8 * dk), alloc(S * dv)];
    const biasAt = alloc(rows * stride, NaN);                                 // NaN in the gaps and the guard after
    const keys = Array.from({length: S}, (_, s) => (s > 0 && s % 4 === 2 ? -1e9 : (s % 3) * 0.5));  // key 0 kept
    const keysAt = alloc(S);
    const [outAt, scratchAt, stateAt] = [alloc(tiles * 4 * dv), alloc(4 * block + 4), alloc(8 * tiles)];
    const f = floats();
    f.set(packed(q, 4), qAt / 4);
    f.set(packed(k, 8), kAt / 4);
    put(f, vAt, v, dv);
    put(f, biasAt, bias, stride);
    f.set(keys, keysAt / 4);
    kernels.attend_4x8(qAt, kAt, vAt, 4 * dv, outAt, 4 * dv, scratchAt, stateAt, tiles, S, block, dk, dv,
                       scale, causal ? 1 : 0, q0, keyBias ? keysAt : 0, biasAt, 4 * stride, rows);
    const scores = matmul(q, transpose(k));                                  // [T, S]
    const expected = scores.map((row, t) => {
      const weights = maskedSoftmax(row.map((x, s) => scale * (x + (keyBias ? keys[s] : 0) + bias[q0 + t][s])),
                                    row.map((_, s) => !causal || s <= q0 + t));
      return Array.from({length: dv}, (_, col) => weights.reduce((sum, w, s) => sum + w * v[s][col], 0));
    });
    expect(maxDiff(get(floats(), outAt, T, dv, dv), expected)).toBeLessThan(1e-5);
    // The last tile's padding lanes read the last row (clamped), not the NaN after it.
    const padding = get(floats(), outAt + 4 * T * dv, tiles * 4 - T, dv, dv).flat();
    expect(padding.filter(x => !Number.isFinite(x))).toEqual([]);
    expect(written(floats(), outAt + 4 * tiles * 4 * dv, 64, () => false)).toBe(0);
  });
});
