/**
 * Gradients (acceptance 2): the gradients of the layer with respect to its inputs and to
 * every weight, and those of the op with respect to q, k and v, match central finite
 * differences of the same float32 forward pass. The loss is sum(output * R) with a fixed
 * random R, so that no gradient is zero by symmetry.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {dotProductAttention, scaledDotProductAttention} from '../src';
import type {ScaledDotProductAttention, ScaledDotProductAttentionArgs} from '../src';
import {withNative} from './helpers/native';
import {disposeAll, expectAllFinite, expectClose, filled, flatten, Nested, randomArray, runTestsOn} from './helpers/tensors';

/**
 * Step of the central differences, and the tolerance |analytic - numeric| <= abs + rel·|numeric|.
 * Measured on 2026-11-30: |analytic - numeric| at most 1.4e-5 on cpu and 2.7e-5 on tensorflow over
 * every case, while the smallest gradient that is not zero by construction peaks at 0.04 (bk, which the
 * softmax ignores, is checked to be about 0 below). So about 10× the measured difference: a 1% error in
 * the smallest gradient fails.
 */
const EPS = 1e-2;
const TOL = {abs: 2e-4, rel: 2e-4};

/**
 * cpu, wasm (where the cases without an explicit mask take the fused backward), and tensorflow
 * (tfjs-node) when it loads, with the same tolerance; its absence is a skipped test.
 */
const BACKENDS = withNative(['cpu', 'wasm']);

/**
 * Central differences of `loss` with respect to every element of `x`: each element is moved
 * by ±EPS (as float32) and `loss` is evaluated on the moved copy. Returns a nested array
 * shaped like x.
 */
function numericGradient(x: tf.Tensor, loss: (moved: tf.Tensor) => number): Nested {
  const values = Float32Array.from(x.dataSync() as Float32Array);
  const grad = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) {
    const original = values[i];
    values[i] = original + EPS;
    const up = values[i];
    const lossUp = evaluate(values, x.shape, loss);
    values[i] = original - EPS;
    const down = values[i];
    const lossDown = evaluate(values, x.shape, loss);
    values[i] = original;
    grad[i] = (lossUp - lossDown) / (up - down);
  }
  return filled(x.shape, (i) => grad[i]);
}

function evaluate(values: Float32Array, shape: number[], loss: (moved: tf.Tensor) => number): number {
  const moved = tf.tensor(values, shape, 'float32');
  const value = loss(moved);
  moved.dispose();
  return value;
}

/** max |x| over a nested array or tensor, to show that a gradient is not trivially zero. */
function maxAbs(x: tf.Tensor|Nested): number {
  const values = x instanceof tf.Tensor ? Array.from(x.dataSync()) : flatten(x);
  return values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

interface LayerCase {
  name: string;
  args: ScaledDotProductAttentionArgs;
  queryShape: [number, number, number];
  /** Context shape for cross-attention; absent for self-attention. */
  contextShape?: [number, number, number];
  /** [B, T, S] 0/1 attention mask. */
  attentionMask?: number[][][];
  /** [b, t] query rows whose keys are all masked. */
  fullyMaskedRows?: Array<[number, number]>;
}

const LAYER_CASES: LayerCase[] = [
  {
    name: 'multi-head self-attention with biases and an output projection',
    args: {numHeads: 2, keyDim: 2, valueDim: 3, useBias: true, outputDim: 3},
    queryShape: [2, 3, 4],
  },
  {
    // Query 1 may only see keys 0 and 1 (causal) and the mask removes both: fully masked.
    name: 'causal + explicit mask with a fully masked row',
    args: {numHeads: 1, keyDim: 2, valueDim: 2, useBias: true, causal: true},
    queryShape: [1, 4, 3],
    contextShape: [1, 4, 3],
    attentionMask: [[[1, 1, 1, 1], [0, 0, 1, 1], [1, 0, 1, 1], [0, 1, 1, 0]]],
    fullyMaskedRows: [[0, 1]],
  },
  {
    name: 'cross-attention with S != T and dq != dc',
    args: {numHeads: 2, keyDim: 2, valueDim: 2, useBias: true, outputDim: 3},
    queryShape: [2, 2, 3],
    contextShape: [2, 4, 5],
  },
];

/** Sets every weight of a built layer to seeded uniform values in [-0.8, 0.8). */
function randomizeWeights(layer: ScaledDotProductAttention, seed: number): void {
  const values = layer.getWeights().map((w, i) => tf.tensor(randomArray(w.shape, seed + i, 0.8) as number[], w.shape));
  layer.setWeights(values);
  tf.dispose(values);
}

describe.each(BACKENDS)('on %s', (backend) => {
  runTestsOn(backend);
  describe.each(LAYER_CASES.map((c) => [c.name, c] as const))('layer gradients: %s', (_, c) => {
    let layer: ScaledDotProductAttention;
    let query: tf.Tensor;
    let context: tf.Tensor|null;
    let mask: tf.Tensor|null;
    let readout: tf.Tensor;  // R, shaped like the output
    let baseline: number;

    const inputsOf = (q: tf.Tensor, ctx: tf.Tensor|null) => (ctx == null ? q : [q, ctx]);
    const forward = (q: tf.Tensor, ctx: tf.Tensor|null) =>
      tf.sum(tf.mul(layer.apply(inputsOf(q, ctx), mask == null ? {} : {attentionMask: mask}) as tf.Tensor, readout));
    const lossValue = (q: tf.Tensor, ctx: tf.Tensor|null) => tf.tidy(() => forward(q, ctx).dataSync()[0]);

    beforeEach(() => {  // in each test, not once: so that mutation testing sees which tests run the layer
      baseline = tf.memory().numTensors;
      layer = scaledDotProductAttention(c.args);
      query = tf.tensor(randomArray(c.queryShape, 11) as number[][][]);
      context = c.contextShape == null ? null : tf.tensor(randomArray(c.contextShape, 12) as number[][][]);
      mask = c.attentionMask == null ? null : tf.tensor3d(c.attentionMask);
      const output = layer.apply(inputsOf(query, context)) as tf.Tensor;  // builds the weights
      readout = tf.tensor(randomArray(output.shape, 13) as number[], output.shape);
      output.dispose();
      randomizeWeights(layer, 100);
    });

    afterEach(() => {
      disposeAll(query, context, mask, readout);
      layer.dispose();
      expect(tf.memory().numTensors).toBe(baseline);
    });

    it('gradients with respect to the inputs match central differences', () => {
      const before = tf.memory().numTensors;
      const inputs = context == null ? [query] : [query, context];
      const grads = tf.grads((...xs: tf.Tensor[]) => forward(xs[0], xs[1] ?? null))(inputs);
      expectAllFinite(grads[0]);
      const numericQuery = numericGradient(query, (q) => lossValue(q, context));
      expectClose(grads[0], numericQuery, TOL);
      expect(maxAbs(grads[0])).toBeGreaterThan(1e-2);
      if (context != null) {
        expectAllFinite(grads[1]);
        const numericContext = numericGradient(context, (ctx) => lossValue(query, ctx));
        expectClose(grads[1], numericContext, TOL);
        expect(maxAbs(grads[1])).toBeGreaterThan(1e-2);
      }
      tf.dispose(grads);
      expect(tf.memory().numTensors).toBe(before);
    });

    it('gradients with respect to every weight match central differences', () => {
      const before = tf.memory().numTensors;
      const variables = layer.trainableWeights.map((w) => w.read() as tf.Variable);
      const {value, grads} = tf.variableGrads(() => forward(query, context) as tf.Scalar, variables);
      value.dispose();
      const names = layer.trainableWeights.map((w) => w.name.split('/').pop());
      const expectedNames = ['wq', 'wk', 'wv'];
      if (c.args.useBias) expectedNames.push('bq', 'bk', 'bv');
      if (c.args.outputDim != null) expectedNames.push('wo', ...(c.args.useBias ? ['bo'] : []));
      expect(names).toEqual(expectedNames);
      layer.trainableWeights.forEach((weight, i) => {
        const analytic = grads[variables[i].name];
        expectAllFinite(analytic);
        const original = weight.read().clone();
        const numeric = numericGradient(original, (moved) => {
          weight.write(moved);
          return lossValue(query, context);
        });
        weight.write(original);
        original.dispose();
        try {
          expectClose(analytic, numeric, TOL);
        } catch (e) {
          throw new Error(`gradient of ${names[i]}: ${(e as Error).message}`);
        }
        if (names[i] === 'bk') {
          // q·(k + bk) = q·k + q·bk adds the same amount to every key of a query row, and the
          // softmax ignores that: bk never changes the output.
          expect(maxAbs(analytic)).toBeLessThan(1e-5);
        } else {
          expect(maxAbs(analytic)).toBeGreaterThan(1e-3);
        }
      });
      tf.dispose(grads);
      expect(tf.memory().numTensors).toBe(before);
    });

    if (c.fullyMaskedRows != null) {
      it('a query row whose keys are all masked gets exactly zero gradient, and every gradient is finite', () => {
        const before = tf.memory().numTensors;
        const grads = tf.grads((q: tf.Tensor, ctx: tf.Tensor) => forward(q, ctx))([query, context!]);
        grads.forEach(expectAllFinite);
        const gradQuery = grads[0].arraySync() as number[][][];
        for (const [b, t] of c.fullyMaskedRows!) {
          expect(gradQuery[b][t]).toEqual(gradQuery[b][t].map(() => 0));
        }
        // ... while the other rows do get a gradient.
        expect(maxAbs(grads[0])).toBeGreaterThan(1e-2);
        const variables = layer.trainableWeights.map((w) => w.read() as tf.Variable);
        const {value, grads: weightGrads} = tf.variableGrads(() => forward(query, context) as tf.Scalar, variables);
        Object.values(weightGrads).forEach(expectAllFinite);
        disposeAll(grads, value, weightGrads);
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  });
});

interface OpCase {
  name: string;
  /** Leading shape: [B] (rank 3) or [B, H] (rank 4). */
  lead: number[];
  T: number;
  S: number;
  dk: number;
  dv: number;
  causal?: boolean;
  scale?: number;
  /** Broadcastable 0/1 mask. */
  mask?: Nested;
  fullyMaskedRows?: number[][];  // full index of the row: [...lead, t]
}

const OP_CASES: OpCase[] = [
  {name: 'rank 3, no mask', lead: [2], T: 3, S: 4, dk: 2, dv: 3},
  {name: 'rank 4, custom scale', lead: [1, 2], T: 3, S: 3, dk: 3, dv: 2, scale: 0.8},
  {
    name: 'rank 4, causal and a [T, S] mask with a fully masked row',
    lead: [1, 2], T: 3, S: 4, dk: 2, dv: 2, causal: true,
    mask: [[1, 1, 1, 1], [0, 0, 1, 1], [1, 1, 0, 1]],  // row 1: keys 0, 1 masked, keys 2, 3 causal
    fullyMaskedRows: [[0, 0, 1], [0, 1, 1]],
  },
];

describe.each(BACKENDS)('on %s', (backend) => {
  runTestsOn(backend);
  describe.each(OP_CASES.map((c) => [c.name, c] as const))('dotProductAttention gradients: %s', (_, c) => {
    it('gradients with respect to q, k and v match central differences', () => {
      const before = tf.memory().numTensors;
      const q = tf.tensor(randomArray([...c.lead, c.T, c.dk], 21) as number[], [...c.lead, c.T, c.dk]);
      const k = tf.tensor(randomArray([...c.lead, c.S, c.dk], 22) as number[], [...c.lead, c.S, c.dk]);
      const v = tf.tensor(randomArray([...c.lead, c.S, c.dv], 23) as number[], [...c.lead, c.S, c.dv]);
      const mask = c.mask == null ? null : tf.tensor(c.mask as number[]);
      const readout = tf.tensor(randomArray([...c.lead, c.T, c.dv], 24, 2) as number[], [...c.lead, c.T, c.dv]);
      const options = {mask, causal: c.causal, scale: c.scale};
      const forward = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
        tf.sum(tf.mul(dotProductAttention(qq, kk, vv, options), readout));
      const lossValue = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) => tf.tidy(() => forward(qq, kk, vv).dataSync()[0]);

      const [gq, gk, gv] = tf.grads(forward)([q, k, v]);
      [gq, gk, gv].forEach(expectAllFinite);
      expectClose(gq, numericGradient(q, (moved) => lossValue(moved, k, v)), TOL);
      expectClose(gk, numericGradient(k, (moved) => lossValue(q, moved, v)), TOL);
      expectClose(gv, numericGradient(v, (moved) => lossValue(q, k, moved)), TOL);
      for (const g of [gq, gk, gv]) expect(maxAbs(g)).toBeGreaterThan(1e-2);
      if (c.fullyMaskedRows != null) {
        const rows = gq.arraySync() as Nested;
        for (const index of c.fullyMaskedRows) {
          const row = index.reduce((x: Nested, i) => (x as Nested[])[i], rows) as number[];
          expect(row).toEqual(row.map(() => 0));
        }
      }
      disposeAll(q, k, v, mask, readout, gq, gk, gv);
      expect(tf.memory().numTensors).toBe(before);
    });
  });
});
