/** Tests memoryEfficientAttention against plain tf ops: values, gradients, backends, leaks and peak memory. */

import * as tf from '@tensorflow/tfjs';
// Registers the 'wasm' backend (side effect only).
import '@tensorflow/tfjs-backend-wasm';

import {memoryEfficientAttention, MemoryEfficientOptions} from '../src/attention/memory_efficient_attention';
import {ValueError} from '../src/errors';
import {maxAbsDiff, onBackend, runTestsOn} from './helpers/tensors';

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
  {name: 'bool mask [B, 1, T, S] over heads', B: 2, H: 3, T: 6, S: 7, dk: 4, dv: 3, blockSize: 3, maskShape: [2, 1, 6, 7]},
  {name: 'float mask [B, H, T, S]', B: 2, H: 2, T: 5, S: 8, dk: 3, dv: 4, blockSize: 3, maskShape: [2, 2, 5, 8], maskDtype: 'float32'},
  {name: 'key-padding mask [B, 1, 1, S]', B: 2, H: 2, T: 4, S: 6, dk: 3, dv: 2, blockSize: 4, maskShape: [2, 1, 1, 6]},
  {name: 'mask with S dim 1 [B, 1, T, 1]', B: 1, H: 2, T: 5, S: 6, dk: 3, dv: 2, blockSize: 4, maskShape: [1, 1, 5, 1]},
  {name: 'causal and mask', B: 1, H: 2, T: 7, S: 7, dk: 3, dv: 3, blockSize: 3, causal: true, maskShape: [1, 2, 7, 7]},
  {name: 'inputs scaled by 1e3', B: 1, H: 2, T: 6, S: 7, dk: 4, dv: 3, blockSize: 3, inputScale: 1e3},
  {name: 'inputs scaled by 1e3, causal', B: 1, H: 1, T: 6, S: 6, dk: 4, dv: 3, blockSize: 4, causal: true, inputScale: 1e3},
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
 * 1e-4, except for scaled inputs: dq = dS·k·scale and dk = dSᵀ·q·scale multiply float32
 * rounding in dS (~1e-7, e.g. from D = rowsum(dy ∘ out) vs Σ P·dP, which the cpu backend
 * sums in different precisions) by |k|, |q| ~ inputScale, so the noise floor grows with it
 * (measured up to 3e-4 at 1e3 where both exact gradients are ~0).
 */
function gradTolerance(c: Case): number {
  return Math.max(1e-4, 1e-6 * (c.inputScale ?? 1));
}

/** Random inputs, options and upstream cotangent for a case (deterministic seeds). */
function makeInputs(c: Case, seed: number) {
  const s = c.inputScale ?? 1;
  const q = tf.mul(tf.randomNormal([c.B, c.H, c.T, c.dk], 0, 1, 'float32', seed), s) as tf.Tensor4D;  // [B, H, T, dk]
  const k = tf.mul(tf.randomNormal([c.B, c.H, c.S, c.dk], 0, 1, 'float32', seed + 1), s) as tf.Tensor4D;  // [B, H, S, dk]
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
    finite: [out, ...grads].every(t => tf.tidy(() => tf.all(tf.isFinite(t)).dataSync()[0] === 1)),
    out: out.arraySync() as number[][][][],
  };
  tf.dispose([out, ref, ...grads, ...refGrads]);
  dispose();
  return result;
}

describe('memoryEfficientAttention', () => {
  runTestsOn('cpu');

  describe.each(['cpu', 'wasm'])('matches the standard path on %s', (backend) => {
    runTestsOn(backend);

    test.each(CASES.map(c => [c.name, c] as [string, Case]))('%s', (_name, c) => {
      expect(tf.getBackend()).toBe(backend);
      const res = compare(c);
      expect(res.finite).toBe(true);
      expect(res.forward).toBeLessThanOrEqual(1e-5);
      for (const d of res.grads) expect(d).toBeLessThanOrEqual(gradTolerance(c));
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

  test('a mask covering every key gives zeros everywhere (wasm too)', async () => {
    for (const backend of ['cpu', 'wasm']) {
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

    test.each(['cpu', 'wasm'])('numTensors returns to baseline after forward and tf.grads on %s', (backend) => onBackend(backend, () => {
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
