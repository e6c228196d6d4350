/**
 * The layer's arguments and weight sizes, checked before any weight exists: each refusal with its whole message
 * (the argument's name and what was received), the limits at exactly MAX_WEIGHT_ELEMENTS, and build() creating the
 * weights once. Written for the survivors of the layer's first mutation run (test/mutation/equivalent_mutants.md).
 */
import * as tf from '@tensorflow/tfjs';
import {MAX_WEIGHT_ELEMENTS, scaledDotProductAttention, splitInputs} from '../src/attention/scaled_dot_product_attention';
import {escapeRegExp, expectClose} from './helpers/tensors';

/** The whole message, not a part of it (jest's toThrow(string) matches a substring). */
const whole = (message: string) => new RegExp(`^${escapeRegExp(message).source}$`);

const LIMIT = 2 ** 28;

describe('the layer\'s arguments', () => {
  it('MAX_WEIGHT_ELEMENTS is 2^28', () => {
    expect(MAX_WEIGHT_ELEMENTS).toBe(LIMIT);
  });

  it('a dimension of exactly 2^28 is taken; one more is refused', () => {
    expect(() => scaledDotProductAttention({keyDim: LIMIT})).not.toThrow();
    expect(() => scaledDotProductAttention({keyDim: LIMIT + 1})).toThrow(whole(
        `Received an invalid value for argument \`keyDim\`, expected a positive integer at most ${LIMIT}. Received: keyDim=${LIMIT + 1}`));
  });

  it('numHeads·keyDim (and numHeads·valueDim) of exactly 2^28 is taken; one head\'s more is refused', () => {
    expect(() => scaledDotProductAttention({numHeads: 2, keyDim: LIMIT / 2})).not.toThrow();
    expect(() => scaledDotProductAttention({numHeads: 3, keyDim: LIMIT / 2})).toThrow(whole(
        `Arguments \`numHeads\` and \`keyDim\` make weights of numHeads·keyDim = ${3 * LIMIT / 2} columns, over the limit of ` +
        `${LIMIT} elements per weight. Received: numHeads=3, keyDim=${LIMIT / 2}`));
    expect(() => scaledDotProductAttention({numHeads: 4, keyDim: 1, valueDim: LIMIT / 2})).toThrow(whole(
        `Arguments \`numHeads\` and \`valueDim\` make weights of numHeads·valueDim = ${2 * LIMIT} columns, over the limit of ` +
        `${LIMIT} elements per weight. Received: numHeads=4, valueDim=${LIMIT / 2}`));
  });

  it.each(['useBias', 'causal', 'returnAttentionScores'])('%s must be a boolean', (flag) => {
    expect(() => scaledDotProductAttention({[flag]: 'yes'})).toThrow(whole(
        `Received an invalid value for argument \`${flag}\`, expected a boolean. Received: ${flag}="yes"`));
    expect(() => scaledDotProductAttention({[flag]: true})).not.toThrow();
  });

  it('returnAttentionScores with a block size is refused: the memory-efficient path forms no weights', () => {
    expect(() => scaledDotProductAttention({returnAttentionScores: true, blockSize: 64})).toThrow(whole(
        'The memory-efficient path never forms the attention weights, so `returnAttentionScores` needs blockSize=0 or null. ' +
        'Received: returnAttentionScores=true, blockSize=64'));
    expect(() => scaledDotProductAttention({returnAttentionScores: true, blockSize: 0})).not.toThrow();
  });

  it.each(['kernelInitializer', 'biasInitializer', 'kernelRegularizer', 'biasRegularizer', 'kernelConstraint', 'biasConstraint'])(
      'an unknown %s is refused by its name', (name) => {
        expect(() => scaledDotProductAttention({[name]: 'noSuchThing'})).toThrow(
            new RegExp(`^Received an invalid value for argument \`${name}\`, expected .*Received: ${name}="noSuchThing"$`));
      });
});

describe('build: the weights and their limit', () => {
  const built = (args: Parameters<typeof scaledDotProductAttention>[0], shape: Array<Array<number|null>>) => {
    const layer = scaledDotProductAttention(args);
    layer.build(shape.length === 1 ? shape[0] : shape);
    return layer;
  };

  it('creates wq, wk, wv (and biases, wo) once: building again keeps them', () => {
    const before = tf.memory().numTensors;
    const layer = built({numHeads: 2, keyDim: 3, valueDim: 5, useBias: true, outputDim: 4}, [[null, 6, 7], [null, 8, 9]]);
    expect(layer.weights.map(w => [w.name.split('/').pop(), w.shape])).toEqual([
      ['wq', [7, 6]], ['wk', [9, 6]], ['wv', [9, 10]], ['bq', [6]], ['bk', [6]], ['bv', [10]], ['wo', [10, 4]], ['bo', [4]]]);
    const wq = layer.weights[0];
    layer.build([[null, 6, 7], [null, 8, 9]]);
    expect(layer.weights.length).toBe(8);
    expect(layer.weights[0]).toBe(wq);
    for (const weight of layer.weights) weight.dispose();  // layer.dispose() needs a layer that has been applied
    expect(tf.memory().numTensors).toBe(before);
  });

  it('build() marks the layer built (as Keras\' build does), called directly too', () => {
    const layer = scaledDotProductAttention({keyDim: 3});
    expect(layer.built).toBe(false);
    layer.build([null, 4, 6]);
    expect(layer.built).toBe(true);
    for (const weight of layer.weights) weight.dispose();
  });

  it('a weight of exactly 2^28 elements is taken (addWeight stubbed: the weight itself would take 1 GiB)', () => {
    const layer = scaledDotProductAttention({keyDim: 2 ** 14});
    const made: Array<[string, number[]]> = [];
    const addWeight = jest.spyOn(layer as unknown as {addWeight: (name: string, shape: number[]) => unknown}, 'addWeight')
        .mockImplementation((name: string, shape: number[]) => {
          made.push([name, shape]);
          return {read: () => null};
        });
    try {
      layer.build([null, 4, 2 ** 14]);  // wq, wk, wv: [2^14, 2^14], 2^28 elements each
    } finally {
      addWeight.mockRestore();
    }
    expect(made).toEqual([['wq', [2 ** 14, 2 ** 14]], ['wk', [2 ** 14, 2 ** 14]], ['wv', [2 ** 14, 2 ** 14]]]);
  });

  // Each weight over the limit alone, named in the message with its shape and what was received; nothing created.
  const cases: Array<[string, Parameters<typeof scaledDotProductAttention>[0], Array<Array<number|null>>, string]> = [
    ['wq (a wide query)', {keyDim: 2 ** 20}, [[null, 4, 512]],
      `\`wq\` would have shape [512, ${2 ** 20}], over the limit of ${LIMIT} elements per weight. Received: numHeads=1, ` +
      `keyDim=${2 ** 20}, valueDim=${2 ** 20}, query width 512, context width 512`],
    ['wk (a wide context)', {numHeads: 2, keyDim: 2 ** 19, valueDim: 1}, [[null, 4, 2], [null, 6, 512]],
      `\`wk\` would have shape [512, ${2 ** 20}], over the limit of ${LIMIT} elements per weight. Received: numHeads=2, ` +
      `keyDim=${2 ** 19}, valueDim=1, query width 2, context width 512`],
    ['wv (wide values)', {numHeads: 2, keyDim: 1, valueDim: 2 ** 19}, [[null, 4, 2], [null, 6, 512]],
      `\`wv\` would have shape [512, ${2 ** 20}], over the limit of ${LIMIT} elements per weight. Received: numHeads=2, ` +
      `keyDim=1, valueDim=${2 ** 19}, query width 2, context width 512`],
    ['wo (a wide output)', {numHeads: 2, keyDim: 1, valueDim: 256, outputDim: 2 ** 20}, [[null, 4, 2]],
      `\`wo\` would have shape [512, ${2 ** 20}], over the limit of ${LIMIT} elements per weight. Received: numHeads=2, ` +
      `keyDim=1, valueDim=256, query width 2, context width 2, outputDim=${2 ** 20}`],
  ];
  it.each(cases)('%s over 2^28 elements is refused before any weight is made', (_, args, shape, message) => {
    const before = tf.memory().numTensors;
    const layer = scaledDotProductAttention(args);
    expect(() => layer.build(shape.length === 1 ? shape[0] : shape)).toThrow(whole(`The layer's weight ${message}`));
    expect(layer.weights.length).toBe(0);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('planCall: what the layer tells the planner', () => {
  const planModule = require('../src/attention/attention_plan') as typeof import('../src/attention/attention_plan');

  /** The AttentionCall that planCall gives planAttention, and what it returns. */
  function callOf(fn: () => unknown): {call: Record<string, unknown>|undefined; result: unknown} {
    const spy = jest.spyOn(planModule, 'planAttention');
    try {
      const result = fn();
      return {call: spy.mock.calls[0]?.[0] as unknown as Record<string, unknown>|undefined, result};
    } finally {
      spy.mockRestore();
    }
  }

  let layer: ReturnType<typeof scaledDotProductAttention>;
  let x: tf.Tensor;
  let context: tf.Tensor;
  let padding: tf.Tensor;
  beforeEach(() => {
    x = tf.ones([2, 4, 6]);        // [B, T, d]
    context = tf.ones([2, 7, 6]);  // [B, S, d]
    padding = tf.ones([2, 7]);     // [B, S]
    layer = scaledDotProductAttention({numHeads: 2, keyDim: 3, valueDim: 5, dropout: 0.5});
    tf.dispose(layer.apply(x) as tf.Tensor);  // builds the weights: wq [6, 6], wv [6, 10]
  });
  afterEach(() => {
    layer.dispose();
    tf.dispose([x, context, padding]);
  });

  it('self-attention: the sizes (dk and dv per head, from the weights), the layer\'s widths, nothing asked', () => {
    const {call} = callOf(() => layer.planCall(x, x, {}));
    expect(call).toMatchObject({
      backend: tf.getBackend(), batch: 2, heads: 2, T: 4, S: 4, dk: 3, dv: 5, layer: {dq: 6, dc: 6, selfAttention: true},
      blockSize: null, mask: false, padding: false, causal: false, returnWeights: false, dropoutActive: false, recording: false,
    });
  });

  it('cross-attention: S from the context, not self-attention', () => {
    const {call} = callOf(() => layer.planCall(x, context, {}));
    expect(call).toMatchObject({T: 4, S: 7, layer: {dq: 6, dc: 6, selfAttention: false}});
  });

  it('padding: any padding mask given, alone or in [query, context]; none when both are null', () => {
    expect(callOf(() => layer.planCall(x, context, {mask: [null, padding]})).call).toMatchObject({padding: true});
    expect(callOf(() => layer.planCall(x, context, {mask: [null, null]})).call).toMatchObject({padding: false});
    expect(callOf(() => layer.planCall(x, x, {mask: tf.ones([2, 4])})).call).toMatchObject({padding: true});
  });

  it('an explicit mask; dropout only in training; recording inside a gradient', () => {
    const attentionMask = tf.ones([2, 4, 7]);
    expect(callOf(() => layer.planCall(x, context, {attentionMask})).call).toMatchObject({mask: true});
    expect(callOf(() => layer.planCall(x, context, {training: true})).call).toMatchObject({dropoutActive: true});
    expect(callOf(() => layer.planCall(x, context, {training: false})).call).toMatchObject({dropoutActive: false});
    let recorded: Record<string, unknown>|undefined;
    tf.dispose(tf.grad((q: tf.Tensor) => {
      recorded = callOf(() => layer.planCall(q, context, {})).call;
      return tf.sum(q);
    })(x));
    expect(recorded).toMatchObject({recording: true});
    attentionMask.dispose();
  });

  it('inputs that are not rank-3 tensors: no plan (null), the planner not asked', () => {
    for (const [query, ctx] of [[tf.ones([2, 4]), x], [x, tf.ones([2, 7])], ['x', x], [x, null]] as Array<[unknown, unknown]>) {
      const {call, result} = callOf(() => layer.planCall(query as tf.Tensor, ctx as tf.Tensor, {}));
      expect(result).toBeNull();
      expect(call).toBeUndefined();
      tf.dispose([query, ctx].filter((t): t is tf.Tensor => t instanceof tf.Tensor && t !== x));
    }
  });
});

describe('call: inputs and masks checked, each refusal whole', () => {
  const planModule = require('../src/attention/attention_plan') as typeof import('../src/attention/attention_plan');
  let layer: ReturnType<typeof scaledDotProductAttention>;
  let x: tf.Tensor;
  let context: tf.Tensor;
  beforeEach(() => {
    x = tf.ones([2, 4, 6]);        // [B, T, d]
    context = tf.ones([2, 7, 6]);  // [B, S, d]
    layer = scaledDotProductAttention({numHeads: 2, keyDim: 3});
    tf.dispose(layer.apply(x) as tf.Tensor);  // builds the weights for query and context widths 6
  });
  afterEach(() => {
    layer.dispose();
    tf.dispose([x, context]);
  });

  it('an attentionMask given as a SymbolicTensor is refused: call arguments do not pass through a graph', () => {
    const input = tf.input({shape: [4, 6]});
    const symbolicMask = tf.input({shape: [4, 4]});
    expect(() => scaledDotProductAttention({keyDim: 3}).apply(input, {attentionMask: symbolicMask})).toThrow(whole(
        'Argument `attentionMask` must be an eager tf.Tensor: tfjs does not pass call arguments through a saved or ' +
        'symbolic graph. In a model, use `causal` or padding masks from `tf.layers.embedding({maskZero: true})`. ' +
        'Received: a SymbolicTensor of shape [null, 4, 4]'));
  });

  it.each([
    ['rank 2 ([B, T])', [2, 4], '[2, 4]'],
    ['rank 4 ([B, T, S, 1])', [2, 4, 7, 1], '[2, 4, 7, 1]'],
    ['the wrong S', [2, 4, 6], '[2, 4, 6]'],
  ])('an attentionMask of %s is refused before any work, naming the shapes', (_, shape, received) => {
    const attentionMask = tf.ones(shape as number[]);
    const before = tf.memory().numTensors;
    expect(() => layer.apply([x, context], {attentionMask})).toThrow(whole(
        'Argument `attentionMask` must have shape [B, T, S] = [2, 4, 7] (dims of 1 broadcast) for ' +
        `query.shape=[2, 4, 6] and context.shape=[2, 7, 6]. Received: attentionMask.shape=${received}`));
    expect(tf.memory().numTensors).toBe(before);
    attentionMask.dispose();
  });

  it('an attentionMask that is not a tensor is refused, saying what it is', () => {
    expect(() => layer.apply(x, {attentionMask: 5 as unknown as tf.Tensor})).toThrow(whole(
        'Argument `attentionMask` must have shape [B, T, S] = [2, 4, 4] (dims of 1 broadcast) for ' +
        'query.shape=[2, 4, 6] and context.shape=[2, 4, 6]. Received: attentionMask.shape=5'));
  });

  it('a query or a context of another width than the layer was built for is refused, each alone', () => {
    const [narrowQuery, narrowContext] = [tf.ones([2, 4, 5]), tf.ones([2, 7, 3])];
    expect(() => layer.apply([narrowQuery, context])).toThrow(whole(
        'The layer was built for query width 6 and context width 6. Received: query.shape=[2, 4, 5], context.shape=[2, 7, 6]'));
    expect(() => layer.apply([x, narrowContext])).toThrow(whole(
        'The layer was built for query width 6 and context width 6. Received: query.shape=[2, 4, 6], context.shape=[2, 7, 3]'));
    tf.dispose([narrowQuery, narrowContext]);
  });

  it('more than two inputs are refused, with their count', () => {
    expect(() => splitInputs([x, x, x])).toThrow(whole(
        'The layer takes one input x (self-attention) or [query, context] (cross-attention). Received: 3 inputs'));
    expect(splitInputs([x])).toEqual([x, x]);
    expect(splitInputs(x)).toEqual([x, x]);
    expect(splitInputs([x, context])).toEqual([x, context]);
  });

  it.each([
    ['a rank-3 mask [B, T, 1]', [2, 4, 1]],
    ['a mask of another batch', [3, 4]],
    ['a mask of another length', [2, 5]],
  ])('a padding mask (tfjs\' `mask`) of the wrong shape is refused: %s', (_, shape) => {
    const mask = tf.ones(shape);
    expect(() => layer.apply(x, {mask})).toThrow(whole(
        'Argument `mask` (the padding mask of the query) must have shape [2, 4] for query.shape=[2, 4, 6]. ' +
        `Received: mask.shape=[${shape.join(', ')}]`));
    expect(() => layer.apply([context, x], {mask: [null, mask]})).toThrow(whole(
        'Argument `mask` (the padding mask of the context) must have shape [2, 4] for context.shape=[2, 4, 6]. ' +
        `Received: mask.shape=[${shape.join(', ')}]`));
    mask.dispose();
  });

  it('cross-attention with one padding mask: it is the query\'s (T ≠ S), and masks no key', () => {
    const queryMask = tf.tensor2d([[1, 1, 0, 1], [1, 1, 1, 1]]);               // [B, T]
    const withMask = layer.apply([x, context], {mask: queryMask}) as tf.Tensor;   // [B, T, H*dk]
    const without = layer.apply([x, context]) as tf.Tensor;
    // Ones in, every key alike: each unmasked query gets the same row; the padded query gets zeros.
    const rows = withMask.arraySync() as number[][][];
    const row = (without.arraySync() as number[][][])[0][0];
    expect(rows[0][2]).toEqual(row.map(() => 0));
    for (const [b, t] of [[0, 0], [0, 1], [0, 3], [1, 0], [1, 2]]) expectClose(rows[b][t], row);
    tf.dispose([queryMask, withMask, without]);
  });

  it('computeMask passes the query\'s padding mask on, given alone or first in [query, context]', () => {
    const [queryMask, contextMask] = [tf.ones([2, 4]), tf.ones([2, 7])];
    expect(layer.computeMask([x, context], [queryMask, contextMask])).toBe(queryMask);
    expect(layer.computeMask(x, queryMask)).toBe(queryMask);
    expect(layer.computeMask([x, context], [null as unknown as tf.Tensor, contextMask])).toBeNull();
    expect(layer.computeMask(x)).toBeNull();
    tf.dispose([queryMask, contextMask]);
  });

  it('the standard path\'s memory check runs before any work, for the standard path only', () => {
    const spy = jest.spyOn(planModule, 'checkStandardPathMemory');
    try {
      const layers = [0, 2].map(blockSize => scaledDotProductAttention({keyDim: 3, blockSize}));
      tf.dispose(layers.map(l => l.apply(x)) as tf.Tensor[]);  // builds the weights
      spy.mockClear();
      tf.dispose(layers[1].apply([x, context]) as tf.Tensor);  // blocked: nothing to check
      expect(spy).not.toHaveBeenCalled();
      tf.dispose(layers[0].apply([x, context]) as tf.Tensor);  // standard: the layer checks, then the op
      expect(spy.mock.calls[0]).toEqual([[2, 1, 4, 7], 'query.shape=[2, 4, 6], context.shape=[2, 7, 6]']);
      spy.mockClear();
      tf.dispose(layers[0].apply(x) as tf.Tensor);
      expect(spy.mock.calls[0]).toEqual([[2, 1, 4, 4], 'inputs.shape=[2, 4, 6]']);
      layers.forEach(l => l.dispose());
    } finally {
      spy.mockRestore();
    }
  });
});

describe('computeOutputShape: the input shapes checked', () => {
  const layer = () => scaledDotProductAttention({numHeads: 2, keyDim: 3});

  it('an unknown batch on either side is taken; two known batches must agree', () => {
    expect(layer().computeOutputShape([[null, 4, 6], [2, 7, 5]])).toEqual([null, 4, 6]);
    expect(layer().computeOutputShape([[2, 4, 6], [null, 7, 5]])).toEqual([2, 4, 6]);
    expect(() => layer().computeOutputShape([[2, 4, 6], [3, 7, 5]])).toThrow(whole(
        'Arguments `query` and `context` must have the same batch size. Received: query.shape=[2, 4, 6], context.shape=[3, 7, 5]'));
  });

  it.each([
    ['inputs without a width', [null, 4, null], 'Argument `inputs` must have shape [B, T, d] with a known d. Received: inputs.shape=[null, 4, null]'],
    ['a rank-2 query', [[2, 4], [2, 7, 5]], 'Argument `query` must have shape [B, T, d] with a known d. Received: query.shape=[2, 4]'],
    ['a context without a width', [[2, 4, 6], [2, 7, null]], 'Argument `context` must have shape [B, T, d] with a known d. Received: context.shape=[2, 7, null]'],
    ['three inputs', [[2, 4, 6], [2, 7, 5], [2, 7, 5]], 'The layer takes one input x (self-attention) or [query, context] (cross-attention). Received: 3 inputs'],
  ])('%s is refused', (_, shape, message) => {
    expect(() => layer().computeOutputShape(shape as Array<number|null>)).toThrow(whole(message));
  });
});
