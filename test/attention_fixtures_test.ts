/**
 * Numerical correctness against PyTorch (acceptance 1) and cpu/wasm agreement (acceptance 3).
 *
 * test/fixtures/attention_fixtures.json holds, per case, float32 inputs and weights and the
 * float64 results of scripts/fixtures/make_attention_fixtures.py (explicit torch ops,
 * cross-checked there against torch.nn.MultiheadAttention): Q, K, V before the head split
 * [B, T|S, H*d], scores, scaled scores and weights [B, H, T, S], and the output [B, T, out].
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {dotProductAttention, scaledDotProductAttention, traceAttention} from '../src';
import type {ScaledDotProductAttention, ScaledDotProductAttentionArgs} from '../src';
import {headColumns, matmul, referenceAttention, splitHeads, Tensor3, Tensor4} from './helpers/reference_attention';
import type {ReferenceWeights} from './helpers/reference_attention';
import {disposeAll, expectAllFinite, expectClose, flatten, maxAbsDiff, Tolerance} from './helpers/tensors';
import {withNative} from './helpers/native';

interface FixtureCase {
  name: string;
  config: {
    numHeads: number; keyDim: number; valueDim: number; useBias: boolean;
    outputDim: number|null; causal: boolean; scale: number|null;
  };
  query: Tensor3;
  context: Tensor3|null;
  attentionMask: Tensor3|null;
  weights: {[name: string]: number[]|number[][]};
  expected: {query: Tensor3; key: Tensor3; value: Tensor3; scores: Tensor4; scaled: Tensor4; weights: Tensor4; output: Tensor3};
}

const FIXTURES: {generatedBy: string; cases: FixtureCase[]} =
    JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'attention_fixtures.json'), 'utf8'));
const CASES = FIXTURES.cases;
const CASE_TABLE = CASES.map((c) => [c.name, c] as const);

/** The documented setWeights order; a case holds the subset its configuration creates. */
const WEIGHT_ORDER = ['wq', 'wk', 'wv', 'bq', 'bk', 'bv', 'wo', 'bo'];
/** cpu and wasm, and tensorflow (tfjs-node) when it loads; its absence is reported as a skipped test. */
const BACKENDS = withNative(['cpu', 'wasm'] as const);

/**
 * 1e-5 absolute; the case with inputs ~1e3 (outputs ~1e3, scores ~1e6) is compared relative
 * to the expected magnitude, 1e-5 * max(1, |expected|), since float32 has ~7 digits.
 */
function toleranceFor(c: FixtureCase): Tolerance {
  const large = Math.max(...flatten(c.query).map(Math.abs)) > 100;
  return large ? {abs: 1e-5, rel: 1e-5} : 1e-5;
}

function layerArgs(c: FixtureCase): ScaledDotProductAttentionArgs {
  const {numHeads, keyDim, valueDim, useBias, outputDim, causal, scale} = c.config;
  return {numHeads, keyDim, valueDim, useBias, outputDim, causal, scale};
}

/** Input tensors of a case: x, or [query, context]; and the attention mask, if any. */
function inputsOf(c: FixtureCase): {inputs: tf.Tensor|tf.Tensor[]; mask: tf.Tensor|null} {
  const query = tf.tensor3d(c.query);
  const inputs = c.context == null ? query : [query, tf.tensor3d(c.context)];
  return {inputs, mask: c.attentionMask == null ? null : tf.tensor3d(c.attentionMask)};
}

/** A layer with the case's configuration, built by a first call, holding the case's weights. */
function layerFor(c: FixtureCase, inputs: tf.Tensor|tf.Tensor[], extra: ScaledDotProductAttentionArgs = {}):
    ScaledDotProductAttention {
  const layer = scaledDotProductAttention({...layerArgs(c), ...extra});
  tf.dispose(layer.apply(inputs) as tf.Tensor|tf.Tensor[]);
  const names = WEIGHT_ORDER.filter((name) => c.weights[name] != null);
  expect(layer.weights.map((w) => w.name.split('/').pop())).toEqual(names);
  const values = names.map((name) => tf.tensor(c.weights[name]));
  layer.setWeights(values);
  tf.dispose(values);
  return layer;
}

function callOptions(mask: tf.Tensor|null): {attentionMask?: tf.Tensor} {
  return mask == null ? {} : {attentionMask: mask};
}

/** The case's per-head A·V [B, H, T, dv], from the fixture's weights and V, by plain loops. */
function expectedPerHeadOutput(c: FixtureCase): Tensor4 {
  const value = splitHeads(c.expected.value, c.config.numHeads);  // [B, H, S, dv]
  return c.expected.weights.map((heads, b) => heads.map((w, h) => matmul(w, value[b][h])));
}

/** Runs the case through the layer (with the attention weights) and returns both as arrays. */
function runLayer(c: FixtureCase): {output: Tensor3; weights: Tensor4} {
  const before = tf.memory().numTensors;
  const {inputs, mask} = inputsOf(c);
  const layer = layerFor(c, inputs, {returnAttentionScores: true});
  const [output, weights] = layer.apply(inputs, callOptions(mask)) as tf.Tensor[];
  const result = {output: output.arraySync() as Tensor3, weights: weights.arraySync() as Tensor4};
  disposeAll(inputs, mask, output, weights);
  layer.dispose();
  expect(tf.memory().numTensors).toBe(before);
  return result;
}

describe('the plain-JS reference (test/helpers/reference_attention.ts)', () => {
  it.each(CASE_TABLE)('%s: reproduces the PyTorch fixture to 1e-9', (_, c) => {
    const ref = referenceAttention(c.query, c.context, c.weights as unknown as ReferenceWeights, {
      numHeads: c.config.numHeads, causal: c.config.causal, scale: c.config.scale, attentionMask: c.attentionMask,
    });
    for (const key of ['query', 'key', 'value', 'scores', 'scaled', 'weights', 'output'] as const) {
      expect(maxAbsDiff(ref[key], c.expected[key]).diff).toBeLessThan(1e-9 * Math.max(1, ...flatten(c.expected[key]).map(Math.abs)));
    }
  });
});

describe('the fixtures', () => {
  it('cover every case that acceptance 1 names', () => {
    const names = CASES.map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining([
      'single_head_kd_ne_vd', 'multi_head_bias_output', 'causal', 'explicit_mask', 'fully_masked_row',
      'cross_attention', 'custom_scale', 'large_inputs', 'key_dim_over_keys', 'one_key',
    ]));
    // keyDim > S takes the standard path's other scaling branch (the [T, S] scores, not Q).
    const wide = CASES.find((c) => c.name === 'key_dim_over_keys')!;
    expect(wide.config.keyDim).toBeGreaterThan(wide.context![0].length);
    expect(CASES.find((c) => c.name === 'one_key')!.context![0].length).toBe(1);  // S = 1
    const cross = CASES.find((c) => c.name === 'cross_attention')!;
    expect(cross.context![0].length).not.toBe(cross.query[0].length);        // S != T
    expect(cross.context![0][0].length).not.toBe(cross.query[0][0].length);  // dc != dq
    const fully = CASES.find((c) => c.name === 'fully_masked_row')!;
    expect(fully.attentionMask!.some((rows) => rows.some((row) => row.every((m) => m === 0)))).toBe(true);
  });
});

describe.each(BACKENDS)('on the %s backend', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
    expect(tf.getBackend()).toBe(backend);
  });

  it.each(CASE_TABLE)('%s: the layer output matches PyTorch', (_, c) => {
    const before = tf.memory().numTensors;
    const {inputs, mask} = inputsOf(c);
    const layer = layerFor(c, inputs);
    const output = layer.apply(inputs, callOptions(mask)) as tf.Tensor;
    expectAllFinite(output);
    expectClose(output, c.expected.output, toleranceFor(c));
    disposeAll(inputs, mask, output);
    layer.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it.each(CASE_TABLE)('%s: with returnAttentionScores, the output and the weights [B, H, T, S] match PyTorch', (_, c) => {
    const {output, weights} = runLayer(c);
    expectAllFinite(output);
    expectAllFinite(weights);
    expectClose(output, c.expected.output, toleranceFor(c));
    expectClose(weights, c.expected.weights, 1e-5);
  });

  it.each(CASE_TABLE)('%s: traceAttention gives PyTorch Q, K, V, scores, scaled, weights and per-head A·V', (_, c) => {
    const before = tf.memory().numTensors;
    const {inputs, mask} = inputsOf(c);
    const layer = layerFor(c, inputs);
    const trace = traceAttention(layer, inputs, callOptions(mask));
    const tol = toleranceFor(c);
    const h = c.config.numHeads;
    expectClose(trace.query, splitHeads(c.expected.query, h), tol);   // [B, H, T, dk]
    expectClose(trace.key, splitHeads(c.expected.key, h), tol);       // [B, H, S, dk]
    expectClose(trace.value, splitHeads(c.expected.value, h), tol);   // [B, H, S, dv]
    expectClose(trace.scores, c.expected.scores, tol);
    expectClose(trace.scaled, c.expected.scaled, tol);
    expectClose(trace.weights, c.expected.weights, 1e-5);
    expectClose(trace.output, expectedPerHeadOutput(c), tol);
    expect(trace.scaleFactor).toBeCloseTo(c.config.scale ?? 1 / Math.sqrt(c.config.keyDim), 12);
    tf.dispose(trace);
    disposeAll(inputs, mask);
    layer.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it.each(CASE_TABLE)('%s: dotProductAttention on rank-4 heads [B, H, T, d] of the fixture Q, K, V matches', (_, c) => {
    const h = c.config.numHeads;
    const before = tf.memory().numTensors;
    const q = tf.tensor4d(splitHeads(c.expected.query, h));
    const k = tf.tensor4d(splitHeads(c.expected.key, h));
    const v = tf.tensor4d(splitHeads(c.expected.value, h));
    const mask = c.attentionMask == null ? null : tf.tensor3d(c.attentionMask);  // [B, T, S]: every head
    const [output, weights] = dotProductAttention(q, k, v, {
      mask, causal: c.config.causal, scale: c.config.scale, returnWeights: true,
    });
    expectClose(output, expectedPerHeadOutput(c), toleranceFor(c));
    expectClose(weights, c.expected.weights, 1e-5);
    disposeAll(q, k, v, mask, output, weights);
    expect(tf.memory().numTensors).toBe(before);
  });

  it.each(CASE_TABLE)('%s: dotProductAttention on rank-3 [B, T, d], one head at a time, matches', (_, c) => {
    const {numHeads, keyDim, valueDim} = c.config;
    const perHead = expectedPerHeadOutput(c);
    const before = tf.memory().numTensors;
    const mask = c.attentionMask == null ? null : tf.tensor3d(c.attentionMask);
    for (let h = 0; h < numHeads; h++) {
      const q = tf.tensor3d(c.expected.query.map((m) => headColumns(m, h, keyDim)));
      const k = tf.tensor3d(c.expected.key.map((m) => headColumns(m, h, keyDim)));
      const v = tf.tensor3d(c.expected.value.map((m) => headColumns(m, h, valueDim)));
      const [output, weights] = dotProductAttention(q, k, v, {
        mask, causal: c.config.causal, scale: c.config.scale, returnWeights: true,
      });
      expectClose(output, perHead.map((heads) => heads[h]), toleranceFor(c));
      expectClose(weights, c.expected.weights.map((heads) => heads[h]), 1e-5);
      tf.dispose([q, k, v, output, weights]);
    }
    disposeAll(mask);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe(`${BACKENDS.slice(1).join(' and ')} agree with cpu (acceptance 3)`, () => {
  const diffs: Array<[string, number, number]> = [];

  afterAll(() => {
    // The measured agreement, for the record: case and backend, max |cpu - other| of output and of weights.
    const worst = diffs.reduce((m, [, o, w]) => Math.max(m, o, w), 0);
    console.log(`max abs diff from cpu per case:\n${diffs.map(([n, o, w]) =>
        `  ${n}: output ${o.toExponential(2)}, weights ${w.toExponential(2)}`).join('\n')}\n  overall: ${worst.toExponential(2)}`);
  });

  it.each(CASE_TABLE)('%s: outputs and weights differ by at most 1e-5 (relative for large inputs)', async (_, c) => {
    const results: Array<{output: Tensor3; weights: Tensor4}> = [];
    for (const backend of BACKENDS) {
      expect(await tf.setBackend(backend)).toBe(true);
      results.push(runLayer(c));
    }
    const [cpu, ...others] = results;
    others.forEach((other, i) => {
      expectClose(other.output, cpu.output, toleranceFor(c));
      expectClose(other.weights, cpu.weights, 1e-5);
      diffs.push([`${c.name} (${BACKENDS[i + 1]})`, maxAbsDiff(other.output, cpu.output).diff,
                  maxAbsDiff(other.weights, cpu.weights).diff]);
    });
  });
});
