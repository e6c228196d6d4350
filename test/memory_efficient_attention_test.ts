/** Tests memoryEfficientAttention against plain tf ops: values, gradients, backends, leaks and peak memory. */

import * as tf from '@tensorflow/tfjs';
// Registers the 'wasm' backend (side effect only).
import '@tensorflow/tfjs-backend-wasm';

import {dotProductAttention} from '../src/attention/dot_product_attention';
import {memoryEfficientAttention, MemoryEfficientOptions} from '../src/attention/memory_efficient_attention';
import {ValueError} from '../src/errors';
import {ScaledDotProductAttention} from '../src/attention/scaled_dot_product_attention';
import {peakBytes} from '../scripts/app/bench/measure';
import {Matrix, referenceAttention, ReferenceWeights, referenceDotProductAttention, Tensor3} from './helpers/reference_attention';
import {expectClose, expectThrowsWithoutLeak, filled, flatten, maxAbsDiff, Nested, onBackend, randomArray, runTestsOn,
        seededRandom} from './helpers/tensors';
import {withNative} from './helpers/native';

/** cpu, wasm, and tensorflow (tfjs-node) when it loads; its absence is a skipped test with the reason. */
const BACKENDS = withNative(['cpu', 'wasm']);

/** One comparison case. */
interface Case {
  name: string;
  B: number;
  H: number;
  T: number;
  S: number;
  dk: number;
  dv: number;
  blockSize: number;
  causal?: boolean;
  /** Shape of a random 0/1 mask, or undefined for none. */
  maskShape?: [number, number, number, number];
  maskDtype?: 'bool'|'float32';
  /** Multiplies q and k (the logits grow by its square). */
  inputScale?: number;
  /** Multiplies k instead of inputScale: with inputScale 1e3 and keyScale 1e-3 the operands are large but the logits are not. */
  keyScale?: number;
}

const CASES: Case[] = [
  {name: 'T, S not multiples of blockSize', B: 2, H: 2, T: 7, S: 7, dk: 4, dv: 5, blockSize: 3},
  {name: 'cross attention S > T', B: 1, H: 2, T: 5, S: 11, dk: 3, dv: 4, blockSize: 4},
  {name: 'cross attention S < T', B: 1, H: 1, T: 9, S: 4, dk: 3, dv: 2, blockSize: 3},
  {name: 'single block (blockSize >= S)', B: 1, H: 2, T: 6, S: 9, dk: 4, dv: 3, blockSize: 16},
  {name: 'blockSize 1', B: 1, H: 2, T: 4, S: 5, dk: 3, dv: 3, blockSize: 1},
  {name: 'causal', B: 2, H: 1, T: 9, S: 9, dk: 4, dv: 4, blockSize: 4, causal: true},
  {name: 'causal cross S > T (skipped blocks)', B: 1, H: 2, T: 5, S: 12, dk: 3, dv: 2, blockSize: 3, causal: true},
  {name: 'causal cross S < T', B: 1, H: 1, T: 8, S: 5, dk: 3, dv: 3, blockSize: 2, causal: true},
  // The key limit T = 4 falls on a block edge: the blocks from key 4 on are skipped, not run with no query row.
  {name: 'causal cross S > T, T a multiple of blockSize', B: 1, H: 2, T: 4, S: 10, dk: 3, dv: 2, blockSize: 2, causal: true},
  {name: 'bool mask [B, 1, T, S] over heads', B: 2, H: 3, T: 6, S: 7, dk: 4, dv: 3, blockSize: 3, maskShape: [2, 1, 6, 7]},
  {name: 'float mask [B, H, T, S]', B: 2, H: 2, T: 5, S: 8, dk: 3, dv: 4, blockSize: 3, maskShape: [2, 2, 5, 8], maskDtype: 'float32'},
  {name: 'key-padding mask [B, 1, 1, S]', B: 2, H: 2, T: 4, S: 6, dk: 3, dv: 2, blockSize: 4, maskShape: [2, 1, 1, 6]},
  {name: 'mask with S dim 1 [B, 1, T, 1]', B: 1, H: 2, T: 5, S: 6, dk: 3, dv: 2, blockSize: 4, maskShape: [1, 1, 5, 1]},
  {name: 'causal and mask', B: 1, H: 2, T: 7, S: 7, dk: 3, dv: 3, blockSize: 3, causal: true, maskShape: [1, 2, 7, 7]},
  {name: 'inputs scaled by 1e3', B: 1, H: 2, T: 6, S: 7, dk: 4, dv: 3, blockSize: 3, inputScale: 1e3},
  {name: 'inputs scaled by 1e3, causal', B: 1, H: 1, T: 6, S: 6, dk: 4, dv: 3, blockSize: 4, causal: true, inputScale: 1e3},
  {name: 'queries ×1e3, keys ×1e-3', B: 1, H: 2, T: 6, S: 7, dk: 4, dv: 3, blockSize: 3, inputScale: 1e3, keyScale: 1e-3},
  {name: 'queries ×1e3, keys ×1e-3, causal', B: 1, H: 1, T: 6, S: 6, dk: 4, dv: 3, blockSize: 4, causal: true, inputScale: 1e3, keyScale: 1e-3},
];

/** The standard path, literally: q·kᵀ, × scale, where(mask, s, -1e30), softmax, × mask, ·v. */
function reference(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: MemoryEfficientOptions): tf.Tensor4D {
  return tf.tidy(() => {
    const [, , T] = q.shape;
    const S = k.shape[2];
    const scores = tf.mul(tf.matMul(q, tf.transpose(k, [0, 1, 3, 2])), options.scale);  // [B, H, T, S]
    let allowed: tf.Tensor|null = options.mask == null ? null : tf.cast(options.mask, 'bool');  // [mB, mH, mT, mS]
    if (options.causal) {
      const causal = tf.lessEqual(tf.reshape(tf.range(0, S, 1, 'int32'), [1, S]),
                                  tf.reshape(tf.range(0, T, 1, 'int32'), [T, 1]));  // [T, S]
      allowed = allowed == null ? causal : tf.logicalAnd(allowed, causal);  // [mB, mH, T, S]
    }
    if (allowed == null) return tf.matMul(tf.softmax(scores), v) as tf.Tensor4D;  // [B, H, T, dv]
    const masked = tf.where(allowed, scores, -1e30);  // [B, H, T, S]
    // Fully masked rows softmax to uniform weights: multiplying by the mask zeroes them.
    const weights = tf.mul(tf.softmax(masked), tf.cast(allowed, 'float32'));  // [B, H, T, S]
    return tf.matMul(weights, v) as tf.Tensor4D;  // [B, H, T, dv]
  });
}

/**
 * Each gradient may differ from the standard path's by 1e-5 of that gradient's largest entry:
 * measured on 2026-11-30 at most 1.2e-6 of it over every case on cpu, wasm and tensorflow.
 */
const GRAD_RELATIVE_TOLERANCE = 1e-5;

/**
 * Which of dq, dk, dv a case compares. With q and k both ×1e3 the logits are ~1e6 apart and
 * the softmax is one-hot, so the exact dq and dk are 0 and only float32 noise (up to 5e-4 at
 * that scale) is left: those cases compare dv, and the "queries ×1e3, keys ×1e-3" cases
 * (large operands, ordinary logits) compare dq and dk.
 */
function comparedGrads(c: Case): [boolean, boolean, boolean] {
  const saturated = c.inputScale != null && c.keyScale == null;
  return saturated ? [false, false, true] : [true, true, true];
}

/** Random inputs, options and upstream cotangent for a case (deterministic seeds). */
function makeInputs(c: Case, seed: number) {
  const s = c.inputScale ?? 1;
  const q = tf.mul(tf.randomNormal([c.B, c.H, c.T, c.dk], 0, 1, 'float32', seed), s) as tf.Tensor4D;  // [B, H, T, dk]
  const k = tf.mul(tf.randomNormal([c.B, c.H, c.S, c.dk], 0, 1, 'float32', seed + 1), c.keyScale ?? s) as tf.Tensor4D;  // [B, H, S, dk]
  const v = tf.randomNormal([c.B, c.H, c.S, c.dv], 0, 1, 'float32', seed + 2) as tf.Tensor4D;  // [B, H, S, dv]
  const r = tf.randomNormal([c.B, c.H, c.T, c.dv], 0, 1, 'float32', seed + 3) as tf.Tensor4D;  // [B, H, T, dv]
  let mask: tf.Tensor|undefined;
  if (c.maskShape != null) {
    const bits = tf.less(tf.randomUniform(c.maskShape, 0, 1, 'float32', seed + 4), 0.7);  // maskShape, bool
    mask = c.maskDtype === 'float32' ? tf.cast(bits, 'float32') : bits;  // maskShape
    if (mask !== bits) bits.dispose();
  }
  const options: MemoryEfficientOptions = {blockSize: c.blockSize, scale: 1 / Math.sqrt(c.dk), causal: c.causal, mask};
  return {q, k, v, r, options, dispose: () => tf.dispose([q, k, v, r, ...(mask ? [mask] : [])])};
}

/** Forward and gradient (loss = Σ out ∘ r) differences between the blocked and the reference path. */
function compare(c: Case, seed = 7) {
  const {q, k, v, r, options, dispose} = makeInputs(c, seed);
  const loss = (f: typeof reference) => (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
      tf.sum(tf.mul(f(qq as tf.Tensor4D, kk as tf.Tensor4D, vv as tf.Tensor4D, options), r));  // []
  const out = memoryEfficientAttention(q, k, v, options);  // [B, H, T, dv]
  const ref = reference(q, k, v, options);  // [B, H, T, dv]
  const grads = tf.grads(loss(memoryEfficientAttention))([q, k, v]);  // [dq, dk, dv]
  const refGrads = tf.grads(loss(reference))([q, k, v]);  // [dq, dk, dv]
  const result = {
    forward: maxAbsDiff(out, ref).diff,
    grads: grads.map((g, i) => maxAbsDiff(g, refGrads[i]).diff),
    gradScales: refGrads.map(g => tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0])),
    finite: [out, ...grads].every(t => tf.tidy(() => tf.all(tf.isFinite(t)).dataSync()[0] === 1)),
    out: out.arraySync() as number[][][][],
  };
  tf.dispose([out, ref, ...grads, ...refGrads]);
  dispose();
  return result;
}

describe('memoryEfficientAttention', () => {
  runTestsOn('cpu');

  describe.each(BACKENDS)('matches the standard path on %s', (backend) => {
    runTestsOn(backend);

    test.each(CASES.map(c => [c.name, c] as [string, Case]))('%s', (_name, c) => {
      expect(tf.getBackend()).toBe(backend);
      const res = compare(c);
      expect(res.finite).toBe(true);
      expect(res.forward).toBeLessThanOrEqual(1e-5);
      comparedGrads(c).forEach((compared, i) => {
        if (!compared) return;
        expect(res.gradScales[i]).toBeGreaterThan(1e-4);  // a compared gradient is not about 0
        expect(res.grads[i]).toBeLessThanOrEqual(GRAD_RELATIVE_TOLERANCE * res.gradScales[i]);
      });
    });
  });

  test('a fully masked row outputs exact zeros with finite, matching gradients', () => {
    const c: Case = {name: 'fully masked row', B: 1, H: 2, T: 4, S: 5, dk: 3, dv: 2, blockSize: 2};
    const {q, k, v, r, dispose} = makeInputs(c, 11);
    // Row 1 of head 0 attends nothing; every other entry attends.
    const maskValues = Array.from({length: 2 * 4 * 5}, (_, i) => (Math.floor(i / 5) === 1 ? 0 : 1));
    const mask = tf.tensor4d(maskValues, [1, 2, 4, 5], 'float32');  // [1, H, T, S]
    for (const causal of [false, true]) {
      const options = {blockSize: 2, scale: 0.5, causal, mask};
      const out = memoryEfficientAttention(q, k, v, options);  // [B, H, T, dv]
      const rows = out.arraySync();
      expect(rows[0][0][1]).toEqual([0, 0]);
      const ref = reference(q, k, v, options);  // [B, H, T, dv]
      expect(maxAbsDiff(out, ref).diff).toBeLessThanOrEqual(1e-5);
      const loss = (f: typeof reference) => (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
          tf.sum(tf.mul(f(qq as tf.Tensor4D, kk as tf.Tensor4D, vv as tf.Tensor4D, options), r));  // []
      const grads = tf.grads(loss(memoryEfficientAttention))([q, k, v]);  // [dq, dk, dv]
      const refGrads = tf.grads(loss(reference))([q, k, v]);  // [dq, dk, dv]
      grads.forEach((g, i) => {
        expect(tf.tidy(() => tf.all(tf.isFinite(g)).dataSync()[0])).toBe(1);
        expect(maxAbsDiff(g, refGrads[i]).diff).toBeLessThanOrEqual(1e-4);
      });
      // The masked query row gets no gradient.
      expect(tf.tidy(() => tf.slice(grads[0], [0, 0, 1, 0], [1, 1, 1, 3]).arraySync())).toEqual([[[[0, 0, 0]]]]);
      tf.dispose([out, ref, ...grads, ...refGrads]);
    }
    mask.dispose();
    dispose();
  });

  test('a mask covering every key gives zeros everywhere (wasm and tensorflow too)', async () => {
    for (const backend of BACKENDS) {
      await onBackend(backend, () => {
        const q = tf.ones([1, 1, 3, 2]) as tf.Tensor4D;  // [B, H, T, dk]
        const k = tf.ones([1, 1, 4, 2]) as tf.Tensor4D;  // [B, H, S, dk]
        const v = tf.ones([1, 1, 4, 2]) as tf.Tensor4D;  // [B, H, S, dv]
        const mask = tf.zeros([1, 1, 1, 4], 'bool');  // [1, 1, 1, S]
        const [out, dq, dk, dv] = tf.tidy(() => {
          const o = memoryEfficientAttention(q, k, v, {blockSize: 3, scale: 1, mask});  // [B, H, T, dv]
          const g = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
              tf.sum(memoryEfficientAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D,
                                               {blockSize: 3, scale: 1, mask})))([q, k, v]);  // [dq, dk, dv]
          return [o, ...g];
        });
        for (const t of [out, dq, dk, dv]) {
          expect(Array.from(t.dataSync()).every(x => x === 0)).toBe(true);
        }
        tf.dispose([q, k, v, mask, out, dq, dk, dv]);
      });
    }
  });

  test('the backward pass works when the mask is disposed before it runs', () => {
    const q = tf.randomNormal([1, 2, 5, 3], 0, 1, 'float32', 1) as tf.Tensor4D;  // [B, H, T, dk]
    const k = tf.randomNormal([1, 2, 6, 3], 0, 1, 'float32', 2) as tf.Tensor4D;  // [B, H, S, dk]
    const v = tf.randomNormal([1, 2, 6, 3], 0, 1, 'float32', 3) as tf.Tensor4D;  // [B, H, S, dv]
    const before = tf.memory().numTensors;
    // tf.grads runs f inside a tidy, so a mask made in f is gone by the backward pass.
    const f = (mea: typeof reference) => (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
      const mask = tf.greater(tf.randomUniform([1, 1, 5, 6], 0, 1, 'float32', 4), 0.3);  // [1, 1, T, S]
      return tf.sum(mea(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, {blockSize: 4, scale: 0.5, mask}));  // []
    };
    const grads = tf.grads(f(memoryEfficientAttention))([q, k, v]);  // [dq, dk, dv]
    const refGrads = tf.grads(f(reference))([q, k, v]);  // [dq, dk, dv]
    grads.forEach((g, i) => expect(maxAbsDiff(g, refGrads[i]).diff).toBeLessThanOrEqual(1e-4));
    tf.dispose([...grads, ...refGrads]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([q, k, v]);
  });

  describe('leaks', () => {
    const c: Case = {name: 'leak', B: 1, H: 2, T: 6, S: 7, dk: 3, dv: 2, blockSize: 3, causal: true, maskShape: [1, 1, 6, 7]};

    test.each(BACKENDS)('numTensors returns to baseline after forward and tf.grads on %s', (backend) => onBackend(backend, () => {
      const {q, k, v, options, dispose} = makeInputs(c, 5);
      const before = tf.memory().numTensors;
      const out = memoryEfficientAttention(q, k, v, options);  // [B, H, T, dv]
      expect(tf.memory().numTensors).toBe(before + 1);
      out.dispose();
      expect(tf.memory().numTensors).toBe(before);
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, cc: tf.Tensor) =>
          tf.sum(memoryEfficientAttention(a as tf.Tensor4D, b as tf.Tensor4D, cc as tf.Tensor4D, options)))([q, k, v]);
      expect(tf.memory().numTensors).toBe(before + 3);
      tf.dispose(grads);
      expect(tf.memory().numTensors).toBe(before);
      dispose();
    }));

    test('numTensors returns to baseline after a validation error', () => {
      const q = tf.zeros([1, 1, 2, 3]) as tf.Tensor4D;  // [B, H, T, dk]
      const k = tf.zeros([1, 1, 4, 3]) as tf.Tensor4D;  // [B, H, S, dk]
      const v = tf.zeros([1, 1, 4, 2]) as tf.Tensor4D;  // [B, H, S, dv]
      const mask = tf.ones([1, 1, 3, 4], 'bool');  // wrong T
      const before = tf.memory().numTensors;
      expect(() => memoryEfficientAttention(q, k, v, {blockSize: 2, scale: 1, mask})).toThrow(ValueError);
      expect(() => memoryEfficientAttention(q, k, v, {blockSize: 0, scale: 1})).toThrow(ValueError);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([q, k, v, mask]);
    });
  });

  describe('validation', () => {
    const q = () => tf.zeros([2, 3, 4, 5]) as tf.Tensor4D;  // [B, H, T, dk]
    const k = () => tf.zeros([2, 3, 6, 5]) as tf.Tensor4D;  // [B, H, S, dk]
    const v = () => tf.zeros([2, 3, 6, 7]) as tf.Tensor4D;  // [B, H, S, dv]
    const ok: MemoryEfficientOptions = {blockSize: 2, scale: 0.5};

    /** Expects a ValueError whose message contains every fragment; disposes the inputs. */
    function expectError(args: [tf.Tensor, tf.Tensor, tf.Tensor, MemoryEfficientOptions], ...fragments: string[]) {
      let error: unknown;
      try {
        memoryEfficientAttention(args[0] as tf.Tensor4D, args[1] as tf.Tensor4D, args[2] as tf.Tensor4D, args[3]);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ValueError);
      for (const f of fragments) expect((error as Error).message).toContain(f);
      tf.dispose([args[0], args[1], args[2], ...(args[3].mask ? [args[3].mask] : [])]);
    }

    test('rank', () => expectError([tf.zeros([4, 5]), k(), v(), ok], '`q`', 'rank-4', '[4, 5]'));
    test('batch/head dims', () => expectError([q(), tf.zeros([2, 1, 6, 5]), v(), ok], 'batch and head', '[2, 1, 6, 5]'));
    test('k/v same S', () => expectError([q(), k(), tf.zeros([2, 3, 5, 7]), ok], '`k` and `v`', '[2, 3, 5, 7]'));
    test('q/k same dk', () => expectError([q(), tf.zeros([2, 3, 6, 4]), tf.zeros([2, 3, 6, 7]), ok], '`q` and `k`', 'dk'));
    test('dtype', () => expectError([tf.zeros([2, 3, 4, 5], 'int32'), k(), v(), ok], '`q`', 'float32', 'int32'));
    test('blockSize', () => {
      expectError([q(), k(), v(), {blockSize: 0, scale: 1}], '`blockSize`', 'blockSize=0');
      expectError([q(), k(), v(), {blockSize: 1.5, scale: 1}], '`blockSize`', 'blockSize=1.5');
    });
    test('scale', () => {
      expectError([q(), k(), v(), {blockSize: 2, scale: 0}], '`scale`', 'scale=0');
      expectError([q(), k(), v(), {blockSize: 2, scale: Infinity}], '`scale`', 'scale=Infinity');
    });
    test('mask shape names both shapes', () =>
      expectError([q(), k(), v(), {...ok, mask: tf.ones([2, 2, 4, 6], 'bool')}], '`mask`', '[2, 3, 4, 6]', '[2, 2, 4, 6]'));
    test('mask rank', () => expectError([q(), k(), v(), {...ok, mask: tf.ones([6], 'bool')}], '`mask`', 'rank 4', '[6]'));
    test('mask dtype', () =>
      expectError([q(), k(), v(), {...ok, mask: tf.tensor4d([['a']].map(() => [[['a']]]), [1, 1, 1, 1], 'string')}], '`mask`', 'string'));
  });

  describe('validation messages, word for word (each check on its own, before any tensor is made)', () => {
    /** q [2, 3, 4, 5], k [2, 3, 6, 5], v [2, 3, 6, 7] unless replaced; the error's whole message; no leak. */
    function expectMessage(parts: {q?: unknown; k?: unknown; v?: unknown; options?: unknown}, message: string) {
      const made = [tf.zeros([2, 3, 4, 5]), tf.zeros([2, 3, 6, 5]), tf.zeros([2, 3, 6, 7])];
      const [q, k, v] = (['q', 'k', 'v'] as const).map((name, i) => (name in parts ? parts[name] : made[i])) as tf.Tensor4D[];
      const options = ('options' in parts ? parts.options : {blockSize: 2, scale: 0.5}) as MemoryEfficientOptions;
      const before = tf.memory().numTensors;
      let error: unknown;
      try {
        memoryEfficientAttention(q, k, v, options);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ValueError);
      expect((error as Error).message).toBe(message);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose(made);
    }
    const shapes = (q: string, k: string, v: string) => `q.shape=${q}, k.shape=${k}, v.shape=${v}`;

    test('q, k or v not a tensor: names the argument, its layout and the value', () => {
      expectMessage({q: [1, 2]},
          'Received an invalid value for argument `q`, expected a rank-4 float32 tensor [B, H, T, dk]. Received: q=[1, 2]');
      expectMessage({k: 'keys'},
          'Received an invalid value for argument `k`, expected a rank-4 float32 tensor [B, H, S, dk]. Received: k="keys"');
      expectMessage({v: null},
          'Received an invalid value for argument `v`, expected a rank-4 float32 tensor [B, H, S, dv]. Received: v=null');
    });

    test('a rank other than 4: names the argument, its layout and its shape', () => {
      const [q3, k5, v2] = [tf.zeros([2, 4, 5]), tf.zeros([1, 2, 3, 6, 5]), tf.zeros([6, 7])];
      expectMessage({q: q3}, 'Received an invalid value for argument `q`, expected a rank-4 tensor [B, H, T, dk]. Received: q.shape=[2, 4, 5]');
      expectMessage({k: k5},
          'Received an invalid value for argument `k`, expected a rank-4 tensor [B, H, S, dk]. Received: k.shape=[1, 2, 3, 6, 5]');
      expectMessage({v: v2}, 'Received an invalid value for argument `v`, expected a rank-4 tensor [B, H, S, dv]. Received: v.shape=[6, 7]');
      tf.dispose([q3, k5, v2]);
    });

    test('a dtype other than float32, for each of q, k and v', () => {
      const [qi, kb, vi] = [tf.zeros([2, 3, 4, 5], 'int32'), tf.zeros([2, 3, 6, 5], 'bool'), tf.zeros([2, 3, 6, 7], 'int32')];
      expectMessage({q: qi}, 'Received an invalid value for argument `q`, expected dtype float32. Received: q.dtype="int32"');
      expectMessage({k: kb}, 'Received an invalid value for argument `k`, expected dtype float32. Received: k.dtype="bool"');
      expectMessage({v: vi}, 'Received an invalid value for argument `v`, expected dtype float32. Received: v.dtype="int32"');
      tf.dispose([qi, kb, vi]);
    });

    test('k or v with another batch or head count than q (each of the four dims on its own)', () => {
      const message = (s: string) => `Expected \`q\`, \`k\` and \`v\` to share the batch and head dims [B, H, ...]. Received: ${s}`;
      const kB = tf.zeros([1, 3, 6, 5]);
      const vB = tf.zeros([1, 3, 6, 7]);
      const kH = tf.zeros([2, 1, 6, 5]);
      const vH = tf.zeros([2, 1, 6, 7]);
      expectMessage({k: kB}, message(shapes('[2, 3, 4, 5]', '[1, 3, 6, 5]', '[2, 3, 6, 7]')));
      expectMessage({v: vB}, message(shapes('[2, 3, 4, 5]', '[2, 3, 6, 5]', '[1, 3, 6, 7]')));
      expectMessage({k: kH}, message(shapes('[2, 3, 4, 5]', '[2, 1, 6, 5]', '[2, 3, 6, 7]')));
      expectMessage({v: vH}, message(shapes('[2, 3, 4, 5]', '[2, 3, 6, 5]', '[2, 1, 6, 7]')));
      tf.dispose([kB, vB, kH, vH]);
    });

    test('k and v with different key counts, q and k with different dk', () => {
      const v5 = tf.zeros([2, 3, 5, 7]);
      const k4 = tf.zeros([2, 3, 6, 4]);
      expectMessage({v: v5}, 'Expected `k` and `v` to have the same number of keys S (axis 2). Received: ' +
          shapes('[2, 3, 4, 5]', '[2, 3, 6, 5]', '[2, 3, 5, 7]'));
      expectMessage({k: k4}, 'Expected `q` and `k` to have the same key dim dk (axis 3). Received: ' +
          shapes('[2, 3, 4, 5]', '[2, 3, 6, 4]', '[2, 3, 6, 7]'));
      tf.dispose([v5, k4]);
    });

    test('dk = 0 or dv = 0: names the shapes once', () => {
      const [q0, k0, v0] = [tf.zeros([2, 3, 4, 0]), tf.zeros([2, 3, 6, 0]), tf.zeros([2, 3, 6, 0])];
      expectMessage({q: q0, k: k0}, 'The query and key vectors must have at least one element (dk >= 1). Received: ' +
          shapes('[2, 3, 4, 0]', '[2, 3, 6, 0]', '[2, 3, 6, 7]'));
      expectMessage({v: v0}, `The value vectors must have at least one element (dv >= 1). Received: ${shapes('[2, 3, 4, 5]', '[2, 3, 6, 5]', '[2, 3, 6, 0]')}`);
      tf.dispose([q0, k0, v0]);
    });

    test('options that are not an object', () => {
      const expected = 'an object {blockSize, scale, causal?, mask?, keyPaddingMask?, queryPaddingMask?}';
      expectMessage({options: null}, `Received an invalid value for argument \`options\`, expected ${expected}. Received: options=null`);
      expectMessage({options: undefined}, `Received an invalid value for argument \`options\`, expected ${expected}. Received: options=undefined`);
      expectMessage({options: 4}, `Received an invalid value for argument \`options\`, expected ${expected}. Received: options=4`);
    });

    test('blockSize and scale: the whole message', () => {
      expectMessage({options: {blockSize: 2.5, scale: 1}},
          'Received an invalid value for argument `blockSize`, expected a positive integer. Received: blockSize=2.5');
      expectMessage({options: {blockSize: 2, scale: -1}},
          'Received an invalid value for argument `scale`, expected a positive finite number. Received: scale=-1');
    });

    test('causal that is not a boolean', () => {
      expectMessage({options: {blockSize: 2, scale: 1, causal: 1}},
          'Received an invalid value for argument `causal`, expected a boolean. Received: causal=1');
      expectMessage({options: {blockSize: 2, scale: 1, causal: 'yes'}},
          'Received an invalid value for argument `causal`, expected a boolean. Received: causal="yes"');
    });

    test('a mask that is not a tensor, or of another dtype', () => {
      const strings = tf.tensor2d([['a', 'b', 'c', 'd', 'e', 'f']], [1, 6], 'string');
      expectMessage({options: {blockSize: 2, scale: 1, mask: [[1, 0]]}},
          'Received an invalid value for argument `mask`, expected a tensor broadcastable to [B, H, T, S]. Received: mask=[[1, 0]]');
      expectMessage({options: {blockSize: 2, scale: 1, mask: strings}},
          'Received an invalid value for argument `mask`, expected dtype bool or float32 (0/1). Received: mask.dtype="string"');
      strings.dispose();
    });

    test('a mask of a shape that does not broadcast, for each rank', () => {
      const message = (shape: string) => 'Received an invalid value for argument `mask`, expected a shape broadcastable to ' +
          '[B, H, T, S]=[2, 3, 4, 6]: rank 4, or rank 3 [B, T, S] for every head, or rank 2 [T, S], each dim equal or 1. ' +
          `Received: mask.shape=${shape}`;
      // Rank 5 [T, S, 1, 1, 1] and [1, 1, 1, 1, 1]: their first two dims would fit as a [T, S] mask's, yet no rank 5 is taken.
      const bad = [tf.ones([6], 'bool'), tf.ones([4, 5], 'bool'), tf.ones([3, 4, 6], 'bool'), tf.ones([2, 3, 4, 6, 1], 'bool'),
        tf.ones([4, 6, 1, 1, 1], 'bool'), tf.ones([1, 1, 1, 1, 1], 'bool'), tf.ones([2, 2, 4, 6], 'bool')];
      for (const mask of bad) {
        expectMessage({options: {blockSize: 2, scale: 1, mask}}, message(`[${mask.shape.join(', ')}]`));
      }
      tf.dispose(bad);
    });
  });

  describe.each(['cpu', 'wasm'])('explicit masks of each rank and dtype, given to it directly, on %s', (backend) => {
    runTestsOn(backend);
    const [B, H, T, S, dk, dv] = [2, 2, 5, 7, 3, 2];
    /** [name, shape, dtype]: rank 4 [B, H, T, S], rank 3 [B, T, S] (every head), rank 2 [T, S], dims of 1 broadcast. */
    const MASKS: Array<[string, number[], 'bool'|'float32'|'int32']> = [
      ['rank 2 [T, S], bool', [T, S], 'bool'],
      ['rank 3 [B, T, S], int32', [B, T, S], 'int32'],
      ['rank 3 [1, T, S], float32', [1, T, S], 'float32'],
      ['rank 3 [B, 1, S], float32', [B, 1, S], 'float32'],
      ['rank 4 [B, 1, 1, S], int32', [B, 1, 1, S], 'int32'],
      ['rank 4 [1, H, T, 1], float32', [1, H, T, 1], 'float32'],
      ['rank 4 [B, H, T, S], float32', [B, H, T, S], 'float32'],
      ['rank 4 [B, H, T, S], int32', [B, H, T, S], 'int32'],
    ];
    const cases = MASKS.flatMap(([name, shape, dtype]) =>
      [3, 8].flatMap(blockSize => [false, true].map(causal =>
        [`${name}, blockSize ${blockSize}${causal ? ', causal' : ''}`, shape, dtype, blockSize, causal] as
            [string, number[], 'bool'|'float32'|'int32', number, boolean])));

    test.each(cases)('%s: the plain-array reference, gradients of the literal, the mask left intact, no leak',
        (_name, shape, dtype, blockSize, causal) => {
      const q = tf.tensor(randomArray([B, H, T, dk], 71) as number[], [B, H, T, dk]) as tf.Tensor4D;  // [B, H, T, dk]
      const k = tf.tensor(randomArray([B, H, S, dk], 72) as number[], [B, H, S, dk]) as tf.Tensor4D;  // [B, H, S, dk]
      const v = tf.tensor(randomArray([B, H, S, dv], 73) as number[], [B, H, S, dv]) as tf.Tensor4D;  // [B, H, S, dv]
      const r = tf.tensor(randomArray([B, H, T, dv], 74) as number[], [B, H, T, dv]) as tf.Tensor4D;  // [B, H, T, dv]
      const rand = seededRandom(75);
      const values = Array.from({length: shape.reduce((a, b) => a * b, 1)}, () => (rand() < 0.6 ? 1 : 0));
      const mask = tf.tensor(values, shape, dtype);  // shape
      /** The mask's value at [b, h, t, s]: rank 3 has no head axis, rank 2 only [T, S]; dims of 1 broadcast. */
      const at = (b: number, h: number, t: number, s: number) => {
        const index = shape.length === 4 ? [b, h, t, s] : shape.length === 3 ? [b, t, s] : [t, s];
        return values[index.reduce((flat, i, axis) => flat * shape[axis] + (shape[axis] === 1 ? 0 : i), 0)] === 1;
      };
      const allowed4 = tf.tensor(filled([B, H, T, S], i => {
        const [b, h, t, s] = [Math.floor(i / (H * T * S)), Math.floor(i / (T * S)) % H, Math.floor(i / S) % T, i % S];
        return at(b, h, t, s) ? 1 : 0;
      }) as number[][][][], [B, H, T, S], 'bool');  // [B, H, T, S]
      const scale = 0.7;
      const options: MemoryEfficientOptions = {blockSize, scale, causal, mask};
      const before = tf.memory().numTensors;
      const out = memoryEfficientAttention(q, k, v, options);  // [B, H, T, dv]
      const expected = referenceDotProductAttention(q.arraySync(), k.arraySync(), v.arraySync(),
          {causal, scale, allowed: ([b, h], t, s) => at(b, h, t, s)});
      // Measured on 2026-11-30 over these cases on cpu and wasm: the output at most 1.3e-7 from the reference, each
      // gradient at most 1.4e-7 from the literal's (whose largest entries are 0.14 or more).
      expectClose(out, expected.output as Nested, 1.5e-6);
      out.dispose();
      expect(tf.memory().numTensors).toBe(before);
      const loss = (f: typeof reference, opts: MemoryEfficientOptions) => (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
          tf.sum(tf.mul(f(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, opts), r));  // []
      const grads = tf.grads(loss(memoryEfficientAttention, options))([q, k, v]);  // [dq, dk, dv]
      expect(tf.memory().numTensors).toBe(before + 3);
      const literal = tf.grads(loss(reference, {blockSize, scale, causal, mask: allowed4}))([q, k, v]);  // [dq, dk, dv]
      grads.forEach((g, i) => expectClose(g, literal[i], 1.5e-6));
      // The caller's mask is neither disposed nor changed.
      expect(mask.isDisposed).toBe(false);
      expect(Array.from(mask.dataSync())).toEqual(values);
      tf.dispose([q, k, v, r, mask, allowed4, ...grads, ...literal]);
    });
  });

  test.each(['cpu', 'wasm'])('with no mask and no causal rule nothing counts as masked, even logits below the masked logit (%s)',
      (backend) => onBackend(backend, () => {
    // Scores -1e30 and -2e30 (scale 1, dk 1): finite, far apart, so the softmax is one-hot on key 0 and the output
    // is v[0] = [3, -5]; read as masked rows (max <= MASKED_LOGIT / 2) they would come out NaN or zero.
    const q = tf.tensor4d([1e15], [1, 1, 1, 1]);  // [B, H, T, dk]
    const k = tf.tensor4d([-1e15, -2e15], [1, 1, 2, 1]);  // [B, H, S, dk]
    const v = tf.tensor4d([3, -5, 7, 11], [1, 1, 2, 2]);  // [B, H, S, dv]
    for (const blockSize of [1, 2]) {
      const out = memoryEfficientAttention(q, k, v, {blockSize, scale: 1});  // [B, H, T, dv]
      expect(Array.from(out.dataSync())).toEqual([3, -5]);
      out.dispose();
    }
    tf.dispose([q, k, v]);
  }));

  test('a float mask is kept for the backward pass as bool, 1 byte an entry: training peaks as with the bool mask (T = S = 1024)', async () => {
    await onBackend('wasm', async () => {
      const T = 1024;
      const q = tf.randomNormal([1, 1, T, 16], 0, 1, 'float32', 1) as tf.Tensor4D;  // [B, H, T, dk], also k and v
      const bools = tf.tidy(() => tf.greater(tf.randomUniform([1, T, T], 0, 1, 'float32', 5), 0.3));  // [B, T, S] bool
      const floats = tf.cast(bools, 'float32');  // [B, T, S]: 4 MiB
      const trainingPeak = (mask?: tf.Tensor) => peakBytes(() => tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
          tf.sum(memoryEfficientAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, {blockSize: 128, scale: 0.25, mask})))(
          [q, q, q]));
      const none = await trainingPeak();
      const withBools = await trainingPeak(bools);
      const withFloats = await trainingPeak(floats);
      // Measured on 2026-11-30: none 2.83 MiB, bool and float masks both 3.83 MiB (the saved [T, S] bool copy, 1 MiB);
      // saving the float mask as it is would make the float peak 6.83 MiB.
      expect(withBools - none).toBeGreaterThanOrEqual(2 ** 20);
      expect(withFloats - withBools).toBeLessThan(2 ** 18);
      tf.dispose([q, bools, floats]);
    });
  });

  test('the forward\'s peak does not grow with the number of key blocks: each block\'s state and mask tile are freed as it goes', async () => {
    await onBackend('wasm', async () => {
      // Bytes the forward allocates at its peak beyond its inputs, for S keys in blocks of 16.
      const forwardPeak = async (T: number, S: number, dv: number, withMask: boolean) => {
        const q = tf.randomNormal([1, 1, T, 8], 0, 1, 'float32', 1) as tf.Tensor4D;  // [B, H, T, dk]
        const k = tf.randomNormal([1, 1, S, 8], 0, 1, 'float32', 2) as tf.Tensor4D;  // [B, H, S, dk]
        const v = tf.randomNormal([1, 1, S, dv], 0, 1, 'float32', 3) as tf.Tensor4D;  // [B, H, S, dv]
        const mask = withMask ? tf.tidy(() => tf.cast(tf.greater(tf.randomUniform([1, 1, T, S], 0, 1, 'float32', 4), 0.2), 'float32')) :
            undefined;  // [B, H, T, S] float 0/1
        const peak = await peakBytes(() => memoryEfficientAttention(q, k, v, {blockSize: 16, scale: 0.3, mask}));
        tf.dispose([q, k, v, mask]);
        return peak;
      };
      // 4 blocks against 16: a state ({m, l, acc}: 64·258 floats, 66 KiB) kept per block would add 1.5 MiB.
      const states = [await forwardPeak(64, 64, 256, false), await forwardPeak(64, 256, 256, false)];
      // A float mask: each block's bool tile (256·16 bytes, 4 KiB) kept would add 112 KiB over 28 more blocks.
      const masked = [await forwardPeak(256, 64, 8, true), await forwardPeak(256, 512, 8, true)];
      // Measured on 2026-11-30: both peaks the same at either key length (growth 0).
      expect(states[1] - states[0]).toBeLessThan(16 * 1024);
      expect(masked[1] - masked[0]).toBeLessThan(16 * 1024);
    });
  });

  test('the gradient leaves nothing alive once it returns: the gradients that run after it see as many tensors for 1 block as for 8, scaled or not', async () => {
    await onBackend('wasm', async () => {
      const T = 16;
      const S = 64;
      const q = tf.randomNormal([1, 1, T, 8], 0, 1, 'float32', 1) as tf.Tensor4D;  // [B, H, T, dk]
      const k = tf.randomNormal([1, 1, S, 8], 0, 1, 'float32', 2) as tf.Tensor4D;  // [B, H, S, dk]
      const v = tf.randomNormal([1, 1, S, 4], 0, 1, 'float32', 3) as tf.Tensor4D;  // [B, H, S, dv]
      // An identity whose gradient runs after the attention's (it comes before it), noting the live tensors then.
      let liveThen = -1;
      const probe = tf.customGrad((...args: Array<tf.Tensor|tf.GradSaveFunc>) => ({
        value: tf.add(args[0] as tf.Tensor, 0),
        gradFunc: (dy: tf.Tensor) => {
          liveThen = tf.memory().numTensors;
          return [tf.add(dy, 0)];
        },
      }));
      const liveAfterAttentionGradient = (blockSize: number, scale: number) => {
        const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
            tf.sum(memoryEfficientAttention(probe(a) as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, {blockSize, scale})))([q, k, v]);
        tf.dispose(grads);
        return liveThen;
      };
      const oneBlock = liveAfterAttentionGradient(S, 0.3);
      const eightBlocks = liveAfterAttentionGradient(8, 0.3);
      const unscaled = liveAfterAttentionGradient(8, 1);
      expect(oneBlock).toBeGreaterThan(0);
      // Kept per-block gradients (dk, dv) and the accumulators would show as 2·7 + more tensors here.
      expect(eightBlocks).toBe(oneBlock);
      // The scaled copy of the queries (scale ≠ 1) kept would show as one more tensor than with scale 1 (no copy).
      expect(unscaled).toBe(eightBlocks);
      tf.dispose([q, k, v]);
    });
  });

  test('peak memory of the blocked forward and gradient is at most 1/4 of the standard path (T = S = 1024)', async () => {
    // peakBytes is the engine's byte count, the same on every backend; wasm just runs it fastest.
    await onBackend('wasm', async () => {
      const q = tf.randomNormal([1, 1, 1024, 16], 0, 1, 'float32', 1) as tf.Tensor4D;  // [B, H, T, dk]
      const k = tf.randomNormal([1, 1, 1024, 16], 0, 1, 'float32', 2) as tf.Tensor4D;  // [B, H, S, dk]
      const v = tf.randomNormal([1, 1, 1024, 16], 0, 1, 'float32', 3) as tf.Tensor4D;  // [B, H, S, dv]
      for (const causal of [false, true]) {
        const options = {blockSize: 128, scale: 0.25, causal};
        // tf.profile returns the same mutable object every call: read each one before the next.
        const blockedInfo = await tf.profile(() => memoryEfficientAttention(q, k, v, options));
        const blocked = {peak: blockedInfo.peakBytes, out: blockedInfo.result as tf.Tensor};  // out [B, H, T, dv]
        const standardInfo = await tf.profile(() => reference(q, k, v, options));
        const standard = {peak: standardInfo.peakBytes, out: standardInfo.result as tf.Tensor};  // out [B, H, T, dv]
        expect(maxAbsDiff(blocked.out, standard.out).diff).toBeLessThanOrEqual(1e-5);
        // The standard path holds several [T, S] float32 tensors (4 MiB each) at once.
        expect(standard.peak).toBeGreaterThan(8 * 1024 * 1024);
        expect(blocked.peak).toBeLessThanOrEqual(standard.peak / 4);
        tf.dispose([blocked.out, standard.out]);
      }
      // The custom gradient recomputes per block instead of keeping [T, S] probabilities.
      const gradPeak = async (f: typeof reference) => {
        const info = await tf.profile(() => tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
            tf.sum(f(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, {blockSize: 128, scale: 0.25})))([q, k, v]));
        const peak = info.peakBytes;
        tf.dispose(info.result as tf.Tensor[]);
        return peak;
      };
      const blockedGradPeak = await gradPeak(memoryEfficientAttention);
      const standardGradPeak = await gradPeak(reference);
      expect(blockedGradPeak).toBeLessThanOrEqual(standardGradPeak / 4);
      tf.dispose([q, k, v]);
    });
  });
});

/**
 * Masks on the blocked path, through the op (dotProductAttention with a blockSize): key and
 * query padding ([B, S] and [B, T] vectors), causal, and explicit masks of every broadcast
 * shape, at block edges. Expected: the plain-array reference (forward) and the literal tf
 * version below (gradients, by tfjs autodiff), and the standard path (blockSize 0).
 */
describe('masks on the blocked path (the op)', () => {
  interface MaskCase {
    name: string;
    /** Heads of rank-4 inputs [B, H, T, d]; null for rank-3 inputs [B, T, d]. */
    heads: number|null;
    B: number;
    T: number;
    S: number;
    blockSize: number;
    causal?: boolean;
    keyPadding?: boolean;
    queryPadding?: boolean;
    /** Shape of an explicit random 0/1 mask (rank 2 to 4), or none. */
    maskShape?: number[];
    maskDtype?: 'bool'|'float32';
  }

  const MASK_CASES: MaskCase[] = [
    {name: 'key padding, T and S not multiples of blockSize', heads: 2, B: 2, T: 7, S: 10, blockSize: 4, keyPadding: true},
    {name: 'query padding, S < T (rank 3)', heads: null, B: 2, T: 9, S: 5, blockSize: 2, queryPadding: true},
    {name: 'both paddings and causal, S > T', heads: 2, B: 2, T: 5, S: 11, blockSize: 3, causal: true, keyPadding: true, queryPadding: true},
    {name: 'causal, S < T (rank 3)', heads: null, B: 1, T: 8, S: 5, blockSize: 3, causal: true},
    {name: 'causal, T = S not multiples of blockSize', heads: 1, B: 2, T: 10, S: 10, blockSize: 4, causal: true},
    {name: 'one query, causal and key padding', heads: 2, B: 2, T: 1, S: 6, blockSize: 4, causal: true, keyPadding: true},
    {name: 'one key, padded in batch 0 (rows with no key)', heads: null, B: 2, T: 5, S: 1, blockSize: 4, keyPadding: true},
    {name: 'explicit [1, T, S] over the batch (rank 3)', heads: null, B: 2, T: 6, S: 9, blockSize: 4, maskShape: [1, 6, 9]},
    {name: 'explicit [B, 1, S] for every head', heads: 2, B: 2, T: 5, S: 7, blockSize: 3, maskShape: [2, 1, 7]},
    {name: 'explicit [B, H, T, S], float', heads: 2, B: 2, T: 6, S: 5, blockSize: 2, maskShape: [2, 2, 6, 5], maskDtype: 'float32'},
    {name: 'explicit [T, S] and causal', heads: 3, B: 1, T: 7, S: 7, blockSize: 3, causal: true, maskShape: [7, 7]},
    {name: 'explicit [B, T, 1]', heads: 2, B: 2, T: 5, S: 6, blockSize: 4, maskShape: [2, 5, 1]},
    {name: 'every mask at once', heads: 2, B: 2, T: 9, S: 7, blockSize: 3, causal: true, keyPadding: true, queryPadding: true,
      maskShape: [2, 1, 9, 7]},
    {name: 'blockSize 1, both paddings and causal (rank 3)', heads: null, B: 2, T: 4, S: 5, blockSize: 1, causal: true,
      keyPadding: true, queryPadding: true},
  ];

  /** Key s of batch b is padding when (7s + 3b) % 5 == 0: key 0 of batch 0, about one in five. */
  const keyReal = (b: number, s: number) => (7 * s + 3 * b) % 5 !== 0;
  /** Query t of batch b is padding when (5t + b) % 4 == 1. */
  const queryReal = (b: number, t: number) => (5 * t + b) % 4 !== 1;

  /** Inputs, masks and the allowed rule of a case (the rule reads the mask's values, right-aligned as the op does). */
  function maskInputs(c: MaskCase, seed: number) {
    const d = 3;
    const dv = 2;
    const lead = c.heads == null ? [c.B] : [c.B, c.heads];
    const q = tf.tensor(randomArray([...lead, c.T, d], seed) as number[]);  // [B, (H,) T, dk]
    const k = tf.tensor(randomArray([...lead, c.S, d], seed + 1) as number[]);  // [B, (H,) S, dk]
    const v = tf.tensor(randomArray([...lead, c.S, dv], seed + 2) as number[]);  // [B, (H,) S, dv]
    const r = tf.tensor(randomArray([...lead, c.T, dv], seed + 3) as number[]);  // [B, (H,) T, dv] cotangent
    const rand = seededRandom(seed + 4);
    const maskValues = c.maskShape == null ? null :
        Array.from({length: c.maskShape.reduce((a, b) => a * b, 1)}, () => (rand() < 0.7 ? 1 : 0));
    const mask = maskValues == null ? null : tf.tensor(maskValues, c.maskShape, c.maskDtype ?? 'bool');  // maskShape
    const keyPad = c.keyPadding ?
        tf.tensor2d(Array.from({length: c.B}, (_, b) => Array.from({length: c.S}, (__, s) => keyReal(b, s))), [c.B, c.S], 'bool') : null;
    const queryPad = c.queryPadding ?
        tf.tensor2d(Array.from({length: c.B}, (_, b) => Array.from({length: c.T}, (__, t) => (queryReal(b, t) ? 1 : 0))), [c.B, c.T]) : null;
    /** The explicit mask at [b, h, t, s]: a [B, T, S] mask applies to every head; dims of 1 broadcast. */
    const explicitAt = (b: number, h: number, t: number, s: number): boolean => {
      if (maskValues == null) return true;
      const shape = c.maskShape!;
      const full = shape.length === 4 ? [b, h, t, s] : shape.length === 3 ? [b, t, s] : [t, s];
      let flat = 0;
      full.forEach((i, axis) => {
        flat = flat * shape[axis] + (shape[axis] === 1 ? 0 : i);
      });
      return maskValues[flat] === 1;
    };
    const allowed = ([b, h = 0]: number[], t: number, s: number) =>
      explicitAt(b, h, t, s) && (!c.causal || s <= t) && (!c.keyPadding || keyReal(b, s)) && (!c.queryPadding || queryReal(b, t));
    const options = {mask, keyPaddingMask: keyPad, queryPaddingMask: queryPad, causal: c.causal ?? false};
    const owned = [q, k, v, r, ...[mask, keyPad, queryPad].filter((x): x is tf.Tensor => x != null)];
    return {q, k, v, r, lead, options, allowed, dispose: () => tf.dispose(owned)};
  }

  /**
   * The literal computation with tf ops and tfjs' own gradients: the allowed pairs as a
   * [B, (H,) T, S] bool tensor from the rule, where(allowed, q·kᵀ·scale, -1e30), softmax, ×
   * allowed (rows with no key -> 0), ·v.
   */
  function literal(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, allowedPairs: tf.Tensor): tf.Tensor {
    const scale = 1 / Math.sqrt(q.shape[q.rank - 1]);
    const scores = tf.mul(tf.matMul(q, k, false, true), scale);  // [B, (H,) T, S]
    const weights = tf.mul(tf.softmax(tf.where(allowedPairs, scores, tf.fill(scores.shape, -1e30))), tf.cast(allowedPairs, 'float32'));
    return tf.matMul(weights, v);  // [B, (H,) T, dv]
  }

  /** The allowed pairs [B, (H,) T, S] of a case, as a bool tensor. */
  function allowedTensor(c: MaskCase, lead: number[], allowed: (lead: number[], t: number, s: number) => boolean): tf.Tensor {
    const shape = [...lead, c.T, c.S];
    return tf.tensor(filled(shape, i => {
      const [t, s] = [Math.floor(i / c.S) % c.T, i % c.S];
      const pair = Math.floor(i / (c.T * c.S));
      const index = lead.length === 1 ? [pair] : [Math.floor(pair / lead[1]), pair % lead[1]];
      return allowed(index, t, s) ? 1 : 0;
    }) as number[], shape, 'bool');
  }

  describe.each(BACKENDS)('on %s', (backend) => {
    runTestsOn(backend);

    test.each(MASK_CASES.map(c => [c.name, c] as [string, MaskCase]))('%s: forward and gradients', (_name, c) => {
      const {q, k, v, r, lead, options, allowed, dispose} = maskInputs(c, 31);
      const before = tf.memory().numTensors;
      const blocked = dotProductAttention(q, k, v, {...options, blockSize: c.blockSize});  // [B, (H,) T, dv]
      const standard = dotProductAttention(q, k, v, {...options, blockSize: 0});  // [B, (H,) T, dv]
      const expected = referenceDotProductAttention(
          q.arraySync() as Matrix[], k.arraySync() as Matrix[], v.arraySync() as Matrix[], {causal: c.causal, allowed});
      expectClose(blocked, expected.output as Nested, 1e-5);
      expectClose(standard, expected.output as Nested, 1e-5);
      // Rows with no allowed key output exact zeros.
      const outValues = Array.from(blocked.dataSync());  // rows of dv
      const weightValues = flatten(expected.weights as Nested);  // rows of S
      let emptyRows = 0;
      for (let row = 0; row * c.S < weightValues.length; row++) {
        if (weightValues.slice(row * c.S, (row + 1) * c.S).some(w => w !== 0)) continue;
        emptyRows++;
        expect(outValues.slice(row * 2, row * 2 + 2)).toEqual([0, 0]);
      }
      if (c.queryPadding || c.S === 1) expect(emptyRows).toBeGreaterThan(0);
      tf.dispose([blocked, standard]);
      expect(tf.memory().numTensors).toBe(before);

      const allowedPairs = allowedTensor(c, lead, allowed);  // [B, (H,) T, S] bool
      const loss = (f: (a: tf.Tensor, b: tf.Tensor, cc: tf.Tensor) => tf.Tensor) =>
        (a: tf.Tensor, b: tf.Tensor, cc: tf.Tensor) => tf.sum(tf.mul(f(a, b, cc), r));  // []
      const grads = tf.grads(loss((a, b, cc) => dotProductAttention(a, b, cc, {...options, blockSize: c.blockSize})))([q, k, v]);
      expect(tf.memory().numTensors).toBe(before + 4);  // the grads and allowedPairs
      const literalGrads = tf.grads(loss((a, b, cc) => literal(a, b, cc, allowedPairs)))([q, k, v]);
      const standardGrads = tf.grads(loss((a, b, cc) => dotProductAttention(a, b, cc, {...options, blockSize: 0})))([q, k, v]);
      grads.forEach((g, i) => {
        expectClose(g, literalGrads[i], 1e-4);
        expectClose(g, standardGrads[i], 1e-4);
      });
      tf.dispose([...grads, ...literalGrads, ...standardGrads, allowedPairs]);
      expect(tf.memory().numTensors).toBe(before);
      dispose();
    });
  });

  test('a padded query outputs zeros and gets zero gradients; a batch whose keys are all padding too', () => {
    const q = tf.tensor(randomArray([2, 2, 5, 3], 41) as number[]) as tf.Tensor4D;  // [B, H, T, dk]
    const k = tf.tensor(randomArray([2, 2, 6, 3], 42) as number[]) as tf.Tensor4D;  // [B, H, S, dk]
    const v = tf.tensor(randomArray([2, 2, 6, 2], 43) as number[]) as tf.Tensor4D;  // [B, H, S, dv]
    const keyPaddingMask = tf.tensor2d([[1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]], [2, 6], 'bool');  // batch 1: no key
    const queryPaddingMask = tf.tensor2d([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]], [2, 5], 'bool');  // batch 0: queries 1, 4 padded
    const options = {blockSize: 4, keyPaddingMask, queryPaddingMask};
    const out = dotProductAttention(q, k, v, options).arraySync() as number[][][][];  // [B, H, T, dv]
    const [dq, dk, dv] = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      tf.sum(dotProductAttention(a, b, c, options)))([q, k, v]).map(g => g.arraySync() as number[][][][]);
    for (let h = 0; h < 2; h++) {
      for (const t of [1, 4]) {
        expect(out[0][h][t]).toEqual([0, 0]);
        expect(dq[0][h][t]).toEqual([0, 0, 0]);
      }
      for (let t = 0; t < 5; t++) {
        expect(out[1][h][t]).toEqual([0, 0]);
        expect(dq[1][h][t]).toEqual([0, 0, 0]);
      }
      for (let s = 0; s < 6; s++) {
        expect(dk[1][h][s]).toEqual([0, 0, 0]);
        expect(dv[1][h][s]).toEqual([0, 0]);
      }
      expect(out[0][h][0].some(x => x !== 0)).toBe(true);  // a real query of batch 0 attends
    }
    tf.dispose([q, k, v, keyPaddingMask, queryPaddingMask]);
  });

  test('bad padding masks are refused before any work, naming the argument and the shape, without a leak', () => {
    const q = tf.zeros([2, 3, 4]);  // [B, T, dk]
    const k = tf.zeros([2, 5, 4]);  // [B, S, dk]
    const [q4, k4] = [q.expandDims(1) as tf.Tensor4D, k.expandDims(1) as tf.Tensor4D];  // [B, 1, T|S, dk]
    const bad: Array<[string, tf.Tensor, RegExp]> = [
      ['keyPaddingMask', tf.ones([2, 3], 'bool'), /`keyPaddingMask`, expected shape \[B, S\]=\[2, 5\]\. Received: keyPaddingMask\.shape=\[2, 3\]/],
      ['queryPaddingMask', tf.ones([1, 3], 'bool'), /`queryPaddingMask`, expected shape \[B, T\]=\[2, 3\]\. Received: queryPaddingMask\.shape=\[1, 3\]/],
      ['keyPaddingMask', tf.ones([2, 1, 5], 'bool'), /`keyPaddingMask`.*Received: keyPaddingMask\.shape=\[2, 1, 5\]/],
      ['queryPaddingMask', tf.tensor2d([['a', 'b', 'c'], ['a', 'b', 'c']]), /`queryPaddingMask`, expected dtype.*Received: queryPaddingMask\.dtype="string"/],
    ];
    for (const [name, mask, pattern] of bad) {
      for (const blockSize of [0, 2]) {
        expectThrowsWithoutLeak(() => dotProductAttention(q, k, k, {blockSize, [name]: mask}), pattern);
      }
      expectThrowsWithoutLeak(() => memoryEfficientAttention(q4, k4, k4, {blockSize: 2, scale: 1, [name]: mask}), pattern);
      mask.dispose();
    }
    tf.dispose([q, k, q4, k4]);
  });
});

describe('masks on the blocked path (the layer)', () => {
  runTestsOn('wasm');

  /** The layer's weights by name (wq, wk, wv), as the reference takes them. */
  function referenceWeights(layer: ScaledDotProductAttention): ReferenceWeights {
    const out: {[name: string]: unknown} = {};
    for (const w of layer.weights) out[w.name.split('/').pop()!] = w.read().arraySync();
    return out as unknown as ReferenceWeights;
  }

  /** A built self-attention layer with seeded weights. */
  function layerWith(args: ConstructorParameters<typeof ScaledDotProductAttention>[0], d: number): ScaledDotProductAttention {
    const layer = new ScaledDotProductAttention(args);
    tf.tidy(() => {
      layer.apply(tf.zeros([1, 1, d]));
    });
    layer.setWeights(layer.getWeights().map((w, i) => tf.tensor(randomArray(w.shape, 60 + i) as number[], w.shape)));
    return layer;
  }

  test('padding (maskZero-style), attentionMask and causal: the blocked layer matches the standard layer and the reference', () => {
    const x = tf.tensor(randomArray([2, 7, 4], 51) as number[], [2, 7, 4]);  // [B, T, d]
    const padding = [[1, 1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 1]];  // right- and left-padded
    const attentionMask = [[[1, 0, 1, 1, 1, 1, 1]], [[1, 1, 1, 0, 1, 1, 1]]];  // [B, 1, S]
    const r = tf.tensor(randomArray([2, 7, 6], 52) as number[], [2, 7, 6]);  // [B, T, H·dv] cotangent
    const args = {numHeads: 2, keyDim: 3, valueDim: 3, causal: true};
    const blocked = layerWith({...args, blockSize: 3}, 4);
    const standard = layerWith({...args, blockSize: 0}, 4);
    const mask = tf.tensor2d(padding, [2, 7], 'bool');
    const explicit = tf.tensor3d(attentionMask, [2, 1, 7], 'bool');
    const before = tf.memory().numTensors;
    const kwargs = {mask, attentionMask: explicit};
    const out = tf.tidy(() => (blocked.apply(x, kwargs) as tf.Tensor).arraySync() as Tensor3);
    const reference = referenceAttention(x.arraySync() as Tensor3, null, referenceWeights(blocked), {
      numHeads: 2, causal: true, attentionMask: attentionMask.map(m => Array.from({length: 7}, () => m[0])),
      queryPadding: padding, keyPadding: padding,
    });
    expectClose(out, reference.output, 1e-5);
    expect(out[0][5]).toEqual([0, 0, 0, 0, 0, 0]);  // padded queries
    expect(out[1][0]).toEqual([0, 0, 0, 0, 0, 0]);
    const grads = (layer: ScaledDotProductAttention) =>
      tf.grads((input: tf.Tensor) => tf.sum(tf.mul(layer.apply(input, kwargs) as tf.Tensor, r)))([x])[0];  // [B, T, d]
    const [gBlocked, gStandard] = [grads(blocked), grads(standard)];
    expectClose(gBlocked, gStandard, 1e-4);
    expect((gBlocked.arraySync() as Tensor3)[1][0]).toEqual([0, 0, 0, 0]);  // a padded query: no gradient flows
    tf.dispose([gBlocked, gStandard]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, r, mask, explicit]);
    blocked.dispose();
    standard.dispose();
  });

  test('masks keep the peak bytes within 1.25× of the unmasked call, forward and with gradients (T = 2048, blockSize 256)', async () => {
    // A [B, T, S] mask made of the padding would add 4 MiB as bool (16 MiB as float) to
    // an unmasked peak of about 7 MiB (11 MiB with gradients), and fail.
    const T = 2048;
    const d = 16;
    const x = tf.randomNormal([1, T, d], 0, 1, 'float32', 1);  // [B, T, d]
    const xVar = tf.variable(x);
    const real = tf.tensor2d([Array.from({length: T}, (_, t) => t < T - 200)], [1, T], 'bool');  // last 200 padded
    const masks: {[kind: string]: {kwargs: {[name: string]: tf.Tensor}; causal?: boolean}} = {
      'none': {kwargs: {}},
      'padding': {kwargs: {mask: real}},
      'causal': {kwargs: {}, causal: true},
      'explicit [B, 1, S]': {kwargs: {attentionMask: real.reshape([1, 1, T])}},
      'explicit [B, T, 1]': {kwargs: {attentionMask: real.reshape([1, T, 1])}},
      'padding, causal and explicit [B, 1, S]': {kwargs: {mask: real, attentionMask: real.reshape([1, 1, T])}, causal: true},
    };
    const peaks: {[kind: string]: {forward: number; training: number}} = {};
    for (const [kind, {kwargs, causal}] of Object.entries(masks)) {
      const layer = layerWith({numHeads: 1, keyDim: d, blockSize: 256, causal}, d);
      const variables = [xVar, ...layer.trainableWeights.map(w => w.read() as tf.Variable)];
      const before = tf.memory().numTensors;
      const forward = await peakBytes(() => layer.apply(x, kwargs) as tf.Tensor);
      const training = await peakBytes(() => {
        const {value, grads} = tf.variableGrads(() => tf.sum(layer.apply(xVar, kwargs) as tf.Tensor) as tf.Scalar, variables);
        return [value, ...Object.values(grads)];
      });
      expect(tf.memory().numTensors).toBe(before);
      peaks[kind] = {forward, training};
      layer.dispose();
    }
    const none = peaks['none'];
    expect(none.forward).toBeGreaterThan(4 * 2 ** 20);  // at least two [T, blockSize] float blocks
    for (const [kind, peak] of Object.entries(peaks)) {
      expect({kind, forward: peak.forward / none.forward <= 1.25}).toEqual({kind, forward: true});
      expect({kind, training: peak.training / none.training <= 1.25}).toEqual({kind, training: true});
    }
    tf.dispose([x, xVar, real, ...Object.values(masks).flatMap(m => Object.values(m.kwargs))]);
  });

  test.each([1, 2])('a full [B, T, S] mask given by the caller is sliced per block: the forward peak stays within 1.25× too (%i heads)', async (heads) => {
    // With two heads the wasm path runs one (batch, head) pair at a time; each pair too takes its mask per block.
    const T = 2048;
    const d = 16;
    const x = tf.randomNormal([1, T, d], 0, 1, 'float32', 1);  // [B, T, d]
    const layer = layerWith({numHeads: heads, keyDim: d / heads, blockSize: 256}, d);
    const full = tf.tidy(() => tf.greater(tf.randomUniform([1, T, T], 0, 1, 'float32', 5), 0.3));  // [B, T, S] bool
    const fullFloat = tf.cast(full, 'float32');  // [B, T, S]
    const none = await peakBytes(() => layer.apply(x) as tf.Tensor);
    for (const attentionMask of [full, fullFloat]) {
      const masked = await peakBytes(() => layer.apply(x, {attentionMask}) as tf.Tensor);
      expect(masked / none).toBeLessThanOrEqual(1.25);
    }
    tf.dispose([x, full, fullFloat]);
    layer.dispose();
  });
});
