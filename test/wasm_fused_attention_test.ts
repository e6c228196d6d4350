/**
 * The fused WebAssembly SIMD attention kernel (src/backend/wasm_fused_attention.ts), on the
 * wasm backend: what it computes, checked against softmax(scale·Q·Kᵀ)·V written with plain
 * number[][] loops (test/helpers/reference_attention.ts), never against tfjs ops; its
 * numerical stability; the multi-head form that reads heads side by side; when it can run
 * (`fusedAttentionFits`) and when the planner sends the op and the layer to it (`planAttention`); that the
 * op and the layer give the same results on it as on the standard path; and that it leaks
 * neither tensors nor wasm heap.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {dotProductAttention, scaledDotProductAttention} from '../src/node';
import type {ScaledDotProductAttentionArgs} from '../src/node';
import {planAttention} from '../src/attention/attention_plan';
import type {AttentionCall} from '../src/attention/attention_plan';
import * as fusedModule from '../src/backend/wasm_fused_attention';
import {
  FUSED_MAX_BYTES, fusedAttention, fusedAttentionBytes, fusedAttentionFits, fusedAttentionLayer, fusedAttentionLayerFits,
  fusedMultiHeadAttention, fusedThreadsOfLastCall,
} from '../src/backend/wasm_fused_attention';
import * as threadsModule from '../src/backend/attention_threads';
import {getSecondThread, recordTwoThreadCalls, setAttentionThreads, TWO_THREAD_MIN_FLOPS} from '../src/backend/attention_threads';
import {runCommand} from './helpers/run_script';
import {ValueError} from '../src/errors';
import {attendOneHead, Matrix, referenceAttention, referenceDotProductAttention, Tensor3} from './helpers/reference_attention';
import {
  disposeAll, expectAllFinite, expectClose, expectThrowsWithoutLeak, maxAbsDiff, Nested, onBackend, randomArray, runTestsOn,
} from './helpers/tensors';
import {watchHeapBlocks} from './helpers/heap_blocks';

/** What the tests read of tfjs-backend-wasm's backend object. */
interface WasmBackendView {
  wasm: {HEAPU8: Uint8Array; _malloc(bytes: number): number; _free(address: number): void};
  typedArrayFromHeap(t: tf.Tensor): Float32Array;
}

runTestsOn('wasm');

/** Runs `fn` and asserts that the only tensor it leaves behind is the one it returns. */
function onlyTheOutput<T extends tf.Tensor>(fn: () => T): T {
  const before = tf.memory().numTensors;
  const result = fn();
  expect(tf.memory().numTensors).toBe(before + 1);
  return result;
}

/** A float32 tensor of uniform values in [-range, range), and its values as nested arrays (rounded to float32). */
function randomTensor(shape: number[], seed: number, range = 1): {tensor: tf.Tensor; values: Nested} {
  const tensor = tf.tensor(randomArray(shape, seed, range) as number[], shape, 'float32');
  return {tensor, values: tensor.arraySync() as Nested};
}

/** Random Q [..., T, dk], K [..., S, dk], V [..., S, dv] (seeds seed, +1, +2) and the plain-array attention output. */
function randomAttention(lead: number[], sizes: {T: number; S: number; dk: number; dv: number}, options: {scale: number; causal?: boolean}, seed: number):
    {q: tf.Tensor; k: tf.Tensor; v: tf.Tensor; expected: Nested} {
  const {T, S, dk, dv} = sizes;
  const q = randomTensor([...lead, T, dk], seed);
  const k = randomTensor([...lead, S, dk], seed + 1);
  const v = randomTensor([...lead, S, dv], seed + 2);
  const expected = referenceDotProductAttention(q.values as Matrix, k.values as Matrix, v.values as Matrix, options).output as Nested;
  return {q: q.tensor, k: k.tensor, v: v.tensor, expected};
}

/** Columns from..from+width of every row of every batch: [B][L][C] -> [B][L][width]. */
function columns(x: Tensor3, from: number, width: number): Tensor3 {
  return x.map(rows => rows.map(row => row.slice(from, from + width)));
}

/** Per-head reference of heads side by side: head h reads the given columns, outputs concatenated [B][T][H·dv]. */
function referenceHeads(
    q: Tensor3, qColumn: number, kv: {k: Tensor3; kColumn: number; v: Tensor3; vColumn: number},
    sizes: {heads: number; dk: number; dv: number; scale: number}): Tensor3 {
  const {heads, dk, dv, scale} = sizes;
  return q.map((qb, b) => {
    const perHead = Array.from({length: heads}, (_, h) => {
      const qh = columns([qb], qColumn + h * dk, dk)[0];
      const kh = columns([kv.k[b]], kv.kColumn + h * dk, dk)[0];
      const vh = columns([kv.v[b]], kv.vColumn + h * dv, dv)[0];
      const allowed = qh.map(() => kh.map(() => true));
      return attendOneHead(qh, kh, vh, allowed, scale).output;  // [T][dv]
    });
    return qb.map((_, t) => perHead.flatMap(head => head[t]));  // [T][H·dv]
  });
}

describe('fusedAttention computes softmax(scale·Q·Kᵀ)·V', () => {
  // [name, leading dims, T, S, dk, dv, scale (null: 1/sqrt(dk))]. The kernel works on tiles of
  // 4 queries, panels of 8 keys and 8 output columns, so sizes off those multiples are padded.
  const cases: Array<[string, number[], number, number, number, number, number|null]> = [
    ['aligned sizes: T % 4 = 0, S % 8 = 0, dv % 8 = 0 (output written in place)', [2], 8, 16, 8, 8, null],
    ['T = 1 and S = 1', [1], 1, 1, 4, 8, null],
    ['T = 1, odd dk and dv', [2], 1, 9, 3, 5, null],
    ['S = 1: every weight is 1, the output is V', [2], 5, 1, 3, 5, null],
    ['T not a multiple of 4 (T = 7)', [3], 7, 16, 8, 16, null],
    ['T = 13, S = 2', [1], 13, 2, 4, 8, null],
    ['S not a multiple of 8 (S = 13)', [2], 8, 13, 8, 8, null],
    ['S = 7, fewer keys than one panel', [1], 4, 7, 8, 8, null],
    ['dk odd (dk = 3)', [2], 12, 24, 3, 8, null],
    ['dk = 1', [1], 6, 10, 1, 4, null],
    ['dv = 5', [2], 8, 8, 4, 5, null],
    ['dv = 12', [2], 9, 17, 6, 12, null],
    ['dv = 1', [1], 5, 11, 4, 1, null],
    ['rank 4 [B, H, T, d]', [2, 3], 10, 11, 3, 12, null],
    ['rank 4, aligned', [1, 2], 16, 32, 16, 16, null],
    ['cross shapes, T > S', [1], 33, 7, 5, 9, null],
    ['cross shapes, T < S', [2], 3, 70, 16, 24, null],
    ['custom scale 0.05', [2], 6, 10, 4, 5, 0.05],
    ['custom scale 2.5', [1], 9, 9, 3, 8, 2.5],
    ['many tiles and panels (T = 37, S = 131, d = 20)', [2], 37, 131, 20, 20, null],
    ['d = 64, T = S = 64', [1], 64, 64, 64, 64, null],
    ['several key blocks of 256, the last one partial (S = 600)', [2], 9, 600, 16, 8, null],
  ];
  it.each(cases)('%s: leading %j, T=%i, S=%i, dk=%i, dv=%i, scale %s', (_, lead, T, S, dk, dv, scale) => {
    const s = scale ?? 1 / Math.sqrt(dk);
    const {q, k, v, expected} = randomAttention(lead, {T, S, dk, dv}, {scale: s}, 101);
    const out = onlyTheOutput(() => fusedAttention(q, k, v, s));
    expect(out.shape).toEqual([...lead, T, dv]);
    expect(out.dtype).toBe('float32');
    expectClose(out, expected, 1e-5);
    disposeAll(out, q, k, v);
  });

  it('leaves its inputs unchanged and gives the same result twice', () => {
    const q = randomTensor([2, 7, 3], 1);
    const k = randomTensor([2, 9, 3], 2);
    const v = randomTensor([2, 9, 5], 3);
    const first = fusedAttention(q.tensor, k.tensor, v.tensor, 0.7);
    const second = fusedAttention(q.tensor, k.tensor, v.tensor, 0.7);
    expect(Array.from(second.dataSync())).toEqual(Array.from(first.dataSync()));
    expectClose(q.tensor, q.values, 0);
    expectClose(k.tensor, k.values, 0);
    expectClose(v.tensor, v.values, 0);
    disposeAll(first, second, q.tensor, k.tensor, v.tensor);
  });

  it('keeps batches apart (batches of very different values)', () => {
    const B = 3;
    const qValues = Array.from({length: B}, (_, b) => [[b + 1, -b], [0.5, b], [b, b]]);           // [3][3][2]
    const kValues = Array.from({length: B}, (_, b) => [[1, 0], [0, 1], [b, -1]]);                // [3][3][2]
    const vValues = Array.from({length: B}, (_, b) => [[100 * b], [100 * b + 1], [100 * b + 2]]);  // [3][3][1]
    const out = fusedAttention(tf.tensor3d(qValues), tf.tensor3d(kValues), tf.tensor3d(vValues), 1);
    const expected = referenceDotProductAttention(qValues, kValues, vValues, {scale: 1}).output;
    expectClose(out, expected as Nested, 1e-4);
    tf.dispose(out);
  });
});

describe('fusedAttention with causal: query t attends keys s <= t (top-left aligned)', () => {
  // [name, leading dims, T, S, dk, dv]: tiles of 4 queries meet the diagonal inside blocks of 256 keys.
  const cases: Array<[string, number[], number, number, number, number]> = [
    ['T = S = 1', [1], 1, 1, 4, 8],
    ['T = S, off multiples of 4 and 8', [2], 13, 13, 5, 6],
    ['T > S: queries past the last key attend every key', [1], 21, 9, 8, 8],
    ['T < S: keys past the last query are never attended', [2], 7, 30, 8, 16],
    ['several blocks of 256 keys: whole blocks skipped for early tiles', [1], 600, 600, 16, 8],
    ['rank 4, several heads', [2, 3], 37, 37, 8, 8],
  ];
  it.each(cases)('%s: leading %j, T=%i, S=%i, dk=%i, dv=%i', (_, lead, T, S, dk, dv) => {
    const scale = 1 / Math.sqrt(dk);
    const {q, k, v, expected} = randomAttention(lead, {T, S, dk, dv}, {scale, causal: true}, 111);
    const out = onlyTheOutput(() => fusedAttention(q, k, v, scale, true));
    expectClose(out, expected, 1e-5);
    disposeAll(out, q, k, v);
  });

  it('the first query sees only the first key: its output is V[0]', () => {
    const q = randomTensor([1, 9, 4], 114);
    const v = randomTensor([1, 9, 5], 115);
    const out = fusedAttention(q.tensor, q.tensor, v.tensor, 0.5, true);
    expectClose(tf.tidy(() => out.slice([0, 0, 0], [1, 1, 5]).arraySync()) as Nested, [[(v.values as number[][][])[0][0]]], 1e-6);
    disposeAll(out, q.tensor, v.tensor);
  });
});

describe('numerical stability', () => {
  it('very large logits (queries ~1e2, scores thousands apart) give finite outputs equal to the reference', () => {
    // Scores of magnitude ~1e3: float32 rounds them to ~1e-4, whence the tolerance.
    for (const [lead, T, S, dk, dv] of [[[2], 6, 13, 4, 5], [[1, 2], 9, 20, 8, 16], [[1], 1, 3, 3, 8]] as Array<[number[], number, number, number, number]>) {
      const q = randomTensor([...lead, T, dk], 7, 100);
      const k = randomTensor([...lead, S, dk], 8, 10);
      const v = randomTensor([...lead, S, dv], 9);
      const scale = 1 / Math.sqrt(dk);
      const expected = referenceDotProductAttention(q.values as Matrix, k.values as Matrix, v.values as Matrix, {scale}).output;
      const out = fusedAttention(q.tensor, k.tensor, v.tensor, scale);
      expectAllFinite(out);
      expectClose(out, expected as Nested, {abs: 1e-4});
      disposeAll(out, q.tensor, k.tensor, v.tensor);
    }
  });

  it('scores thousands apart select the best key alone (the others weigh ~1e-38, exp being clamped at -87)', () => {
    // Query 100·t·[1, 1, 1] against key 10·s·[1, 1, 1]: scaled scores 3000·t·s/sqrt(3), so
    // for t >= 1 neighbouring keys are 1732·t apart and the last key takes all the weight.
    // Query 0 scores 0 against every key: the mean of V.
    const T = 5;
    const S = 11;  // not a multiple of 8: padding keys must not count
    const q = tf.tensor3d([Array.from({length: T}, (_, t) => [100 * t, 100 * t, 100 * t])]);
    const k = tf.tensor3d([Array.from({length: S}, (_, s) => [10 * s, 10 * s, 10 * s])]);
    const vValues = Array.from({length: S}, (_, s) => [s, -s, 1, s * s, 0.5]);
    const v = tf.tensor3d([vValues]);
    const out = fusedAttention(q, k, v, 1 / Math.sqrt(3));
    const mean = vValues[0].map((_, c) => vValues.reduce((sum, row) => sum + row[c], 0) / S);
    expectClose(out, [[mean, ...Array.from({length: T - 1}, () => vValues[S - 1])]], 1e-5);
    disposeAll(out, q, k, v);
  });

  it('all real scores far below zero, with padding keys in the last panel, still pick the best real key', () => {
    // Scores -300·sqrt(3)·(s + 1): all very negative, best at s = 0. The 7 padding keys of the
    // panel (zero keys, score 0) must take no part in the max: else every weight is clamped
    // to the same e^-87 and the output is the mean of V.
    const S = 9;
    const q = tf.tensor3d([[[100, 100, 100], [1, 1, 1]]]);
    const k = tf.tensor3d([Array.from({length: S}, (_, s) => [-(s + 1), -(s + 1), -(s + 1)])]);
    const vValues = Array.from({length: S}, (_, s) => [s + 1, 2 * s, -s]);
    const v = tf.tensor3d([vValues]);
    const out = fusedAttention(q, k, v, 1 / Math.sqrt(3));
    const expected = referenceDotProductAttention(
        [[[100, 100, 100], [1, 1, 1]]], k.arraySync() as Matrix[], [vValues], {scale: 1 / Math.sqrt(3)}).output as Tensor3;
    expectClose(expected[0][0], vValues[0], 1e-12);  // the reference agrees: key 0 alone
    expectClose(out, expected, 1e-5);
    disposeAll(out, q, k, v);
  });

  it.each([
    ['grow from block to block: each block rescales the sums and outputs before it', 1],
    ['shrink from block to block: the first block keeps the max', -1],
  ])('scores that %s (S = 700, three blocks of 256 keys)', (_, direction) => {
    const [T, S] = [6, 700];
    // Key s scores direction·s/20 for every query: a span of 35, far beyond float32's exp range at the ends.
    const qValues = Array.from({length: T}, () => [1, 0, 0, 0]);
    const kValues = Array.from({length: S}, (_, j) => [direction * j / 20, 0, 0, 0]);
    const vValues = Array.from({length: S}, (_, j) => [j, 1, -j / 2, Math.sin(j)]);
    const [q, k, v] = [qValues, kValues, vValues].map(x => tf.tensor3d([x]));
    const expected = referenceDotProductAttention(qValues, kValues, vValues, {scale: 1}).output;
    const out = fusedAttention(q, k, v, 1);
    expectClose(out, [expected] as Nested, {abs: 1e-5, rel: 1e-6});  // outputs up to ~700
    disposeAll(out, q, k, v);
  });

  it('rows whose scores are all equal give the mean of V', () => {
    const S = 13;
    const vValues = randomArray([S, 6], 21) as number[][];
    const mean = vValues[0].map((_, c) => vValues.reduce((sum, row) => sum + row[c], 0) / S);
    const v = tf.tensor3d([vValues]);
    // Zero queries, and nonzero queries against identical keys.
    const zeroQ = tf.zeros([1, 5, 4]);
    const k = tf.tensor3d([randomArray([S, 4], 22) as number[][]]);
    const sameQ = tf.tensor3d([randomArray([5, 4], 23, 50) as number[][]]);
    const sameK = tf.tensor3d([Array.from({length: S}, () => [0.3, -2, 1, 0.25])]);
    const meanRows = [Array.from({length: 5}, () => mean)];
    for (const out of [fusedAttention(zeroQ, k, v, 0.5), fusedAttention(sameQ, sameK, v, 0.5)]) {
      expectClose(out, meanRows, 1e-5);
      out.dispose();
    }
    disposeAll(v, zeroQ, k, sameQ, sameK);
  });
});

describe('fusedMultiHeadAttention reads heads side by side in the last axis', () => {
  const selfCases: Array<[number, number, number, number, number]> = [
    // B, T, H, dk, dv
    [2, 7, 3, 3, 5],
    [1, 8, 2, 8, 8],    // aligned: values read and output written in place
    [2, 5, 4, 4, 12],
    [1, 1, 2, 2, 3],
  ];
  it.each(selfCases)('self-attention from one tensor qkv [B, T, H·(2dk + dv)]: B=%i, T=%i, H=%i, dk=%i, dv=%i', (B, T, H, dk, dv) => {
    const qkv = randomTensor([B, T, H * (2 * dk + dv)], 31);
    const scale = 1 / Math.sqrt(dk);
    const sizes = {heads: H, dk, dv, scale};
    const out = onlyTheOutput(() => fusedMultiHeadAttention(
        {x: qkv.tensor, column: 0}, {x: qkv.tensor, column: H * dk}, {x: qkv.tensor, column: 2 * H * dk}, sizes));
    expect(out.shape).toEqual([B, T, H * dv]);
    const x = qkv.values as Tensor3;
    expectClose(out, referenceHeads(x, 0, {k: x, kColumn: H * dk, v: x, vColumn: 2 * H * dk}, sizes), 1e-5);
    disposeAll(out, qkv.tensor);
  });

  it.each([
    [2, 6, 11, 2, 4, 5],
    [1, 9, 16, 3, 8, 8],
    [3, 4, 3, 1, 5, 7],
  ])('cross-attention, queries at column 2 of q, keys and values in one kv tensor: B=%i, T=%i, S=%i, H=%i, dk=%i, dv=%i',
     (B, T, S, H, dk, dv) => {
       const q = randomTensor([B, T, 2 + H * dk + 1], 41);      // two columns before the heads, one after
       const kv = randomTensor([B, S, H * (dk + dv)], 42);
       const sizes = {heads: H, dk, dv, scale: 0.6};
       const out = onlyTheOutput(() => fusedMultiHeadAttention(
           {x: q.tensor, column: 2}, {x: kv.tensor, column: 0}, {x: kv.tensor, column: H * dk}, sizes));
       expect(out.shape).toEqual([B, T, H * dv]);
       const c = kv.values as Tensor3;
       expectClose(out, referenceHeads(q.values as Tensor3, 2, {k: c, kColumn: 0, v: c, vColumn: H * dk}, sizes), 1e-5);
       disposeAll(out, q.tensor, kv.tensor);
     });

  it('three separate tensors, each head at column 0', () => {
    const [B, T, S, H, dk, dv] = [2, 5, 9, 2, 3, 6];
    const q = randomTensor([B, T, H * dk], 51);
    const k = randomTensor([B, S, H * dk], 52);
    const v = randomTensor([B, S, H * dv], 53);
    const sizes = {heads: H, dk, dv, scale: 1 / Math.sqrt(dk)};
    const out = fusedMultiHeadAttention({x: q.tensor, column: 0}, {x: k.tensor, column: 0}, {x: v.tensor, column: 0}, sizes);
    const expected = referenceHeads(q.values as Tensor3, 0, {k: k.values as Tensor3, kColumn: 0, v: v.values as Tensor3, vColumn: 0}, sizes);
    expectClose(out, expected, 1e-5);
    disposeAll(out, q.tensor, k.tensor, v.tensor);
  });
});

describe('on two threads (Node: this thread and one worker, above TWO_THREAD_MIN_FLOPS)', () => {
  afterEach(() => {
    setAttentionThreads(2);
  });

  /** The kernel's result with one thread and with two, checking that the worker ran only for the second. */
  function bothWays(run: () => tf.Tensor): {one: tf.Tensor; two: tf.Tensor} {
    const workerRuns = jest.spyOn(threadsModule, 'runStepsOnBothThreads');
    try {
      setAttentionThreads(1);
      const one = run();
      expect(workerRuns).not.toHaveBeenCalled();
      setAttentionThreads(2);
      const two = run();
      expect(workerRuns).toHaveBeenCalled();
      return {one, two};
    } finally {
      workerRuns.mockRestore();
    }
  }

  // [name, leading dims, T, S, dk, dv]: each call is above the threshold (checked below).
  const cases: Array<[string, number[], number, number, number, number]> = [
    ['one pair, aligned: V read in place, output in its final layout', [1], 512, 512, 64, 64],
    ['T % 4 != 0 and S % 8 != 0: padded queries and keys', [1], 509, 517, 64, 64],
    ['dv % 8 != 0: V and the output go through padded copies', [2], 340, 401, 40, 36],
    ['rank 4, several heads', [2, 3], 200, 260, 32, 32],
    ['cross shapes T < S', [1], 132, 1200, 64, 64],
  ];
  it('the layer with an attentionMask [B, T, S] and a padding mask, 2 heads (23 MFLOP): bit for bit the one-thread result, and the standard path\'s', () => {
    const [B, T, d] = [2, 300, 40];
    const x = randomTensor([B, T, d], 171);
    const padding = tf.tensor2d(Array.from({length: B}, (_, b) => Array.from({length: T}, (__, t) => ((t + b) % 23 === 11 ? 0 : 1))));
    // Batch 0's query 7 attends no key (a zero row), the others a pattern of their own.
    const attentionMask = tf.tidy(() => tf.tensor3d(Array.from({length: B}, (_, b) => Array.from({length: T}, (__, t) =>
      Array.from({length: T}, (___, s) => !(b === 0 && t === 7) && (s + 2 * t + b) % 4 !== 3))), [B, T, T], 'bool'));
    const args = {numHeads: 2, keyDim: 16, useBias: true};
    const fused = scaledDotProductAttention({...args, biasInitializer: 'glorotUniform'});
    const standard = scaledDotProductAttention({...args, blockSize: 0});
    tf.tidy(() => {
      fused.apply(x.tensor);
      standard.apply(x.tensor);
    });
    standard.setWeights(fused.getWeights());
    const options = {attentionMask, mask: padding};
    const layerKernel = jest.spyOn(fusedModule, 'fusedAttentionLayer');
    const {one, two} = bothWays(() => fused.apply(x.tensor, options) as tf.Tensor);
    expect(layerKernel).toHaveBeenCalledTimes(2);
    layerKernel.mockRestore();
    expect(two.dataSync()).toEqual(one.dataSync());
    const expected = standard.apply(x.tensor, options) as tf.Tensor;
    expectClose(two, expected, 1e-5);
    expect(Array.from(two.slice([0, 7, 0], [1, 1, 32]).dataSync()).every(v => v === 0)).toBe(true);
    disposeAll(one, two, expected, x.tensor, padding, attentionMask);
    fused.dispose();
    standard.dispose();
  });

  it.each(cases)('%s: leading %j, T=%i, S=%i, dk=%i, dv=%i: bit for bit the one-thread result, and the reference', (_, lead, T, S, dk, dv) => {
    const pairs = lead.reduce((a, b) => a * b, 1);
    expect(2 * pairs * T * S * (dk + dv)).toBeGreaterThanOrEqual(TWO_THREAD_MIN_FLOPS);
    const scale = 1 / Math.sqrt(dk);
    const {q, k, v, expected} = randomAttention(lead, {T, S, dk, dv}, {scale}, 201);
    const {one, two} = bothWays(() => onlyTheOutput(() => fusedAttention(q, k, v, scale)));
    // The same kernel computes each tile on either thread: the results are identical.
    expect(Array.from(two.dataSync())).toEqual(Array.from(one.dataSync()));
    expectClose(two, expected, 1e-5);
    disposeAll(one, two, q, k, v);
  });

  it.each([
    ['T = S = 512', 512, 512],
    ['T = 509, S = 700 (the worker takes the first tiles/√2 of the queries, this thread the rest from query 4·that)', 509, 700],
  ])('causal, %s: bit for bit the one-thread result, and the reference', (_, T, S) => {
    const {q, k, v, expected} = randomAttention([1], {T, S, dk: 64, dv: 64}, {scale: 0.125, causal: true}, 211);
    const {one, two} = bothWays(() => fusedAttention(q, k, v, 0.125, true));
    expect(Array.from(two.dataSync())).toEqual(Array.from(one.dataSync()));
    expectClose(two, expected, 1e-5);
    disposeAll(one, two, q, k, v);
  });

  it('reads heads side by side from one tensor qkv: the plain-array reference, and one thread bit for bit', () => {
    const [B, T, H, dk, dv] = [2, 300, 4, 16, 16];  // 46 MFLOP: above the threshold
    const qkv = randomTensor([B, T, H * (2 * dk + dv)], 204);
    const sizes = {heads: H, dk, dv, scale: 0.25};
    const run = () => fusedMultiHeadAttention(
        {x: qkv.tensor, column: 0}, {x: qkv.tensor, column: H * dk}, {x: qkv.tensor, column: 2 * H * dk}, sizes);
    const {one, two} = bothWays(run);
    expect(two.shape).toEqual([B, T, H * dv]);
    const x = qkv.values as Tensor3;
    expectClose(two, referenceHeads(x, 0, {k: x, kColumn: H * dk, v: x, vColumn: 2 * H * dk}, sizes), 1e-5);
    expect(Array.from(two.dataSync())).toEqual(Array.from(one.dataSync()));
    disposeAll(one, two, qkv.tensor);
  });

  describe('the threads share the calls: each takes the next call left (tileChunks, runStepsOnBothThreads)', () => {
    it('cuts 12 tiles of equal work into calls of a sixth of the work left, at least 1/256 of all, the last tiles first', () => {
      // Left 12 -> target 2 tiles (10, 11); left 10 -> 1.67: 2 (8, 9); left 8 -> 1.33: 2 (6, 7); then 1 each (6/6 = 1 and below).
      expect(threadsModule.tileChunks(1, 12, () => 64)).toEqual([
        {pair: 0, first: 10, count: 2}, {pair: 0, first: 8, count: 2}, {pair: 0, first: 6, count: 2}, {pair: 0, first: 5, count: 1},
        {pair: 0, first: 4, count: 1}, {pair: 0, first: 3, count: 1}, {pair: 0, first: 2, count: 1}, {pair: 0, first: 1, count: 1},
        {pair: 0, first: 0, count: 1},
      ]);
    });

    it.each([
      ['one pair, 256 tiles', 1, 256, false, 1024],
      ['one pair, causal (tile i sees 4i + 4 keys)', 1, 256, true, 1024],
      ['12 pairs of 50 tiles', 12, 50, false, 300],
      ['300 pairs of 4 tiles: one call per pair', 300, 4, false, 16],
    ])('%s: every tile of every pair exactly once, no call across pairs, each call at most a sixth of the work left, 1/256 of all or the least work asked, plus one tile',
       (_, pairs, tiles, causal, S) => {
         const keys = (tile: number) => (causal ? Math.min(S, 4 * tile + 4) : S);
         const leastWork = 3 * S;
         const chunks = threadsModule.tileChunks(pairs, tiles, keys, leastWork);
         const seen = Array.from({length: pairs}, () => new Array<number>(tiles).fill(0));
         const total = pairs * Array.from({length: tiles}, (_t, i) => keys(i)).reduce((a, b) => a + b, 0);
         let left = total;
         for (const {pair, first, count} of chunks) {
           expect(count).toBeGreaterThan(0);
           expect(first + count).toBeLessThanOrEqual(tiles);
           let work = 0;
           for (let i = first; i < first + count; i++) {
             seen[pair][i]++;
             work += keys(i);
           }
           expect(work - keys(first)).toBeLessThan(Math.max(left / 6, total / 256, leastWork));  // without its last tile, under the target
           if (first > 0) expect(work).toBeGreaterThanOrEqual(Math.min(leastWork, total / 6));        // not the pair's last call: at least the least
           left -= work;
         }
         expect(seen.every(row => row.every(n => n === 1))).toBe(true);
         expect(chunks.length).toBeLessThanOrEqual(Math.max(pairs * Math.ceil(tiles / 3), 6 * Math.log(256) + 256));
       });

    it('a slow thread makes fewer calls: with this thread\'s calls slowed down, the worker makes the others; the result is bit for bit the one-thread result', () => {
      const [T, S, d] = [512, 512, 64];
      const {q, k, v, expected} = randomAttention([1], {T, S, dk: d, dv: d}, {scale: 0.125, causal: true}, 224);
      const thread = getSecondThread()!;
      const kernels = thread.module;
      let mine = 0;
      thread.module = {
        ...kernels,
        attend_4x8: (...args: Parameters<typeof kernels.attend_4x8>) => {
          mine++;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);  // 20 ms per call: the worker's all take ~1 ms
          return kernels.attend_4x8(...args);
        },
      };
      const calls = fusedModule.attentionChunks(1, T, S, true).length;
      try {
        const {one, two} = bothWays(() => fusedAttention(q, k, v, 0.125, true));
        expect(mine).toBeGreaterThanOrEqual(1);
        expect(mine).toBeLessThanOrEqual(3);  // of more than 8: a static split would have given this thread half
        expect(calls).toBeGreaterThan(8);
        expect(Array.from(two.dataSync())).toEqual(Array.from(one.dataSync()));
        expectClose(two, expected, 1e-5);
        disposeAll(one, two);
      } finally {
        thread.module = kernels;
        disposeAll(q, k, v);
      }
    });
  });

  it('records where the time of each two-thread call goes, only while recording', () => {
    const {q, k, v} = randomAttention([1], {T: 512, S: 512, dk: 64, dv: 64}, {scale: 0.125}, 221);
    fusedAttention(q, k, v, 0.125).dispose();
    expect(recordTwoThreadCalls(true)).toEqual([]);                         // nothing recorded while off
    const started = performance.now();
    const out = fusedAttention(q, k, v, 0.125);
    const wall = performance.now() - started;
    setAttentionThreads(1);
    fusedAttention(q, k, v, 0.125).dispose();                               // one thread: nothing to record
    const calls = recordTwoThreadCalls(false);
    expect(calls).toHaveLength(1);
    const [call] = calls;
    expect(call.kernel).toBe('attend_4x8');
    for (const part of ['beforeMs', 'wakeMs', 'mineMs', 'workerMs', 'waitMs', 'afterMs'] as const) {
      expect(Number.isFinite(call[part])).toBe(true);
      expect(call[part]).toBeGreaterThanOrEqual(0);
    }
    // This thread's parts follow each other inside the call; the worker's share lies within this thread's share and waiting.
    expect(call.beforeMs + call.mineMs + call.waitMs + call.afterMs).toBeLessThanOrEqual(wall);
    expect(call.wakeMs + call.workerMs).toBeLessThanOrEqual(call.mineMs + call.waitMs);
    expect(call.mineMs).toBeGreaterThan(0);
    expect(call.workerMs).toBeGreaterThan(0);
    expect(recordTwoThreadCalls(false)).toEqual([]);                        // taken: the log starts afresh
    disposeAll(out, q, k, v);
  });

  it('records a training step\'s forward and backward kernel calls on two threads', () => {
    const {q, k, v} = randomAttention([1], {T: 512, S: 512, dk: 64, dv: 64}, {scale: 0.125}, 222);
    recordTwoThreadCalls(true);
    const grad = tf.grad(x => tf.sum(dotProductAttention(x, k, v)))(q);
    expect(recordTwoThreadCalls(false).map(call => call.kernel)).toEqual(['attend_4x8', 'attend_backward_4x8']);
    disposeAll(grad, q, k, v);
  });

  it('calls the worker\'s early wake-up off when the work before its job throws: the job slot is idle again, the next call runs on both threads', () => {
    const thread = getSecondThread()!;
    expect(() => threadsModule.withWorkerAwake(thread, () => {
      expect(Atomics.load(thread.header, 0)).toBe(3);  // the job slot: a job is coming, the worker spins for it
      throw new Error('failed before the job');
    })).toThrow('failed before the job');
    expect(Atomics.load(thread.header, 0)).toBe(0);     // idle: the worker goes back to sleep
    const {q, k, v, expected} = randomAttention([1], {T: 512, S: 512, dk: 64, dv: 64}, {scale: 0.125}, 223);
    const {one, two} = bothWays(() => fusedAttention(q, k, v, 0.125));
    expect(Array.from(two.dataSync())).toEqual(Array.from(one.dataSync()));
    expectClose(two, expected, 1e-5);
    disposeAll(one, two, q, k, v);
  });

  it('starts its worker in Node; with setAttentionThreads(1) it is not used', () => {
    expect(getSecondThread()).not.toBeNull();
    setAttentionThreads(1);
    expect(getSecondThread()).toBeNull();
  });

  it('never keeps the process alive: a script that used both threads exits by itself', async () => {
    const script = [
      "const tf = require('@tensorflow/tfjs');",
      "const {selectBackend, dotProductAttention} = require('./dist/cjs/node');",
      '(async () => {',
      "  await selectBackend('wasm');",
      '  const q = tf.randomNormal([1, 1024, 64]);',
      '  const out = dotProductAttention(q, q, q);',
      "  console.log('shape', JSON.stringify(out.shape), 'finite', out.isFinite().all().dataSync()[0]);",
      '})();',
    ].join('\n');
    const result = await runCommand('node', ['-e', script], 60000);
    expect(result.stderr).toBe('');
    expect(result.signal).toBeNull();  // not killed at the timeout
    expect(result.status).toBe(0);
    expect(result.stdout.trim()).toBe('shape [1,1024,64] finite 1');
  }, 70000);

  it('setAttentionThreads takes 1 or 2 and returns the previous setting; anything else is refused by name', () => {
    expect(setAttentionThreads(1)).toBe(2);
    expect(setAttentionThreads(2)).toBe(1);
    expect(() => setAttentionThreads(3 as 1)).toThrow(ValueError);
    expect(() => setAttentionThreads(0 as 1)).toThrow('Argument `count` must be 1 or 2. Received: count=0');
    expect(setAttentionThreads(2)).toBe(2);  // the refused calls changed nothing
  });
});

describe('fusedAttentionLayer: projections and attention in one kernel call', () => {
  // [name, B, T, S (null: self-attention), dq, dc, H, dk, dv, biases]
  const cases: Array<[string, number, number, number|null, number, number, number, number, number, boolean]> = [
    ['self-attention, aligned widths', 2, 8, null, 16, 16, 2, 8, 8, false],
    ['self-attention with biases, B·T and H·dk off multiples of 4 and 8', 3, 5, null, 6, 6, 2, 3, 5, true],
    ['cross-attention, T != S, different widths', 2, 5, 9, 4, 6, 3, 4, 2, true],
    ['one head of 64, two threads (2·T·S·(dk + dv) above the threshold)', 1, 400, null, 64, 64, 1, 64, 64, true],
  ];
  it.each(cases)('%s: B=%i, T=%i, S=%s, dq=%i, dc=%i, H=%i, dk=%i, dv=%i, biases %s',
      (_, B, T, S, dq, dc, H, dk, dv, biases) => {
    const x = randomTensor([B, T, dq], 401);
    const c = S == null ? null : randomTensor([B, S, dc], 402);
    const width = (n: number) => [n];
    const weights = {
      wq: randomTensor([dq, H * dk], 403), wk: randomTensor([S == null ? dq : dc, H * dk], 404),
      wv: randomTensor([S == null ? dq : dc, H * dv], 405),
      bq: randomTensor(width(H * dk), 406), bk: randomTensor(width(H * dk), 407), bv: randomTensor(width(H * dv), 408),
    };
    const scale = 1 / Math.sqrt(dk);
    const sizes = {batch: B, T, S: S ?? T, dq, dc: S == null ? dq : dc, heads: H, dk, dv};
    expect(fusedAttentionLayerFits(sizes)).toBe(true);
    const projections = {
      wq: weights.wq.tensor, wk: weights.wk.tensor, wv: weights.wv.tensor,
      ...(biases ? {bq: weights.bq.tensor, bk: weights.bk.tensor, bv: weights.bv.tensor} : {}),
    };
    const out = onlyTheOutput(() => fusedAttentionLayer(x.tensor, c?.tensor ?? null, projections, {heads: H, dk, dv, scale}));
    expect(out.shape).toEqual([B, T, H * dv]);
    const reference = referenceAttention(x.values as Tensor3, (c?.values ?? null) as Tensor3|null, {
      wq: weights.wq.values as Matrix, wk: weights.wk.values as Matrix, wv: weights.wv.values as Matrix,
      ...(biases ? {bq: weights.bq.values as number[], bk: weights.bk.values as number[], bv: weights.bv.values as number[]} : {}),
    }, {numHeads: H, scale});
    // With d = 64 and inputs and weights in [-1, 1) the scores reach ~±20 and float32 is off the
    // float64 reference by up to ~3e-5: so is the standard path (3.2e-5 on this very case).
    expectClose(out, reference.output, dq === 64 ? 4e-5 : 1e-5);
    disposeAll(out, x.tensor, c?.tensor, ...Object.values(weights).map(w => w.tensor));
  });

  describe('on two threads: the projections split by rows between the threads, into the attention\'s operands', () => {
    afterEach(() => {
      setAttentionThreads(2);
    });
    // [name, B, T, S (null: self-attention), dq, dc, H, dk, dv, biases, causal, padded keys per batch]
    const twoThreadCases: Array<[string, number, number, number|null, number, number, number, number, number, boolean, boolean, number]> = [
      ['self-attention, B·T % 4 != 0, dv % 8 != 0, several heads, biases', 2, 301, null, 40, 40, 4, 20, 18, true, false, 0],
      ['cross-attention, T != S, different widths, no biases', 1, 260, 701, 24, 40, 2, 32, 32, false, false, 0],
      ['self-attention, causal, with key padding (a bias per key)', 1, 515, null, 64, 64, 1, 64, 64, true, true, 9],
      ['cross-attention with biases and key padding, H·dk % 8 != 0', 2, 300, 603, 20, 12, 4, 7, 9, true, false, 5],
    ];
    it.each(twoThreadCases)('%s: B=%i, T=%i, S=%s, dq=%i, dc=%i, H=%i, dk=%i, dv=%i, biases %s, causal %s, %i padded keys: ' +
        'bit for bit the one-thread result, and the plain-array reference', (_, B, T, S, dq, dc, H, dk, dv, biases, causal, padded) => {
      const keys = S ?? T;
      expect(2 * B * H * T * keys * (dk + dv)).toBeGreaterThanOrEqual(TWO_THREAD_MIN_FLOPS);
      const x = randomTensor([B, T, dq], 421);
      const c = S == null ? null : randomTensor([B, S, dc], 422);
      const dIn = S == null ? dq : dc;
      const weights = {
        wq: randomTensor([dq, H * dk], 423), wk: randomTensor([dIn, H * dk], 424), wv: randomTensor([dIn, H * dv], 425),
        bq: randomTensor([H * dk], 426), bk: randomTensor([H * dk], 427), bv: randomTensor([H * dv], 428),
      };
      // The last `padded - b` keys of batch b are padding: a bias of -1e9 on their scores.
      const keyPadding = Array.from({length: B}, (_b, b) => Array.from({length: keys}, (_s, s) => (s < keys - Math.max(0, padded - b) ? 1 : 0)));
      const keyBias = padded === 0 ? null : tf.tensor2d(keyPadding.map(row => row.map(real => (real ? 0 : -1e9))), [B, keys], 'float32');
      const projections = {
        wq: weights.wq.tensor, wk: weights.wk.tensor, wv: weights.wv.tensor,
        ...(biases ? {bq: weights.bq.tensor, bk: weights.bk.tensor, bv: weights.bv.tensor} : {}),
      };
      const scale = 1 / Math.sqrt(dk);
      const projectionJobs = jest.spyOn(threadsModule, 'runStepsOnBothThreads');
      const run = () => fusedAttentionLayer(x.tensor, c?.tensor ?? null, projections, {heads: H, dk, dv, scale, causal}, keyBias);
      try {
        setAttentionThreads(1);
        const one = onlyTheOutput(run);
        expect(fusedThreadsOfLastCall()).toBe(1);
        expect(projectionJobs).not.toHaveBeenCalled();
        setAttentionThreads(2);
        const two = onlyTheOutput(run);
        expect(fusedThreadsOfLastCall()).toBe(2);
        // One job: the inputs packed, projected, each pair's Q and K packed (V padded where dv % 8 != 0), the attention.
        expect(projectionJobs.mock.calls.map(call => call[1].map(step => step.kernel))).toEqual([
          ['pack_rows', 'project_4x8', 'pack_rows', ...(dv % 8 === 0 ? [] : ['add_rows']), 'attend_4x8']]);
        expect(Array.from(two.dataSync())).toEqual(Array.from(one.dataSync()));
        const reference = referenceAttention(x.values as Tensor3, (c?.values ?? null) as Tensor3|null, {
          wq: weights.wq.values as Matrix, wk: weights.wk.values as Matrix, wv: weights.wv.values as Matrix,
          ...(biases ? {bq: weights.bq.values as number[], bk: weights.bk.values as number[], bv: weights.bv.values as number[]} : {}),
        }, {numHeads: H, scale, causal, ...(padded > 0 ? {keyPadding} : {})});
        expectClose(two, reference.output, 4e-5);
        disposeAll(one, two);
      } finally {
        projectionJobs.mockRestore();
        disposeAll(x.tensor, c?.tensor, keyBias, ...Object.values(weights).map(w => w.tensor));
      }
    });
  });

  it('the layer\'s self-attention (x, or [x, x]) gives the kernel no context: x is projected once for Q, K and V; cross-attention its context', () => {
    const x = randomTensor([2, 5, 8], 410);
    const c = randomTensor([2, 7, 8], 411);
    const layer = scaledDotProductAttention({numHeads: 2, keyDim: 4});
    tf.dispose(layer.apply(x.tensor) as tf.Tensor);  // builds the weights
    const layerSpy = jest.spyOn(fusedModule, 'fusedAttentionLayer');
    try {
      const outputs = [layer.apply(x.tensor), layer.apply([x.tensor, c.tensor]), layer.apply([x.tensor, x.tensor])] as tf.Tensor[];
      const contexts = layerSpy.mock.calls.map(call => (call[1] == null ? 'none' : call[1] === c.tensor ? 'c' : 'another'));
      expect(contexts).toEqual(['none', 'c', 'none']);  // [x, x]: the same tensor twice is self-attention
      expectClose(outputs[0], outputs[2], 0);
      disposeAll(outputs);
    } finally {
      layerSpy.mockRestore();
    }
    disposeAll(x.tensor, c.tensor);
    layer.dispose();
  });

  it('takes weights up to the projection kernel\'s limit; the layer uses XNNPACK and the attention kernel beyond', () => {
    expect(fusedAttentionLayerFits({batch: 1, T: 8, S: 8, dq: 64, dc: 64, heads: 1, dk: 64, dv: 64})).toBe(true);
    expect(fusedAttentionLayerFits({batch: 1, T: 8, S: 8, dq: 512, dc: 512, heads: 8, dk: 64, dv: 64})).toBe(false);  // 1 MiB weights
    const x = randomTensor([1, 6, 300], 409);
    const layer = scaledDotProductAttention({numHeads: 4, keyDim: 64});    // wq [300, 256]: 300 KiB
    const standard = scaledDotProductAttention({numHeads: 4, keyDim: 64, blockSize: 0});
    tf.dispose([layer.apply(x.tensor), standard.apply(x.tensor)] as tf.Tensor[]);
    standard.setWeights(layer.getWeights());
    const layerSpy = jest.spyOn(fusedModule, 'fusedAttentionLayer');
    const multiSpy = jest.spyOn(fusedModule, 'fusedMultiHeadAttention');
    try {
      const a = layer.apply(x.tensor) as tf.Tensor;
      expect(layerSpy).not.toHaveBeenCalled();
      expect(multiSpy).toHaveBeenCalledTimes(1);
      const b = standard.apply(x.tensor) as tf.Tensor;
      expectClose(a, b, 1e-5);
      disposeAll(a, b);
    } finally {
      layerSpy.mockRestore();
      multiSpy.mockRestore();
    }
    disposeAll(x.tensor);
    layer.dispose();
    standard.dispose();
  });
});

describe('fusedAttentionFits', () => {
  it('is true for ordinary sizes on wasm', () => {
    for (const [T, S, dk, dv] of [[1, 1, 1, 1], [7, 13, 3, 5], [64, 64, 64, 64], [1024, 1024, 64, 64], [65536, 65536, 64, 64]]) {
      expect(fusedAttentionFits(T, S, dk, dv)).toBe(true);
    }
  });

  it('is false for a zero-sized dimension', () => {
    for (const [T, S, dk, dv] of [[0, 8, 8, 8], [8, 0, 8, 8], [8, 8, 0, 8], [8, 8, 8, 0]]) {
      expect(fusedAttentionFits(T, S, dk, dv)).toBe(false);
    }
  });

  it('counts the bytes of its work buffers (hand-computed) and refuses more than FUSED_MAX_BYTES', () => {
    // T=5, S=9, dk=3, dv=5: 2 tiles, 2 panels, rows of 8 values, one block of 16 keys. Q packed
    // 2·3·4 = 24 floats, K 2·3·8 = 48, V padded 9·8 = 72, output padded 8·8 = 64, scores 16·4
    // + 4 (α) rounded up to 16 floats = 80, running max and sum 2 tiles · 8 = 16.
    expect(fusedAttentionBytes(5, 9, 3, 5)).toBe(4 * (24 + 48 + 72 + 64 + 80 + 16));
    // Aligned (T=8, S=16, d=8): no padded copies of V or the output.
    expect(fusedAttentionBytes(8, 16, 8, 8)).toBe(4 * (2 * 8 * 4 + 2 * 8 * 8 + 80 + 16));
    // Long keys: the scores scratch stops at one block of FUSED_KEY_BLOCK = 256 keys (1028 floats -> 1040).
    expect(fusedAttentionBytes(4, 4096, 8, 8)).toBe(4 * (8 * 4 + 512 * 8 * 8 + 1040 + 8));
    expect(FUSED_MAX_BYTES).toBe(64 * 2 ** 20);
    // A million keys of width 64: the packed keys alone take 256 MiB.
    expect(fusedAttentionBytes(4, 2 ** 20, 64, 64)).toBeGreaterThan(FUSED_MAX_BYTES);
    expect(fusedAttentionFits(4, 2 ** 20, 64, 64)).toBe(false);
    // Just under and just over the limit, by the key count.
    let S = 1;
    while (fusedAttentionBytes(4, 2 * S, 64, 64) <= FUSED_MAX_BYTES) S *= 2;
    while (fusedAttentionBytes(4, S + 8, 64, 64) <= FUSED_MAX_BYTES) S += 8;
    expect(fusedAttentionFits(4, S, 64, 64)).toBe(true);
    expect(fusedAttentionBytes(4, S + 8, 64, 64)).toBeGreaterThan(FUSED_MAX_BYTES);
    expect(fusedAttentionFits(4, S + 8, 64, 64)).toBe(false);
  });

  it('is false on the cpu backend', async () => {
    const fits = await onBackend('cpu', () => [fusedAttentionFits(7, 13, 3, 5), fusedAttentionFits(64, 64, 64, 64)]);
    expect(fits).toEqual([false, false]);
    expect(fusedAttentionFits(64, 64, 64, 64)).toBe(true);  // back on wasm
  });
});

describe('which path the planner gives the op (planAttention)', () => {
  const on = (backend: string, sizes: number[], dk: number, dv: number, options: Partial<AttentionCall> = {}) => {
    const [batch, heads, T, S] = sizes;
    return planAttention({backend, batch, heads, T, S, dk, dv, ...options}).path;
  };
  const shape = [2, 4, 128, 128];

  it('on wasm: fused by default, with its fused backward when recording, explicit masks included; standard or blocked when asked', () => {
    expect(on('wasm', shape, 16, 16)).toBe('fused');
    expect(on('wasm', shape, 3, 5, {blockSize: undefined})).toBe('fused');
    expect(on('wasm', shape, 16, 16, {recording: true})).toBe('fused');           // the fused backward
    expect(on('wasm', shape, 16, 16, {recording: true, mask: true})).toBe('fused');   // the mask as a bias
    expect(on('wasm', shape, 16, 16, {blockSize: 0})).toBe('standard');
    expect(on('wasm', shape, 16, 16, {blockSize: 16})).toBe('memory-efficient');
    expect(on('wasm', shape, 16, 16, {mask: true})).toBe('fused');
    expect(on('wasm', shape, 16, 16, {padding: true})).toBe('fused');               // the key padding as a bias
    expect(on('wasm', shape, 16, 16, {returnWeights: true})).toBe('standard');
    expect(on('wasm', shape, 16, 16, {dropoutActive: true})).toBe('standard');
    expect(on('wasm', shape, 16, 16, {fusedKernelAvailable: false})).toBe('standard');
    // Long keys: the fused kernels serve every length, with a gradient and a mask too.
    expect(on('wasm', [1, 1, 8192, 8192], 64, 64)).toBe('fused');
    expect(on('wasm', [1, 1, 8192, 8192], 64, 64, {recording: true})).toBe('fused');
    expect(on('wasm', [1, 1, 8192, 8192], 64, 64, {recording: true, mask: true})).toBe('fused');
  });

  it('on cpu: never fused', () => {
    expect([on('cpu', shape, 16, 16), on('cpu', shape, 3, 5), on('cpu', [1, 1, 8192, 8192], 64, 64)])
        .toEqual(['standard', 'standard', 'memory-efficient']);
  });
});

describe('the op and the layer on wasm give the same results on the fused path as on the standard path', () => {
  let spies: jest.SpyInstance[] = [];
  const spyOnFused = () => {
    spies = [
      jest.spyOn(fusedModule, 'fusedAttention'), jest.spyOn(fusedModule, 'fusedMultiHeadAttention'),
      jest.spyOn(fusedModule, 'fusedAttentionLayer'),
    ];
    return spies;
  };
  afterEach(() => {
    spies.forEach(s => s.mockRestore());
    spies = [];
  });

  it.each([
    ['rank 3', [2], 7, 13, 3, 5],
    ['rank 4', [2, 3], 10, 9, 8, 12],
    ['rank 4, aligned', [1, 2], 16, 16, 16, 16],
  ])('dotProductAttention(q, k, v), %s: leading %j, T=%i, S=%i, dk=%i, dv=%i', (_, lead, T, S, dk, dv) => {
    const q = randomTensor([...lead, T, dk], 61);
    const k = randomTensor([...lead, S, dk], 62);
    const v = randomTensor([...lead, S, dv], 63);
    const [fusedSpy] = spyOnFused();
    const fused = onlyTheOutput(() => dotProductAttention(q.tensor, k.tensor, v.tensor));
    expect(fusedSpy).toHaveBeenCalledTimes(1);
    const standard = dotProductAttention(q.tensor, k.tensor, v.tensor, {blockSize: 0});
    expect(fusedSpy).toHaveBeenCalledTimes(1);  // blockSize 0 is the standard path
    expectClose(fused, standard, 1e-5);
    expectClose(fused, referenceDotProductAttention(q.values as Matrix, k.values as Matrix, v.values as Matrix).output as Nested, 1e-5);
    disposeAll(fused, standard, q.tensor, k.tensor, v.tensor);
  });

  /** A built layer with `args` and a twin on the standard path (blockSize 0) with the same weights. */
  function layerPair(args: Parameters<typeof scaledDotProductAttention>[0], build: tf.Tensor|tf.Tensor[]) {
    const fused = scaledDotProductAttention({...args, biasInitializer: 'glorotUniform'});
    const standard = scaledDotProductAttention({...args, blockSize: 0});
    tf.tidy(() => {
      fused.apply(build);
      standard.apply(build);
    });
    standard.setWeights(fused.getWeights());
    return {fused, standard};
  }

  const layerArgs = {numHeads: 2, keyDim: 3, valueDim: 5, useBias: true, outputDim: 7};

  it('the layer, self-attention: fused path (default) = standard path (blockSize 0) = plain-array reference', () => {
    const x = randomTensor([2, 6, 4], 71);
    const {fused, standard} = layerPair(layerArgs, x.tensor);
    const [, , layerSpy] = spyOnFused();
    const a = onlyTheOutput(() => fused.apply(x.tensor) as tf.Tensor);
    expect(layerSpy).toHaveBeenCalledTimes(1);
    const b = standard.apply(x.tensor) as tf.Tensor;
    expect(layerSpy).toHaveBeenCalledTimes(1);
    expect(a.shape).toEqual([2, 6, 7]);
    expectClose(a, b, 1e-5);
    // The weights in the order the layer adds them: wq, wk, wv, bq, bk, bv, wo, bo.
    const w = fused.getWeights().map(t => t.arraySync());
    const [wq, wk, wv] = w.slice(0, 3) as Matrix[];
    const [bq, bk, bv] = w.slice(3, 6) as number[][];
    const reference = referenceAttention(
        x.values as Tensor3, null, {wq, wk, wv, bq, bk, bv, wo: w[6] as Matrix, bo: w[7] as number[]}, {numHeads: 2});
    expectClose(a, reference.output, 1e-5);
    disposeAll(a, b, x.tensor);
    fused.dispose();
    standard.dispose();
  });

  it('the layer, cross-attention [query, context] with T != S and different widths', () => {
    const query = randomTensor([2, 5, 4], 72);
    const context = randomTensor([2, 9, 6], 73);
    const inputs = [query.tensor, context.tensor];
    const {fused, standard} = layerPair(layerArgs, inputs);
    const [, , layerSpy] = spyOnFused();
    const a = onlyTheOutput(() => fused.apply(inputs) as tf.Tensor);
    expect(layerSpy).toHaveBeenCalledTimes(1);
    const b = standard.apply(inputs) as tf.Tensor;
    expect(a.shape).toEqual([2, 5, 7]);
    expectClose(a, b, 1e-5);
    disposeAll(a, b, query.tensor, context.tensor);
    fused.dispose();
    standard.dispose();
  });

  it('the layer with causal stays on the fused path and matches the standard path', () => {
    const x = randomTensor([2, 9, 4], 76);
    const {fused, standard} = layerPair({...layerArgs, causal: true}, x.tensor);
    const [, , layerSpy] = spyOnFused();
    const a = onlyTheOutput(() => fused.apply(x.tensor) as tf.Tensor);
    expect(layerSpy).toHaveBeenCalledTimes(1);
    const b = standard.apply(x.tensor) as tf.Tensor;
    expectClose(a, b, 1e-5);
    disposeAll(a, b, x.tensor);
    fused.dispose();
    standard.dispose();
  });

  // Padding masks as tfjs passes them ([B, T] bool; for cross-attention [queryMask, contextMask]):
  // row 0 right-padded, row 1 left-padded, row 2 all padding (its queries attend no key).
  const padding = (T: number, real: number) => [
    Array.from({length: T}, (_, t) => t < real), Array.from({length: T}, (_, t) => t >= T - real), new Array<boolean>(T).fill(false),
  ];
  it.each<[string, ScaledDotProductAttentionArgs, number, number, number]>([
    ['self-attention', {numHeads: 2, keyDim: 3, valueDim: 5, useBias: true, outputDim: 7}, 3, 9, 4],
    ['self-attention, causal (the left-padded row has queries with no key before them)', {numHeads: 1, keyDim: 4, causal: true}, 3, 9, 4],
    ['two threads: T = 300, d = 64', {numHeads: 1, keyDim: 64}, 3, 300, 64],
  ])('the layer with padding masks stays on the fused path and matches the standard path: %s', (_, args, B, T, d) => {
    const x = randomTensor([B, T, d], 77);
    const mask = tf.tensor2d(padding(T, Math.ceil(T / 2)).slice(0, B), undefined, 'bool');
    const {fused, standard} = layerPair(args, x.tensor);
    const [, , layerSpy] = spyOnFused();
    const a = onlyTheOutput(() => fused.apply(x.tensor, {mask}) as tf.Tensor);
    expect(layerSpy).toHaveBeenCalledTimes(1);
    const b = standard.apply(x.tensor, {mask}) as tf.Tensor;
    expectClose(a, b, 1e-5);
    // The all-padding row attends nothing: its output is the output projection's bias (the
    // last weight), or 0 without one.
    const lastRow = tf.tidy(() => a.slice([B - 1, 0, 0], [1, T, a.shape[2]!]).arraySync()) as number[][][];
    const bias = args.outputDim == null ? null : fused.getWeights()[fused.getWeights().length - 1].arraySync() as number[];
    expectClose(lastRow, [Array.from({length: T}, () => bias ?? new Array<number>(a.shape[2]!).fill(0))], 1e-6);
    disposeAll(a, b, x.tensor, mask);
    fused.dispose();
    standard.dispose();
  });

  it.each<[string, number[], number, number, number, number, boolean, 1|2]>([
    ['rank 3, S ≠ T', [3], 7, 13, 5, 6, false, 1],
    ['rank 4, causal (the left-padded row has queries with no key before them)', [3, 2], 9, 9, 4, 3, true, 1],
    ['rank 4, two threads (T = 300, d = 64)', [3, 1], 300, 300, 64, 64, false, 2],
  ])('dotProductAttention with padding masks alone (no mask): the fused kernel, the key padding as a bias; = standard path = reference: %s', (
      _, lead, T, S, dk, dv, causal, threads) => {
    const B = lead[0];
    const q = randomTensor([...lead, T, dk], 64);
    const k = randomTensor([...lead, S, dk], 65);
    const v = randomTensor([...lead, S, dv], 66);
    const keyPaddingMask = tf.tensor2d(padding(S, Math.ceil(S / 2)).slice(0, B), undefined, 'bool');    // [B, S]
    // Queries: row 0 with its first query padded, row 1 none, row 2 all (as its keys).
    const queryPaddingMask = tf.tensor2d([padding(T, T - 1)[1], padding(T, T)[0], padding(T, T)[2]].slice(0, B), undefined, 'bool');  // [B, T]
    const options = {keyPaddingMask, queryPaddingMask, causal};
    const [fusedSpy] = spyOnFused();
    const previous = setAttentionThreads(threads);
    try {
      const before = tf.memory().numTensors;
      const fused = dotProductAttention(q.tensor, k.tensor, v.tensor, options);
      expect(tf.memory().numTensors).toBe(before + 1);  // the output alone
      expect(fusedSpy).toHaveBeenCalledTimes(1);
      expect(fusedThreadsOfLastCall()).toBe(threads);
      const standard = dotProductAttention(q.tensor, k.tensor, v.tensor, {...options, blockSize: 0});
      expectClose(fused, standard, 1e-5);
      // Plain arrays: query t of batch b attends the keys its padding (and causal) allow; a query with none, zeros.
      const [keys, queries] = [keyPaddingMask.arraySync() as number[][], queryPaddingMask.arraySync() as number[][]];
      const expected = referenceDotProductAttention(q.values as Matrix, k.values as Matrix, v.values as Matrix, {
        causal, allowed: ([b], t, s) => queries[b][t] === 1 && keys[b][s] === 1,
      });
      expectClose(fused, expected.output as Nested, dk === 64 ? 4e-5 : 1e-5);
      // The all-padding batch row attends nothing: zeros.
      expect(Math.max(...tf.tidy(() => tf.abs(fused.slice([B - 1], [1])).dataSync()))).toBe(0);
      disposeAll(fused, standard);
    } finally {
      setAttentionThreads(previous);
    }
    disposeAll(q.tensor, k.tensor, v.tensor, keyPaddingMask, queryPaddingMask);
  });

  it.each([
    ['padding masks (batch 2 all padding: a zero row)', 'padding'],
    ['an attentionMask alone', 'attentionMask'],
  ] as Array<[string, 'padding'|'attentionMask']>)(
      'the layer with %s whose weights are too large for its kernel: its projections, then the op\'s fused kernel, the masks applied', (_, kind) => {
        const x = randomTensor([3, 6, 300], 80);    // wq [300, 256]: 300 KiB, over the projection kernel's limit
        const mask = kind === 'padding' ? tf.tensor2d(padding(6, 4), undefined, 'bool') :
            tf.tidy(() => tf.tensor(randomArray([3, 6, 6], 83) as number[], [3, 6, 6]).greater(-0.3));
        const options = kind === 'padding' ? {mask} : {attentionMask: mask};
        const {fused, standard} = layerPair({numHeads: 4, keyDim: 64, useBias: true}, x.tensor);
        const [fusedSpy, multiSpy, layerSpy] = spyOnFused();
        const a = onlyTheOutput(() => fused.apply(x.tensor, options) as tf.Tensor);
        expect([fusedSpy, multiSpy, layerSpy].map(spy => spy.mock.calls.length)).toEqual([1, 0, 0]);
        const b = standard.apply(x.tensor, options) as tf.Tensor;
        expectClose(a, b, 1e-5);
        // The mask does change the output; with padding, the all-padding row is zeros (no output projection).
        const unmasked = fused.apply(x.tensor) as tf.Tensor;
        expect(tf.tidy(() => tf.max(tf.abs(tf.sub(a, unmasked))).dataSync()[0])).toBeGreaterThan(1e-3);
        if (kind === 'padding') expect(Math.max(...tf.tidy(() => tf.abs(a.slice([2], [1])).dataSync()))).toBe(0);
        disposeAll(a, b, unmasked, x.tensor, mask);
        fused.dispose();
        standard.dispose();
      });

  it('the layer, cross-attention with query and context padding masks, on the fused path', () => {
    const query = randomTensor([3, 5, 4], 78);
    const context = randomTensor([3, 11, 6], 79);
    const masks = [tf.tensor2d(padding(5, 3), undefined, 'bool'), tf.tensor2d(padding(11, 4), undefined, 'bool')];
    const inputs = [query.tensor, context.tensor];
    const {fused, standard} = layerPair({numHeads: 2, keyDim: 3, useBias: true}, inputs);
    const [, , layerSpy] = spyOnFused();
    const a = onlyTheOutput(() => fused.apply(inputs, {mask: masks}) as tf.Tensor);
    expect(layerSpy).toHaveBeenCalledTimes(1);
    const b = standard.apply(inputs, {mask: masks}) as tf.Tensor;
    expectClose(a, b, 1e-5);
    disposeAll(a, b, query.tensor, context.tensor, ...masks);
    fused.dispose();
    standard.dispose();
  });

  it.each([
    ['[B, T, S]', [2, 6, 6], false, false],
    ['[1, T, S] (every batch), causal', [1, 6, 6], true, false],
    ['[B, 1, S] (every query), with a padding mask', [2, 1, 6], false, true],
    ['[B, T, 1] (every key: whole queries masked), causal, with a padding mask', [2, 6, 1], true, true],
  ] as Array<[string, number[], boolean, boolean]>)(
      'the layer with an attentionMask %s takes the layer\'s kernel, the mask as a bias, and matches the standard path', (_, maskShape, causal, padded) => {
        const x = randomTensor([2, 6, 4], 74);
        const mask = tf.tidy(() => tf.tensor(randomArray(maskShape, 75) as number[], maskShape).greater(-0.5));
        const padding = padded ? tf.tensor2d([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]) : null;
        const options = {attentionMask: mask, ...(padding == null ? {} : {mask: padding})};
        const pair = layerPair({...layerArgs, causal}, x.tensor);
        const [fusedSpy, multiSpy, layerSpy] = spyOnFused();
        const [a, b] = [pair.fused.apply(x.tensor, options), pair.standard.apply(x.tensor, options)] as tf.Tensor[];
        expect([fusedSpy, multiSpy, layerSpy].map(spy => spy.mock.calls.length)).toEqual([0, 0, 1]);
        expectClose(a, b, 1e-5);
        // The mask does change the output: the masked call is not the unmasked one.
        const unmasked = pair.fused.apply(x.tensor, padding == null ? {} : {mask: padding}) as tf.Tensor;
        expect(tf.tidy(() => tf.max(tf.abs(tf.sub(a, unmasked))).dataSync()[0])).toBeGreaterThan(1e-3);
        disposeAll(a, b, unmasked, mask, padding, x.tensor);
        pair.fused.dispose();
        pair.standard.dispose();
      });
});

describe('no leaks', () => {
  it('no tensor is left behind by fusedAttention, fusedMultiHeadAttention or the layer, nor by a call that throws', () => {
    const q = randomTensor([2, 3, 5, 3], 81);
    const k = randomTensor([2, 3, 9, 3], 82);
    const v = randomTensor([2, 3, 9, 5], 83);
    const qkv = randomTensor([2, 5, 2 * (2 * 3 + 5)], 84);
    const layer = scaledDotProductAttention({numHeads: 2, keyDim: 3, valueDim: 5, useBias: true, outputDim: 7});
    const x = randomTensor([2, 5, 4], 85);
    tf.dispose(layer.apply(x.tensor) as tf.Tensor);  // builds the weights
    const before = tf.memory().numTensors;
    tf.dispose(fusedAttention(q.tensor, k.tensor, v.tensor, 0.5));
    tf.dispose(fusedMultiHeadAttention(
        {x: qkv.tensor, column: 0}, {x: qkv.tensor, column: 6}, {x: qkv.tensor, column: 12}, {heads: 2, dk: 3, dv: 5, scale: 0.5}));
    tf.dispose(layer.apply(x.tensor) as tf.Tensor);
    expect(tf.memory().numTensors).toBe(before);
    const wrongWidth = tf.zeros([2, 5, 3]);
    const wrongBatch = tf.zeros([3, 5, 4]);
    expectThrowsWithoutLeak(() => layer.apply(wrongWidth), /built for query width 4/);
    expectThrowsWithoutLeak(() => layer.apply([x.tensor, wrongBatch]), /same batch size/);
    disposeAll(q.tensor, k.tensor, v.tensor, qkv.tensor, x.tensor, wrongWidth, wrongBatch);
    layer.dispose();
  });

  // One thread takes a work buffer from the heap per call; two threads use the worker's shared memory instead.
  it.each([1, 2] as const)('frees its heap work buffer on %d thread(s): 50 calls on [1, 512, 64] grow neither tensor bytes nor the wasm heap', (threads) => {
    const backend = tf.backend() as unknown as WasmBackendView;
    const wasm = backend.wasm;
    // Emscripten's _malloc and _free are lazy wrappers that replace themselves on their first call: make
    // that call now, so that the spies below stay in place even when this test runs alone.
    wasm._free(wasm._malloc(16));
    setAttentionThreads(threads);
    try {
      for (const [T, dv] of [[512, 64], [510, 60]]) {  // aligned, and padded (more work buffers)
        const q = tf.randomNormal([1, T, 64], 0, 1, 'float32', 91);
        const k = tf.randomNormal([1, 512, 64], 0, 1, 'float32', 92);
        const v = tf.randomNormal([1, 512, dv], 0, 1, 'float32', 93);
        tf.dispose(fusedAttention(q, k, v, 0.125));  // the first call may grow the heap
        const before = tf.memory();
        const heapBytes = wasm.HEAPU8.length;
        const {live, allocations} = watchHeapBlocks(wasm, () => {
          for (let i = 0; i < 50; i++) tf.dispose(fusedAttention(q, k, v, 0.125));
        });
        // The output per call, and on one thread a work buffer per call too.
        expect(allocations).toBeGreaterThanOrEqual(threads === 1 ? 100 : 50);
        expect(live).toEqual([]);
        expect(tf.memory().numTensors).toBe(before.numTensors);
        expect(tf.memory().numBytes).toBe(before.numBytes);
        expect(wasm.HEAPU8.length).toBe(heapBytes);
        disposeAll(q, k, v);
      }
    } finally {
      setAttentionThreads(2);
    }
  });

  it.each([1, 2] as const)('the layer\'s kernel frees its heap work buffer on %d thread(s), and two threads reuse the shared memory: 50 calls grow neither', (threads) => {
    const backend = tf.backend() as unknown as WasmBackendView;
    const wasm = backend.wasm;
    wasm._free(wasm._malloc(16));  // the lazy wrappers replace themselves now (see above)
    setAttentionThreads(threads);
    try {
      // Self-attention with biases and key padding, aligned; cross-attention with padded rows and widths.
      for (const [T, S, dc, dv] of [[512, null, 64, 64], [510, 403, 40, 60]] as Array<[number, number|null, number, number]>) {
        const x = tf.randomNormal([1, T, 64], 0, 1, 'float32', 94);
        const c = S == null ? null : tf.randomNormal([1, S, dc], 0, 1, 'float32', 95);
        const dIn = S == null ? 64 : dc;
        const projections = {
          wq: tf.randomNormal([64, 64], 0, 0.1, 'float32', 96), wk: tf.randomNormal([dIn, 64], 0, 0.1, 'float32', 97),
          wv: tf.randomNormal([dIn, dv], 0, 0.1, 'float32', 98), bq: tf.zeros([64]), bk: tf.zeros([64]), bv: tf.zeros([dv]),
        };
        const keyBias = tf.zeros([1, S ?? T]);
        const call = () => fusedAttentionLayer(x, c, projections, {heads: 1, dk: 64, dv, scale: 0.125}, keyBias);
        tf.dispose(call());  // the first call may grow the heap and the shared memory
        expect(fusedThreadsOfLastCall()).toBe(threads);
        const before = tf.memory();
        const heapBytes = wasm.HEAPU8.length;
        const sharedBytes = getSecondThread()?.memory.buffer.byteLength;
        const {live, allocations} = watchHeapBlocks(wasm, () => {
          for (let i = 0; i < 50; i++) tf.dispose(call());
        });
        expect(allocations).toBeGreaterThanOrEqual(threads === 1 ? 100 : 50);  // the output, and on one thread a work buffer
        expect(live).toEqual([]);
        expect(tf.memory().numTensors).toBe(before.numTensors);
        expect(tf.memory().numBytes).toBe(before.numBytes);
        expect(wasm.HEAPU8.length).toBe(heapBytes);
        if (threads === 2) expect(getSecondThread()!.memory.buffer.byteLength).toBe(sharedBytes);
        disposeAll(x, c, keyBias, ...Object.values(projections));
      }
    } finally {
      setAttentionThreads(2);
    }
  });
});

// A wasm heap over 2 GiB (it may grow to 4 GiB) puts new allocations at byte addresses of
// 2^31 and above, which wasm's _malloc returns as negative int32s (about 10 s: it fills a
// 2.2 GB tensor).
describe('with a wasm heap over 2 GiB', () => {
  let big: tf.Tensor;
  beforeAll(() => {
    big = tf.fill([540e6], 7);  // 2.16 GB: the heap grows past 2^31 bytes, later blocks lie above
    expect((tf.backend() as unknown as WasmBackendView).wasm.HEAPU8.length).toBeGreaterThan(2 ** 31);
  });
  afterAll(() => {
    big.dispose();
  });

  it.each([
    ['aligned (T % 4 = 0, S % 8 = 0, dv % 8 = 0)', 8, 16, 8, 8],
    ['padded queries, keys and values (copies through the heap)', 5, 9, 3, 5],
    ['padded queries only', 5, 16, 8, 8],
  ])('fusedAttention, %s: T=%i, S=%i, dk=%i, dv=%i, computes the reference and writes nothing outside its output',
     (_, T, S, dk, dv) => {
       const q = randomTensor([1, T, dk], 1);
       const k = randomTensor([1, S, dk], 2);
       const v = randomTensor([1, S, dv], 3);
       const out = fusedAttention(q.tensor, k.tensor, v.tensor, 0.5);
       const expected = referenceDotProductAttention(q.values as Matrix, k.values as Matrix, v.values as Matrix, {scale: 0.5}).output;
       const view = (tf.backend() as unknown as WasmBackendView).typedArrayFromHeap(big);
       let overwritten = 0;
       for (let i = 0; i < view.length; i++) if (view[i] !== 7) overwritten++;
       const {diff} = maxAbsDiff(out, expected as Nested);
       // Both facts in one assertion, so that a failure shows both.
       expect({overwrittenElementsOfAnotherTensor: overwritten, maxAbsDiffFromReference: diff})
           .toEqual({overwrittenElementsOfAnotherTensor: 0, maxAbsDiffFromReference: expect.closeTo(0, 5)});
       disposeAll(out, q.tensor, k.tensor, v.tensor);
     });
});
