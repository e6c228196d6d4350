/**
 * Unit tests of src/attention/masks.ts: the padding-mask checks and builders and the per-head mask shape, each
 * against values worked out by hand in the comments. The ops' and the layer's suites test the masks end to end;
 * these pin down the cases mutation testing found unchecked there (test/mutation/equivalent_mutants.md).
 */
import * as tf from '@tensorflow/tfjs';
import {attendedQueries, checkMaskShape, checkPaddingMask, paddingMask, toBoolMask} from '../src/attention/masks';
import {ValueError} from '../src/errors';
import {expectThrowsWithoutLeak} from './helpers/tensors';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** Runs `fn`, checks its result's shape and values, disposes it and checks that nothing else was left. */
function expectMask(fn: () => tf.Tensor|null, shape: number[], values: number[]): void {
  const before = tf.memory().numTensors;
  const result = fn();
  expect(result).not.toBeNull();
  expect(result!.shape).toEqual(shape);
  expect(Array.from(result!.dataSync(), Number)).toEqual(values);
  result!.dispose();
  expect(tf.memory().numTensors).toBe(before);
}

describe('toBoolMask', () => {
  it('returns a bool mask itself, allocating nothing', () => {
    const mask = tf.tensor2d([[true, false]], [1, 2], 'bool');
    const before = tf.memory().numTensors;
    expect(toBoolMask(mask)).toBe(mask);
    expect(tf.memory().numTensors).toBe(before);
    mask.dispose();
  });
});

describe('checkMaskShape: a mask [B, T, S] for multi-head scores [B, H, T, S]', () => {
  it('applies to every head: its first axis is the batch, not the heads', () => {
    const mask = tf.ones([2, 4, 5]);  // B = 2, H = 3: [2, 4, 5] must be read as [B, T, S]
    expect(() => checkMaskShape(mask, [2, 3, 4, 5], 'mask')).not.toThrow();
    mask.dispose();
  });

  it('is refused when its first axis matches the heads but not the batch', () => {
    const mask = tf.ones([3, 4, 5]);  // 3 = H, but B = 2
    expectThrowsWithoutLeak(() => checkMaskShape(mask, [2, 3, 4, 5], 'mask'), /axis 0 has 3, expected 2 or 1/);
    mask.dispose();
  });
});

describe('checkPaddingMask', () => {
  it('refuses a value that is not a tensor, naming the argument and the shape expected', () => {
    expect(() => checkPaddingMask('keyPaddingMask', [[1, 0]] as never, 1, 2, 'S')).toThrow(ValueError);
    expect(() => checkPaddingMask('keyPaddingMask', [[1, 0]] as never, 1, 2, 'S'))
        .toThrow(/argument `keyPaddingMask`, expected a tensor \[B, S\]/);
  });

  it('accepts int32, float32 and bool masks of shape [B, length] and returns them', () => {
    for (const dtype of ['int32', 'float32', 'bool'] as const) {
      const mask = tf.tensor2d([[1, 0, 1]], [1, 3], dtype);
      expect(checkPaddingMask('keyPaddingMask', mask, 1, 3, 'S')).toBe(mask);
      mask.dispose();
    }
  });

  it('refuses a mask of rank 3 even when its first two axes are [B, length]', () => {
    const mask = tf.ones([1, 3, 1]);
    expectThrowsWithoutLeak(() => checkPaddingMask('keyPaddingMask', mask, 1, 3, 'S'),
                            /argument `keyPaddingMask`, expected shape \[B, S\].*Received: keyPaddingMask\.shape=/);
    mask.dispose();
  });
});

describe('paddingMask: pairs where neither side is padding, [B, T, S]', () => {
  it('is null without padding masks', () => {
    expect(paddingMask(null, null, 2, 3)).toBeNull();
  });

  it('with a query mask only: whole rows masked', () => {
    const queryMask = tf.tensor2d([[1, 0]]);  // B = 1, T = 2; S = 3
    expectMask(() => paddingMask(queryMask, null, 2, 3), [1, 2, 3], [1, 1, 1, 0, 0, 0]);
    queryMask.dispose();
  });

  it('with a key mask only: whole columns masked', () => {
    const keyMask = tf.tensor2d([[1, 0, 1]]);  // B = 1, S = 3; T = 2
    expectMask(() => paddingMask(null, keyMask, 2, 3), [1, 2, 3], [1, 0, 1, 1, 0, 1]);
    keyMask.dispose();
  });
});

describe('attendedQueries: 1 for queries that attend at least one key, [B, T, 1]', () => {
  it('is null without padding masks', () => {
    expect(attendedQueries(null, null, 3, false)).toBeNull();
    expect(attendedQueries(null, null, 3, true)).toBeNull();
  });

  it('with a query mask only: the query mask itself', () => {
    const queryMask = tf.tensor2d([[1, 0, 1]]);
    expectMask(() => attendedQueries(queryMask, null, 3, false), [1, 3, 1], [1, 0, 1]);
    queryMask.dispose();
  });

  it('with a key mask only, not causal: per batch, whether any key is real ([B, 1, 1])', () => {
    const keyMask = tf.tensor2d([[0, 0], [1, 0]]);  // batch 0 has no real key, batch 1 has key 0
    expectMask(() => attendedQueries(null, keyMask, 3, false), [2, 1, 1], [0, 1]);
    keyMask.dispose();
  });

  it('causal, with more queries than keys: query t sees keys s <= min(t, S - 1)', () => {
    // S = 2, key 0 is padding: query 0 sees only key 0 (none real); queries 1, 2, 3 see key 1.
    const keyMask = tf.tensor2d([[0, 1]]);
    expectMask(() => attendedQueries(null, keyMask, 4, true), [1, 4, 1], [0, 1, 1, 1]);
    keyMask.dispose();
  });

  it('causal, with both masks: the product of the two', () => {
    const queryMask = tf.tensor2d([[1, 1, 0]]);
    const keyMask = tf.tensor2d([[0, 1, 1]]);  // query 0 sees key 0 only (padding): 0; query 2 is padding: 0
    expectMask(() => attendedQueries(queryMask, keyMask, 3, true), [1, 3, 1], [0, 1, 0]);
    tf.dispose([queryMask, keyMask]);
  });
});
