/**
 * The dense product with its gradient on wasm (src/backend/wasm_dense_training.ts): while tfjs
 * records gradients, `dense` runs x·w + b and its backward (dx = dy·wᵀ, dw = xᵀ·dy, db = Σ dy)
 * in project_4x8, against plain-array products, at tile edges (rows off multiples of 4, dIn off
 * multiples of 4, dOut off multiples of 8, one row, one feature), with NaN where tfjs on cpu
 * puts it, without leaking tensors or wasm heap over 200 training steps. The layers' output
 * projection Wo and MultiHeadAttention with a key of its own train through it.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {dense} from '../src/attention/matmul';
import {denseFusedFits} from '../src/backend/wasm_dense';
import {MultiHeadAttention} from '../src';
import {dense as referenceDense, matmul, Matrix, transpose} from './helpers/reference_attention';
import {expectTrainingLeaksNothing} from './helpers/heap_blocks';
import type {WasmHeapView} from './helpers/heap_blocks';
import {disposeAll, expectClose, expectIeee, onBackend, randomArray, runTestsOn} from './helpers/tensors';

runTestsOn('wasm');

const BACKWARD_KERNEL = 'TfjsAttentionDenseBackward';

/** The kernels that `f` ran, by name, once per call (tfjs' profiler); what `f` returns is disposed. */
async function kernelsOf(f: () => tf.TensorContainer): Promise<string[]> {
  let result: tf.TensorContainer = [];
  const info = await tf.profile(() => {
    result = f();
    return result;
  });
  tf.dispose(result);
  return info.kernels.map(kernel => kernel.name);
}

/** dense(x, w, b), computed while tfjs records, and the gradients of sum(dense(x, w, b) ∘ r) for x, w (and b): dy = r. */
function denseWithGradients(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor|null, r: tf.Tensor): {y: tf.Tensor; grads: tf.Tensor[]} {
  let y: tf.Tensor|null = null;
  const loss = (...args: tf.Tensor[]) => {
    y = tf.keep(dense(args[0], args[1], args[2]));
    return tf.sum(tf.mul(y, r));
  };
  const grads = tf.grads(loss)(b == null ? [x, w] : [x, w, b]);
  return {y: y!, grads};
}

describe('dense with its gradient on wasm: project_4x8 both ways', () => {
  // [x shape, dOut, bias]: rows, dIn and dOut on and off the kernels' tiles (4 rows, 4 features, 8 columns).
  it.each([
    [[8, 16], 16, false],
    [[5, 3], 7, true],
    [[2, 13, 64], 24, true],
    [[37, 10], 13, true],
    [[1, 1], 1, true],
    [[6, 5], 8, false],
    [[3, 4, 12], 40, true],
    [[1024, 64], 64, true],
  ])('x %j · w [.., %i] (bias: %s): y, dx, dw and db equal the plain-array products', async (xShape, dOut, bias) => {
    const dIn = xShape[xShape.length - 1];
    const n = xShape.slice(0, -1).reduce((a, b) => a * b, 1);
    const x = tf.tensor(randomArray(xShape, 401) as number[], xShape);
    const w = tf.tensor2d(randomArray([dIn, dOut], 402) as Matrix);
    const b = bias ? tf.tensor1d(randomArray([dOut], 403) as number[]) : null;
    const r = tf.tensor(randomArray([...xShape.slice(0, -1), dOut], 404) as number[], [...xShape.slice(0, -1), dOut]);
    const [xRows, wM, dyRows] = tf.tidy(() => [x.reshape([n, dIn]).arraySync(), w.arraySync(), r.reshape([n, dOut]).arraySync()]) as Matrix[];
    const bV = b?.arraySync() as number[]|undefined;
    expect(denseFusedFits(dIn, dOut)).toBe(true);
    expect(await kernelsOf(() => denseWithGradients(x, w, b, r).grads)).toContain(BACKWARD_KERNEL);

    const before = tf.memory().numTensors;
    const {y, grads} = denseWithGradients(x, w, b, r);
    expect(tf.memory().numTensors).toBe(before + 1 + grads.length);
    expect(y.shape).toEqual([...xShape.slice(0, -1), dOut]);
    expectClose(y.reshape([n, dOut]).arraySync() as Matrix, referenceDense(xRows, wM, bV), {abs: 1e-4, rel: 1e-5});
    const [dx, dw, db] = grads;
    expect(dx.shape).toEqual(xShape);
    expect(dw.shape).toEqual([dIn, dOut]);
    expectClose(dx.reshape([n, dIn]).arraySync() as Matrix, matmul(dyRows, transpose(wM)), {abs: 1e-4, rel: 1e-5});
    expectClose(dw.arraySync() as Matrix, matmul(transpose(xRows), dyRows), {abs: 1e-4, rel: 1e-5});
    if (bias) {
      expectClose(db.arraySync() as number[], dyRows.reduce((sum, row) => sum.map((s, j) => s + row[j]), new Array<number>(dOut).fill(0)), {abs: 1e-4, rel: 1e-5});
    }
    disposeAll(x, w, b, r, y, grads);
  });
});

describe('dense with its gradient on wasm: the edges', () => {
  it('puts NaN and ±Inf where tfjs on cpu puts them (a NaN in x, an Inf in dy)', async () => {
    const [n, dIn, dOut] = [6, 5, 11];
    const xValues = randomArray([n, dIn], 411) as Matrix;
    xValues[2][1] = NaN;
    const dyValues = randomArray([n, dOut], 412) as Matrix;
    dyValues[4][3] = Infinity;
    const [wValues, bValues] = [randomArray([dIn, dOut], 413) as Matrix, randomArray([dOut], 414) as number[]];
    const on = async (backend: string) => onBackend(backend, () => tf.tidy(() => {
      const [x, w, b, r] = [tf.tensor2d(xValues), tf.tensor2d(wValues), tf.tensor1d(bValues), tf.tensor2d(dyValues)];
      const {y, grads} = denseWithGradients(x, w, b, r);
      return [y, ...grads].map(t => t.arraySync());
    }));
    const [wasm, cpu] = [await on('wasm'), await on('cpu')];
    // The NaN reaches dw's row 1 (every column), the Inf dx's row 4 and dw's and db's column 3.
    expect(Number.isNaN(((wasm[2] as Matrix)[1])[0])).toBe(true);
    expect(Number.isFinite(((wasm[1] as Matrix)[4])[0])).toBe(false);
    wasm.forEach((values, i) => expectIeee(values as Matrix, cpu[i] as Matrix, 1e-4));
  });

  it('no rows: y and dx empty, dw and db zeros (sums of nothing)', async () => {
    const [x, w, b, r] = [tf.zeros([2, 0, 5]), tf.ones([5, 7]), tf.ones([7]), tf.zeros([2, 0, 7])];
    expect(await kernelsOf(() => denseWithGradients(x, w, b, r).grads)).toContain(BACKWARD_KERNEL);
    const {y, grads: [dx, dw, db]} = denseWithGradients(x, w, b, r);
    expect(y.shape).toEqual([2, 0, 7]);
    expect(dx.shape).toEqual([2, 0, 5]);
    expect(dw.arraySync()).toEqual(new Array(5).fill(new Array(7).fill(0)));
    expect(db.arraySync()).toEqual(new Array(7).fill(0));
    disposeAll(x, w, b, r, y, dx, dw, db);
  });

  it('above DENSE_FUSED_MAX_WEIGHT_BYTES the weights train through tfjs\' matMul: the same gradients', async () => {
    const [n, dIn, dOut] = [5, 256, 257];
    expect(denseFusedFits(dIn, dOut)).toBe(false);
    const x = tf.tensor2d(randomArray([n, dIn], 421) as Matrix);
    const w = tf.tensor2d(randomArray([dIn, dOut], 422) as Matrix);
    const r = tf.tensor2d(randomArray([n, dOut], 423) as Matrix);
    expect(await kernelsOf(() => denseWithGradients(x, w, null, r).grads)).not.toContain(BACKWARD_KERNEL);
    const {y, grads: [dx, dw]} = denseWithGradients(x, w, null, r);
    const [xM, wM, dyM] = [x.arraySync(), w.arraySync(), r.arraySync()];
    expectClose(dx.arraySync() as Matrix, matmul(dyM, transpose(wM)), {abs: 1e-3, rel: 1e-5});
    expectClose(dw.arraySync() as Matrix, matmul(transpose(xM), dyM), {abs: 1e-3, rel: 1e-5});
    disposeAll(x, w, r, y, dx, dw);
  });

  it('200 training steps of MultiHeadAttention with a key of its own (its projections and Wo in these kernels) leak neither tensors nor wasm heap', async () => {
    const wasm = (tf.backend() as unknown as {wasm: WasmHeapView & {HEAPU8: Uint8Array}}).wasm;
    wasm._free(wasm._malloc(16));  // Emscripten's _malloc and _free replace themselves on their first call
    const layer = new MultiHeadAttention({numHeads: 2, keyDim: 5, valueDim: 3, outputShape: 7});
    const [query, value, key] = [tf.randomNormal([2, 9, 6], 0, 1, 'float32', 431), tf.randomNormal([2, 5, 4], 0, 1, 'float32', 432),
      tf.randomNormal([2, 5, 3], 0, 1, 'float32', 433)];
    const target = tf.randomNormal([2, 9, 7], 0, 1, 'float32', 434);
    const optimizer = tf.train.sgd(0.05);
    const loss = () => tf.losses.meanSquaredError(target, layer.apply([query, value, key]) as tf.Tensor) as tf.Scalar;
    tf.tidy(() => void layer.apply([query, value, key]));  // builds the weights
    optimizer.minimize(loss, true)?.dispose();  // the first step may grow the heap
    const kernels = await kernelsOf(() => {
      const {value, grads} = tf.variableGrads(loss);
      return [value, ...Object.values(grads)];
    });
    expect(kernels.filter(name => name === BACKWARD_KERNEL).length).toBe(4);  // query, key, value, output
    // A work buffer per product's forward and backward at least.
    expectTrainingLeaksNothing(wasm, layer.trainableWeights, () => optimizer.minimize(loss, true)!, 200, 200 * 8);
    disposeAll(query, value, key, target);
    optimizer.dispose();
    layer.dispose();
  });
});
