/**
 * The fused backward on wasm (attend_backward_4x8, src/backend/wasm_fused_attention_backward.ts):
 * when a gradient is recorded, the op and the layer take it (the planner's 'fused' path with its
 * 'gradient' kernel), and its gradients of sum(output ∘ R) match a plain-array float64 backward
 * (test/helpers/reference_attention.ts' weights, dV = Pᵀ·dO, dS = P ∘ (dO·Vᵀ - rowsum(dO ∘ O)),
 * dQ = scale·dS·K, dK = scale·dSᵀ·Q) and the standard path's, within 1e-4: at the edges of its
 * tiles (4 queries) and blocks (8-key panels, 256-key backward blocks, the forward's 256-key
 * blocks), with S ≠ T, one query, one key, every mask kind it takes and fully masked rows. It
 * leaks neither tensors nor wasm heap over 200 training steps. Explicit masks of every shape the
 * op takes run there too (and in the fused inference kernel), as a bias at their own size.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {dotProductAttention, scaledDotProductAttention} from '../src/node';
import {planAttention} from '../src/attention/attention_plan';
import * as training from '../src/backend/wasm_fused_attention_backward';
import * as layerTraining from '../src/backend/wasm_fused_layer_training';
import * as fusedForward from '../src/backend/wasm_fused_attention';
import {backwardParts, FUSED_BACKWARD_KEY_BLOCK, fusedTrainingBytes, fusedTrainingSizesFit} from '../src/backend/wasm_fused_attention_backward';
import {FUSED_KEY_BLOCK, FUSED_MAX_BYTES, fusedThreadsOfLastCall} from '../src/backend/wasm_fused_attention';
import * as threadsModule from '../src/backend/attention_threads';
import {getSecondThread, setAttentionThreads} from '../src/backend/attention_threads';
import {attendOneHead, Matrix, matmul, transpose} from './helpers/reference_attention';
import {disposeAll, expectClose, expectThrowsWithoutLeak, Nested, randomArray, runTestsOn} from './helpers/tensors';
import {expectTrainingLeaksNothing, watchHeapBlocks} from './helpers/heap_blocks';
import {runCommand} from './helpers/run_script';

runTestsOn('wasm');

/** What the tests read of tfjs-backend-wasm's backend object. */
interface WasmBackendView {
  wasm: {HEAPU8: Uint8Array; _malloc(bytes: number): number; _free(address: number): void};
}

/** A plain-array float64 backward of one pair: the output and dQ, dK, dV of sum(output ∘ dOut). */
function referencePair(q: Matrix, k: Matrix, v: Matrix, dOut: Matrix, allowed: boolean[][], scale: number):
    {output: Matrix; dq: Matrix; dk: Matrix; dv: Matrix} {
  const {weights: p, output} = attendOneHead(q, k, v, allowed, scale);
  const dv = matmul(transpose(p), dOut);
  const dp = matmul(dOut, transpose(v));
  const rowTerm = output.map((row, t) => row.reduce((s, x, c) => s + x * dOut[t][c], 0));
  const ds = p.map((row, t) => row.map((x, s) => x * (dp[t][s] - rowTerm[t])));
  const dq = matmul(ds, k).map(row => row.map(x => x * scale));
  const dk = matmul(transpose(ds), q).map(row => row.map(x => x * scale));
  return {output, dq, dk, dv};
}

/** Masks of a case: causal, and key and query padding patterns over [B, S] and [B, T] (1 = real). */
interface Masks {
  causal?: boolean;
  keyPadding?: (b: number, s: number) => boolean;
  queryPadding?: (b: number, t: number) => boolean;
}

const MASKS: Array<[string, Masks]> = [
  ['no mask', {}],
  ['causal', {causal: true}],
  ['key padding', {keyPadding: (b, s) => (s * 7 + b) % 5 !== 4}],
  ['query padding', {queryPadding: (b, t) => (t + b) % 3 !== 2}],
  ['causal, key and query padding', {causal: true, keyPadding: (b, s) => (s + 2 * b) % 4 !== 1, queryPadding: (b, t) => t % 5 !== 3}],
];

/** [what, leading dims ([B] or [B, H]), T, S, dk, dv] */
const SIZES: Array<[string, number[], number, number, number, number]> = [
  ['one query, one key', [2], 1, 1, 3, 2],
  ['one query, 9 keys', [2, 1], 1, 9, 4, 4],
  ['T = 5, S = 3: one tile and a bit, part of a panel', [1, 2], 5, 3, 3, 5],
  ['T = 7, S = 33: past four panels of keys', [2], 7, 33, 16, 8],
  ['T = 33, S = 70, d = 64: rows used in place', [1, 2], 33, 70, 64, 64],
  ['T = S = 64, dk = dv = 16: no padding anywhere', [2, 2], 64, 64, 16, 16],
  ['T = 13, S = 300: past the forward\'s and the backward\'s block of 256 keys', [1], 13, 300, 8, 12],
  ['T = 261, S = 263: queries past a block too (the causal diagonal in the second)', [1], 261, 263, 8, 4],
];

const CASES = SIZES.flatMap(([size, lead, T, S, dk, dv]) =>
  MASKS.map(([mask, masks]) => [`${size}, ${mask}`, lead, T, S, dk, dv, masks] as const));

/** The leading index [b] or [b, h] of pair n. */
function leadOf(lead: number[], n: number): number[] {
  return lead.length === 1 ? [n] : [Math.floor(n / lead[1]), n % lead[1]];
}

/**
 * The plain-array forward and backward (referencePair) of every (batch, head) pair of q, k, v
 * [...lead, T|S, d] with the readout r, where query t of batch b and head h (0 for rank-3
 * inputs) may attend key s when `allowed(b, h, t, s)`; each shaped [...lead, T, d] like the tensors.
 */
function referenceOf(tensors: tf.Tensor[], lead: number[], allowed: (b: number, h: number, t: number, s: number) => boolean,
                     scale: number): {output: Nested; dq: Nested; dk: Nested; dv: Nested} {
  const [qa, ka, va, ra] = tensors.map(x => x.arraySync() as Nested);
  const [T, S] = [tensors[0].shape[lead.length], tensors[1].shape[lead.length]];
  const pairs = lead.reduce((a, b) => a * b, 1);
  const at = (x: Nested, index: number[]) => index.reduce((y, i) => (y as Nested[])[i], x) as Matrix;
  const expected = {output: [] as Matrix[], dq: [] as Matrix[], dk: [] as Matrix[], dv: [] as Matrix[]};
  for (let n = 0; n < pairs; n++) {
    const index = leadOf(lead, n);
    const [b, h] = [index[0], index[1] ?? 0];
    const pairAllowed = Array.from({length: T}, (__, t) => Array.from({length: S}, (___, s) => allowed(b, h, t, s)));
    const ref = referencePair(at(qa, index), at(ka, index), at(va, index), at(ra, index), pairAllowed, scale);
    for (const key of ['output', 'dq', 'dk', 'dv'] as const) expected[key].push(ref[key]);
  }
  const shaped = (ms: Matrix[]) => (lead.length === 1 ? ms :
      Array.from({length: lead[0]}, (__, b) => ms.slice(b * lead[1], (b + 1) * lead[1]))) as Nested;
  return {output: shaped(expected.output), dq: shaped(expected.dq), dk: shaped(expected.dk), dv: shaped(expected.dv)};
}

/** Runs `fn` and says whether `spy` (made for it, restored after) was called in it. */
function ranWith<R>(spy: jest.SpyInstance, fn: () => R): {result: R; ran: boolean} {
  try {
    const result = fn();
    return {result, ran: spy.mock.calls.length > 0};
  } finally {
    spy.mockRestore();
  }
}

/** Runs `fn` and says whether the fused training path ran in it: the attention's (`fusedAttentionTraining`) or the layer's. */
function ranFusedTraining<R>(fn: () => R, of: 'attention'|'layer' = 'attention'): {result: R; ran: boolean} {
  return ranWith(of === 'attention' ? jest.spyOn(training, 'fusedAttentionTraining') : jest.spyOn(layerTraining, 'fusedAttentionLayerTraining'), fn);
}

/**
 * Runs `fn` with the attention's threads set to `threads` (restored after): its result, whether the layer's fused
 * training ran in it, and the threads that the last fused call took.
 */
function layerTrainingOn<R>(threads: 1|2, fn: () => R): {result: R; ran: boolean; threads: 1|2} {
  const previous = setAttentionThreads(threads);
  try {
    const {result, ran} = ranFusedTraining(fn, 'layer');
    return {result, ran, threads: fusedThreadsOfLastCall()};
  } finally {
    setAttentionThreads(previous);
  }
}

describe('dotProductAttention gradients on the fused backward', () => {
  it('the planner sends recorded calls here, with padding and with an explicit mask', () => {
    const call = {backend: 'wasm', batch: 2, heads: 2, T: 7, S: 33, dk: 16, dv: 8, recording: true};
    expect(planAttention(call)).toMatchObject({path: 'fused', kernel: 'gradient', threads: 1});
    expect(planAttention({...call, padding: true, causal: true})).toMatchObject({path: 'fused', kernel: 'gradient'});
    expect(planAttention({...call, mask: true})).toMatchObject({path: 'fused', kernel: 'gradient'});
    expect(planAttention({...call, recording: false}).kernel).toBe('attention');
  });

  it.each(CASES)('%s: output, dQ, dK and dV equal the plain-array backward and the standard path\'s', (_, lead, T, S, dk, dv, masks) => {
    const start = tf.memory().numTensors;
    const B = lead[0];
    const scale = 1 / Math.sqrt(dk);
    const shapes = [[...lead, T, dk], [...lead, S, dk], [...lead, S, dv], [...lead, T, dv]];
    const [q, k, v, r] = shapes.map((shape, i) => tf.tensor(randomArray(shape, 10 + i) as number[], shape, 'float32'));
    const keyPadding = masks.keyPadding == null ? null :
        tf.tensor2d(Array.from({length: B}, (__, b) => Array.from({length: S}, (___, s) => (masks.keyPadding!(b, s) ? 1 : 0))));
    const queryPadding = masks.queryPadding == null ? null :
        tf.tensor2d(Array.from({length: B}, (__, b) => Array.from({length: T}, (___, t) => (masks.queryPadding!(b, t) ? 1 : 0))));
    const options = {causal: masks.causal ?? false, keyPaddingMask: keyPadding, queryPaddingMask: queryPadding};
    const before = tf.memory().numTensors;
    const gradsOf = (blockSize: number|null) => tf.tidy(() => {
      const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(dotProductAttention(a, b, c, {...options, blockSize}), r));
      const {value, grads} = tf.valueAndGrads(f)([q, k, v]);
      return [dotProductAttention(q, k, v, {...options, blockSize}), value, ...grads];
    });
    const fused = ranFusedTraining(() => gradsOf(null));
    expect(fused.ran).toBe(true);
    const standard = ranFusedTraining(() => gradsOf(0));
    expect(standard.ran).toBe(false);
    expect(tf.memory().numTensors).toBe(before + 10);

    // The plain-array reference, pair by pair.
    const expected = referenceOf([q, k, v, r], lead, (b, _h, t, s) =>
      !(masks.causal && s > t) && (masks.keyPadding?.(b, s) ?? true) && (masks.queryPadding?.(b, t) ?? true), scale);
    const [output, , dq, dkGrad, dvGrad] = fused.result;
    expectClose(output, expected.output, 1e-5);
    expectClose(dq, expected.dq, 1e-4);
    expectClose(dkGrad, expected.dk, 1e-4);
    expectClose(dvGrad, expected.dv, 1e-4);
    for (let i = 0; i < 5; i++) expectClose(fused.result[i], standard.result[i], 1e-4);
    disposeAll(q, k, v, r, keyPadding, queryPadding, fused.result, standard.result);
    expect(tf.memory().numTensors).toBe(start);
  });

  it('fully masked rows (every key padded, or every key a causal query may see) output zeros and get zero gradients', () => {
    const [B, H, T, S, d] = [2, 2, 9, 11, 8];
    const q = tf.randomNormal([B, H, T, d], 0, 1, 'float32', 21);
    const k = tf.randomNormal([B, H, S, d], 0, 1, 'float32', 22);
    const v = tf.randomNormal([B, H, S, d], 0, 1, 'float32', 23);
    const r = tf.randomNormal([B, H, T, d], 0, 1, 'float32', 24);
    // Batch 0: keys 0..2 padded, so that causal queries 0..2 see no key; batch 1: every key padded.
    const keyPadding = tf.tensor2d([Array.from({length: S}, (_, s) => (s < 3 ? 0 : 1)), new Array<number>(S).fill(0)]);
    const options = {causal: true, keyPaddingMask: keyPadding};
    const {result, ran} = ranFusedTraining(() => tf.tidy(() => {
      const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(dotProductAttention(a, b, c, options), r));
      return [dotProductAttention(q, k, v, options), ...tf.grads(f)([q, k, v])];
    }));
    expect(ran).toBe(true);
    const [output, dq, dk, dv] = result.map(x => x.arraySync() as number[][][][]);
    const zeros = (n: number) => new Array<number>(n).fill(0);
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < 3; t++) {
        expect(output[0][h][t]).toEqual(zeros(d));
        expect(dq[0][h][t]).toEqual(zeros(d));
      }
      expect(output[1][h]).toEqual(Array.from({length: T}, () => zeros(d)));
      expect(dq[1][h]).toEqual(Array.from({length: T}, () => zeros(d)));
      expect(dk[1][h]).toEqual(Array.from({length: S}, () => zeros(d)));
      expect(dv[1][h]).toEqual(Array.from({length: S}, () => zeros(d)));
      for (let s = 0; s < 3; s++) {  // padded keys: no query attends them
        expect(dk[0][h][s]).toEqual(zeros(d));
        expect(dv[0][h][s]).toEqual(zeros(d));
      }
      expect(dv[0][h][3]).not.toEqual(zeros(d));  // a real key: queries 3.. attend it
    }
    disposeAll(q, k, v, r, keyPadding, result);
  });
});

describe('the fused backward on two threads', () => {
  // Above twoThreadsPay's 16 MFLOP (2·P·T·S·(dk + dv) = 38.8 MFLOP), T not a multiple of 4, d not of 8.
  const [lead, T, S, dk, dv] = [[1, 2], 301, 310, 60, 44];

  it.each([['no mask', false, false], ['causal', true, false], ['causal and key padding', true, true]])(
      '%s: the output and gradients on two threads are bit for bit those on one, and equal the standard path\'s', (_, causal, padded) => {
        expect(backwardParts({pairs: 2, T, S, dk, dv, causal: causal as boolean}).length).toBeGreaterThan(2);
        const start = tf.memory().numTensors;
        const q = tf.randomNormal([...lead, T, dk], 0, 1, 'float32', 51);
        const k = tf.randomNormal([...lead, S, dk], 0, 1, 'float32', 52);
        const v = tf.randomNormal([...lead, S, dv], 0, 1, 'float32', 53);
        const r = tf.randomNormal([...lead, T, dv], 0, 1, 'float32', 54);
        const keyPaddingMask = padded ? tf.tensor2d([Array.from({length: S}, (__, s) => (s % 7 === 3 ? 0 : 1))]) : null;
        const gradsOf = (threads: 1|2, blockSize: number|null) => {
          const previous = setAttentionThreads(threads);
          try {
            let output: tf.Tensor|null = null;  // the forward's, while the gradient is recorded
            const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
              output = tf.keep(dotProductAttention(a, b, c, {causal: causal as boolean, keyPaddingMask, blockSize}));
              return tf.sum(tf.mul(output, r));
            };
            const grads = [...tf.grads(f)([q, k, v]), output!];
            return {grads, threads: fusedThreadsOfLastCall()};
          } finally {
            setAttentionThreads(previous);
          }
        };
        const one = gradsOf(1, null);
        const two = gradsOf(2, null);
        const standard = gradsOf(1, 0);
        expect([one.threads, two.threads]).toEqual([1, 2]);
        two.grads.forEach((g, i) => expect(g.dataSync()).toEqual(one.grads[i].dataSync()));
        two.grads.forEach((g, i) => expectClose(g, standard.grads[i], 1e-4));
        disposeAll(q, k, v, r, keyPaddingMask, one.grads, two.grads, standard.grads);
        expect(tf.memory().numTensors).toBe(start);
      });
});

describe('the layer trains on the fused backward', () => {
  const args = {numHeads: 2, keyDim: 5, valueDim: 3, outputDim: 6, useBias: true, causal: true};

  it('its gradients (inputs, Wq, Wk, Wv, Wo and biases) equal the standard path\'s, with a padding mask', () => {
    const x = tf.randomNormal([2, 7, 6], 0, 1, 'float32', 31);
    const r = tf.randomNormal([2, 7, 6], 0, 1, 'float32', 32);
    const mask = tf.tensor2d([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]]);
    const layers = [null, 0].map(blockSize => scaledDotProductAttention({...args, blockSize}));
    layers.forEach(layer => tf.tidy(() => void layer.apply(x)));  // builds the weights
    layers[1].setWeights(layers[0].getWeights());
    const gradsOf = (i: number) => ranFusedTraining(() => tf.tidy(() => {
      const f = (input: tf.Tensor) => tf.sum(tf.mul(layers[i].apply(input, {mask}) as tf.Tensor, r)) as tf.Scalar;
      const dx = tf.grad(f)(x);
      const {grads} = tf.variableGrads(() => f(x), layers[i].trainableWeights.map(w => (w as unknown as {val: tf.Variable}).val));
      return [dx, ...layers[i].trainableWeights.map(w => grads[(w as unknown as {val: tf.Variable}).val.name])];
    }), 'layer');
    const [fused, standard] = [gradsOf(0), gradsOf(1)];
    expect([fused.ran, standard.ran]).toEqual([true, false]);
    expect(fused.result.length).toBe(9);  // dx and 8 weights
    fused.result.forEach((g, i) => expectClose(g, standard.result[i], 1e-4));
    disposeAll(x, r, mask, fused.result, standard.result);
    layers.forEach(l => l.dispose());
  });

  /**
   * A layer case's inputs x [B, T, dq] (and c [B, S, dc]; S null: self-attention), its padding masks as the layer takes
   * them, two layers with the same weights (fused, blockSize null; standard, blockSize 0) and a readout r of the output's
   * shape, from seeds seed, seed + 1 and seed + 2. `dispose` frees them all.
   */
  function layerCase(args: Record<string, unknown>, B: number, T: number, dq: number, S: number|null, dc: number, masks: Masks, seed: number) {
    const x = tf.tensor(randomArray([B, T, dq], seed) as number[], [B, T, dq], 'float32');
    const c = S == null ? null : tf.tensor(randomArray([B, S, dc], seed + 1) as number[], [B, S, dc], 'float32');
    const padding = (length: number, real?: (b: number, i: number) => boolean) => (real == null ? null :
        tf.tensor2d(Array.from({length: B}, (__, b) => Array.from({length}, (___, i) => (real(b, i) ? 1 : 0)))));
    const queryMask = padding(T, masks.queryPadding);
    const contextMask = S == null ? null : padding(S, masks.keyPadding);
    const mask = S == null ? queryMask : queryMask == null && contextMask == null ? null : [queryMask, contextMask];
    const inputs = c == null ? [x] : [x, c];
    const layers = [null, 0].map(blockSize => scaledDotProductAttention({...args, blockSize, biasInitializer: 'randomNormal'}));
    layers.forEach(layer => tf.tidy(() => void layer.apply(c == null ? x : [x, c])));  // builds the weights
    layers[1].setWeights(layers[0].getWeights());
    const outputShape = (layers[0].computeOutputShape(c == null ? x.shape : [x.shape, c.shape]) as number[]);
    const r = tf.tensor(randomArray(outputShape, seed + 2) as number[], outputShape, 'float32');
    const dispose = () => {
      disposeAll(x, c, r, queryMask, contextMask);
      layers.forEach(l => l.dispose());
    };
    return {x, c, mask, inputs, layers, r, dispose};
  }

  /** [what, layer arguments, B, T, query width, context length S (null: self-attention), context width, masks] */
  const LAYER_CASES: Array<[string, Record<string, unknown>, number, number, number, number|null, number, Masks]> = [
    ['one head, no bias, d = 64 (the bench\'s small point)', {numHeads: 1, keyDim: 64}, 3, 16, 64, null, 64, {}],
    ['4 heads of 16, bias', {numHeads: 4, keyDim: 16, useBias: true}, 2, 13, 64, null, 64, {}],
    // One head, dk = dv = 16, T a multiple of 4: the kernel reads Q, K and dy's rows in place; dModel 20 (Wᵀ in rows of 32).
    ['one head of 16, rows in place, causal, query padding', {numHeads: 1, keyDim: 16, causal: true}, 3, 12, 20, null, 20,
      {causal: true, queryPadding: (b, t) => (t + 2 * b) % 5 !== 4}],
    ['3 heads, valueDim ≠ keyDim, outputDim, causal', {numHeads: 3, keyDim: 5, valueDim: 7, outputDim: 9, useBias: true, causal: true},
      2, 9, 10, null, 10, {causal: true}],
    ['2 heads, query padding', {numHeads: 2, keyDim: 8, valueDim: 4}, 3, 11, 12, null, 12, {queryPadding: (b, t) => (t + b) % 4 !== 3}],
    ['cross-attention S ≠ T, one head, bias', {numHeads: 1, keyDim: 8, useBias: true}, 2, 5, 8, 19, 6, {}],
    ['cross-attention, 2 heads, outputDim, key and query padding', {numHeads: 2, keyDim: 6, valueDim: 10, outputDim: 5, useBias: true},
      2, 7, 9, 33, 11, {keyPadding: (b, s) => (s * 3 + b) % 5 !== 2, queryPadding: (b, t) => t % 3 !== 1}],
    ['cross-attention, one query, one key', {numHeads: 2, keyDim: 3}, 2, 1, 4, 1, 5, {}],
  ];

  it.each(LAYER_CASES)('%s: the layer\'s own fused gradient gives the standard path\'s for the inputs and every weight', (
      _, args, B, T, dq, S, dc, masks) => {
    const start = tf.memory().numTensors;
    const {mask, inputs, layers, r, dispose} = layerCase(args, B, T, dq, S, dc, masks, 61);
    const gradsOf = (i: number) => ranFusedTraining(() => tf.tidy(() => {
      const f = (...given: tf.Tensor[]) =>
        tf.sum(tf.mul(layers[i].apply(given.length === 1 ? given[0] : given, {mask}) as tf.Tensor, r)) as tf.Scalar;
      const inputGrads = tf.grads(f)(inputs);
      const variables = layers[i].trainableWeights.map(w => (w as unknown as {val: tf.Variable}).val);
      const {grads} = tf.variableGrads(() => f(...inputs), variables);
      return [...inputGrads, ...variables.map(v => grads[v.name])];
    }), 'layer');
    const [fused, standard] = [gradsOf(0), gradsOf(1)];
    expect([fused.ran, standard.ran]).toEqual([true, false]);
    expect(fused.result.length).toBe(inputs.length + layers[0].trainableWeights.length);
    fused.result.forEach((g, i) => expectClose(g, standard.result[i], 1e-4));
    disposeAll(fused.result, standard.result);
    dispose();
    expect(tf.memory().numTensors).toBe(start);
  });

  it('with one head above the two-thread size: the attention\'s kernels on two threads, bit for bit as on one, and the standard path\'s gradients', () => {
    const start = tf.memory().numTensors;
    // Cross-attention, 2·B·T·S·(dk + dv) = 38.8 MFLOP (over twoThreadsPay's 16), T not a multiple of 4, d not of 8, causal, key padding.
    const [B, T, S, dq, dc] = [2, 301, 310, 40, 24];
    const x = tf.tensor(randomArray([B, T, dq], 81) as number[], [B, T, dq], 'float32');
    const c = tf.tensor(randomArray([B, S, dc], 82) as number[], [B, S, dc], 'float32');
    const contextMask = tf.tensor2d(Array.from({length: B}, (_, b) => Array.from({length: S}, (__, s) => ((s + b) % 7 === 3 ? 0 : 1))));
    const args = {numHeads: 1, keyDim: 60, valueDim: 44, useBias: true, causal: true, biasInitializer: 'randomNormal'};
    const layers = [null, 0].map(blockSize => scaledDotProductAttention({...args, blockSize}));
    layers.forEach(layer => tf.tidy(() => void layer.apply([x, c])));
    layers[1].setWeights(layers[0].getWeights());
    const r = tf.tensor(randomArray([B, T, 44], 83) as number[], [B, T, 44], 'float32');
    const gradsOf = (i: number, threads: 1|2) => layerTrainingOn(threads, () => tf.tidy(() => {
      const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(layers[i].apply([a, b], {mask: [null, contextMask]}) as tf.Tensor, r)) as tf.Scalar;
      const variables = layers[i].trainableWeights.map(w => (w as unknown as {val: tf.Variable}).val);
      const {grads} = tf.variableGrads(() => f(x, c), variables);
      return [...tf.grads(f)([x, c]), ...variables.map(v => grads[v.name])];
    }));
    const [one, two, standard] = [gradsOf(0, 1), gradsOf(0, 2), gradsOf(1, 1)];
    expect([one.ran, two.ran, standard.ran]).toEqual([true, true, false]);
    expect([one.threads, two.threads]).toEqual([1, 2]);
    expect(two.result.length).toBe(8);  // dx, dc and 6 weights
    two.result.forEach((g, i) => expect(g.dataSync()).toEqual(one.result[i].dataSync()));
    two.result.forEach((g, i) => expectClose(g, standard.result[i], 1e-4));
    disposeAll(x, c, contextMask, r, one.result, two.result, standard.result);
    layers.forEach(l => l.dispose());
    expect(tf.memory().numTensors).toBe(start);
  });

  /** [what, layer arguments, B, T, query width, context length S (null: self-attention), context width, masks] */
  const TWO_THREAD_HEADS: Array<[string, Record<string, unknown>, number, number, number, number|null, number, Masks]> = [
    // 2·B·H·T·S·(dk + dv) = 39.1 MFLOP, over twoThreadsPay's 16; T not a multiple of 4, dk and dv not of 8.
    ['self-attention, 3 heads of dk = 13, dv = 23, causal, query padding, biases',
      {numHeads: 3, keyDim: 13, valueDim: 23, useBias: true, causal: true}, 2, 301, 40, null, 40,
      {causal: true, queryPadding: (b, t) => (3 * t + b) % 11 !== 5}],
    // 38.5 MFLOP; S ≠ T, S past the backward's block of 256 keys.
    ['cross-attention, 4 heads of dk = 30, dv = 18, key padding, no biases, outputDim',
      {numHeads: 4, keyDim: 30, valueDim: 18, outputDim: 24}, 1, 257, 36, 390, 20, {keyPadding: (b, s) => (s + b) % 7 !== 3}],
    // 18.3 MFLOP; a query width not a multiple of 4 (xᵀ packed for dWq) beside a context width that is (cᵀ read in place).
    ['cross-attention, 2 heads of dk = 24, dv = 20, widths 37 and 20, biases',
      {numHeads: 2, keyDim: 24, valueDim: 20, useBias: true}, 1, 260, 37, 400, 20, {}],
  ];

  it.each(TWO_THREAD_HEADS)('several heads above the two-thread size, %s: the layer\'s kernels on two threads, bit for bit as on one, and the standard path\'s gradients', (
      _, args, B, T, dq, S, dc, masks) => {
    const start = tf.memory().numTensors;
    const {mask, inputs, layers, r, dispose} = layerCase(args, B, T, dq, S, dc, masks, 91);
    const gradsOf = (i: number, threads: 1|2) => {
      const previous = setAttentionThreads(threads);
      try {
        let plan: ReturnType<typeof layers[0]['planCall']> = null;
        const {result, ran} = ranFusedTraining(() => tf.tidy(() => {
          const f = (...given: tf.Tensor[]) => {
            plan ??= layers[i].planCall(given[0], given[1] ?? given[0], {mask});  // recorded: the plan of a training call
            return tf.sum(tf.mul(layers[i].apply(given.length === 1 ? given[0] : given, {mask}) as tf.Tensor, r)) as tf.Scalar;
          };
          const variables = layers[i].trainableWeights.map(w => (w as unknown as {val: tf.Variable}).val);
          const {value, grads} = tf.variableGrads(() => f(...inputs), variables);
          return [value, ...tf.grads(f)(inputs), ...variables.map(v => grads[v.name])];
        }), 'layer');
        return {result, ran, plan, threads: fusedThreadsOfLastCall()};
      } finally {
        setAttentionThreads(previous);
      }
    };
    const [one, two, standard] = [gradsOf(0, 1), gradsOf(0, 2), gradsOf(1, 1)];
    expect(two.plan).toMatchObject({path: 'fused', kernel: 'layer-gradient', threads: 2});
    expect(one.plan).toMatchObject({path: 'fused', kernel: 'layer-gradient', threads: 1});
    expect([one.ran, two.ran, standard.ran]).toEqual([true, true, false]);
    expect([one.threads, two.threads]).toEqual([1, 2]);
    expect(two.result.length).toBe(1 + inputs.length + layers[0].trainableWeights.length);  // the loss, the inputs', every weight's
    two.result.forEach((g, i) => expect(g.dataSync()).toEqual(one.result[i].dataSync()));
    two.result.forEach((g, i) => expectClose(g, standard.result[i], 1e-4));
    disposeAll(one.result, two.result, standard.result);
    dispose();
    expect(tf.memory().numTensors).toBe(start);
  });

  it('with an attentionMask above the two-thread size (3 heads, causal, padding): two threads give one thread\'s bits and the standard path\'s gradients; 50 steps leak nothing', () => {
    const start = tf.memory().numTensors;
    const [B, T, d] = [2, 263, 24];  // 2·B·H·T²·(dk + dv) = 2·2·3·263²·(12 + 10) = 18.3 MFLOP
    const x = tf.tensor(randomArray([B, T, d], 201) as number[], [B, T, d], 'float32');
    const mask = tf.tensor2d(Array.from({length: B}, (_, b) => Array.from({length: T}, (__, t) => ((t + 5 * b) % 17 === 9 ? 0 : 1))));
    // [B, T, S]: per batch its own pattern; batch 1's query 100 attends no key (zero output there), every query its own diagonal.
    const attentionMask = tf.tidy(() => tf.tensor3d(Array.from({length: B}, (_, b) => Array.from({length: T}, (__, t) =>
      Array.from({length: T}, (___, s) => !(b === 1 && t === 100) && (s === t || (3 * s + t + b) % 5 !== 2)))), [B, T, T], 'bool'));
    const layers = [null, 0].map(blockSize => scaledDotProductAttention({numHeads: 3, keyDim: 12, valueDim: 10, useBias: true, causal: true,
                                                                         biasInitializer: 'randomNormal', blockSize}));
    layers.forEach(layer => tf.tidy(() => void layer.apply(x)));
    layers[1].setWeights(layers[0].getWeights());
    const r = tf.tensor(randomArray([B, T, 30], 202) as number[], [B, T, 30], 'float32');
    const step = (i: number) => tf.tidy(() => {
      const variables = layers[i].trainableWeights.map(w => (w as unknown as {val: tf.Variable}).val);
      const f = (input: tf.Tensor) => tf.sum(tf.mul(layers[i].apply(input, {mask, attentionMask}) as tf.Tensor, r)) as tf.Scalar;
      const {value, grads} = tf.variableGrads(() => f(x), variables);
      return [value, tf.grad(f)(x), ...variables.map(v => grads[v.name])];
    });
    const on = (i: number, threads: 1|2) => layerTrainingOn(threads, () => step(i));
    const [one, two, standard] = [on(0, 1), on(0, 2), on(1, 1)];
    expect([one.ran, two.ran, standard.ran]).toEqual([true, true, false]);
    expect([one.threads, two.threads]).toEqual([1, 2]);
    two.result.forEach((g, i) => expect(g.dataSync()).toEqual(one.result[i].dataSync()));
    two.result.forEach((g, i) => expectClose(g, standard.result[i], {abs: 1e-4, rel: 1e-4}));
    disposeAll(one.result, two.result, standard.result);
    const before = tf.memory().numTensors;
    for (let k = 0; k < 50; k++) tf.dispose(on(0, 2).result);
    expect(tf.memory().numTensors).toBe(before);
    disposeAll(x, mask, attentionMask, r);
    layers.forEach(l => l.dispose());
    expect(tf.memory().numTensors).toBe(start);
  });

  it('a batch whose every token is padding gets zero gradients for its inputs, and adds nothing to the weights\'', () => {
    const [B, T, d] = [2, 6, 8];
    const x = tf.tensor(randomArray([B, T, d], 71) as number[], [B, T, d], 'float32');
    const mask = tf.tensor2d([new Array<number>(T).fill(1), new Array<number>(T).fill(0)]);
    const layer = scaledDotProductAttention({numHeads: 2, keyDim: 4, useBias: true});
    tf.tidy(() => void layer.apply(x));
    const variables = layer.trainableWeights.map(w => (w as unknown as {val: tf.Variable}).val);
    const gradsFor = (input: tf.Tensor, m: tf.Tensor) => ranFusedTraining(() => tf.tidy(() => {
      const f = (given: tf.Tensor) => tf.sum(layer.apply(given, {mask: m}) as tf.Tensor) as tf.Scalar;
      const dx = tf.grad(f)(input);
      const {grads} = tf.variableGrads(() => f(input), variables);
      return [dx, ...variables.map(v => grads[v.name])];
    }), 'layer');
    const both = gradsFor(x, mask);
    expect(both.ran).toBe(true);
    const dx = both.result[0].arraySync() as number[][][];
    expect(dx[1]).toEqual(Array.from({length: T}, () => new Array<number>(d).fill(0)));
    expect(dx[0].flat().some(v => v !== 0)).toBe(true);
    // The weights' gradients are the first batch's alone.
    const first = tf.tidy(() => x.slice([0, 0, 0], [1, T, d]));
    const firstMask = tf.ones([1, T]);
    const alone = gradsFor(first, firstMask);
    both.result.slice(1).forEach((g, i) => expectClose(g, alone.result[i + 1], 1e-5));
    disposeAll(x, mask, first, firstMask, both.result, alone.result);
    layer.dispose();
  });

  it('with an attentionMask (and a padding mask): the layer\'s own fused gradient, the mask as a bias, the standard path\'s gradients', () => {
    const [B, T, d] = [2, 7, 6];
    const x = tf.randomNormal([B, T, d], 0, 1, 'float32', 35);
    const r = tf.randomNormal([B, T, 6], 0, 1, 'float32', 36);
    const mask = tf.tensor2d([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]]);
    // Per batch its own pattern; batch 1's query 3 attends no key (zero output and gradients there).
    const attentionMask = tf.tensor3d(Array.from({length: B}, (_, b) => Array.from({length: T}, (__, t) =>
      Array.from({length: T}, (___, s) => !(b === 1 && t === 3) && (s + t + b) % 3 !== 1))), [B, T, T], 'bool');
    const layers = [null, 0].map(blockSize => scaledDotProductAttention({...args, causal: false, blockSize}));
    layers.forEach(layer => tf.tidy(() => void layer.apply(x)));  // builds the weights
    layers[1].setWeights(layers[0].getWeights());
    expect(layers[0].planCall(x, x, {attentionMask, mask, training: true})).toMatchObject({path: 'fused'});
    const gradsOf = (i: number) => ranFusedTraining(() => tf.tidy(() => {
      const f = (input: tf.Tensor) => tf.sum(tf.mul(layers[i].apply(input, {mask, attentionMask}) as tf.Tensor, r)) as tf.Scalar;
      const dx = tf.grad(f)(x);
      const {grads} = tf.variableGrads(() => f(x), layers[i].trainableWeights.map(w => (w as unknown as {val: tf.Variable}).val));
      return [layers[i].apply(x, {mask, attentionMask}) as tf.Tensor, dx, ...layers[i].trainableWeights.map(w => grads[(w as unknown as {val: tf.Variable}).val.name])];
    }), 'layer');
    const [fused, standard] = [gradsOf(0), gradsOf(1)];
    expect([fused.ran, standard.ran]).toEqual([true, false]);
    expect(fused.result.length).toBe(10);  // the output, dx and 8 weights
    fused.result.forEach((g, i) => expectClose(g, standard.result[i], {abs: 1e-4, rel: 1e-4}));
    const dx = fused.result[1].arraySync() as number[][][];
    expect(dx.flat(2).every(Number.isFinite)).toBe(true);
    disposeAll(x, r, mask, attentionMask, fused.result, standard.result);
    layers.forEach(l => l.dispose());
  });

  it.each([
    ['one head, self-attention with biases and key padding, aligned', 1, 512, null, 64, 64, true, false],
    ['one head, cross-attention, causal, without biases, T % 4 != 0, widths not multiples of 8', 1, 410, 431, 36, 44, false, true],
    ['4 heads, self-attention with biases and key padding, causal', 4, 384, null, 64, 64, true, true],
  ] as Array<[string, number, number, number|null, number, number, boolean, boolean]>)(
      '%s, on two threads: 200 steps leak neither tensors nor wasm heap, nor grow the shared memory; the same bits as one thread',
      (_, heads, T, S, dc, dv, useBias, causal) => {
        const backend = tf.backend() as unknown as WasmBackendView;
        const wasm = backend.wasm;
        wasm._free(wasm._malloc(16));  // the lazy wrappers replace themselves now (see the test below)
        const x = tf.randomNormal([1, T, 64], 0, 1, 'float32', 43);
        const c = S == null ? null : tf.randomNormal([1, S, dc], 0, 1, 'float32', 44);
        const inputs = c == null ? x : [x, c];
        const mask = tf.tensor2d([Array.from({length: S ?? T}, (_s, s) => (s % 9 === 4 ? 0 : 1))]);
        const layer = scaledDotProductAttention({numHeads: heads, keyDim: 64 / heads, valueDim: dv / heads, useBias, causal});
        tf.tidy(() => void layer.apply(inputs));  // builds the weights
        const variables = layer.trainableWeights.map(w => (w as unknown as {val: tf.Variable}).val);
        const step = () => tf.tidy(() => {
          const {value, grads} = tf.variableGrads(() => tf.sum(layer.apply(inputs, {mask: c == null ? mask : [null, mask]}) as tf.Tensor) as tf.Scalar,
                                                  variables);
          return [value, ...variables.map(v => grads[v.name])];
        });
        const stepOn = (threads: 1|2) => {
          const previous = setAttentionThreads(threads);
          try {
            const {result, ran} = ranFusedTraining(step, 'layer');
            expect(ran).toBe(true);
            expect(fusedThreadsOfLastCall()).toBe(threads);
            return result;
          } finally {
            setAttentionThreads(previous);
          }
        };
        const [one, two] = [stepOn(1), stepOn(2)];  // the first two-thread step may grow the heap and the shared memory
        two.forEach((g, i) => expect(g.dataSync()).toEqual(one[i].dataSync()));
        disposeAll(one, two);
        const before = tf.memory();
        const heapBytes = wasm.HEAPU8.length;
        const sharedBytes = getSecondThread()!.memory.buffer.byteLength;
        const {live} = watchHeapBlocks(wasm, () => {
          for (let i = 0; i < 200; i++) tf.dispose(stepOn(2));
        });
        expect(live).toEqual([]);
        expect(tf.memory().numTensors).toBe(before.numTensors);
        expect(tf.memory().numBytes).toBe(before.numBytes);
        expect(wasm.HEAPU8.length).toBe(heapBytes);
        expect(getSecondThread()!.memory.buffer.byteLength).toBe(sharedBytes);
        disposeAll(x, c, mask);
        layer.dispose();
      });

  it.each([1, 4])('%i head(s) beyond the heap\'s budget for the work buffers: the layer\'s kernels on two threads, in the worker\'s memory; on one thread the attention\'s kernels after tfjs\' projections; the same gradients', heads => {
    // Cross-attention over many keys: the work buffers grow with S·d, the work with T·S·d.
    const [T, S, d] = [1024, 16384, 128];
    const sizes = {batch: 1, T, S, dq: d, dc: d, heads, dk: d / heads, dv: d / heads, selfAttention: false};
    expect(layerTraining.fusedLayerTrainingBytes(sizes)).toBeGreaterThan(FUSED_MAX_BYTES);
    expect(layerTraining.fusedLayerTrainingSizesFit(sizes)).toBe(false);
    expect(layerTraining.fusedLayerTrainingSizesFit(sizes, true)).toBe(true);
    // Variables, so that one pass gives every gradient.
    const [x, c] = tf.tidy(() => [tf.variable(tf.randomNormal([1, T, d], 0, 1, 'float32', 45)), tf.variable(tf.randomNormal([1, S, d], 0, 1, 'float32', 46))]);
    const layer = scaledDotProductAttention({numHeads: heads, keyDim: d / heads, useBias: true});
    tf.tidy(() => void layer.apply([x, c]));
    const variables = layer.trainableWeights.map(w => (w as unknown as {val: tf.Variable}).val);
    const gradsOn = (threads: 1|2, of: 'layer'|'attention') => {
      const previous = setAttentionThreads(threads);
      try {
        const call = {backend: 'wasm', batch: 1, heads, T, S, dk: d / heads, dv: d / heads, recording: true, layer: {dq: d, dc: d, selfAttention: false}};
        expect(planAttention(call).kernel).toBe(of === 'layer' ? 'layer-gradient' : 'gradient');
        const {result, ran} = ranFusedTraining(() => tf.tidy(() => {
          const {grads} = tf.variableGrads(() => tf.sum(layer.apply([x, c]) as tf.Tensor) as tf.Scalar, [x, c, ...variables]);
          return [x, c, ...variables].map(v => grads[v.name]);
        }), of);
        expect(ran).toBe(true);
        expect(fusedThreadsOfLastCall()).toBe(threads);
        return result;
      } finally {
        setAttentionThreads(previous);
      }
    };
    const two = gradsOn(2, 'layer');
    const one = gradsOn(1, 'attention');
    expect(two.length).toBe(8);  // dx, dc and 6 weights
    two.forEach((g, i) => expectClose(g, one[i], 1e-4));
    disposeAll(x, c, one, two);
    layer.dispose();
  });

  it.each([
    ['one head, self-attention, biases', 1, 2, 300, null, 40, 40, 64, 64],
    ['4 heads, self-attention, dk 13, dv 23', 4, 2, 301, null, 40, 40, 13, 23],
    ['3 heads, cross-attention, S = 390, dk 30, dv 18', 3, 1, 257, 390, 36, 20, 30, 18],
    ['4 heads, cross-attention, T = 64, S = 2048', 4, 1, 64, 2048, 64, 64, 16, 16],
  ] as Array<[string, number, number, number, number|null, number, number, number, number]>)(
      '%s on two threads: the shared memory a training step asks for stays within fusedLayerTrainingSharedBytes (the planner\'s bound), which is under twice as much',
      (_, heads, B, T, S, dq, dc, dk, dv) => {
        const x = tf.randomNormal([B, T, dq], 0, 1, 'float32', 47);
        const c = S == null ? null : tf.randomNormal([B, S, dc], 0, 1, 'float32', 48);
        const layer = scaledDotProductAttention({numHeads: heads, keyDim: dk, valueDim: dv, useBias: true});
        const inputs = c == null ? x : [x, c];
        tf.tidy(() => void layer.apply(inputs));
        const variables = layer.trainableWeights.map(w => (w as unknown as {val: tf.Variable}).val);
        const asked = jest.spyOn(threadsModule, 'sharedFloats');
        const previous = setAttentionThreads(2);
        try {
          const {value, grads} = tf.variableGrads(() => tf.sum(layer.apply(inputs) as tf.Tensor) as tf.Scalar, variables);
          expect(fusedThreadsOfLastCall()).toBe(2);
          tf.dispose([value, Object.values(grads)]);
          const most = Math.max(...asked.mock.calls.map(([, bytes]) => bytes));
          expect(asked.mock.calls.length).toBeGreaterThanOrEqual(2);  // the forward's and the backward's
          const sizes = {batch: B, T, S: S ?? T, dq, dc: c == null ? dq : dc, heads, dk, dv, selfAttention: c == null};
          // An upper bound, and not a loose one (a loose bound turns away steps that would fit): 1.26-1.42× here.
          const bound = layerTraining.fusedLayerTrainingSharedBytes(sizes);
          expect(most).toBeLessThanOrEqual(bound);
          expect(2 * most).toBeGreaterThan(bound);
        } finally {
          setAttentionThreads(previous);
          asked.mockRestore();
          disposeAll(x, c);
          layer.dispose();
        }
      });

  it('200 training steps leak neither tensors nor wasm heap', () => {
    const backend = tf.backend() as unknown as WasmBackendView;
    const wasm = backend.wasm;
    // Emscripten's _malloc and _free are lazy wrappers that replace themselves on their first
    // call: make that call now, so that the spies below stay in place.
    wasm._free(wasm._malloc(16));
    const layer = scaledDotProductAttention({...args, causal: false});
    const x = tf.randomNormal([2, 37, 6], 0, 1, 'float32', 41);  // 37: a padded tile
    const target = tf.randomNormal([2, 37, 6], 0, 1, 'float32', 42);
    const mask = tf.tensor2d([new Array<number>(37).fill(1), Array.from({length: 37}, (_, t) => (t < 30 ? 1 : 0))]);
    const optimizer = tf.train.sgd(0.01);
    tf.tidy(() => void layer.apply(x));  // builds the weights
    const step = () => optimizer.minimize(() => tf.losses.meanSquaredError(target, layer.apply(x, {mask}) as tf.Tensor) as tf.Scalar);
    const {ran} = ranFusedTraining(() => step(), 'layer');  // the first step may grow the heap
    expect(ran).toBe(true);
    const loss = () => tf.losses.meanSquaredError(target, layer.apply(x, {mask}) as tf.Tensor) as tf.Scalar;
    // A work buffer per forward and per backward at least.
    expectTrainingLeaksNothing(wasm, layer.trainableWeights, () => optimizer.minimize(loss, true)!, 200, 400);
    disposeAll(x, target, mask);
    optimizer.dispose();
    layer.dispose();
  });
});

/**
 * An explicit mask of a case: its shape from the sizes (1 where it broadcasts), for rank-4
 * inputs [B, H, ., .] unless `rank3` (inputs [B, ., .]).
 */
type MaskShapeOf = (B: number, H: number, T: number, S: number) => number[];
const MASK_SHAPES: Array<[string, MaskShapeOf]> = [
  ['[T, S]', (B, H, T, S) => [T, S]],
  ['[1, T, S]', (B, H, T, S) => [1, T, S]],
  ['[B, T, S] (every head)', (B, H, T, S) => [B, T, S]],
  ['[B, 1, T, S]', (B, H, T, S) => [B, 1, T, S]],
  ['[B, H, T, S]', (B, H, T, S) => [B, H, T, S]],
  ['[B, 1, 1, S]', (B, H, T, S) => [B, 1, 1, S]],
  ['[1, 1, T, 1]', (B, H, T, S) => [1, 1, T, 1]],
];

/** Whether a mask of `shape` lets query t of pair (b, h) attend key s: a fixed pattern of its own (broadcast) index, about 1 in 3 masked. */
function maskAllows(shape: number[], b: number, h: number, t: number, s: number): boolean {
  const full = shape.length === 2 ? [t, s] : shape.length === 3 ? [b, t, s] : [b, h, t, s];
  const index = full.map((i, axis) => (shape[axis] === 1 ? 0 : i));
  const code = index.reduce((sum, i, axis) => sum + [1, 2, 4, 5][axis] * i + i * i, shape.length);  // varies along every axis
  return code % 3 !== 0;
}

/** The explicit mask tensor of `shape` (maskAllows' pattern), bool or float32 0/1. */
function maskTensor(shape: number[], dtype: 'bool'|'float32'): tf.Tensor {
  const at = (flat: number) => {
    const index = shape.map((_, axis) => Math.floor(flat / shape.slice(axis + 1).reduce((a, b) => a * b, 1)) % shape[axis]);
    const [b, h, t, s] = shape.length === 2 ? [0, 0, ...index] : shape.length === 3 ? [index[0], 0, index[1], index[2]] : index;
    return maskAllows(shape, b, h, t, s) ? 1 : 0;
  };
  const values = Array.from({length: shape.reduce((a, b) => a * b, 1)}, (_, i) => at(i));
  return dtype === 'bool' ? tf.tensor(values, shape, 'bool') : tf.tensor(values, shape, 'float32');
}

/** One explicit-mask case: sizes, the mask's shape and dtype, and the other masks. */
interface MaskCase {
  lead: number[];
  T: number;
  S: number;
  dk: number;
  dv: number;
  maskShape: MaskShapeOf;
  dtype: 'bool'|'float32';
  masks: Masks;
}

const OTHER_MASKS: Array<[string, Masks]> = [
  ['alone', {}],
  ['causal', {causal: true}],
  ['key padding', {keyPadding: (b, s) => (s * 7 + b) % 5 !== 4}],
  ['causal, key and query padding', {causal: true, keyPadding: (b, s) => (s + 2 * b) % 4 !== 1, queryPadding: (b, t) => t % 5 !== 3}],
];

const MASK_CASES: Array<[string, MaskCase]> = [
  // T = 7, S = 13: neither a multiple of 4 nor of 8; every shape, dtype and combination.
  ...MASK_SHAPES.flatMap(([shape, maskShape]) => (['bool', 'float32'] as const).flatMap(dtype => OTHER_MASKS.map(([others, masks]) =>
    [`T = 7, S = 13, mask ${shape} ${dtype}, ${others}`, {lead: [2, 3], T: 7, S: 13, dk: 5, dv: 4, maskShape, dtype, masks}] as [string, MaskCase]))),
  // One query, one key, S ≠ T either way, and past a backward block of keys: every shape, with causal and padding.
  ...[[1, 1], [1, 9], [9, 4], [33, 40], [9, 260]].flatMap(([T, S]) => MASK_SHAPES.map(([shape, maskShape]) =>
    [`T = ${T}, S = ${S}, mask ${shape} bool, causal, key and query padding`,
     {lead: [2, 2], T, S, dk: 8, dv: 8, maskShape, dtype: 'bool', masks: OTHER_MASKS[3][1]}] as [string, MaskCase])),
  // Rank-3 inputs [B, T, d]: the masks of rank 2 and 3 that they take.
  ...([['[T, S]', (B: number, H: number, T: number, S: number) => [T, S]], ['[1, T, S]', (B: number, H: number, T: number, S: number) => [1, T, S]],
    ['[B, T, S]', (B: number, H: number, T: number, S: number) => [B, T, S]], ['[B, 1, S]', (B: number, H: number, T: number, S: number) => [B, 1, S]],
    ['[1, T, 1]', (B: number, H: number, T: number, S: number) => [1, T, 1]]] as Array<[string, MaskShapeOf]>).flatMap(([shape, maskShape]) =>
    [OTHER_MASKS[0], OTHER_MASKS[3]].map(([others, masks]) =>
      [`rank 3, T = 7, S = 13, mask ${shape} float32, ${others}`, {lead: [2], T: 7, S: 13, dk: 6, dv: 3, maskShape, dtype: 'float32', masks}] as
          [string, MaskCase])),
];

/** Runs `fn` and says whether the fused inference kernel (`fusedAttention`) ran in it. */
function ranFusedAttention<R>(fn: () => R): {result: R; ran: boolean} {
  return ranWith(jest.spyOn(fusedForward, 'fusedAttention'), fn);
}

describe('the relaxed-SIMD build (fused multiply-adds in the backward), where the runtime has relaxed SIMD', () => {
  it('in a Node with --experimental-wasm-relaxed-simd: the backward runs the relaxed kernel, matches the plain-array backward, and two threads give one thread\'s bits', async () => {
    const [T, S, d] = [37, 45, 12];  // T and S past a tile and a panel
    const script = [
      "const tf = require('@tensorflow/tfjs');",
      "const {selectBackend, dotProductAttention, scaledDotProductAttention, setAttentionThreads} = require('./dist/cjs/node');",
      "const {kernelVariant} = require('./dist/cjs/backend/kernels/kernel_module');",
      'const fill = (n, seed) => Array.from({length: n}, (_, i) => Math.sin(seed * 1000 + i * 0.37));',
      '(async () => {',
      "  await selectBackend('wasm');",
      `  const [T, S, d] = [${T}, ${S}, ${d}];`,
      '  const [q, k, v] = [[T, 1], [S, 2], [S, 3]].map(([n, seed]) => tf.tensor(fill(n * d, seed), [1, n, d]));',
      '  const dy = tf.tensor(fill(T * d, 4), [1, T, d]);',
      '  const f = (a, b, c) => tf.sum(tf.mul(dotProductAttention(a, b, c, {causal: true}), dy));',
      '  const grads = tf.grads(f)([q, k, v]).map(g => Array.from(g.dataSync()));',
      '  const x = tf.tensor(fill(512 * 64, 5), [1, 512, 64]);',  // the layer's training step at a two-thread size
      '  const layer = scaledDotProductAttention({numHeads: 1, keyDim: 64});',
      '  layer.apply(x);',
      '  const vars = layer.trainableWeights.map(w => w.read());',
      '  const step = () => { const {grads} = tf.variableGrads(() => tf.sum(layer.apply(x)), vars); return vars.map(w => Array.from(grads[w.name].dataSync())); };',
      '  setAttentionThreads(1); const one = step(); setAttentionThreads(2); const two = step();',
      '  console.log(JSON.stringify({variant: kernelVariant(), grads, sameBits: JSON.stringify(one) === JSON.stringify(two)}));',
      '})();',
    ].join('\n');
    const result = await runCommand('node', ['--experimental-wasm-relaxed-simd', '-e', script], 120000);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const {variant, grads, sameBits} = JSON.parse(result.stdout) as {variant: string; grads: number[][]; sameBits: boolean};
    expect(variant).toBe('relaxed-simd');
    expect(sameBits).toBe(true);
    const fill = (n: number, seed: number) => Array.from({length: n}, (_, i) => Math.sin(seed * 1000 + i * 0.37));
    const rows = (values: number[], n: number) => Array.from({length: n}, (_, r) => values.slice(r * d, (r + 1) * d));
    const [q, k, v, dy] = [rows(fill(T * d, 1), T), rows(fill(S * d, 2), S), rows(fill(S * d, 3), S), rows(fill(T * d, 4), T)];
    const allowed = Array.from({length: T}, (_, t) => Array.from({length: S}, (__, s) => s <= t));
    const expected = referencePair(q, k, v, dy, allowed, 1 / Math.sqrt(d));
    [expected.dq, expected.dk, expected.dv].forEach((want, i) => {
      const got = rows(grads[i], want.length);
      expect(Math.max(...got.flatMap((row, r) => row.map((x, c) => Math.abs(x - want[r][c]))))).toBeLessThan(1e-5);
    });
  }, 130000);
});

describe('explicit masks on the fused kernels', () => {
  it('the planner sends explicit masks to the fused kernel, and to its fused backward when recording', () => {
    const call = {backend: 'wasm', batch: 2, heads: 2, T: 7, S: 13, dk: 5, dv: 4, mask: true};
    expect(planAttention(call)).toMatchObject({path: 'fused', kernel: 'attention'});
    expect(planAttention({...call, recording: true, padding: true, causal: true})).toMatchObject({path: 'fused', kernel: 'gradient'});
  });

  it.each(MASK_CASES)('%s: output, dQ, dK and dV equal the plain-array backward and the standard path\'s', (_, c) => {
    const {lead, T, S, dk, dv, masks} = c;
    const start = tf.memory().numTensors;
    const [B, H] = [lead[0], lead[1] ?? 1];
    const scale = 1 / Math.sqrt(dk);
    const shapes = [[...lead, T, dk], [...lead, S, dk], [...lead, S, dv], [...lead, T, dv]];
    const [q, k, v, r] = shapes.map((shape, i) => tf.tensor(randomArray(shape, 60 + i) as number[], shape, 'float32'));
    const maskShape = c.maskShape(B, H, T, S);
    const mask = maskTensor(maskShape, c.dtype);
    const keyPadding = masks.keyPadding == null ? null :
        tf.tensor2d(Array.from({length: B}, (__, b) => Array.from({length: S}, (___, s) => (masks.keyPadding!(b, s) ? 1 : 0))));
    const queryPadding = masks.queryPadding == null ? null :
        tf.tensor2d(Array.from({length: B}, (__, b) => Array.from({length: T}, (___, t) => (masks.queryPadding!(b, t) ? 1 : 0))), undefined, 'bool');
    const options = {mask, causal: masks.causal ?? false, keyPaddingMask: keyPadding, queryPaddingMask: queryPadding};
    const before = tf.memory().numTensors;
    const inference = (blockSize: number|null) => dotProductAttention(q, k, v, {...options, blockSize});
    const gradsOf = (blockSize: number|null) => tf.tidy(() => {
      const f = (a: tf.Tensor, b: tf.Tensor, x: tf.Tensor) => tf.sum(tf.mul(dotProductAttention(a, b, x, {...options, blockSize}), r));
      const {value, grads} = tf.valueAndGrads(f)([q, k, v]);
      return [value, ...grads];
    });
    const fusedOutput = ranFusedAttention(() => inference(null));
    const standardOutput = ranFusedAttention(() => inference(0));
    expect([fusedOutput.ran, standardOutput.ran]).toEqual([true, false]);
    const fused = ranFusedTraining(() => gradsOf(null));
    const standard = ranFusedTraining(() => gradsOf(0));
    expect([fused.ran, standard.ran]).toEqual([true, false]);
    expect(tf.memory().numTensors).toBe(before + 10);

    // The plain-array reference, pair by pair.
    const expected = referenceOf([q, k, v, r], lead, (b, h, t, s) =>
      maskAllows(maskShape, b, h, t, s) && !(masks.causal && s > t) && (masks.keyPadding?.(b, s) ?? true) &&
      (masks.queryPadding?.(b, t) ?? true), scale);
    expectClose(fusedOutput.result, expected.output, 1e-5);
    expectClose(fusedOutput.result, standardOutput.result, 1e-5);
    const [, dq, dkGrad, dvGrad] = fused.result;
    const tolerance = {abs: 1e-4, rel: 1e-4};
    expectClose(dq, expected.dq, tolerance);
    expectClose(dkGrad, expected.dk, tolerance);
    expectClose(dvGrad, expected.dv, tolerance);
    for (let i = 0; i < 4; i++) expectClose(fused.result[i], standard.result[i], tolerance);
    disposeAll(q, k, v, r, mask, keyPadding, queryPadding, fusedOutput.result, standardOutput.result, fused.result, standard.result);
    expect(tf.memory().numTensors).toBe(start);
  });

  it.each([
    ['[T, S] with key padding', [7, 13], [1, 1, 7, 13]], ['[B, 1, 1, S] with key padding', [2, 1, 1, 13], [2, 1, 1, 13]],
    ['[1, 1, T, 1] with key padding', [1, 1, 7, 1], [1, 1, 7, 13]], ['[B, T, S] with key padding', [2, 7, 13], [2, 1, 7, 13]],
  ])('the kernels get a mask %s as a bias of its own size (keys expanded), the key padding apart as [B, S]', (_, maskShape, biasShape) => {
    const [q, k, v] = [[2, 3, 7, 5], [2, 3, 13, 5], [2, 3, 13, 4]].map((shape, i) => tf.randomNormal(shape, 0, 1, 'float32', 95 + i));
    const mask = maskTensor(maskShape as number[], 'bool');
    const keyPaddingMask = tf.tensor2d([new Array<number>(13).fill(1), Array.from({length: 13}, (__, s) => (s < 10 ? 1 : 0))]);
    const spies = [jest.spyOn(fusedForward, 'fusedAttention'), jest.spyOn(training, 'fusedAttentionTraining')];
    try {
      const options = {mask, keyPaddingMask, causal: true};
      const f = (a: tf.Tensor) => tf.sum(dotProductAttention(a, k, v, options));
      tf.dispose([dotProductAttention(q, k, v, options), tf.grad(f)(q)]);
      const [inference, trained] = [spies[0].mock.calls[0][5], spies[1].mock.calls[0][3]] as Array<{keyBias: tf.Tensor; bias: tf.Tensor}>;
      for (const biases of [inference, trained]) {
        expect(biases.bias.shape).toEqual(biasShape);
        expect(biases.keyBias.shape).toEqual([2, 13]);
      }
    } finally {
      spies.forEach(spy => spy.mockRestore());
    }
    disposeAll(q, k, v, mask, keyPaddingMask);
  });

  it('fully masked rows (by the mask, or by the mask with causal and key padding) output zeros and get zero gradients, never NaN', () => {
    const [B, H, T, S, d] = [2, 2, 9, 11, 8];
    const q = tf.randomNormal([B, H, T, d], 0, 1, 'float32', 71);
    const k = tf.randomNormal([B, H, S, d], 0, 1, 'float32', 72);
    const v = tf.randomNormal([B, H, S, d], 0, 1, 'float32', 73);
    const r = tf.randomNormal([B, H, T, d], 0, 1, 'float32', 74);
    // Per (b, h): query 4 masked out entirely; batch 0's query 2 may see keys 5.. only (causal leaves it none);
    // batch 1, head 1: every query masked.
    const allowed = (b: number, h: number, t: number, s: number) => t !== 4 && !(b === 0 && t === 2 && s < 5) && !(b === 1 && h === 1);
    const mask = tf.tensor(Array.from({length: B * H * T * S}, (_, i) => {
      const [b, h, t, s] = [Math.floor(i / (H * T * S)), Math.floor(i / (T * S)) % H, Math.floor(i / S) % T, i % S];
      return allowed(b, h, t, s);
    }), [B, H, T, S], 'bool');
    const keyPadding = tf.tensor2d([new Array<number>(S).fill(1), Array.from({length: S}, (_, s) => (s === 0 ? 0 : 1))]);
    const options = {mask, causal: true, keyPaddingMask: keyPadding};
    const output = ranFusedAttention(() => dotProductAttention(q, k, v, options));
    const {result, ran} = ranFusedTraining(() => tf.tidy(() => {
      const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(dotProductAttention(a, b, c, options), r));
      return tf.grads(f)([q, k, v]);
    }));
    expect([output.ran, ran]).toEqual([true, true]);
    const [out, dq, dk, dv] = [output.result, ...result].map(x => x.arraySync() as number[][][][]);
    const zeros = (n: number) => new Array<number>(n).fill(0);
    const emptyRows = [[0, 0, 4], [0, 1, 4], [0, 0, 2], [0, 1, 2], [1, 0, 4], [1, 0, 0], ...Array.from({length: T}, (_, t) => [1, 1, t])];
    for (const [b, h, t] of emptyRows) {
      expect(out[b][h][t]).toEqual(zeros(d));
      expect(dq[b][h][t]).toEqual(zeros(d));
    }
    expect(dk[1][1]).toEqual(Array.from({length: S}, () => zeros(d)));
    expect(dv[1][1]).toEqual(Array.from({length: S}, () => zeros(d)));
    expect(out[0][0][3]).not.toEqual(zeros(d));  // a query with keys
    [out, dq, dk, dv].forEach(x => expect(x.flat(3).every(Number.isFinite)).toBe(true));
    disposeAll(q, k, v, r, mask, keyPadding, output.result, result);
  });

  // Rows that only the mask and the key padding together leave empty, for each way fusedAttendedRows counts keys:
  // a mask of one batch ([T, S]), of every batch ([B, 1, T, S]), and of one key column ([1, 1, T, 1]).
  it.each([
    ['[T, S]', [6, 9], (b: number, t: number, s: number) => (t === 2 ? s < 5 : t !== 4)],
    ['[B, 1, T, S]', [3, 1, 6, 9], (b: number, t: number, s: number) => (b === 1 && t === 3 ? s === 8 : true)],
    ['[B, 1, 1, S]', [3, 1, 1, 9], (b: number, t: number, s: number) => (b === 0 ? s < 5 : true)],
    ['[1, 1, T, 1]', [1, 1, 6, 1], (b: number, t: number) => t !== 1],
  ])('a mask %s with key padding: rows left with no key by both output zeros and get zero gradients, the others the standard path\'s',
      (_, maskShape, allows) => {
        const [B, H, T, S, d] = [3, 2, 6, 9, 4];
        const start = tf.memory().numTensors;
        const [q, k, v, r] = [[B, H, T, d], [B, H, S, d], [B, H, S, d], [B, H, T, d]].map((shape, i) => tf.randomNormal(shape, 0, 1, 'float32', 101 + i));
        const shape = maskShape as number[];
        const rank4 = shape.length === 4 ? shape : [1, 1, ...shape];
        const maskAt = (b: number, t: number, s: number) =>
          (allows as (b: number, t: number, s: number) => boolean)(rank4[0] === 1 ? 0 : b, rank4[2] === 1 ? 0 : t, rank4[3] === 1 ? 0 : s);
        const mask = tf.tensor(Array.from({length: rank4.reduce((x, y) => x * y, 1)}, (__, i) => {
          const [b, t, s] = [Math.floor(i / (rank4[2] * rank4[3])), Math.floor(i / rank4[3]) % rank4[2], i % rank4[3]];
          return maskAt(b, t, s);
        }), shape, 'bool');
        // Batch 0: keys 5.. real; batch 1: all but key 8; batch 2: every key padded.
        const keyReal = (b: number, s: number) => (b === 0 ? s >= 5 : b === 1 ? s !== 8 : false);
        const keyPaddingMask = tf.tensor2d(Array.from({length: B}, (__, b) => Array.from({length: S}, (___, s) => (keyReal(b, s) ? 1 : 0))));
        const options = {mask, keyPaddingMask};
        const run = (blockSize: number|null) => tf.tidy(() => {
          const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(dotProductAttention(a, b, c, {...options, blockSize}), r));
          return [dotProductAttention(q, k, v, {...options, blockSize}), ...tf.grads(f)([q, k, v])];
        });
        const fused = ranFusedTraining(() => run(null));
        const standard = ranFusedTraining(() => run(0));
        expect([fused.ran, standard.ran]).toEqual([true, false]);
        fused.result.forEach((x, i) => expectClose(x, standard.result[i], {abs: 1e-5, rel: 1e-4}));
        const [out, dq] = fused.result.slice(0, 2).map(x => x.arraySync() as number[][][][]);
        let empty = 0;
        for (let b = 0; b < B; b++) {
          for (let t = 0; t < T; t++) {
            const hasKey = Array.from({length: S}, (__, s) => s).some(s => maskAt(b, t, s) && keyReal(b, s));
            for (let h = 0; h < H; h++) {
              if (hasKey) {
                expect(out[b][h][t].some(x => x !== 0)).toBe(true);
              } else {
                expect([b, h, t, out[b][h][t], dq[b][h][t]]).toEqual([b, h, t, new Array<number>(d).fill(0), new Array<number>(d).fill(0)]);
                empty++;
              }
            }
          }
        }
        expect(empty).toBeGreaterThan(H * T);  // batch 2's rows, and some that mask and padding empty together
        disposeAll(q, k, v, r, mask, keyPaddingMask, fused.result, standard.result);
        expect(tf.memory().numTensors).toBe(start);
      });

  // Above twoThreadsPay's 16 MFLOP, T not a multiple of 4, d not of 8.
  it.each([['[T, S] float32', [301, 310]], ['[B, H, T, S] bool, causal', [1, 2, 301, 310]], ['[B, 1, 1, S] with key padding', [1, 1, 1, 310]]])(
      'mask %s on two threads: the output and gradients are bit for bit those on one, and the standard path\'s', (what, maskShape) => {
        const [lead, T, S, dk, dv] = [[1, 2], 301, 310, 60, 44];
        const start = tf.memory().numTensors;
        const q = tf.randomNormal([...lead, T, dk], 0, 1, 'float32', 81);
        const k = tf.randomNormal([...lead, S, dk], 0, 1, 'float32', 82);
        const v = tf.randomNormal([...lead, S, dv], 0, 1, 'float32', 83);
        const r = tf.randomNormal([...lead, T, dv], 0, 1, 'float32', 84);
        const mask = maskTensor(maskShape as number[], (what as string).includes('bool') ? 'bool' : 'float32');
        const keyPaddingMask = (what as string).includes('padding') ? tf.tensor2d([Array.from({length: S}, (__, s) => (s % 7 === 3 ? 0 : 1))]) : null;
        const options = {mask, keyPaddingMask, causal: (what as string).includes('causal')};
        const run = (threads: 1|2) => {
          const previous = setAttentionThreads(threads);
          try {
            const output = ranFusedAttention(() => dotProductAttention(q, k, v, options));
            const outputThreads = fusedThreadsOfLastCall();
            const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(dotProductAttention(a, b, c, options), r));
            const grads = ranFusedTraining(() => tf.grads(f)([q, k, v]));
            expect([output.ran, grads.ran]).toEqual([true, true]);
            return {results: [output.result, ...grads.result], threads: [outputThreads, fusedThreadsOfLastCall()]};
          } finally {
            setAttentionThreads(previous);
          }
        };
        const [one, two] = [run(1), run(2)];
        expect(one.threads).toEqual([1, 1]);
        expect(two.threads).toEqual([2, 2]);
        two.results.forEach((x, i) => expect(x.dataSync()).toEqual(one.results[i].dataSync()));
        const standard = tf.tidy(() => {
          const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(dotProductAttention(a, b, c, {...options, blockSize: 0}), r));
          return [dotProductAttention(q, k, v, {...options, blockSize: 0}), ...tf.grads(f)([q, k, v])];
        });
        standard.forEach((x, i) => expectClose(two.results[i], x, {abs: 1e-4, rel: 1e-4}));
        disposeAll(q, k, v, r, mask, keyPaddingMask, one.results, two.results, standard);
        expect(tf.memory().numTensors).toBe(start);
      });

  it('leaks neither tensors nor wasm heap, error paths included; a mask of a bad shape is refused before any work', () => {
    const backend = tf.backend() as unknown as WasmBackendView;
    const wasm = backend.wasm;
    wasm._free(wasm._malloc(16));  // Emscripten's lazy wrappers replace themselves on their first call
    const [q, k, v] = [[2, 3, 7, 5], [2, 3, 13, 5], [2, 3, 13, 4]].map((shape, i) => tf.randomNormal(shape, 0, 1, 'float32', 91 + i));
    const mask = maskTensor([2, 1, 7, 13], 'bool');
    const keyPaddingMask = tf.tensor2d([new Array<number>(13).fill(1), Array.from({length: 13}, (_, s) => (s < 10 ? 1 : 0))]);
    const options = {mask, keyPaddingMask, causal: true};
    const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(dotProductAttention(a, b, c, options));
    tf.dispose([dotProductAttention(q, k, v, options), ...tf.grads(f)([q, k, v])]);  // the first calls may grow the heap
    const before = tf.memory();
    const heapBytes = wasm.HEAPU8.length;
    const {live, allocations} = watchHeapBlocks(wasm, () => {
      for (let i = 0; i < 20; i++) tf.dispose([dotProductAttention(q, k, v, options), ...tf.grads(f)([q, k, v])]);
    });
    expect(allocations).toBeGreaterThanOrEqual(60);  // a work buffer per forward and per backward at least
    expect(live).toEqual([]);
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(tf.memory().numBytes).toBe(before.numBytes);
    expect(wasm.HEAPU8.length).toBe(heapBytes);

    const bad = tf.ones([7, 14]);
    const refused = /Argument `mask` of shape \[7, 14\] does not broadcast to the attention scores of shape \[2, 3, 7, 13\]: axis 1 has 14, expected 13 or 1\./;
    const spies = [jest.spyOn(fusedForward, 'fusedAttention'), jest.spyOn(training, 'fusedAttentionTraining')];
    try {
      expectThrowsWithoutLeak(() => dotProductAttention(q, k, v, {mask: bad}), refused);
      expectThrowsWithoutLeak(() => tf.grads((a: tf.Tensor) => tf.sum(dotProductAttention(a, k, v, {mask: bad})))([q]), refused);
      expect(spies.map(spy => spy.mock.calls.length)).toEqual([0, 0]);
    } finally {
      spies.forEach(spy => spy.mockRestore());
    }
    disposeAll(q, k, v, mask, keyPaddingMask, bad);
  });
});

describe('sizes', () => {
  it('pairRows finds pair n = (b, h) of [P, rows, d] (the op\'s) and of [B, rows, H·d] (the layer\'s heads side by side)', () => {
    expect(training.pairRows(100, 3, 5, 8, 1)).toEqual({from: 100 + 3 * 5 * 8, stride: 8});
    expect(training.pairRows(100, 6, 5, 8, 4)).toEqual({from: 100 + (1 * 5 * 4 + 2) * 8, stride: 32});  // batch 1, head 2
    // Every element of a [B, rows, H·d] array (its value its index) read pair by pair is that of [B, H, rows, d].
    const [B, rows, H, d] = [2, 3, 3, 2];
    const flat = Array.from({length: B * rows * H * d}, (_, i) => i);
    for (let n = 0; n < B * H; n++) {
      const {from, stride} = training.pairRows(0, n, rows, d, H);
      const [b, h] = [Math.floor(n / H), n % H];
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < d; j++) expect(flat[from + r * stride + j]).toBe(((b * rows + r) * H + h) * d + j);
      }
    }
  });

  it('backwardParts cuts each pair\'s query tiles into parts of shrinking work: enough for 8 calls in all, at most 8, one tile each at least, the extra parts\' dK and dV within 8 MiB; one part below the two-thread size', () => {
    const partsOf = (pairs: number, T: number, S: number, causal = false, d = 64) => backwardParts({pairs, T, S, dk: d, dv: d, causal});
    const sizesOf = (bounds: number[]) => bounds.slice(1).map((b, j) => b - bounds[j]);
    expect(partsOf(1, 8, 8)).toEqual([0, 2]);                   // 16 KFLOP: one thread, one part
    expect(sizesOf(partsOf(32, 128, 128))).toEqual([21, 11]);  // 2 parts for 64 calls, 2/3 and 1/3 of the tiles
    expect(partsOf(2, 301, 310).length - 1).toBe(4);           // 4 parts of 2 pairs
    expect(partsOf(1, 8192, 8192).length - 1).toBe(3);         // 4 MiB a part: 2 more at most
    expect(partsOf(1, 16384, 16384).length - 1).toBe(2);       // 8 MiB a part: 2 all the same (the two threads)
    expect(partsOf(1, 40, 1e5).length - 1).toBe(2);            // 10 tiles, S large
    for (const causal of [false, true]) {
      const bounds = partsOf(1, 1024, 1024, causal);
      expect(bounds.length - 1).toBe(8);
      expect(bounds[0]).toBe(0);
      expect(bounds[8]).toBe(256);
      const sizes = sizesOf(bounds);
      expect(sizes.every(size => size >= 1)).toBe(true);
      // The work of each part (tiles, or with causal the keys its tiles see) shrinks part by part, within a tile's work.
      const work = (tile: number) => (causal ? Math.min(1024, 4 * tile + 4) : 1);
      const partWork = sizes.map((_, j) => Array.from({length: sizes[j]}, (__, i) => work(bounds[j] + i)).reduce((a, b) => a + b, 0));
      partWork.slice(1).forEach((w, j) => expect(w).toBeLessThanOrEqual(partWork[j] + work(bounds[j + 1])));
      expect(partWork[7] / partWork.reduce((a, b) => a + b, 0)).toBeCloseTo(1 / 36, 2);  // shares 8, 7, …, 1 of 36
    }
    expect(partsOf(1, 12, 1e4)).toEqual([0, 2, 3]);              // 3 tiles: 2 parts, the first twice the second
  });

  it('work buffers stay linear in T and S: twice the length, at most twice the bytes (twice, once the parts\' dK and dV are capped), and within FUSED_MAX_BYTES up to 64 Ki keys', () => {
    const sizes = (L: number) => ({T: L, S: L, dk: 64, dv: 64});
    for (const L of [1024, 2048, 4096, 8192, 16384]) expect(fusedTrainingBytes(sizes(2 * L))).toBeLessThanOrEqual(2 * fusedTrainingBytes(sizes(L)));
    expect(fusedTrainingBytes(sizes(32768)) / fusedTrainingBytes(sizes(16384))).toBeCloseTo(2, 1);
    expect(fusedTrainingSizesFit(sizes(8192))).toBe(true);
    expect(fusedTrainingBytes(sizes(8192))).toBeLessThan(FUSED_MAX_BYTES);
    expect(fusedTrainingSizesFit({T: 0, S: 4, dk: 4, dv: 4})).toBe(false);
    expect(fusedTrainingSizesFit({T: 4096, S: 4096, dk: 1024, dv: 1024})).toBe(false);
    expect(FUSED_BACKWARD_KEY_BLOCK % 8).toBe(0);
    expect(FUSED_BACKWARD_KEY_BLOCK).toBeLessThan(260);  // the sizes above cross a backward block (S = 260, 263, 300)
    expect(FUSED_KEY_BLOCK).toBeLessThan(300);  // the size table's S = 300 crosses a forward block
  });
});
