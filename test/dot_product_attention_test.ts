/**
 * Specification of the functional op dotProductAttention(query, key, value, options):
 * errors, returnWeights, causal, scale, mask broadcasting, fully masked rows, dropout, the
 * choice of the standard path, and leaks. Expected values come from the plain-JS reference.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {dotProductAttention, MEMORY_EFFICIENT_THRESHOLD, ValueError} from '../src';
import * as memoryEfficientModule from '../src/attention/memory_efficient_attention';
import * as simdModule from '../src/backend/wasm_simd_kernels';
import * as fusedModule from '../src/backend/wasm_fused_attention';
import * as fusedBackwardModule from '../src/backend/wasm_fused_attention_backward';
import {sizeOf} from '../src/attention/matmul';
import {attendOneHead, matmul, referenceDotProductAttention, transpose} from './helpers/reference_attention';
import type {Matrix} from './helpers/reference_attention';
import {withNative} from './helpers/native';
import {disposeAll, expectAllFinite, expectClose, expectNoLeak, expectThrowsWithoutLeak, filled, flatten, Nested, onBackend, randomArray, runTestsOn, unravel} from './helpers/tensors';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

type Lead = number[];
type NestedMatrices = Matrix|NestedMatrices[];

/** Seeded q [..lead, T, dk], k [..lead, S, dk], v [..lead, S, dv] as nested arrays. */
function inputsArrays(lead: Lead, T: number, S: number, dk: number, dv: number, seed = 1) {
  return {
    q: randomArray([...lead, T, dk], seed) as NestedMatrices,
    k: randomArray([...lead, S, dk], seed + 1) as NestedMatrices,
    v: randomArray([...lead, S, dv], seed + 2) as NestedMatrices,
  };
}

const tensorOf = (x: NestedMatrices) => tf.tensor(x as unknown as number[]);

function tensorsOf(a: {q: NestedMatrices; k: NestedMatrices; v: NestedMatrices}) {
  return {q: tensorOf(a.q), k: tensorOf(a.k), v: tensorOf(a.v)};
}

describe('argument errors name the argument and the shapes, and leak nothing', () => {
  const t = (shape: number[], dtype: 'float32'|'int32' = 'float32') => tf.zeros(shape, dtype);
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['a query that is not a tensor', () => dotProductAttention([1, 2] as unknown as tf.Tensor, t([1, 2, 2]), t([1, 2, 2])),
      /^Argument `query` must be a tf\.Tensor\. Received: query=1,2$/],
    ['a key that is not a tensor', () => dotProductAttention(t([1, 2, 2]), null as unknown as tf.Tensor, t([1, 2, 2])),
      /^Argument `key` must be a tf\.Tensor\. Received: key=null$/],
    ['a value that is not a tensor', () => dotProductAttention(t([1, 2, 2]), t([1, 2, 2]), 3 as unknown as tf.Tensor),
      /^Argument `value` must be a tf\.Tensor\. Received: value=3$/],
    ['a rank-2 query', () => dotProductAttention(t([3, 4]), t([1, 3, 4]), t([1, 3, 4])),
      /^Argument `query` must have rank 3 \[B, T, d\] or rank 4 \[B, H, T, d\]\. Received: query\.shape=\[3, 4\]$/],
    ['rank-5 inputs', () => dotProductAttention(t([1, 1, 1, 3, 4]), t([1, 1, 1, 3, 4]), t([1, 1, 1, 3, 4])),
      /^Argument `query` must have rank 3 .*Received: query\.shape=\[1, 1, 1, 3, 4\]$/],
    ['a rank-2 value', () => dotProductAttention(t([1, 3, 4]), t([1, 3, 4]), t([3, 4])),
      /^Argument `value` must have rank 3 \[B, T, d\] or rank 4 \[B, H, T, d\]\. Received: value\.shape=\[3, 4\]$/],
    ['an int32 query', () => dotProductAttention(t([1, 3, 4], 'int32'), t([1, 3, 4]), t([1, 3, 4])),
      /^Argument `query` must be float32\. Received: query\.dtype=int32$/],
    ['an int32 key', () => dotProductAttention(t([1, 3, 4]), t([1, 3, 4], 'int32'), t([1, 3, 4])),
      /^Argument `key` must be float32\. Received: key\.dtype=int32$/],
    ['an int32 value', () => dotProductAttention(t([1, 3, 4]), t([1, 3, 4]), t([1, 3, 4], 'int32')),
      /^Argument `value` must be float32\. Received: value\.dtype=int32$/],
    ['ranks that differ', () => dotProductAttention(t([1, 3, 4]), t([1, 1, 3, 4]), t([1, 1, 3, 4])),
      /`query`, `key` and `value` must have the same rank\. Received: query\.shape=\[1, 3, 4\], key\.shape=\[1, 1, 3, 4\], value\.shape=\[1, 1, 3, 4\]/],
    ['a value alone of another rank', () => dotProductAttention(t([1, 3, 4]), t([1, 3, 4]), t([1, 1, 3, 4])),
      /^Arguments `query`, `key` and `value` must have the same rank\. Received: query\.shape=\[1, 3, 4\], key\.shape=\[1, 3, 4\], value\.shape=\[1, 1, 3, 4\]$/],
    ['a key alone of another rank', () => dotProductAttention(t([1, 3, 4]), t([1, 1, 3, 4]), t([1, 3, 4])),
      /^Arguments `query`, `key` and `value` must have the same rank\. Received: query\.shape=\[1, 3, 4\], key\.shape=\[1, 1, 3, 4\], value\.shape=\[1, 3, 4\]$/],
    ['batch sizes that differ', () => dotProductAttention(t([2, 3, 4]), t([1, 5, 4]), t([1, 5, 2])),
      /must agree on the batch axis\. Received: query\.shape=\[2, 3, 4\], key\.shape=\[1, 5, 4\], value\.shape=\[1, 5, 2\]/],
    ['a value alone with another batch size', () => dotProductAttention(t([2, 3, 4]), t([2, 5, 4]), t([1, 5, 2])),
      /^Arguments `query`, `key` and `value` must agree on the batch axis\. Received: query\.shape=\[2, 3, 4\], key\.shape=\[2, 5, 4\], value\.shape=\[1, 5, 2\]$/],
    ['a key alone with another batch size', () => dotProductAttention(t([2, 3, 4]), t([1, 5, 4]), t([2, 5, 2])),
      /^Arguments `query`, `key` and `value` must agree on the batch axis\. Received: query\.shape=\[2, 3, 4\], key\.shape=\[1, 5, 4\], value\.shape=\[2, 5, 2\]$/],
    ['a value alone with another head count', () => dotProductAttention(t([1, 2, 3, 4]), t([1, 2, 5, 4]), t([1, 3, 5, 2])),
      /^Arguments `query`, `key` and `value` must agree on the head axis\. Received: query\.shape=\[1, 2, 3, 4\], key\.shape=\[1, 2, 5, 4\], value\.shape=\[1, 3, 5, 2\]$/],
    ['head counts that differ', () => dotProductAttention(t([1, 2, 3, 4]), t([1, 3, 5, 4]), t([1, 3, 5, 2])),
      /must agree on the head axis\. Received: query\.shape=\[1, 2, 3, 4\], key\.shape=\[1, 3, 5, 4\]/],
    ['query and key widths that differ', () => dotProductAttention(t([1, 3, 4]), t([1, 5, 3]), t([1, 5, 2])),
      /`query` and `key` must have the same last dimension\. Received: query\.shape=\[1, 3, 4\], key\.shape=\[1, 5, 3\]/],
    ['key and value lengths that differ', () => dotProductAttention(t([1, 3, 4]), t([1, 5, 4]), t([1, 6, 2])),
      /`key` and `value` must have the same length \(axis -2\)\. Received: .*key\.shape=\[1, 5, 4\], value\.shape=\[1, 6, 2\]/],
    ['a rank-1 mask', () => dotProductAttention(t([2, 3, 4]), t([2, 5, 4]), t([2, 5, 2]), {mask: tf.ones([5])}),
      /^Argument `mask` must have rank 2 to 3 and broadcast to the attention scores \[2, 3, 5\]\. Received: mask\.shape=\[5\]$/],
    ['a rank-4 mask on rank-3 inputs', () => dotProductAttention(t([2, 3, 4]), t([2, 5, 4]), t([2, 5, 2]), {mask: tf.ones([2, 1, 3, 5])}),
      /^Argument `mask` must have rank 2 to 3 .*Received: mask\.shape=\[2, 1, 3, 5\]$/],
    ['a mask with the wrong key length', () => dotProductAttention(t([2, 3, 4]), t([2, 5, 4]), t([2, 5, 2]), {mask: tf.ones([2, 3, 4])}),
      /^Argument `mask` of shape \[2, 3, 4\] does not broadcast to the attention scores of shape \[2, 3, 5\]: axis 2 has 4, expected 5 or 1\.$/],
    ['a [B, T, S] mask with the wrong batch on rank-4 inputs', () =>
      dotProductAttention(t([2, 2, 3, 4]), t([2, 2, 5, 4]), t([2, 2, 5, 2]), {mask: tf.ones([3, 3, 5])}),
    /^Argument `mask` of shape \[3, 3, 5\] does not broadcast to the attention scores of shape \[2, 2, 3, 5\]: axis 0 has 3, expected 2 or 1\.$/],
    ['a [B, H, T, S] mask with the wrong head count', () =>
      dotProductAttention(t([2, 2, 3, 4]), t([2, 2, 5, 4]), t([2, 2, 5, 2]), {mask: tf.ones([2, 3, 3, 5])}),
    /^Argument `mask` of shape \[2, 3, 3, 5\] does not broadcast .*\[2, 2, 3, 5\]: axis 1 has 3, expected 2 or 1\.$/],
    ['scale 0', () => dotProductAttention(t([1, 3, 4]), t([1, 3, 4]), t([1, 3, 4]), {scale: 0}),
      /^Received an invalid value for argument `scale`, expected a positive finite number\. Received: scale=0$/],
    ['scale NaN', () => dotProductAttention(t([1, 3, 4]), t([1, 3, 4]), t([1, 3, 4]), {scale: NaN}),
      /^Received an invalid value for argument `scale`, expected a positive finite number\. Received: scale=NaN$/],
    ['dropout 1', () => dotProductAttention(t([1, 3, 4]), t([1, 3, 4]), t([1, 3, 4]), {dropout: 1}),
      /^Received an invalid value for argument `dropout`, expected a number in \[0, 1\)\. Received: dropout=1$/],
    ['blockSize 1.5', () => dotProductAttention(t([1, 3, 4]), t([1, 3, 4]), t([1, 3, 4]), {blockSize: 1.5}),
      /^Received an invalid value for argument `blockSize`, expected a positive integer\. Received: blockSize=1\.5$/],
    ['blockSize with returnWeights', () => dotProductAttention(t([1, 3, 4]), t([1, 3, 4]), t([1, 3, 4]), {blockSize: 2, returnWeights: true}),
      /cannot return them\. Use blockSize=0 .*Received: blockSize=2$/],
    ['blockSize with dropout in training', () =>
      dotProductAttention(t([1, 3, 4]), t([1, 3, 4]), t([1, 3, 4]), {blockSize: 2, dropout: 0.5, training: true}),
    /does not support dropout .*Received: blockSize=2$/],
    ['a keyPaddingMask of the query length', () =>
      dotProductAttention(t([2, 3, 4]), t([2, 5, 4]), t([2, 5, 2]), {keyPaddingMask: tf.ones([2, 3])}),
    /^Received an invalid value for argument `keyPaddingMask`, expected shape \[B, S\]=\[2, 5\]\. Received: keyPaddingMask\.shape=\[2, 3\]$/],
    ['a queryPaddingMask of the key length', () =>
      dotProductAttention(t([2, 3, 4]), t([2, 5, 4]), t([2, 5, 2]), {queryPaddingMask: tf.ones([2, 5])}),
    /^Received an invalid value for argument `queryPaddingMask`, expected shape \[B, T\]=\[2, 3\]\. Received: queryPaddingMask\.shape=\[2, 5\]$/],
    ['a queryPaddingMask of another batch size, rank 4', () =>
      dotProductAttention(t([2, 2, 3, 4]), t([2, 2, 5, 4]), t([2, 2, 5, 2]), {queryPaddingMask: tf.ones([1, 3])}),
    /^Received an invalid value for argument `queryPaddingMask`, expected shape \[B, T\]=\[2, 3\]\. Received: queryPaddingMask\.shape=\[1, 3\]$/],
    ['a mask with the wrong key length on the memory-efficient path', () =>
      dotProductAttention(t([2, 3, 4]), t([2, 5, 4]), t([2, 5, 2]), {mask: tf.ones([2, 3, 4]), blockSize: 2}),
    /^Argument `mask` of shape \[2, 3, 4\] does not broadcast to the attention scores of shape \[2, 3, 5\]: axis 2 has 4, expected 5 or 1\.$/],
    ['a rank-4 mask on rank-3 inputs on the memory-efficient path', () =>
      dotProductAttention(t([2, 3, 4]), t([2, 5, 4]), t([2, 5, 2]), {mask: tf.ones([2, 1, 3, 5]), blockSize: 2}),
    /^Argument `mask` must have rank 2 to 3 and broadcast to the attention scores \[2, 3, 5\]\. Received: mask\.shape=\[2, 1, 3, 5\]$/],
    ['scores over the standard path\'s budget with blockSize 0', () =>
      dotProductAttention(t([1, 16384, 1]), t([1, 16385, 1]), t([1, 16385, 1]), {blockSize: 0}),
    /^The standard attention path would need score tensors of shape \[1, 16384, 16385\], 1\.00 GiB each: .*Received: query\.shape=\[1, 16384, 1\], key\.shape=\[1, 16385, 1\]$/],
    ['scores over the standard path\'s budget with returnWeights, rank 4', () =>
      dotProductAttention(t([1, 1, 16384, 1]), t([1, 1, 16385, 1]), t([1, 1, 16385, 1]), {returnWeights: true}),
    /^The standard attention path would need score tensors of shape \[1, 1, 16384, 16385\], .*Received: query\.shape=\[1, 1, 16384, 1\], key\.shape=\[1, 1, 16385, 1\]$/],
  ];

  it.each(cases)('rejects %s', (_, call, pattern) => {
    // The inputs are made inside the tidy, so every tensor of the call is accounted for.
    expectThrowsWithoutLeak(() => tf.tidy(() => {
      call();
    }), pattern);
    expect(() => tf.tidy(() => {
      call();
    })).toThrow(ValueError);
  });

  it('T = 0 or S = 0: a mask that does not broadcast is refused all the same, naming the scores\' shape', () => {
    const cases: Array<[number[], number[], RegExp]> = [
      [[2, 0, 4], [2, 5, 4], /^Argument `mask` of shape \[2, 1, 4\] does not broadcast to the attention scores of shape \[2, 0, 5\]: axis 2 has 4, expected 5 or 1\.$/],
      [[2, 3, 4], [2, 0, 4], /^Argument `mask` of shape \[2, 1, 4\] does not broadcast to the attention scores of shape \[2, 3, 0\]: axis 2 has 4, expected 0 or 1\.$/],
    ];
    for (const [qShape, kShape, pattern] of cases) {
      const [q, k, v, mask] = [tf.zeros(qShape), tf.zeros(kShape), tf.zeros([...kShape.slice(0, 2), 2]), tf.ones([2, 1, 4])];
      expectThrowsWithoutLeak(() => dotProductAttention(q, k, v, {mask}), pattern);
      // A mask that does broadcast: the empty result, as without one.
      const good = tf.ones([1, kShape[1]]);
      const before = tf.memory().numTensors;
      const out = dotProductAttention(q, k, v, {mask: good});
      expect(out.shape).toEqual([2, qShape[1], 2]);
      out.dispose();
      expect(tf.memory().numTensors).toBe(before);
      disposeAll(q, k, v, mask, good);
    }
  });

  it('leaks nothing when the caller owns the inputs and the mask is bad', () => {
    const [q, k, v, mask] = [tf.ones([2, 3, 4]), tf.ones([2, 5, 4]), tf.ones([2, 5, 2]), tf.ones([2, 3, 4])];
    expectThrowsWithoutLeak(() => dotProductAttention(q, k, v, {mask, causal: true}), /`mask`/);
    disposeAll(q, k, v, mask);
  });
});

describe('returnWeights', () => {
  it.each([
    ['rank 3', [2]],
    ['rank 4', [2, 3]],
  ] as Array<[string, Lead]>)('%s: gives [output, weights] matching the reference; weight rows sum to 1', (_, lead) => {
    const a = inputsArrays(lead, 3, 5, 4, 2);
    const expected = referenceDotProductAttention(a.q, a.k, a.v);
    const {q, k, v} = tensorsOf(a);
    expectNoLeak(() => tf.tidy(() => {
      const result = dotProductAttention(q, k, v, {returnWeights: true});
      expect(Array.isArray(result)).toBe(true);
      const [output, weights] = result;
      expect(output.shape).toEqual([...lead, 3, 2]);
      expect(weights.shape).toEqual([...lead, 3, 5]);
      expectClose(output, expected.output as Nested, 1e-5);
      expectClose(weights, expected.weights as Nested, 1e-5);
      expectClose(tf.sum(weights, -1), tf.ones([...lead, 3]), 1e-6);
      // Without returnWeights, the output alone, the same values.
      const alone = dotProductAttention(q, k, v);
      expect(alone).toBeInstanceOf(tf.Tensor);
      expectClose(alone, expected.output as Nested, 1e-5);
    }));
    disposeAll(q, k, v);
  });
});

/** These run on cpu, and on tensorflow (tfjs-node) when it loads; its absence is a skipped test with the reason. */
describe.each(withNative(['cpu']))('on %s', (backend) => {
  runTestsOn(backend);

  describe('causal, top-left aligned', () => {
    it.each([
      ['rank 3, T = S', [2], 4, 4],
      ['rank 3, T < S', [1], 3, 5],
      ['rank 3, T > S', [1], 5, 3],
      ['rank 4, T < S', [1, 2], 2, 4],
    ] as Array<[string, Lead, number, number]>)('%s: query t attends keys s <= t only', (_, lead, T, S) => {
      const a = inputsArrays(lead, T, S, 3, 2, 5);
      const expected = referenceDotProductAttention(a.q, a.k, a.v, {causal: true});
      const {q, k, v} = tensorsOf(a);
      expectNoLeak(() => tf.tidy(() => {
        const [output, weights] = dotProductAttention(q, k, v, {causal: true, returnWeights: true});
        expectClose(output, expected.output as Nested, 1e-5);
        expectClose(weights, expected.weights as Nested, 1e-5);
        const w = flatten(weights.arraySync() as Nested);
        w.forEach((value, i) => {
          const s = i % S;
          const t = Math.floor(i / S) % T;
          if (s > t) expect(value).toBe(0);
        });
      }));
      disposeAll(q, k, v);
    });
  });

  describe('scale', () => {
    it.each([
      ['the default 1/sqrt(dk)', undefined],
      ['null means the default', null],
      ['a custom 0.3', 0.3],
      ['a custom 2.5', 2.5],
    ] as Array<[string, number|null|undefined]>)('%s matches the reference', (_, scale) => {
      const a = inputsArrays([2], 3, 4, 4, 3, 9);
      const expected = referenceDotProductAttention(a.q, a.k, a.v, {scale});
      const {q, k, v} = tensorsOf(a);
      expectNoLeak(() => tf.tidy(() => {
        const [output, weights] = dotProductAttention(q, k, v, {scale, returnWeights: true});
        expectClose(output, expected.output as Nested, 1e-5);
        expectClose(weights, expected.weights as Nested, 1e-5);
      }));
      disposeAll(q, k, v);
    });

    it('gives the same result whether dk <= S or dk > S (where the scale is applied differs)', () => {
      // dk = 6 > S = 2: the scale multiplies the scores rather than Q.
      const a = inputsArrays([1], 3, 2, 6, 2, 13);
      const expected = referenceDotProductAttention(a.q, a.k, a.v, {scale: 0.7});
      const {q, k, v} = tensorsOf(a);
      expectNoLeak(() => tf.tidy(() => {
        expectClose(dotProductAttention(q, k, v, {scale: 0.7}), expected.output as Nested, 1e-5);
      }));
      disposeAll(q, k, v);
    });
  });

  describe('mask broadcasting (1 = attend)', () => {
    const B = 2;
    const H = 2;
    const T = 3;
    const S = 4;
    /** A 0/1 array of the given shape with about 2/3 ones, seeded. */
    const bits = (shape: number[], seed: number) =>
      flatten(randomArray(shape, seed)).map((x) => (x > -0.4 ? 1 : 0));
    const at = (values: number[], shape: number[], index: number[]) =>
      values[index.reduce((flat, i, axis) => flat * shape[axis] + i, 0)];

    interface MaskCase {
      lead: Lead;
      shape: number[];
      /** Which mask entry governs (lead, t, s). */
      index: (lead: number[], t: number, s: number) => number[];
    }
    const cases: Array<[string, MaskCase]> = [
      ['[T, S] on rank-3 inputs', {lead: [B], shape: [T, S], index: (_, t, s) => [t, s]}],
      ['[B, T, S] on rank-3 inputs', {lead: [B], shape: [B, T, S], index: ([b], t, s) => [b, t, s]}],
      ['[1, T, S] on rank-3 inputs', {lead: [B], shape: [1, T, S], index: (_, t, s) => [0, t, s]}],
      ['[B, 1, S] (key padding) on rank-3 inputs', {lead: [B], shape: [B, 1, S], index: ([b], _, s) => [b, 0, s]}],
      ['[T, S] on rank-4 inputs', {lead: [B, H], shape: [T, S], index: (_, t, s) => [t, s]}],
      ['[B, T, S] on rank-4 inputs: the same for every head', {lead: [B, H], shape: [B, T, S], index: ([b], t, s) => [b, t, s]}],
      ['[B, 1, T, S] on rank-4 inputs', {lead: [B, H], shape: [B, 1, T, S], index: ([b], t, s) => [b, 0, t, s]}],
      ['[1, H, T, S] on rank-4 inputs: per head', {lead: [B, H], shape: [1, H, T, S], index: ([, h], t, s) => [0, h, t, s]}],
      ['[B, H, T, S] on rank-4 inputs', {lead: [B, H], shape: [B, H, T, S], index: ([b, h], t, s) => [b, h, t, s]}],
      ['[B, 1, 1, S] (key padding) on rank-4 inputs', {lead: [B, H], shape: [B, 1, 1, S], index: ([b], _, s) => [b, 0, 0, s]}],
    ];

    describe.each(['float32', 'bool', 'int32'] as const)('with a %s mask', (dtype) => {
      it.each(cases)('%s', (_, c) => {
        const values = bits(c.shape, 17 + c.shape.length);
        const a = inputsArrays(c.lead, T, S, 3, 2, 21);
        const expected = referenceDotProductAttention(a.q, a.k, a.v, {
          allowed: (lead, t, s) => at(values, c.shape, c.index(lead, t, s)) === 1,
        });
        const {q, k, v} = tensorsOf(a);
        const mask = tf.tensor(values, c.shape, dtype);
        expectNoLeak(() => tf.tidy(() => {
          const [output, weights] = dotProductAttention(q, k, v, {mask, returnWeights: true});
          expectAllFinite(output);
          expectClose(output, expected.output as Nested, 1e-5);
          expectClose(weights, expected.weights as Nested, 1e-5);
        }));
        disposeAll(q, k, v, mask);
      });
    });

    it('combines with causal (AND)', () => {
      const maskValues = bits([B, T, S], 31);
      const a = inputsArrays([B, H], T, S, 3, 2, 33);
      const expected = referenceDotProductAttention(a.q, a.k, a.v, {
        causal: true, allowed: ([b], t, s) => at(maskValues, [B, T, S], [b, t, s]) === 1,
      });
      const {q, k, v} = tensorsOf(a);
      const mask = tf.tensor3d(maskValues, [B, T, S]);
      expectNoLeak(() => tf.tidy(() => {
        const [output, weights] = dotProductAttention(q, k, v, {mask, causal: true, returnWeights: true});
        expectClose(output, expected.output as Nested, 1e-5);
        expectClose(weights, expected.weights as Nested, 1e-5);
      }));
      disposeAll(q, k, v, mask);
    });
  });

  describe('fully masked rows', () => {
    it.each([
      ['a zero row in a [T, S] mask', {mask: [[1, 0, 1], [0, 0, 0], [1, 1, 1]]}, [1]],
      ['causal AND a mask that hides key 0 from query 0', {mask: [[0, 1, 1], [1, 1, 1], [0, 1, 0]], causal: true}, [0]],
      ['everything masked', {mask: [[0, 0, 0], [0, 0, 0], [0, 0, 0]]}, [0, 1, 2]],
    ] as Array<[string, {mask: number[][]; causal?: boolean}, number[]]>)(
        '%s: zero output and zero weights, never NaN', (_, c, rows) => {
          const a = inputsArrays([2, 2], 3, 3, 2, 4, 41);
          const expected = referenceDotProductAttention(a.q, a.k, a.v, {
            causal: c.causal, allowed: (__, t, s) => c.mask[t][s] === 1,
          });
          const {q, k, v} = tensorsOf(a);
          const mask = tf.tensor2d(c.mask);
          expectNoLeak(() => tf.tidy(() => {
            const [output, weights] = dotProductAttention(q, k, v, {mask, causal: c.causal, returnWeights: true});
            expectAllFinite(output);
            expectAllFinite(weights);
            expectClose(output, expected.output as Nested, 1e-5);
            expectClose(weights, expected.weights as Nested, 1e-5);
            const out = output.arraySync() as number[][][][];
            const w = weights.arraySync() as number[][][][];
            for (const b of [0, 1]) {
              for (const h of [0, 1]) {
                for (const t of rows) {
                  expect(out[b][h][t]).toEqual([0, 0, 0, 0]);
                  expect(w[b][h][t]).toEqual([0, 0, 0]);
                }
              }
            }
          }));
          disposeAll(q, k, v, mask);
        });

    it('stays finite with huge scores (inputs ~1e4) and a mask', () => {
      const a = inputsArrays([1], 3, 4, 2, 2, 51);
      const big = (x: NestedMatrices) => (x as number[][][]).map((m) => m.map((row) => row.map((v) => v * 1e4)));
      const mask = [[1, 1, 0, 0], [0, 0, 0, 0], [0, 1, 1, 1]];
      const expected = referenceDotProductAttention(big(a.q), big(a.k), a.v, {allowed: (_, t, s) => mask[t][s] === 1});
      const [q, k, v, m] = [tf.tensor(big(a.q)), tf.tensor(big(a.k)), tensorOf(a.v), tf.tensor2d(mask)];
      expectNoLeak(() => tf.tidy(() => {
        const [output, weights] = dotProductAttention(q, k, v, {mask: m, returnWeights: true});
        expectAllFinite(output);
        expectAllFinite(weights);
        expectClose(weights, expected.weights as Nested, 1e-5);
        expectClose(output, expected.output as Nested, 1e-5);
      }));
      disposeAll(q, k, v, m);
    });
  });
});

describe('dropout on the weights', () => {
  it('is ignored unless training', () => {
    const a = inputsArrays([1, 2], 3, 4, 2, 2, 61);
    const expected = referenceDotProductAttention(a.q, a.k, a.v);
    const {q, k, v} = tensorsOf(a);
    expectNoLeak(() => tf.tidy(() => {
      for (const training of [undefined, false]) {
        const [output, weights] = dotProductAttention(q, k, v, {dropout: 0.5, training, returnWeights: true});
        expectClose(output, expected.output as Nested, 1e-5);
        expectClose(weights, expected.weights as Nested, 1e-5);
      }
    }));
    disposeAll(q, k, v);
  });

  it('in training, without returnWeights, changes the output (the weights are dropped out on that path too)', () => {
    const a = inputsArrays([2, 2], 4, 6, 2, 3, 65);
    const expected = flatten(referenceDotProductAttention(a.q, a.k, a.v).output as Nested);
    const {q, k, v} = tensorsOf(a);
    const output = expectNoLeak(() => tf.tidy(() => flatten(dotProductAttention(q, k, v, {dropout: 0.5, training: true}).arraySync() as Nested)));
    // 96 weights, each dropped with probability 1/2: that none is dropped has probability 2^-96.
    const moved = output.filter((x, i) => Math.abs(x - expected[i]) > 1e-3).length;
    expect(moved).toBeGreaterThan(0);
    disposeAll(q, k, v);
  });

  it.each([
    ['dropout 0', {dropout: 0}],
    ['no dropout', {}],
  ] as Array<[string, {dropout?: number}]>)('training with %s: the memory-efficient path is allowed, and the result is the reference', (_, dropout) => {
    const a = inputsArrays([2], 3, 5, 2, 2, 67);
    const expected = referenceDotProductAttention(a.q, a.k, a.v);
    const {q, k, v} = tensorsOf(a);
    expectNoLeak(() => tf.tidy(() => {
      expectClose(dotProductAttention(q, k, v, {...dropout, training: true, blockSize: 2}), expected.output as Nested, 1e-5);
      expectClose(dotProductAttention(q, k, v, {...dropout, training: true}), expected.output as Nested, 1e-5);
    }));
    disposeAll(q, k, v);
  });

  it('in training zeroes weights and scales the kept ones by 1/(1 - rate)', () => {
    const rate = 0.5;
    const a = inputsArrays([2, 2], 4, 4, 2, 2, 63);
    const expected = flatten(referenceDotProductAttention(a.q, a.k, a.v).weights as Nested);
    const {q, k, v} = tensorsOf(a);
    const weights = expectNoLeak(() => tf.tidy(() => {
      const [, w] = dotProductAttention(q, k, v, {dropout: rate, training: true, returnWeights: true});
      return flatten(w.arraySync() as Nested);
    }));
    const zeros = weights.filter((w) => w === 0).length;
    expect(zeros).toBeGreaterThan(0);
    expect(zeros).toBeLessThan(weights.length);
    weights.forEach((w, i) => {
      if (w !== 0) expect(Math.abs(w - expected[i] / (1 - rate))).toBeLessThan(1e-5);
    });
    disposeAll(q, k, v);
  });
});

describe('path selection', () => {
  let spy: jest.SpyInstance;

  beforeEach(() => {
    spy = jest.spyOn(memoryEfficientModule, 'memoryEfficientAttention');
  });

  afterEach(() => {
    spy.mockRestore();
  });

  it('blockSize: 0 forces the standard path, even for a key length at the threshold', () => {
    const S = MEMORY_EFFICIENT_THRESHOLD;
    const a = inputsArrays([1], 2, S, 2, 1, 71);
    const expected = referenceDotProductAttention(a.q, a.k, a.v);
    const {q, k, v} = tensorsOf(a);
    expectNoLeak(() => tf.tidy(() => {
      expectClose(dotProductAttention(q, k, v, {blockSize: 0}), expected.output as Nested, 1e-5);
      const [, weights] = dotProductAttention(q, k, v, {blockSize: 0, returnWeights: true});
      expectClose(weights, expected.weights as Nested, 1e-5);
    }));
    expect(spy).not.toHaveBeenCalled();
    disposeAll(q, k, v);
  });

  it('a positive blockSize hands rank-4 views of rank-3 inputs to the blocked path (so the spy above sees calls)', () => {
    // The blocked kernel is replaced here: this checks only the op's dispatch, not the kernel.
    spy.mockImplementation((q: tf.Tensor4D, _k: tf.Tensor4D, v: tf.Tensor4D) =>
      tf.zeros([q.shape[0], q.shape[1], q.shape[2], v.shape[3]]) as tf.Tensor4D);
    const {q, k, v} = tensorsOf(inputsArrays([2], 3, 5, 4, 2, 77));
    expectNoLeak(() => tf.tidy(() => {
      const output = dotProductAttention(q, k, v, {blockSize: 2, causal: true, scale: 0.5});
      expect(output.shape).toEqual([2, 3, 2]);
    }));
    expect(spy).toHaveBeenCalledTimes(1);
    const [qArg, kArg, vArg, options] = spy.mock.calls[0];
    expect([qArg.shape, kArg.shape, vArg.shape]).toEqual([[2, 1, 3, 4], [2, 1, 5, 4], [2, 1, 5, 2]]);
    expect(options).toEqual(expect.objectContaining({blockSize: 2, causal: true, scale: 0.5}));
    disposeAll(q, k, v);
  });

  it('by default, rank 3 with T = 1000, S = 150 (one [1, 1000, 150] score tensor, 0.6 MB) stays on the standard path', () => {
    // The planner counts the scores of rank-3 inputs as one head: 0.6 MB, far within the 512 MiB budget (counted
    // with T heads, 600 MB, they would not be).
    const a = inputsArrays([1], 1000, 150, 1, 1, 79);
    const expected = referenceDotProductAttention(a.q, a.k, a.v).output as Nested;
    const {q, k, v} = tensorsOf(a);
    expectNoLeak(() => tf.tidy(() => expectClose(dotProductAttention(q, k, v), expected, 1e-5)));
    expect(spy).not.toHaveBeenCalled();
    disposeAll(q, k, v);
  });

  it('by default, rank 4 whose heads together exceed the budget (2 × [20000, 4095] scores, 655 MB) take the blocked path', () => {
    // Each head's scores (327 MB) would fit the 512 MiB budget; both heads do not. S = 4095 is under the cpu threshold.
    spy.mockImplementation((q: tf.Tensor4D, _k: tf.Tensor4D, v: tf.Tensor4D) =>
      tf.zeros([q.shape[0], q.shape[1], q.shape[2], v.shape[3]]) as tf.Tensor4D);
    const [q, k, v] = [tf.ones([1, 2, 20000, 1]), tf.ones([1, 2, 4095, 1]), tf.ones([1, 2, 4095, 1])];
    expectNoLeak(() => tf.tidy(() => expect(dotProductAttention(q, k, v).shape).toEqual([1, 2, 20000, 1])));
    expect(spy).toHaveBeenCalledTimes(1);
    disposeAll(q, k, v);
  });

  it('by default, short key lengths and returnWeights use the standard path', () => {
    const a = inputsArrays([1], 2, MEMORY_EFFICIENT_THRESHOLD, 2, 1, 73);
    const {q, k, v} = tensorsOf(a);
    const short = tensorsOf(inputsArrays([1], 2, 8, 2, 1, 75));
    expectNoLeak(() => tf.tidy(() => {
      dotProductAttention(short.q, short.k, short.v);
      dotProductAttention(q, k, v, {returnWeights: true});
    }));
    expect(spy).not.toHaveBeenCalled();
    disposeAll(q, k, v, short.q, short.k, short.v);
  });
});

/**
 * float64 backward of sum(R ∘ softmax(Q·Kᵀ·scale over the allowed keys)·V) for one (batch, head)
 * pair, by plain loops: [dQ, dK, dV]. A row with no allowed key has weights 0, hence zero output
 * and zero dQ. (dS = P ∘ (dP - rowsum(R ∘ O)), dQ = scale·dS·K, dK = scale·dSᵀ·Q, dV = Pᵀ·R.)
 */
function referencePairGrads(q: Matrix, k: Matrix, v: Matrix, r: Matrix, allowed: boolean[][], scale: number): Matrix[] {
  const p = attendOneHead(q, k, v, allowed, scale).weights;
  const out = matmul(p, v);
  const dp = matmul(r, transpose(v));
  const rowTerm = out.map((row, t) => row.reduce((sum, x, c) => sum + x * r[t][c], 0));
  const ds = p.map((row, t) => row.map((x, s) => x * (dp[t][s] - rowTerm[t])));
  const scaled = (m: Matrix) => m.map((row) => row.map((x) => x * scale));
  return [scaled(matmul(ds, k)), scaled(matmul(transpose(ds), q)), matmul(transpose(p), r)];
}

/** fn applied to the matrices of each (batch, head) pair of same-lead nested arrays, results nested alike. */
function perPair<R>(arrays: NestedMatrices[], fn: (lead: number[], matrices: Matrix[]) => R, lead: number[] = []): R|unknown[] {
  const isMatrix = (x: NestedMatrices) => !Array.isArray((x as unknown[][])[0]?.[0]);
  if (isMatrix(arrays[0])) return fn(lead, arrays as Matrix[]);
  return (arrays[0] as NestedMatrices[]).map((_, i) => perPair(arrays.map((a) => (a as NestedMatrices[])[i]), fn, [...lead, i]));
}

/**
 * Key and query padding through the op: the forward as the plain-array reference (a padded key
 * attended by no query of any head, a padded query's row zeros), with and without the weights
 * (on cpu without them the standard path's own kernel, with them plain ops; on wasm the standard
 * path's kernel), and the gradients as the plain-array backward (on cpu plain ops; on wasm the
 * fused backward without a `mask`, the standard path's custom gradient with one).
 */
describe.each(['cpu', 'wasm'])('padding masks on %s', (backend) => {
  runTestsOn(backend);
  const [B, T, S] = [2, 4, 5];
  // Batch 0: key 2 and query 1 are padding. Batch 1: keys 0 and 4 and query 3; with causal its
  // query 0 (whose one key, 0, is padding) attends nothing.
  const KEY_PAD = [[1, 1, 0, 1, 1], [0, 1, 1, 1, 1]];
  const QUERY_PAD = [[1, 0, 1, 1], [1, 1, 1, 0]];
  const MASK = [[1, 1, 1, 0, 1], [0, 1, 1, 1, 1], [1, 0, 1, 1, 0], [1, 1, 0, 1, 1]];  // [T, S]
  // Measured on 2026-11-30: at most 7.6e-8 from the float64 reference (gradients, whose maxima are 0.39 to 1.2).
  const TOL = 1e-6;
  interface PadCase {lead: Lead; dk: number; key?: boolean; query?: boolean; causal?: boolean; mask?: boolean}
  const cases: Array<[string, PadCase]> = [
    ['rank 3, key padding (bool)', {lead: [B], dk: 3, key: true}],
    ['rank 3, query padding (float32)', {lead: [B], dk: 3, query: true}],
    ['rank 3, both, causal', {lead: [B], dk: 3, key: true, query: true, causal: true}],
    ['rank 3, both and a [T, S] mask, dk > S', {lead: [B], dk: 7, key: true, query: true, mask: true}],
    ['rank 4, both', {lead: [B, 2], dk: 3, key: true, query: true}],
    ['rank 4, both, causal, dk > S', {lead: [B, 2], dk: 6, key: true, query: true, causal: true}],
    ['rank 4, query padding, a [T, S] mask and causal', {lead: [B, 2], dk: 3, query: true, mask: true, causal: true}],
  ];

  it.each(cases)('%s: output, weights and gradients as the reference', (_, c) => {
    const a = inputsArrays(c.lead, T, S, c.dk, 2, 81);
    const r = randomArray([...c.lead, T, 2], 85) as NestedMatrices;
    const allowed = ([b]: number[], t: number, s: number) =>
      (!c.key || KEY_PAD[b][s] === 1) && (!c.query || QUERY_PAD[b][t] === 1) && (!c.mask || MASK[t][s] === 1);
    const expected = referenceDotProductAttention(a.q, a.k, a.v, {causal: c.causal, allowed});
    const scale = 1 / Math.sqrt(c.dk);
    const grads = [0, 1, 2].map((i) => perPair([a.q, a.k, a.v, r], (lead, [q, k, v, rm]) => referencePairGrads(
        q, k, v, rm, q.map((__, t) => k.map((___, s) => (!c.causal || s <= t) && allowed(lead, t, s))), scale)[i]));
    // Rows that attend keys, and (with query padding, or causal and key 0 padded) rows that attend none.
    const rows = flatten(perPair([expected.weights], (__, [w]) => w.map((row) => (row.some((x) => x !== 0) ? 1 : 0))) as Nested);
    expect(rows).toContain(1);
    if (c.query || c.causal) expect(rows).toContain(0);

    const start = tf.memory().numTensors;
    const {q, k, v} = tensorsOf(a);
    const readout = tensorOf(r);
    const keyPaddingMask = c.key ? tf.tensor2d(KEY_PAD, [B, S], 'bool') : null;
    const queryPaddingMask = c.query ? tf.tensor2d(QUERY_PAD, [B, T], 'float32') : null;
    const mask = c.mask ? tf.tensor2d(MASK) : null;
    const options = {keyPaddingMask, queryPaddingMask, mask, causal: c.causal};
    expectNoLeak(() => tf.tidy(() => {
      const [output, weights] = dotProductAttention(q, k, v, {...options, returnWeights: true});
      expectClose(output, expected.output as Nested, TOL);
      expectClose(weights, expected.weights as Nested, TOL);
      expectClose(dotProductAttention(q, k, v, options), expected.output as Nested, TOL);
    }));
    let output: tf.Tensor|undefined;
    const [dq, dk, dv] = tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => {
      const out = dotProductAttention(x, y, z, options);
      output = tf.keep(out.clone());
      return tf.sum(tf.mul(out, readout));
    })([q, k, v]);
    expectClose(output!, expected.output as Nested, TOL);
    expectClose(dq, grads[0] as Nested, TOL);
    expectClose(dk, grads[1] as Nested, TOL);
    expectClose(dv, grads[2] as Nested, TOL);
    disposeAll(output, dq, dk, dv, q, k, v, readout, keyPaddingMask, queryPaddingMask, mask);
    expect(tf.memory().numTensors).toBe(start);
  });
});

describe.each(['cpu', 'wasm'])('key padding alone on %s', (backend) => {
  runTestsOn(backend);
  it('that pads every key of a batch: its rows are zeros (output and weights, no NaN) and get zero gradients', () => {
    const [B, T, S, dk] = [2, 3, 4, 3];
    const KEY_PAD = [[1, 0, 1, 1], [0, 0, 0, 0]];  // batch 1: every key padded
    const a = inputsArrays([B], T, S, dk, 2, 91);
    const r = randomArray([B, T, 2], 92) as NestedMatrices;
    const allowed = ([b]: number[], _t: number, s: number) => KEY_PAD[b][s] === 1;
    const expected = referenceDotProductAttention(a.q, a.k, a.v, {allowed});
    const grads = [0, 1, 2].map((i) => perPair([a.q, a.k, a.v, r], (lead, [q, k, v, rm]) => referencePairGrads(
        q, k, v, rm, q.map((__, t) => k.map((___, s) => allowed(lead, t, s))), 1 / Math.sqrt(dk))[i]));
    expect(flatten((expected.output as Nested[])[1] as Nested).every((x) => x === 0)).toBe(true);
    const start = tf.memory().numTensors;
    const {q, k, v} = tensorsOf(a);
    const readout = tensorOf(r);
    const keyPaddingMask = tf.tensor2d(KEY_PAD, [B, S], 'bool');
    tf.tidy(() => {
      // With the weights: the standard path on every backend.
      const [output, weights] = dotProductAttention(q, k, v, {keyPaddingMask, returnWeights: true});
      expectClose(output, expected.output as Nested, 1e-6);
      expectClose(weights, expected.weights as Nested, 1e-6);
      for (const blockSize of [0, null]) {  // the standard path, and the default (fused on wasm)
        expectClose(dotProductAttention(q, k, v, {keyPaddingMask, blockSize}), expected.output as Nested, 1e-6);
        const [dq, dkGrad, dv] = tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
          tf.sum(tf.mul(dotProductAttention(x, y, z, {keyPaddingMask, blockSize}), readout)))([q, k, v]);
        expectClose(dq, grads[0] as Nested, 1e-6);
        expectClose(dkGrad, grads[1] as Nested, 1e-6);
        expectClose(dv, grads[2] as Nested, 1e-6);
      }
    });
    disposeAll(q, k, v, readout, keyPaddingMask);
    expect(tf.memory().numTensors).toBe(start);
  });
});

/**
 * The standard path on wasm runs its products one of three ways (chooseMode): the SIMD kernel for
 * several (batch, head) pairs that fit it, else one 2-D product per pair when a pair has at least
 * PER_PAIR_MIN_FLOPS = 500000 flops (2·T·S·(dk + dv)) or there is one pair, else wasm's batched
 * matMul; each with the custom gradient when one is recorded. Every way, with every mask shape
 * (broadcast over batch or heads, one piece per pair), fully masked rows and padding, gives the
 * plain-array forward and backward. Spies tell which way ran: the SIMD kernel, or the split into
 * pairs; simdFits is made to refuse for the two ways past it.
 */
describe('the standard path on wasm, each way of running its products', () => {
  runTestsOn('wasm');
  let spies: {fits: jest.SpyInstance; simd: jest.SpyInstance; split: jest.SpyInstance};
  beforeEach(() => {
    spies = {fits: jest.spyOn(simdModule, 'simdFits'), simd: jest.spyOn(simdModule, 'simdBatchMatMul'),
             split: jest.spyOn(simdModule, 'splitMatrices')};
  });
  afterEach(() => Object.values(spies).forEach((spy) => spy.mockRestore()));

  type Mode = 'simd'|'pairs'|'batched';
  // Measured on 2026-11-30: at most 1.4e-7 (outputs) and 5.2e-7 (gradients, up to dk = 75) from the float64 reference.
  const TOL = 5e-6;
  /** refuse: which products simdFits refuses (default: every one, for the ways past the SIMD kernel). */
  interface ModeCase {mode: Mode; lead: Lead; T: number; S: number; dk: number; dv: number; refuse?: 'forward'|'backward'}
  const cases: Array<[string, ModeCase]> = [
    ['SIMD kernel, dk <= S', {mode: 'simd', lead: [2, 2], T: 6, S: 7, dk: 4, dv: 3}],
    ['SIMD kernel, dk > S, rank 3', {mode: 'simd', lead: [3], T: 6, S: 5, dk: 9, dv: 3}],
    ['per pair at exactly 500000 flops per pair', {mode: 'pairs', lead: [2, 2], T: 50, S: 50, dk: 50, dv: 50}],
    ['per pair, dk > S, rank 3', {mode: 'pairs', lead: [3], T: 50, S: 40, dk: 75, dv: 50}],
    ['batched at 490000 flops per pair', {mode: 'batched', lead: [2, 2], T: 50, S: 50, dk: 50, dv: 49}],
    ['batched, dk > S, rank 3', {mode: 'batched', lead: [3], T: 6, S: 5, dk: 9, dv: 3}],
    ['batched when only Q·Kᵀ does not fit the SIMD kernel', {mode: 'batched', lead: [2, 2], T: 6, S: 7, dk: 4, dv: 3, refuse: 'forward'}],
    ['batched when only the backward\'s Pᵀ·dO does not fit the SIMD kernel', {mode: 'batched', lead: [2, 2], T: 6, S: 7, dk: 4, dv: 3, refuse: 'backward'}],
    ['one pair (2-D products)', {mode: 'pairs', lead: [1, 1], T: 6, S: 7, dk: 4, dv: 3}],
    ['one pair, rank 3, dk > S', {mode: 'pairs', lead: [1], T: 6, S: 5, dk: 9, dv: 3}],
  ];

  /** A 0/1 pattern of about 4/5 ones, from the index; with zeroRow, query 1 attends nothing. */
  const bit = (index: number[], zeroRow: boolean) =>
    (zeroRow && index[index.length - 2] === 1) || index.reduce((h, i, axis) => h * 31 + i * (axis + 7), 17) % 5 === 0 ? 0 : 1;
  interface MaskKind {name: string; shape: (lead: Lead, T: number, S: number) => number[]; causal?: boolean; padding?: boolean; zeroRow?: boolean}
  const kinds: MaskKind[] = [
    {name: 'no mask', shape: () => []},
    {name: '[T, S] with a fully masked row', shape: (_, T, S) => [T, S], zeroRow: true},
    {name: '[1, .., T, S] and causal', shape: (lead, T, S) => [...lead.map(() => 1), T, S], causal: true},
    {name: '[B, (1,) T, S]', shape: (lead, T, S) => [lead[0], ...lead.slice(1).map(() => 1), T, S]},
    {name: '[B, T, S] (every head)', shape: ([b], T, S) => [b, T, S]},
    {name: 'per pair [.., T, S], and key and query padding', shape: (lead, T, S) => [...lead, T, S], padding: true},
  ];

  /** Whether the mask of `shape` (broadcast as the op documents) lets query t of pair `lead` attend key s. */
  function maskAllows(kind: MaskKind, shape: number[], lead: Lead, t: number, s: number): boolean {
    if (shape.length === 0) return true;
    const full = shape.length === 3 && lead.length === 2 ? [lead[0], t, s] : [...lead, t, s].slice(-shape.length);
    return bit(full.map((i, axis) => (shape[axis] === 1 ? 0 : i)), kind.zeroRow ?? false) === 1;
  }

  it.each(cases)('%s: forward and gradients as the reference, with every mask shape', (_, c) => {
    if (c.refuse != null) {
      // Q·Kᵀ is simdFits(pairs, T, d, S), the backward's Pᵀ·dO simdFits(pairs, S, T, d).
      const d = Math.max(c.dk, c.dv);
      const refused = (c.refuse === 'forward' ? [c.T, d, c.S] : [c.S, c.T, d]).join();
      spies.fits.mockImplementation((_b: number, m: number, k: number, n: number) => [m, k, n].join() !== refused);
    } else if (c.mode !== 'simd') {
      spies.fits.mockReturnValue(false);
    }
    const start = tf.memory().numTensors;
    const B = c.lead[0];
    const keyPad = Array.from({length: B}, (__, b) => Array.from({length: c.S}, (___, s) => ((s + b) % 4 === 3 ? 0 : 1)));
    const queryPad = Array.from({length: B}, (__, b) => Array.from({length: c.T}, (___, t) => (b === 0 && t === 2 ? 0 : 1)));
    const a = inputsArrays(c.lead, c.T, c.S, c.dk, c.dv, 91);
    const r = randomArray([...c.lead, c.T, c.dv], 95) as NestedMatrices;
    const {q, k, v} = tensorsOf(a);
    const readout = tensorOf(r);
    const scale = 1 / Math.sqrt(c.dk);
    for (const kind of kinds.filter((x) => x.shape(c.lead, c.T, c.S).length <= c.lead.length + 2)) {
      const shape = kind.shape(c.lead, c.T, c.S);
      const allowed = (lead: Lead, t: number, s: number) => maskAllows(kind, shape, lead, t, s) &&
          (!kind.padding || (keyPad[lead[0]][s] === 1 && queryPad[lead[0]][t] === 1));
      const expected = referenceDotProductAttention(a.q, a.k, a.v, {allowed, causal: kind.causal});
      const grads = [0, 1, 2].map((i) => perPair([a.q, a.k, a.v, r], (lead, [qm, km, vm, rm]) => referencePairGrads(
          qm, km, vm, rm, qm.map((__, t) => km.map((___, s) => (!kind.causal || s <= t) && allowed(lead, t, s))), scale)[i]));
      const mask = shape.length === 0 ? null : tf.tensor(flatten(filled(shape, (i) => bit(unravel(i, shape), kind.zeroRow ?? false))), shape);
      const keyPaddingMask = kind.padding ? tf.tensor2d(keyPad) : null;
      const queryPaddingMask = kind.padding ? tf.tensor2d(queryPad) : null;
      const options = {mask, causal: kind.causal, keyPaddingMask, queryPaddingMask, blockSize: 0};
      const context = kind.name;
      Object.values(spies).forEach((spy) => spy.mockClear());
      const output = expectNoLeak(() => tf.tidy(() => dotProductAttention(q, k, v, options).arraySync() as Nested));
      const ran = {simd: spies.simd.mock.calls.length > 0, split: spies.split.mock.calls.length > 0};
      expect([context, ran]).toEqual([context, {simd: c.mode === 'simd', split: c.mode === 'pairs' && sizeOf(c.lead) > 1}]);
      if (c.mode !== 'pairs' || sizeOf(c.lead) > 1) {
        // Both products must fit the SIMD kernel: Q·Kᵀ (T × d × S) and the backward's Pᵀ·dO (S × T × d), d = max(dk, dv).
        const d = Math.max(c.dk, c.dv);
        expect(spies.fits.mock.calls).toContainEqual([sizeOf(c.lead), c.T, d, c.S]);
        if (c.mode === 'simd' || c.refuse === 'backward') expect(spies.fits.mock.calls).toContainEqual([sizeOf(c.lead), c.S, c.T, d]);
      }
      expectClose(output, expected.output as Nested, TOL);
      const [dq, dk, dv] = tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
        tf.sum(tf.mul(dotProductAttention(x, y, z, options), readout)))([q, k, v]);
      try {
        expectClose(dq, grads[0] as Nested, TOL);
        expectClose(dk, grads[1] as Nested, TOL);
        expectClose(dv, grads[2] as Nested, TOL);
      } catch (e) {
        throw new Error(`${context}: ${(e as Error).message}`);
      }
      disposeAll(dq, dk, dv, mask, keyPaddingMask, queryPaddingMask);
    }
    disposeAll(q, k, v, readout);
    expect(tf.memory().numTensors).toBe(start);
  });
});

/**
 * A positive blockSize sends the op to the memory-efficient path with its masks as they are: an
 * explicit mask of every shape (rank 3 [B, T, S] on rank-4 inputs for every head), the padding
 * and causal; the output and the gradients are the plain-array reference's (cpu).
 */
describe('the memory-efficient path through the op (blockSize 2)', () => {
  runTestsOn('cpu');
  const [B, H, T, S] = [2, 2, 4, 5];
  const KEY_PAD = [[1, 0, 1, 1, 1], [1, 1, 1, 1, 0]];
  const QUERY_PAD = [[1, 1, 0, 1], [1, 1, 1, 1]];
  /** 0/1 from the index, about 3/4 ones; query 1 of every pair attends nothing. */
  const bit = (index: number[]) =>
    index[index.length - 2] === 1 || index.reduce((h, i, axis) => h * 29 + i * (axis + 3), 5) % 4 === 0 ? 0 : 1;
  const cases: Array<[string, {lead: Lead; shape?: number[]; padding?: boolean; causal?: boolean}]> = [
    ['rank 3, a [T, S] mask', {lead: [B], shape: [T, S]}],
    ['rank 3, a [B, T, S] mask and causal', {lead: [B], shape: [B, T, S], causal: true}],
    ['rank 3, padding', {lead: [B], padding: true}],
    ['rank 4, a [B, T, S] mask (every head)', {lead: [B, H], shape: [B, T, S]}],
    ['rank 4, a [B, H, T, S] mask, padding and causal', {lead: [B, H], shape: [B, H, T, S], padding: true, causal: true}],
  ];
  // Measured on 2026-11-30: at most 1e-7 from the float64 reference (outputs and gradients).
  const TOL = 1e-6;

  it.each(cases)('%s: output and gradients as the reference', (_, c) => {
    const start = tf.memory().numTensors;
    const maskAt = (lead: Lead, t: number, s: number) => {
      if (c.shape == null) return true;
      const index = c.shape.length === 3 && lead.length === 2 ? [lead[0], t, s] : [...lead, t, s].slice(-c.shape.length);
      return bit(index) === 1;
    };
    const allowed = (lead: Lead, t: number, s: number) =>
      maskAt(lead, t, s) && (!c.padding || (KEY_PAD[lead[0]][s] === 1 && QUERY_PAD[lead[0]][t] === 1));
    const a = inputsArrays(c.lead, T, S, 3, 2, 101);
    const r = randomArray([...c.lead, T, 2], 105) as NestedMatrices;
    const expected = referenceDotProductAttention(a.q, a.k, a.v, {allowed, causal: c.causal});
    const scale = 1 / Math.sqrt(3);
    const grads = [0, 1, 2].map((i) => perPair([a.q, a.k, a.v, r], (lead, [qm, km, vm, rm]) => referencePairGrads(
        qm, km, vm, rm, qm.map((__, t) => km.map((___, s) => (!c.causal || s <= t) && allowed(lead, t, s))), scale)[i]));
    const {q, k, v} = tensorsOf(a);
    const readout = tensorOf(r);
    const mask = c.shape == null ? null : tf.tensor(flatten(filled(c.shape, (i) => bit(unravel(i, c.shape!)))), c.shape, 'bool');
    const keyPaddingMask = c.padding ? tf.tensor2d(KEY_PAD) : null;
    const queryPaddingMask = c.padding ? tf.tensor2d(QUERY_PAD) : null;
    const options = {mask, keyPaddingMask, queryPaddingMask, causal: c.causal, blockSize: 2};
    const spy = jest.spyOn(memoryEfficientModule, 'memoryEfficientAttention');
    try {
      expectNoLeak(() => tf.tidy(() => expectClose(dotProductAttention(q, k, v, options), expected.output as Nested, TOL)));
      const [dq, dk, dv] = tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
        tf.sum(tf.mul(dotProductAttention(x, y, z, options), readout)))([q, k, v]);
      expectClose(dq, grads[0] as Nested, TOL);
      expectClose(dk, grads[1] as Nested, TOL);
      expectClose(dv, grads[2] as Nested, TOL);
      expect(spy).toHaveBeenCalledTimes(2);
      disposeAll(dq, dk, dv);
    } finally {
      spy.mockRestore();
    }
    disposeAll(q, k, v, readout, mask, keyPaddingMask, queryPaddingMask);
    expect(tf.memory().numTensors).toBe(start);
  });
});

/**
 * Which kernel runs, as the op documents: on wasm the fused kernel (inference) or the fused
 * kernel with its fused backward (a gradient recorded), padding and explicit masks included;
 * the standard path (blockSize 0) with a mask has its own custom gradient (here on the SIMD
 * kernel); on cpu the standard path with tf.matMul (neither the SIMD kernel nor the split
 * into pairs).
 */
describe('which kernel runs', () => {
  let spies: jest.SpyInstance[];
  afterEach(() => spies.forEach((spy) => spy.mockRestore()));
  const lossOf = (options: object, readout: tf.Tensor) => (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
    tf.sum(tf.mul(dotProductAttention(x, y, z, options), readout));

  it('on wasm: the fused kernel with or without a mask, its fused backward for gradients, and the standard path when asked', async () => {
    await onBackend('wasm', () => {
      const [fused, training, simd] = spies = [jest.spyOn(fusedModule, 'fusedAttention'),
        jest.spyOn(fusedBackwardModule, 'fusedAttentionTraining'), jest.spyOn(simdModule, 'simdBatchMatMul')];
      const a = inputsArrays([2, 2], 5, 6, 4, 3, 111);
      const expected = referenceDotProductAttention(a.q, a.k, a.v, {causal: true});
      const {q, k, v} = tensorsOf(a);
      const readout = tf.onesLike(q.slice([0, 0, 0, 0], [-1, -1, -1, 3]));
      const mask = tf.ones([5, 6]);
      const counts = () => [fused, training, simd].map((spy) => spy.mock.calls.length);
      const ways: Array<[string, () => tf.Tensor|tf.Tensor[], number[]]> = [
        ['no mask', () => dotProductAttention(q, k, v, {causal: true}), [1, 0, 0]],
        ['no mask, gradients', () => tf.grads(lossOf({causal: true}, readout))([q, k, v]), [0, 1, 0]],
        ['key padding, gradients', () => tf.grads(lossOf({causal: true, keyPaddingMask: tf.ones([2, 6])}, readout))([q, k, v]), [0, 1, 0]],
        ['a mask', () => dotProductAttention(q, k, v, {causal: true, mask}), [1, 0, 0]],
        ['a mask, gradients', () => tf.grads(lossOf({causal: true, mask}, readout))([q, k, v]), [0, 1, 0]],
        ['a mask, standard path', () => dotProductAttention(q, k, v, {causal: true, mask, blockSize: 0}), [0, 0, 2]],
        ['a mask, standard path, gradients', () => tf.grads(lossOf({causal: true, mask, blockSize: 0}, readout))([q, k, v]), [0, 0, 6]],
      ];
      for (const [name, run, calls] of ways) {
        spies.forEach((spy) => spy.mockClear());
        const result = tf.tidy(run);
        expect([name, counts()]).toEqual([name, calls]);
        if (!Array.isArray(result)) expectClose(result, expected.output as Nested, 1e-5);
        tf.dispose(result);
      }
      disposeAll(q, k, v, readout, mask);
    });
  });

  it('on cpu: the standard path with tf.matMul, neither the SIMD kernel nor the split into pairs, with or without gradients', async () => {
    await onBackend('cpu', () => {
      const [simd, split] = spies = [jest.spyOn(simdModule, 'simdBatchMatMul'), jest.spyOn(simdModule, 'splitMatrices')];
      const {q, k, v} = tensorsOf(inputsArrays([2, 2], 5, 6, 4, 3, 113));
      const readout = tf.onesLike(q.slice([0, 0, 0, 0], [-1, -1, -1, 3]));
      tf.dispose(dotProductAttention(q, k, v, {causal: true}));
      tf.dispose(tf.grads(lossOf({causal: true}, readout))([q, k, v]));
      expect([simd.mock.calls.length, split.mock.calls.length]).toEqual([0, 0]);
      disposeAll(q, k, v, readout);
    });
  });
});
