/**
 * Specification of the ScaledDotProductAttention layer: constructor validation, input
 * validation, shapes, weights, defaults, padding masks, mask combination, dropout and leaks.
 * Expected values come from hand computation or the plain-JS reference
 * (test/helpers/reference_attention.ts), never from the layer itself.
 */
import * as tf from '@tensorflow/tfjs';
import {scaledDotProductAttention, ScaledDotProductAttention, traceAttention, ValueError} from '../src';
import type {ScaledDotProductAttentionArgs} from '../src';
import {matmul, mergeHeads, referenceAttention, ReferenceWeights, splitHeads, Tensor3, Tensor4} from './helpers/reference_attention';
import {withNative} from './helpers/native';
import {disposeAll, escapeRegExp, expectAllFinite, expectClose, expectNoLeak, expectThrowsWithoutLeak, flatten, randomArray, runTestsOn} from './helpers/tensors';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** A tensor of seeded uniform values in [-1, 1). */
function randomTensor(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(randomArray(shape, seed) as number[], shape);
}

/** The layer's current weights by their short names, as nested arrays for the reference. */
function weightsOf(layer: ScaledDotProductAttention): ReferenceWeights {
  const out: {[name: string]: unknown} = {};
  for (const w of layer.weights) out[w.name.split('/').pop()!] = w.read().arraySync();
  return out as unknown as ReferenceWeights;
}

/** Runs `fn` inside tf.tidy, discarding its result (tensors created in it are disposed, also on a throw). */
function inTidy(fn: () => unknown): void {
  tf.tidy(() => {
    fn();
  });
}

/** A layer built for `inputs` by a first call, with seeded random weights. */
function builtLayer(args: ScaledDotProductAttentionArgs, inputs: tf.Tensor|tf.Tensor[], seed = 50): ScaledDotProductAttention {
  const layer = scaledDotProductAttention(args);
  tf.dispose(layer.apply(inputs) as tf.Tensor|tf.Tensor[]);
  const values = layer.getWeights().map((w, i) => randomTensor(w.shape, seed + i));
  layer.setWeights(values);
  tf.dispose(values);
  return layer;
}

describe('constructor arguments', () => {
  const message = (name: string, expected: string, received: string) =>
    new RegExp(`^${escapeRegExp(`Received an invalid value for argument \`${name}\`, expected ${expected}. ` +
                                `Received: ${name}=${received}`).source}$`);

  it('words the error exactly as the issue quotes it', () => {
    expect(() => scaledDotProductAttention({keyDim: 1.5})).toThrow(
        'Received an invalid value for argument `keyDim`, expected a positive integer. Received: keyDim=1.5');
  });

  const positiveIntegers = ['keyDim', 'valueDim', 'numHeads', 'outputDim'].flatMap((name) => [
    [name, 0, '0'], [name, -1, '-1'], [name, 1.5, '1.5'], [name, '2', '"2"'],
  ] as Array<[string, unknown, string]>);

  it.each(positiveIntegers)('rejects %s=%p: "expected a positive integer"', (name, value, shown) => {
    expectThrowsWithoutLeak(() => scaledDotProductAttention({[name]: value} as ScaledDotProductAttentionArgs),
                            message(name, 'a positive integer', shown));
    expect(() => scaledDotProductAttention({[name]: value} as ScaledDotProductAttentionArgs)).toThrow(ValueError);
  });

  it.each([[-0.1, '-0.1'], [1, '1'], [1.5, '1.5'], [NaN, 'NaN']])(
      'rejects dropout=%p: "expected a number in [0, 1)"', (value, shown) => {
        expectThrowsWithoutLeak(() => scaledDotProductAttention({dropout: value}), message('dropout', 'a number in [0, 1)', shown));
      });

  it.each([[0, '0'], [-1, '-1'], [Infinity, 'Infinity'], [NaN, 'NaN']])(
      'rejects scale=%p: "expected a positive finite number"', (value, shown) => {
        expectThrowsWithoutLeak(() => scaledDotProductAttention({scale: value}),
                                message('scale', 'a positive finite number', shown));
      });

  it.each([
    ['keyDim null (the default)', {keyDim: null}],
    ['dropout 0', {dropout: 0}],
    ['dropout 0.99', {dropout: 0.99}],
    ['scale 1e-3', {scale: 1e-3}],
    ['outputDim 1, numHeads 3', {outputDim: 1, numHeads: 3}],
  ] as Array<[string, ScaledDotProductAttentionArgs]>)('accepts %s', (_, args) => {
    expect(() => scaledDotProductAttention(args)).not.toThrow();
  });

  it('documents its defaults in the instance', () => {
    const layer = scaledDotProductAttention();
    expect({
      keyDim: layer.keyDim, valueDim: layer.valueDim, numHeads: layer.numHeads, useBias: layer.useBias,
      outputDim: layer.outputDim, causal: layer.causal, dropout: layer.dropout, scale: layer.scale,
      returnAttentionScores: layer.returnAttentionScores,
    }).toEqual({
      keyDim: null, valueDim: null, numHeads: 1, useBias: false, outputDim: null, causal: false, dropout: 0,
      scale: null, returnAttentionScores: false,
    });
    expect(layer.supportsMasking).toBe(true);
  });
});

describe('input validation: errors name the argument and the shapes, and leak nothing', () => {
  describe('before the layer is built (the error comes from build, no weight is created)', () => {
    it.each([
      ['a 2-D input', [2, 4], /`inputs` must have shape \[B, T, d\].*Received: inputs\.shape=\[2, 4\]/],
      ['a 4-D input', [1, 2, 3, 4], /`inputs` must have shape \[B, T, d\].*Received: inputs\.shape=\[1, 2, 3, 4\]/],
    ] as Array<[string, number[], RegExp]>)('rejects %s', (_, shape, pattern) => {
      const layer = scaledDotProductAttention({});
      const x = tf.zeros(shape);
      expectThrowsWithoutLeak(() => layer.apply(x), pattern);
      expect(layer.weights).toHaveLength(0);
      x.dispose();
    });

    it('rejects a query/context batch mismatch, naming both shapes', () => {
      const layer = scaledDotProductAttention({});
      const [q, c] = [tf.zeros([2, 3, 4]), tf.zeros([3, 5, 4])];
      expectThrowsWithoutLeak(() => layer.apply([q, c]),
                              /`query` and `context` must have the same batch size.*query\.shape=\[2, 3, 4\], context\.shape=\[3, 5, 4\]/);
      expect(layer.weights).toHaveLength(0);
      disposeAll(q, c);
    });

    it('rejects a 2-D context in cross-attention', () => {
      const layer = scaledDotProductAttention({});
      const [q, c] = [tf.zeros([2, 3, 4]), tf.zeros([2, 5])];
      expectThrowsWithoutLeak(() => layer.apply([q, c]), /`context` must have shape \[B, T, d\].*context\.shape=\[2, 5\]/);
      disposeAll(q, c);
    });
  });

  describe('once the layer is built', () => {
    let self: ScaledDotProductAttention;
    let cross: ScaledDotProductAttention;
    let x: tf.Tensor;
    let q: tf.Tensor;
    let c: tf.Tensor;

    beforeEach(() => {  // in each test, not once: so that mutation testing sees which tests run the layer
      x = randomTensor([2, 3, 4], 1);
      q = randomTensor([2, 3, 4], 2);
      c = randomTensor([2, 5, 6], 3);
      self = builtLayer({numHeads: 2, keyDim: 2}, x);
      cross = builtLayer({numHeads: 2, keyDim: 2}, [q, c]);
    });

    afterEach(() => {
      disposeAll(x, q, c);
      self.dispose();
      cross.dispose();
    });

    const cases: Array<[string, () => unknown, RegExp]> = [
      ['a 2-D input', () => inTidy(() => self.apply(tf.zeros([3, 4]))),
        /`inputs` must be a tensor of rank 3 \[B, T, d\]. Received: inputs\.shape=\[3, 4\]/],
      ['a 4-D input', () => inTidy(() => self.apply(tf.zeros([1, 2, 3, 4]))),
        /`inputs` must be a tensor of rank 3 \[B, T, d\]. Received: inputs\.shape=\[1, 2, 3, 4\]/],
      ['a 4-D query', () => inTidy(() => cross.apply([tf.zeros([1, 2, 3, 4]), c])),
        /`query` must be a tensor of rank 3.*query\.shape=\[1, 2, 3, 4\]/],
      ['a batch mismatch', () => inTidy(() => cross.apply([q, tf.zeros([3, 5, 6])])),
        /`query` and `context` must have the same batch size.*query\.shape=\[2, 3, 4\], context\.shape=\[3, 5, 6\]/],
      ['int32 inputs', () => inTidy(() => self.apply(tf.zeros([2, 3, 4], 'int32'))),
        /`inputs` must be float32. Received: inputs\.dtype=int32/],
      ['an int32 context', () => inTidy(() => cross.apply([q, tf.zeros([2, 5, 6], 'int32')])),
        /`context` must be float32. Received: context\.dtype=int32/],
      ['a width other than the one built for', () => inTidy(() => self.apply(tf.zeros([2, 3, 5]))),
        /built for query width 4 and context width 4.*query\.shape=\[2, 3, 5\]/],
      ['an attentionMask with the wrong key length', () => inTidy(() => self.apply(x, {attentionMask: tf.ones([2, 3, 4])})),
        /`attentionMask` must have shape \[B, T, S\] = \[2, 3, 3\].*query\.shape=\[2, 3, 4\] and context\.shape=\[2, 3, 4\]. Received: attentionMask\.shape=\[2, 3, 4\]/],
      ['an attentionMask of rank 2', () => inTidy(() => self.apply(x, {attentionMask: tf.ones([3, 3])})),
        /`attentionMask` must have shape \[B, T, S\] = \[2, 3, 3\].*Received: attentionMask\.shape=\[3, 3\]/],
      ['an attentionMask with the wrong batch', () => inTidy(() => cross.apply([q, c], {attentionMask: tf.ones([3, 3, 5])})),
        /`attentionMask` must have shape \[B, T, S\] = \[2, 3, 5\].*query\.shape=\[2, 3, 4\] and context\.shape=\[2, 5, 6\]. Received: attentionMask\.shape=\[3, 3, 5\]/],
      ['a padding mask of the wrong length', () => inTidy(() => self.apply(x, {mask: tf.ones([2, 5], 'bool')})),
        /`mask` \(the padding mask of the query\) must have shape \[2, 3\].*Received: mask\.shape=\[2, 5\]/],
      ['a context padding mask of the wrong length', () =>
        inTidy(() => cross.apply([q, c], {mask: [tf.ones([2, 3], 'bool'), tf.ones([2, 4], 'bool')]})),
      /`mask` \(the padding mask of the context\) must have shape \[2, 5\].*context\.shape=\[2, 5, 6\]. Received: mask\.shape=\[2, 4\]/],
      ['three inputs', () => inTidy(() => cross.apply([q, c, c])), /one input x \(self-attention\) or \[query, context\]/],
    ];

    it.each(cases)('rejects %s', (_, call, pattern) => {
      expectThrowsWithoutLeak(call, pattern);
      expect(call).toThrow(ValueError);
    });

    it('rejects a symbolic attentionMask, which tfjs cannot carry through a graph', () => {
      const input = tf.input({shape: [3, 4]});
      const maskInput = tf.input({shape: [3, 3]});
      const layer = scaledDotProductAttention({});
      expectThrowsWithoutLeak(() => layer.apply(input, {attentionMask: maskInput}),
                              /`attentionMask` must be an eager tf\.Tensor.*SymbolicTensor of shape \[null, 3, 3\]/);
    });

    it('accepts attention masks whose size-1 dims broadcast: [1, T, S] and [B, 1, S]', () => {
      // B = 2, T = S = 3. Each mask, broadcast by hand to [B, T, S], goes to the reference.
      const broadcastMasks: Array<[string, Tensor3, Tensor3]> = [
        // [1, T, S]: the same pattern for both batches; query 1 attends nothing.
        ['[1, T, S]', [[[1, 0, 1], [0, 0, 0], [0, 1, 1]]],
          [[[1, 0, 1], [0, 0, 0], [0, 1, 1]], [[1, 0, 1], [0, 0, 0], [0, 1, 1]]]],
        // [B, 1, S]: key padding per batch, the same for every query.
        ['[B, 1, S]', [[[1, 1, 0]], [[0, 1, 1]]],
          [[[1, 1, 0], [1, 1, 0], [1, 1, 0]], [[0, 1, 1], [0, 1, 1], [0, 1, 1]]]],
      ];
      expectNoLeak(() => tf.tidy(() => {
        const full = self.apply(x, {attentionMask: tf.ones([2, 3, 3])}) as tf.Tensor;
        const noMask = self.apply(x) as tf.Tensor;
        expectClose(full, noMask.arraySync() as Tensor3, 1e-6);
        for (const shape of [[1, 3, 3], [2, 1, 3]]) {
          const y = self.apply(x, {attentionMask: tf.ones(shape)}) as tf.Tensor;
          expectClose(y, noMask.arraySync() as Tensor3, 1e-6);
        }
        for (const [, mask, broadcast] of broadcastMasks) {
          const y = self.apply(x, {attentionMask: tf.tensor3d(mask)}) as tf.Tensor;
          const expected = referenceAttention(x.arraySync() as Tensor3, null, weightsOf(self),
                                              {numHeads: 2, attentionMask: broadcast});
          expectClose(y, expected.output, 1e-6);
          // The same mask given at full size agrees with the broadcast one.
          expectClose(self.apply(x, {attentionMask: tf.tensor3d(broadcast)}) as tf.Tensor, y.arraySync() as Tensor3, 1e-6);
        }
        // The query that attends nothing outputs zeros; the masks change the output.
        const [, rowMask] = broadcastMasks[0];
        const rows = (self.apply(x, {attentionMask: tf.tensor3d(rowMask)}) as tf.Tensor).arraySync() as Tensor3;
        expect(flatten([rows[0][1], rows[1][1]]).every((v) => v === 0)).toBe(true);
        expect(() => expectClose(rows, noMask.arraySync() as Tensor3, 1e-3)).toThrow(/exceeds tolerance/);
      }));
    });
  });
});

describe('output shapes, with symbolic tf.input', () => {
  interface ShapeCase {
    args: ScaledDotProductAttentionArgs;
    query: Array<number|null>;  // per-example shape [T, d]
    context?: Array<number|null>;
    expected: Array<Array<number|null>>;  // output (and weights) shapes
  }
  const cases: Array<[string, ShapeCase]> = [
    ['self-attention, defaults: width d', {args: {}, query: [5, 8], expected: [[null, 5, 8]]}],
    ['self-attention, 2 heads of keyDim 3: width numHeads*keyDim', {args: {numHeads: 2, keyDim: 3}, query: [5, 8], expected: [[null, 5, 6]]}],
    ['valueDim != keyDim: width numHeads*valueDim', {args: {numHeads: 2, keyDim: 3, valueDim: 4}, query: [5, 8], expected: [[null, 5, 8]]}],
    ['outputDim: width outputDim', {args: {numHeads: 2, keyDim: 3, valueDim: 4, outputDim: 7}, query: [5, 8], expected: [[null, 5, 7]]}],
    ['unknown sequence length', {args: {numHeads: 2, keyDim: 3}, query: [null, 8], expected: [[null, null, 6]]}],
    ['cross-attention, S != T, dq != dc', {args: {numHeads: 2, keyDim: 4, valueDim: 3}, query: [3, 5], context: [6, 7], expected: [[null, 3, 6]]}],
    ['returnAttentionScores, self: weights [B, H, T, T]',
      {args: {numHeads: 2, keyDim: 3, returnAttentionScores: true}, query: [5, 8], expected: [[null, 5, 6], [null, 2, 5, 5]]}],
    ['returnAttentionScores, cross with outputDim: weights [B, H, T, S]',
      {args: {numHeads: 3, keyDim: 2, outputDim: 4, returnAttentionScores: true}, query: [3, 5], context: [6, 7],
        expected: [[null, 3, 4], [null, 3, 3, 6]]}],
  ];

  it.each(cases)('%s', (_, c) => {
    const layer = scaledDotProductAttention(c.args);
    const query = tf.input({shape: c.query});
    const inputs = c.context == null ? query : [query, tf.input({shape: c.context})];
    const out = layer.apply(inputs);
    const shapes = (Array.isArray(out) ? out : [out]).map((t) => t.shape);
    expect(shapes).toEqual(c.expected);
    const inputShapes = c.context == null ? [null, ...c.query] : [[null, ...c.query], [null, ...c.context]];
    const computed = layer.computeOutputShape(inputShapes);
    expect(c.expected.length === 1 ? [computed] : computed).toEqual(c.expected);
    // Eager calls give the same shapes with the batch filled in.
    const concrete = (s: Array<number|null>) => [2, ...s.map((d) => d ?? 4)];
    const eager = tf.tidy(() => {
      const q = tf.zeros(concrete(c.query));
      const y = layer.apply(c.context == null ? q : [q, tf.zeros(concrete(c.context))]) as tf.Tensor|tf.Tensor[];
      return (Array.isArray(y) ? y : [y]).map((t) => t.shape);
    });
    expect(eager).toEqual(c.expected.map((s) => [2, ...s.slice(1).map((d) => d ?? 4)]));
    layer.dispose();
  });
});

describe('weights: names, shapes and the getWeights() order', () => {
  const cases: Array<[string, ScaledDotProductAttentionArgs, number[], number[]|null, Array<[string, number[]]>]> = [
    ['defaults: keyDim = valueDim = the query width', {}, [2, 3, 5], null, [['wq', [5, 5]], ['wk', [5, 5]], ['wv', [5, 5]]]],
    ['numHeads without keyDim: H heads of the query width', {numHeads: 2}, [2, 3, 5], null,
      [['wq', [5, 10]], ['wk', [5, 10]], ['wv', [5, 10]]]],
    ['valueDim != keyDim', {numHeads: 2, keyDim: 3, valueDim: 4}, [2, 3, 5], null,
      [['wq', [5, 6]], ['wk', [5, 6]], ['wv', [5, 8]]]],
    ['useBias', {numHeads: 2, keyDim: 3, valueDim: 4, useBias: true}, [2, 3, 5], null,
      [['wq', [5, 6]], ['wk', [5, 6]], ['wv', [5, 8]], ['bq', [6]], ['bk', [6]], ['bv', [8]]]],
    ['outputDim without bias', {numHeads: 2, keyDim: 3, valueDim: 4, outputDim: 7}, [2, 3, 5], null,
      [['wq', [5, 6]], ['wk', [5, 6]], ['wv', [5, 8]], ['wo', [8, 7]]]],
    ['outputDim with bias', {numHeads: 2, keyDim: 3, valueDim: 4, outputDim: 7, useBias: true}, [2, 3, 5], null,
      [['wq', [5, 6]], ['wk', [5, 6]], ['wv', [5, 8]], ['bq', [6]], ['bk', [6]], ['bv', [8]], ['wo', [8, 7]], ['bo', [7]]]],
    ['cross-attention: wk and wv take the context width', {numHeads: 2, keyDim: 3, valueDim: 4}, [2, 3, 5], [2, 4, 9],
      [['wq', [5, 6]], ['wk', [9, 6]], ['wv', [9, 8]]]],
  ];

  it.each(cases)('%s', (_, args, queryShape, contextShape, expected) => {
    const layer = scaledDotProductAttention(args);
    const query = tf.input({shape: queryShape.slice(1)});
    layer.apply(contextShape == null ? query : [query, tf.input({shape: contextShape.slice(1)})]);
    expect(layer.weights.map((w) => [w.name.split('/').pop(), w.shape])).toEqual(expected);
    expect(layer.trainableWeights).toHaveLength(expected.length);
    const values = layer.getWeights();
    expect(values.map((v) => v.shape)).toEqual(expected.map(([, shape]) => shape));
    expect(layer.countParams()).toBe(expected.reduce((n, [, shape]) => n + shape.reduce((a, b) => a * b, 1), 0));
    layer.dispose();
  });

  it('initializes biases to zeros by default', () => {
    const layer = scaledDotProductAttention({useBias: true, outputDim: 2});
    layer.apply(tf.input({shape: [3, 4]}));
    const biases = layer.weights.filter((v) => /\/b[qkvo]$/.test(v.name));
    expect(biases.map((w) => w.name.split('/').pop())).toEqual(['bq', 'bk', 'bv', 'bo']);  // the loop below sees all four
    for (const w of biases) {
      expect(Array.from(w.read().dataSync())).toEqual(new Array(w.shape[0]).fill(0));
    }
    layer.dispose();
  });
});

describe('defaults, checked by hand', () => {
  // x = I (two tokens), Wq = Wk = Wv = I: Q = K = V = x, Q·Kᵀ = I, so each row's weights are
  // softmax([scale, 0]) = [σ(scale), 1 - σ(scale)] and the output equals the weights.
  const identityCase = (args: ScaledDotProductAttentionArgs, width: number) => {
    const x = tf.tensor3d([[[1, 0], [0, 1]]]);
    const layer = scaledDotProductAttention(args);
    tf.dispose(layer.apply(x) as tf.Tensor);
    const eye = tf.tensor2d([[1, 0, 0, 0], [0, 1, 0, 0]].map((row) => row.slice(0, width)));  // [2, width]
    layer.setWeights([eye, eye, eye]);
    const y = layer.apply(x) as tf.Tensor;
    const result = y.arraySync() as Tensor3;
    disposeAll(x, eye, y);
    layer.dispose();
    return result;
  };

  it.each([
    ['keyDim defaults to the query width 2, scale to 1/sqrt(2)', {}, 2, 0.6697615493],
    ['keyDim 4 gives scale 1/sqrt(4) = 0.5', {keyDim: 4}, 4, 0.6224593312],
    ['an explicit scale 2 is used as given', {keyDim: 4, scale: 2}, 4, 0.8807970780],
  ] as Array<[string, ScaledDotProductAttentionArgs, number, number]>)('%s', (_, args, width, sigma) => {
    const pad = (row: number[]) => [...row, ...new Array(width - 2).fill(0)];
    expectClose(identityCase(args, width), [[pad([sigma, 1 - sigma]), pad([1 - sigma, sigma])]], 1e-6);
  });
});

/** These run on cpu, and on tensorflow (tfjs-node) when it loads; its absence is a skipped test with the reason. */
describe.each(withNative(['cpu']))('on %s', (backend) => {
  runTestsOn(backend);

  describe('padding masks from tf.layers.embedding({maskZero: true})', () => {
    const VOCAB = 10;
    // Row 0 is left-padded, row 1 right-padded; both hold the same three tokens.
    const PADDED = [[0, 0, 3, 7, 2], [3, 7, 2, 0, 0]];
    const TOKENS = [3, 7, 2];
    const REAL = [[2, 3, 4], [0, 1, 2]];  // positions of the tokens in each row

    const configs: Array<[string, ScaledDotProductAttentionArgs]> = [
      ['2 heads', {numHeads: 2, keyDim: 3, valueDim: 2}],
      ['causal', {numHeads: 1, keyDim: 3, causal: true}],
      ['an output projection without bias', {numHeads: 2, keyDim: 2, outputDim: 3}],
    ];

    /** Each row's outputs at its real positions and at its padded positions. */
    function split(out: Tensor3): {real: Tensor3; padded: number[][][]} {
      return {
        real: out.map((rows, b) => REAL[b].map((t) => rows[t])),
        padded: out.map((rows, b) => rows.filter((_, t) => !REAL[b].includes(t))),
      };
    }

    it.each(configs)('%s: eager outputs at real positions equal those of the unpadded sequence; padded rows are zeros', (_, args) => {
      const embedding = tf.layers.embedding({inputDim: VOCAB, outputDim: 4, maskZero: true, embeddingsInitializer: 'randomUniform'});
      const layer = scaledDotProductAttention(args);
      const ids = tf.tensor2d(PADDED, undefined, 'int32');
      const unpaddedIds = tf.tensor2d([TOKENS], undefined, 'int32');
      const warm = tf.tidy(() => layer.apply(embedding.apply(ids) as tf.Tensor) as tf.Tensor);  // builds both
      warm.dispose();
      const before = tf.memory().numTensors;
      const [padded, unpadded] = tf.tidy(() => {
        const x = embedding.apply(ids) as tf.Tensor;
        const mask = embedding.computeMask(ids) as tf.Tensor;
        expect(mask.dtype).toBe('bool');
        expect(mask.arraySync()).toEqual(PADDED.map((row) => row.map((id) => (id === 0 ? 0 : 1))));
        const y = layer.apply(x, {mask}) as tf.Tensor;
        // The layer passes the query's padding mask on.
        expect((layer.computeMask(x, mask) as tf.Tensor).arraySync()).toEqual(mask.arraySync());
        const yUnpadded = layer.apply(embedding.apply(unpaddedIds) as tf.Tensor) as tf.Tensor;
        return [y.arraySync() as Tensor3, yUnpadded.arraySync() as Tensor3];
      });
      expect(tf.memory().numTensors).toBe(before);
      const {real, padded: paddedRows} = split(padded);
      expectClose(real[0], unpadded[0], 1e-5);
      expectClose(real[1], unpadded[0], 1e-5);
      for (const rows of paddedRows) expectClose(rows, rows.map((r) => r.map(() => 0)), 0);
      disposeAll(ids, unpaddedIds);
      layer.dispose();
      embedding.dispose();
    });

    it.each(configs)('%s: model.predict propagates the mask the same way', (_, args) => {
      const model = tf.sequential({layers: [
        tf.layers.embedding({inputDim: VOCAB, outputDim: 4, maskZero: true, inputShape: [null], embeddingsInitializer: 'randomUniform'}),
        scaledDotProductAttention(args),
      ]});
      const [embedding, layer] = model.layers;
      const ids = tf.tensor2d(PADDED, undefined, 'int32');
      tf.dispose(model.predict(ids) as tf.Tensor);  // a first call, which may set things up
      const before = tf.memory().numTensors;
      const predicted = model.predict(ids) as tf.Tensor;
      expect(tf.memory().numTensors).toBe(before + 1);  // the prediction alone
      const unpadded = tf.tidy(() => {
        const unpaddedIds = tf.tensor2d([TOKENS], undefined, 'int32');
        return (layer.apply(embedding.apply(unpaddedIds) as tf.Tensor) as tf.Tensor).arraySync() as Tensor3;
      });
      const {real, padded} = split(predicted.arraySync() as Tensor3);
      expectClose(real[0], unpadded[0], 1e-5);
      expectClose(real[1], unpadded[0], 1e-5);
      for (const rows of padded) expectClose(rows, rows.map((r) => r.map(() => 0)), 0);
      disposeAll(ids, predicted);
      model.dispose();
    });

    it('cross-attention takes [queryMask, contextMask]: padded keys are ignored and padded queries output zeros', () => {
      const q = randomTensor([2, 3, 4], 5);
      const c = randomTensor([2, 4, 3], 6);
      const layer = builtLayer({numHeads: 2, keyDim: 2, valueDim: 2}, [q, c]);
      const queryPadding = [[1, 1, 0], [0, 1, 1]];
      const keyPadding = [[1, 0, 1, 1], [1, 1, 1, 0]];
      const before = tf.memory().numTensors;
      const out = tf.tidy(() => (layer.apply([q, c], {
        mask: [tf.tensor2d(queryPadding, undefined, 'bool'), tf.tensor2d(keyPadding, undefined, 'bool')],
      }) as tf.Tensor).arraySync() as Tensor3);
      expect(tf.memory().numTensors).toBe(before);
      const expected = referenceAttention(q.arraySync() as Tensor3, c.arraySync() as Tensor3, weightsOf(layer),
                                          {numHeads: 2, queryPadding, keyPadding});
      expectClose(out, expected.output, 1e-5);
      expect(out[0][2]).toEqual([0, 0, 0, 0]);
      expect(out[1][0]).toEqual([0, 0, 0, 0]);
      disposeAll(q, c);
      layer.dispose();
    });
  });

  describe('masks combine: causal AND attentionMask AND padding', () => {
    it('self-attention: weights and output match the plain-JS reference', () => {
      const x = randomTensor([2, 5, 4], 7);
      const layer = builtLayer({numHeads: 2, keyDim: 3, valueDim: 2, useBias: true, outputDim: 3, causal: true,
                                returnAttentionScores: true}, x);
      const attentionMask = [
        [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [1, 0, 1, 0, 1], [1, 1, 0, 1, 1], [0, 0, 1, 1, 1]],
        [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 0, 0, 1, 1], [1, 0, 0, 1, 0], [0, 1, 0, 1, 1]],
      ];
      const padding = [[1, 1, 1, 1, 0], [0, 1, 1, 1, 1]];
      const before = tf.memory().numTensors;
      const [output, weights] = tf.tidy(() => {
        const [y, w] = layer.apply(x, {
          attentionMask: tf.tensor3d(attentionMask), mask: tf.tensor2d(padding, undefined, 'bool'),
        }) as tf.Tensor[];
        return [y.arraySync() as Tensor3, w.arraySync() as Tensor4];
      });
      expect(tf.memory().numTensors).toBe(before);
      const expected = referenceAttention(x.arraySync() as Tensor3, null, weightsOf(layer), {
        numHeads: 2, causal: true, attentionMask, queryPadding: padding, keyPadding: padding,
      });
      expectClose(weights, expected.weights, 1e-5);
      expectClose(output, expected.output, 1e-5);
      // Fully masked rows: (0, 4) a padded query, (1, 0) a padded query, (1, 2) causal (keys 0-2)
      // AND padding (key 0) AND the mask (keys 1, 2) together.
      for (const [b, t] of [[0, 4], [1, 0], [1, 2]]) {
        expect(expected.allowed[b][t].some(Boolean)).toBe(false);
        for (const head of weights[b]) expect(head[t]).toEqual([0, 0, 0, 0, 0]);
      }
      // Every allowed pair is allowed by all three masks, and each mask removes something.
      expect(expected.allowed.flat(2).filter(Boolean).length).toBeLessThan(
          attentionMask.flat(2).filter(Boolean).length);
      x.dispose();
      layer.dispose();
    });

    it('cross-attention with S != T: causal is top-left aligned, and combines with both masks', () => {
      const q = randomTensor([1, 3, 4], 8);
      const c = randomTensor([1, 5, 2], 9);
      const layer = builtLayer({numHeads: 1, keyDim: 2, causal: true, returnAttentionScores: true}, [q, c]);
      const attentionMask = [[[1, 1, 1, 1, 1], [1, 0, 1, 1, 1], [1, 1, 1, 0, 1]]];
      const keyPadding = [[1, 1, 0, 1, 1]];
      const [output, weights] = tf.tidy(() => {
        const [y, w] = layer.apply([q, c], {
          attentionMask: tf.tensor3d(attentionMask), mask: [null, tf.tensor2d(keyPadding, undefined, 'bool')],
        } as {attentionMask: tf.Tensor; mask: Array<tf.Tensor|null>}) as tf.Tensor[];
        return [y.arraySync() as Tensor3, w.arraySync() as Tensor4];
      });
      const expected = referenceAttention(q.arraySync() as Tensor3, c.arraySync() as Tensor3, weightsOf(layer), {
        numHeads: 1, causal: true, attentionMask, keyPadding,
      });
      expectClose(weights, expected.weights, 1e-5);
      expectClose(output, expected.output, 1e-5);
      // Query t sees keys s <= t only: row 0 attends key 0 alone; keys 3, 4 are never attended.
      expect(weights[0][0][0]).toEqual([1, 0, 0, 0, 0]);
      for (const row of weights[0][0]) expect([row[3], row[4]]).toEqual([0, 0]);
      disposeAll(q, c);
      layer.dispose();
    });
  });
});

describe('dropout on the attention weights', () => {
  const RATE = 0.5;
  let x: tf.Tensor;
  let layer: ScaledDotProductAttention;

  beforeEach(() => {  // in each test: see 'once the layer is built'
    x = randomTensor([2, 4, 4], 10);
    layer = builtLayer({numHeads: 2, keyDim: 2, valueDim: 3, dropout: RATE, returnAttentionScores: true}, x);
  });

  afterEach(() => {
    x.dispose();
    layer.dispose();
  });

  it('has no effect when not training (default and training: false)', () => {
    const expected = referenceAttention(x.arraySync() as Tensor3, null, weightsOf(layer), {numHeads: 2});
    for (const kwargs of [{}, {training: false}]) {
      expectNoLeak(() => tf.tidy(() => {
        const [y, w] = layer.apply(x, kwargs) as tf.Tensor[];
        expectClose(y, expected.output, 1e-5);
        expectClose(w, expected.weights, 1e-5);
      }));
    }
  });

  it('in training, zeroes some weights, scales the others by 1/(1 - rate), and the output uses the dropped weights', () => {
    const expected = referenceAttention(x.arraySync() as Tensor3, null, weightsOf(layer), {numHeads: 2});
    const [output, weights] = expectNoLeak(() => tf.tidy(() => {
      const [y, w] = layer.apply(x, {training: true}) as tf.Tensor[];
      return [y.arraySync() as Tensor3, w.arraySync() as Tensor4];
    }));
    let zeros = 0;
    let kept = 0;
    weights.forEach((heads, b) => heads.forEach((rows, h) => rows.forEach((row, t) => row.forEach((w, s) => {
      const full = expected.weights[b][h][t][s];
      if (w === 0) zeros++;
      else {
        kept++;
        expect(Math.abs(w - full / (1 - RATE))).toBeLessThan(1e-5);
      }
    }))));
    expect(zeros).toBeGreaterThan(0);
    expect(kept).toBeGreaterThan(0);
    // output = merge(dropped weights · V), V from the reference projections.
    const value = splitHeads(expected.value, 2);
    const fromDropped = mergeHeads(weights.map((heads, b) => heads.map((w, h) => matmul(w, value[b][h]))));
    expectClose(output, fromDropped, 1e-5);
    expect(output.flat(2).some((v, i) => Math.abs(v - expected.output.flat(2)[i]) > 1e-4)).toBe(true);
    expectAllFinite(output);
  });

  it('works with a small rate in training and leaves the output finite', () => {
    const small = builtLayer({numHeads: 1, keyDim: 2, dropout: 0.1}, x);
    expectNoLeak(() => tf.tidy(() => {
      const y = small.apply(x, {training: true}) as tf.Tensor;
      expect(y.shape).toEqual([2, 4, 2]);
      expectAllFinite(y);
    }));
    small.dispose();
  });
});

describe('leaks (acceptance 7: eager calls)', () => {
  const configs: Array<[string, ScaledDotProductAttentionArgs, boolean, boolean]> = [
    // name, args, cross, with masks
    ['self-attention', {numHeads: 2, keyDim: 2}, false, false],
    ['self-attention, bias, output projection, causal, masks', {numHeads: 2, keyDim: 2, useBias: true, outputDim: 3, causal: true}, false, true],
    ['cross-attention with returnAttentionScores and masks', {numHeads: 2, keyDim: 2, returnAttentionScores: true}, true, true],
    ['dropout in training', {numHeads: 1, keyDim: 2, dropout: 0.3}, false, false],
  ];

  it.each(configs)('100 eager calls (%s) return numTensors to the baseline', (_, args, cross, masked) => {
    const q = randomTensor([2, 3, 4], 11);
    const c = cross ? randomTensor([2, 5, 3], 12) : q;
    const inputs = cross ? [q, c] : q;
    const maskShape = [2, 3, cross ? 5 : 3];
    const attentionMask = masked ? tf.tensor(flatten(randomArray(maskShape, 13)).map((v) => (v > -0.3 ? 1 : 0)), maskShape) : null;
    const padding = masked ? tf.tensor2d([[1, 1, 0], [1, 1, 1]], undefined, 'bool') : null;
    const layer = scaledDotProductAttention(args);
    tf.dispose(layer.apply(inputs) as tf.Tensor|tf.Tensor[]);  // builds the weights
    const baseline = tf.memory().numTensors;
    const kwargs = {
      training: args.dropout != null,
      ...(attentionMask == null ? {} : {attentionMask}),
      ...(padding == null ? {} : {mask: cross ? [padding, null] : padding}),
    };
    for (let i = 0; i < 100; i++) {
      const y = layer.apply(inputs, kwargs) as tf.Tensor|tf.Tensor[];
      expectAllFinite(Array.isArray(y) ? y[0] : y);
      tf.dispose(y);
    }
    expect(tf.memory().numTensors).toBe(baseline);
    layer.dispose();
    disposeAll(q, cross ? c : null, attentionMask, padding);
  });

  it('traceAttention followed by tf.dispose(trace) returns to the baseline, with and without masks', () => {
    const x = randomTensor([2, 3, 4], 14);
    const layer = scaledDotProductAttention({numHeads: 2, keyDim: 2, causal: true});
    const first = traceAttention(layer, x);  // builds the layer
    tf.dispose(first);
    const baseline = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) {
      const mask = tf.tensor2d([[1, 1, 0], [1, 1, 1]], undefined, 'bool');
      const trace = traceAttention(layer, x, i % 2 === 0 ? {mask} : {});
      expect(trace.weights.shape).toEqual([2, 2, 3, 3]);
      tf.dispose(trace);
      mask.dispose();
    }
    expect(tf.memory().numTensors).toBe(baseline);
    const flat = x.reshape([6, 4]);
    expectThrowsWithoutLeak(() => traceAttention(layer, flat), /`inputs` must be a tensor of rank 3 \[B, T, d\]. Received: inputs\.shape=\[6, 4\]/);
    flat.dispose();
    expectThrowsWithoutLeak(() => traceAttention({} as ScaledDotProductAttention, x),
                            /`layer` must be a ScaledDotProductAttention layer/);
    disposeAll(x);
    layer.dispose();
  });
});
