/**
 * The wasm kernels that the fast paths use (src/backend/wasm_simd_kernels.ts: the SIMD
 * batched matMul, sliceFast, pickPerRow; src/backend/wasm_dense.ts: the projections of
 * inference), and the fast paths on wasm, with their custom gradients, against tfjs on cpu.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {dotProductAttention} from '../src';
import * as wasmKernels from '../src/backend/wasm_simd_kernels';
import {pickPerRow, simdBatchMatMul, simdFits, sliceFast} from '../src/backend/wasm_simd_kernels';
import {DENSE_FUSED_MAX_WEIGHT_BYTES, denseFused, denseFusedFits} from '../src/backend/wasm_dense';
import {dense as referenceDense, Matrix, referenceDotProductAttention} from './helpers/reference_attention';
import {expectClose, flatten, maxAbsDiff, Nested, randomArray, runTestsOn, shapeOf} from './helpers/tensors';

runTestsOn('wasm');

describe('wasm kernels of the fast paths', () => {
  it.each([
    [[3, 5, 7], [3, 7, 6], false, false],
    [[2, 2, 16, 8], [2, 2, 16, 8], false, true],   // q·kᵀ
    [[4, 9, 3], [4, 9, 5], true, false],            // pᵀ·dO, swapped form
    [[1, 13, 4], [1, 6, 4], false, true],
  ])('simdBatchMatMul(%j, %j, %s, %s) equals tf.matMul (times 0.5)', (aShape, bShape, transposeA, transposeB) => {
    const a = tf.randomNormal(aShape as number[], 0, 1, 'float32', 1);
    const b = tf.randomNormal(bShape as number[], 0, 1, 'float32', 2);
    const [m, k] = transposeA ? [a.shape[a.rank - 1], a.shape[a.rank - 2]] : a.shape.slice(-2);
    expect(simdFits(a.size / (m * k), m, k, b.shape[b.rank - (transposeB ? 2 : 1)])).toBe(true);
    tf.tidy(() => {
      const expected = tf.mul(tf.matMul(a, b, transposeA, transposeB), 0.5);
      expect(maxAbsDiff(simdBatchMatMul(a, b, transposeA, transposeB, 0.5), expected).diff).toBeLessThan(1e-5);
    });
    tf.dispose([a, b]);
  });

  it('sliceFast equals tf.slice; pickPerRow picks one element per row', () => {
    const x = tf.randomNormal([2, 3, 5, 4], 0, 1, 'float32', 3);
    tf.tidy(() => {
      for (const [begin, size] of [[[0, 0, 1, 0], [2, 3, 3, 4]], [[1, 2, 0, 1], [1, 1, 5, 2]], [[0, 0, 0, 0], [2, 3, 5, 4]]]) {
        expect(maxAbsDiff(sliceFast(x, begin, size), tf.slice(x, begin, size)).diff).toBe(0);
      }
      const m = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
      expect(Array.from(pickPerRow(m, tf.tensor1d([2, 0], 'int32')).dataSync())).toEqual([3, 4]);
    });
    x.dispose();
  });
});

/**
 * Whether `mask` (a nested array, nonzero = attend) allows key s for query t at the leading
 * index `lead`, broadcasting it from the right against [...lead, T, S] as the op does.
 */
function maskAllows(mask: Nested, lead: number[], t: number, s: number, shape = shapeOf(mask)): boolean {
  const full = [...lead, t, s];
  if (shape.length > full.length) throw new Error(`mask rank ${shape.length} > scores rank ${full.length}`);
  const index = full.slice(full.length - shape.length);
  let value = mask;
  shape.forEach((size, axis) => {
    value = (value as Nested[])[size === 1 ? 0 : index[axis]];
  });
  return value !== 0;
}

/** The largest |x| of a nested array (0 for exact zeros, -0 included). */
function maxAbs(x: Nested): number {
  return flatten(x).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

describe('the fast paths on wasm match the plain-array reference and tfjs on cpu, gradients included', () => {
  // On wasm the standard path runs its own products and custom gradient (batch 1: 2-D
  // XNNPACK products; several pairs: the SIMD kernel, or one product per pair when too big
  // for it); on cpu tfjs differentiates plain ops. Masks cover a fully masked batch.
  // The last column pretends the SIMD kernel is unavailable (or the product too big for it).
  const cases: Array<[string, number[], number, number, number, number, boolean, number[]|null, number, boolean]> = [
    ['rank 3, SIMD kernel', [3], 5, 6, 4, 3, false, null, 0, false],
    ['rank 4, SIMD kernel, causal', [2, 3], 70, 90, 16, 24, true, null, 0, false],
    ['rank 4, key padding mask [B, 1, 1, S]', [2, 3], 33, 40, 16, 8, false, [2, 1, 1, 40], 0, false],
    ['batch 1, [T, S] mask, causal', [1, 1], 50, 50, 8, 8, true, [50, 50], 0, false],
    ['one product per pair, key padding mask', [2, 2], 128, 128, 16, 16, false, [2, 1, 1, 128], 0, true],
    ['wasm\'s batched matMul, causal', [3], 5, 6, 4, 3, true, null, 0, true],
    ['memory-efficient, several pairs, mask, causal', [2, 2], 40, 45, 8, 4, true, [2, 1, 40, 45], 16, false],
  ];
  let spy: jest.SpyInstance|null = null;
  afterEach(() => {
    spy?.mockRestore();
    spy = null;
  });
  it.each(cases)('%s', async (_, lead, T, S, dk, dv, causal, maskShape, blockSize, noSimd) => {
    if (noSimd) spy = jest.spyOn(wasmKernels, 'simdFits').mockReturnValue(false);
    // Returns [output, dq, dk, dv] and the inputs [q, k, v, mask] as nested arrays.
    const run = async (backend: string): Promise<{results: Nested[]; inputs: Array<Nested|null>}> => {
      await tf.setBackend(backend);
      let arrays: {results: Nested[]; inputs: Array<Nested|null>} = {results: [], inputs: []};
      tf.tidy(() => {
        const q = tf.randomNormal([...lead, T, dk], 0, 1, 'float32', 11);
        const k = tf.randomNormal([...lead, S, dk], 0, 1, 'float32', 12);
        const v = tf.randomNormal([...lead, S, dv], 0, 1, 'float32', 13);
        const readout = tf.randomNormal([...lead, T, dv], 0, 1, 'float32', 14);
        let mask: tf.Tensor|null = null;
        if (maskShape != null) {
          mask = tf.greater(tf.randomUniform(maskShape, 0, 1, 'float32', 15), 0.3);
          if (maskShape[0] === lead[0] && lead[0] > 1) {
            // The first batch attends nothing: its output and gradients must be exact zeros.
            const rest = tf.slice(mask, [1, 0, 0, 0], [maskShape[0] - 1, ...maskShape.slice(1)]);
            mask = tf.concat([tf.zeros([1, ...maskShape.slice(1)], 'bool'), rest], 0);
          }
        }
        const options = {causal, mask, blockSize};
        const loss = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(dotProductAttention(a, b, c, options), readout));
        const output = dotProductAttention(q, k, v, options);
        const grads = tf.grads(loss)([q, k, v]);
        arrays = {
          results: [output, ...grads].map((t) => t.arraySync() as Nested),
          inputs: [q, k, v, mask].map((t) => (t == null ? null : t.arraySync() as Nested)),
        };
      });
      return arrays;
    };
    let onWasm: Nested[];
    let onCpu: Nested[];
    let inputs: Array<Nested|null>;
    try {
      ({results: onWasm, inputs} = await run('wasm'));
      if (spy != null) expect(spy).toHaveBeenCalled();
      ({results: onCpu} = await run('cpu'));
    } finally {
      await tf.setBackend('wasm');
    }

    // The forward output against the plain-array reference with the same (broadcast) mask.
    const [qa, ka, va, maskArray] = inputs;
    const maskArrayShape = maskArray == null ? [] : shapeOf(maskArray);
    const expected = referenceDotProductAttention(qa as Matrix[], ka as Matrix[], va as Matrix[], {
      causal,
      allowed: maskArray == null ? undefined : (leadIndex, t, s) => maskAllows(maskArray, leadIndex, t, s, maskArrayShape),
    });
    expectClose(onWasm[0], expected.output as Nested, 1e-5);
    expectClose(onCpu[0], expected.output as Nested, 1e-5);

    // Output and gradients on wasm against tfjs's plain ops on cpu.
    onWasm.forEach((values, i) => {
      expect(maxAbsDiff(values, onCpu[i]).diff).toBeLessThan(i === 0 ? 1e-5 : 1e-4);
    });

    if (maskShape != null && maskShape[0] === lead[0] && lead[0] > 1) {
      // The first batch attends nothing: its output and dq, dk, dv are exact zeros.
      expect(maskAllows(maskArray!, lead.map(() => 0), T - 1, S - 1)).toBe(false);
      onWasm.forEach((values, i) => {
        expect([i, maxAbs((values as Nested[])[0])]).toEqual([i, 0]);
      });
      // And the other batches are not all zeros.
      expect(maxAbs((onWasm[0] as Nested[])[1])).toBeGreaterThan(0);
    }
  });
});

describe('denseFused: x·w + b for inference in one kernel', () => {
  // [x shape, dOut, bias]: rows off multiples of 4 and dOut off multiples of 8 take padded copies.
  it.each([
    [[8, 16], 16, false],
    [[5, 3], 7, true],
    [[2, 13, 64], 24, true],
    [[1024, 64], 64, false],
    [[3, 1], 1, true],
  ])('x %j · w [.., %i] (bias: %s) equals the plain-array product', (xShape, dOut, bias) => {
    const dIn = xShape[xShape.length - 1];
    const xValues = randomArray(xShape, 301) as number[];
    const wValues = randomArray([dIn, dOut], 302) as Matrix;
    const bValues = bias ? randomArray([dOut], 303) as number[] : undefined;
    const x = tf.tensor(xValues, xShape);
    const w = tf.tensor2d(wValues);
    const b = bValues == null ? null : tf.tensor1d(bValues);
    const rows = tf.tidy(() => x.reshape([-1, dIn]).arraySync()) as Matrix;  // [N, dIn], as float32 values
    const expected = referenceDense(rows, w.arraySync(), b?.arraySync());
    const before = tf.memory().numTensors;
    const y = denseFused(x, w, b);
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(y.shape).toEqual([...xShape.slice(0, -1), dOut]);
    expectClose(tf.tidy(() => y.reshape([-1, dOut]).arraySync()) as Matrix, expected, 1e-5);
    tf.dispose([x, w, b, y].filter((t): t is tf.Tensor => t != null));
  });

  it('takes weights up to DENSE_FUSED_MAX_WEIGHT_BYTES on wasm, none on cpu', async () => {
    expect(denseFusedFits(64, 64)).toBe(true);
    expect(denseFusedFits(256, DENSE_FUSED_MAX_WEIGHT_BYTES / (4 * 256))).toBe(true);
    expect(denseFusedFits(256, DENSE_FUSED_MAX_WEIGHT_BYTES / (4 * 256) + 1)).toBe(false);
    expect(denseFusedFits(0, 8)).toBe(false);
    await tf.setBackend('cpu');
    try {
      expect(denseFusedFits(64, 64)).toBe(false);
    } finally {
      await tf.setBackend('wasm');
    }
  });
});
