/** Test helpers: comparing tensors with nested arrays, finding leaks, and small array utilities. */
import * as tf from '@tensorflow/tfjs';
import {seededRandom} from '../../scripts/app/random';

/** A number or an arbitrarily nested array of numbers (what `arraySync` returns). */
export type Nested = number|Nested[];

/** Tolerance: a number is an absolute tolerance; `rel` adds `rel * |expected|` per element. */
export type Tolerance = number|{abs: number; rel?: number};

/** The shape of a rectangular nested array; throws on ragged input. */
export function shapeOf(x: Nested): number[] {
  if (!Array.isArray(x)) return [];
  if (x.length === 0) return [0];
  const inner = shapeOf(x[0]);
  for (const item of x) {
    const s = shapeOf(item);
    if (s.length !== inner.length || s.some((d, i) => d !== inner[i])) throw new Error('ragged nested array');
  }
  return [x.length, ...inner];
}

/** Row-major values of a nested array. */
export function flatten(x: Nested): number[] {
  if (!Array.isArray(x)) return [x];
  const out: number[] = [];
  const walk = (v: Nested) => {
    if (Array.isArray(v)) v.forEach(walk);
    else out.push(v);
  };
  walk(x);
  return out;
}

/** The values and shape of a tensor or nested array, without disposing anything. */
export function valuesOf(x: tf.Tensor|Nested): {values: number[]; shape: number[]} {
  if (x instanceof tf.Tensor) return {values: Array.from(x.dataSync() as ArrayLike<number>), shape: x.shape.slice()};
  return {values: flatten(x), shape: shapeOf(x)};
}

/** Multi-index of flat position `i` in `shape`, e.g. [0, 1, 2]. */
export function unravel(i: number, shape: number[]): number[] {
  const index: number[] = [];
  for (let axis = shape.length - 1; axis >= 0; axis--) {
    index.unshift(i % shape[axis]);
    i = Math.floor(i / shape[axis]);
  }
  return index;
}

/** The largest |actual - expected| and where it is. Shapes must agree. */
export function maxAbsDiff(actual: tf.Tensor|Nested, expected: tf.Tensor|Nested): {diff: number; index: number[]} {
  const a = valuesOf(actual);
  const e = valuesOf(expected);
  if (a.shape.join() !== e.shape.join()) {
    throw new Error(`shape mismatch: actual [${a.shape.join(', ')}] vs expected [${e.shape.join(', ')}]`);
  }
  let diff = 0;
  let at = 0;
  for (let i = 0; i < e.values.length; i++) {
    const d = Math.abs(a.values[i] - e.values[i]);
    if (!(d <= diff)) {  // also catches NaN
      diff = d;
      at = i;
    }
  }
  return {diff, index: unravel(at, e.shape)};
}

/**
 * Asserts that `actual` has the shape of `expected` and that every element is within the
 * tolerance: |a - e| <= abs + rel * |e|. The failure message names the worst element, its
 * index, both values and the max abs difference. NaN never passes. Returns the max abs diff.
 */
export function expectClose(actual: tf.Tensor|Nested, expected: tf.Tensor|Nested, tol: Tolerance = 1e-5): number {
  const {abs, rel = 0} = typeof tol === 'number' ? {abs: tol} : tol;
  const a = valuesOf(actual);
  const e = valuesOf(expected);
  if (a.shape.join() !== e.shape.join()) {
    throw new Error(`expectClose: shape mismatch: actual [${a.shape.join(', ')}] vs expected [${e.shape.join(', ')}]`);
  }
  let worst = -1;
  let worstExcess = 0;
  let maxDiff = 0;
  for (let i = 0; i < e.values.length; i++) {
    const d = Math.abs(a.values[i] - e.values[i]);
    const allowed = abs + rel * Math.abs(e.values[i]);
    if (!(d <= maxDiff)) maxDiff = d;
    const excess = Number.isNaN(d) ? Infinity : d - allowed;
    if (excess > 0 && (worst < 0 || excess > worstExcess)) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
        `expectClose: max abs diff ${maxDiff} exceeds tolerance (abs ${abs}, rel ${rel}); worst at ` +
        `[${unravel(worst, e.shape).join(', ')}]: actual ${a.values[worst]}, expected ${e.values[worst]}`);
  }
  return maxDiff;
}

/** 'NaN', '+Inf', '-Inf' or 'finite'. */
export function kindOf(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return '+Inf';
  if (x === -Infinity) return '-Inf';
  return 'finite';
}

/**
 * Asserts that `actual` has NaN, +∞ and -∞ exactly where `expected` has them, and its finite
 * values within `tol` of the expected ones.
 */
export function expectIeee(actual: tf.Tensor|Nested, expected: tf.Tensor|Nested, tol = 1e-5): void {
  const a = valuesOf(actual);
  const e = valuesOf(expected);
  expect(a.shape).toEqual(e.shape);
  const wrong = e.values.flatMap((x, i) => (kindOf(x) === kindOf(a.values[i]) ? [] :
      [`[${unravel(i, e.shape).join(', ')}]: expected ${kindOf(x)} ${x}, got ${a.values[i]}`]));
  expect(wrong.slice(0, 10)).toEqual([]);
  const finite = (values: number[]) => values.map(x => (Number.isFinite(x) ? x : 0));
  expectClose(finite(a.values), finite(e.values), {abs: tol, rel: tol});
}

/** Asserts that every element is finite. */
export function expectAllFinite(x: tf.Tensor|Nested): void {
  const {values, shape} = valuesOf(x);
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new Error(`expected all finite; ${values[bad]} at [${unravel(bad, shape).join(', ')}]`);
}

/** Runs `fn` and asserts that it leaves `tf.memory().numTensors` where it found it. */
export function expectNoLeak<T>(fn: () => T): T {
  const before = tf.memory().numTensors;
  const result = fn();
  expect(tf.memory().numTensors).toBe(before);
  return result;
}

/** Asserts that `fn` throws an error matching `pattern` and that it leaks no tensor. */
export function expectThrowsWithoutLeak(fn: () => unknown, pattern: RegExp): void {
  const before = tf.memory().numTensors;
  expect(fn).toThrow(pattern);
  expect(tf.memory().numTensors).toBe(before);
}

/** Escapes a string for a RegExp that matches it literally. */
export function escapeRegExp(text: string): RegExp {
  return new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
}

// The same generator as training's shuffles; here it only makes test inputs.
export {seededRandom};

/** A nested array of the given shape filled by `fill(flatIndex)`. */
export function filled(shape: number[], fill: (i: number) => number): Nested {
  let counter = 0;
  const build = (axis: number): Nested => {
    if (axis === shape.length) return fill(counter++);
    return Array.from({length: shape[axis]}, () => build(axis + 1));
  };
  return build(0);
}

/** A nested array of the given shape with uniform values in [-range, range) from `seed`. */
export function randomArray(shape: number[], seed: number, range = 1): Nested {
  const rand = seededRandom(seed);
  return filled(shape, () => (2 * rand() - 1) * range);
}

/** Disposes every tensor in the arguments; nulls and non-tensor values are skipped. */
export function disposeAll(...items: unknown[]): void {
  tf.dispose(items.filter((x) => x != null) as tf.TensorContainer[]);
}

/** Makes every test of the file run on `backend` (beforeAll), and restores the one before (afterAll). */
export function runTestsOn(backend: string): void {
  let saved: string;
  beforeAll(async () => {
    saved = tf.getBackend();
    expect(await tf.setBackend(backend)).toBe(true);
    await tf.ready();
  });
  afterAll(async () => {
    await tf.setBackend(saved);
  });
}

/** Runs `fn` with `backend` active, then restores the backend that was active before, even if `fn` throws. */
export async function onBackend<T>(backend: string, fn: () => T|Promise<T>): Promise<T> {
  const previous = tf.getBackend();
  expect(await tf.setBackend(backend)).toBe(true);
  try {
    return await fn();
  } finally {
    await tf.setBackend(previous);
  }
}

