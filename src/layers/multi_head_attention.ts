/**
 * MultiHeadAttention, Keras-compatible: Keras' arguments, saved config (both spellings), weights
 * (names, shapes, order), call forms and masks, on the project's op `dotProductAttention` (so
 * the planner picks the fused wasm kernel, the standard or the memory-efficient path), or, where
 * the planner gives the layer's kernels (wasm, the key the value; masks as biases), on
 * ScaledDotProductAttention's fused layer kernels, inference and training (on wasm the output
 * projection, and the projections of a key of its own, train in `dense`'s SIMD kernel). A port of
 * keras/src/layers/attention/multi_head_attention.py's semantics, not of its einsums.
 */
import * as tf from '@tensorflow/tfjs';
import {checkPositiveInteger, checkRate, formatValue, invalidArgument, ValueError} from '../errors';
import {Constraint, Initializer, ObjectIdentifier, Regularizer, resolveConstraint, resolveInitializer,
        resolveRegularizer, serializeObject} from '../keras_objects';
import {dotProductAttention} from '../attention/dot_product_attention';
import {dense} from '../attention/matmul';
import {planAttention} from '../attention/attention_plan';
import {layerKernelMasks} from '../attention/fused_masks';
import {fusedAttentionLayer, fusedKernelAvailable} from '../backend/wasm_fused_attention';
import {fusedAttentionLayerTraining} from '../backend/wasm_fused_layer_training';
import {allowedAttentionThreads} from '../backend/attention_threads';
import {normalizeKerasArgs} from './multi_head_attention_config';
import type {Kwargs, LayerArgs, LayerVariable, Shape} from './layer_types';

export interface MultiHeadAttentionArgs extends LayerArgs {
  /** Number of attention heads H. Required. */
  numHeads: number;
  /** Size of each head's query and key vectors. Required. */
  keyDim: number;
  /** Size of each head's value vectors. Defaults to keyDim. */
  valueDim?: number|null;
  /** Dropout rate on the attention weights, applied only in training. Defaults to 0. */
  dropout?: number;
  /** Whether the four projections add a bias. Defaults to true. */
  useBias?: boolean;
  /** The output's trailing shape (a number or an array). Defaults to null: the query's last dimension. */
  outputShape?: number|number[]|null;
  /** Axes of the inputs attention runs over (1 .. rank-2). Defaults to null: every axis between batch and features. */
  attentionAxes?: number|number[]|null;
  /** Initializer of the four kernels. Defaults to 'glorotUniform'. */
  kernelInitializer?: ObjectIdentifier<Initializer>;
  /** Initializer of the biases. Defaults to 'zeros'. */
  biasInitializer?: ObjectIdentifier<Initializer>;
  /** Regularizer of the kernels. Defaults to none. */
  kernelRegularizer?: ObjectIdentifier<Regularizer>|null;
  /** Regularizer of the biases. Defaults to none. */
  biasRegularizer?: ObjectIdentifier<Regularizer>|null;
  /** Only null: tfjs layers cannot apply an activity regularizer. */
  activityRegularizer?: null;
  /** Constraint on the kernels. Defaults to none. */
  kernelConstraint?: ObjectIdentifier<Constraint>|null;
  /** Constraint on the biases. Defaults to none. */
  biasConstraint?: ObjectIdentifier<Constraint>|null;
  /** Keras 3's dropout seed; kept in the config (tfjs' random stream differs from Keras'). Defaults to null. */
  seed?: number|null;
  /** tf.keras 2's saved input shapes; when given, the layer is checked against them at build. */
  queryShape?: Shape|null;
  keyShape?: Shape|null;
  valueShape?: Shape|null;
}

/** Call-time options of `layer.apply(inputs, options)` (Keras' call arguments, camelCase). */
export interface MultiHeadAttentionOptions {
  /** Top-left aligned causal mask: query t attends key s only if s <= t. Defaults to false. */
  useCausalMask?: boolean;
  /** Return `[output, scores]`, scores [B, H, T, S]. Defaults to false. */
  returnAttentionScores?: boolean;
  /** [B, T, S] (dims of 1 broadcast), 1/true = query t may attend key s. Eager tensors only. */
  attentionMask?: tf.Tensor|null;
  /** Whether dropout is active. Set by `model.fit`. */
  training?: boolean;
  /** Padding masks [query, value, key] (or the query's alone), passed by tfjs from e.g. `embedding({maskZero: true})`. */
  mask?: tf.Tensor|Array<tf.Tensor|null>|null;
  /** tf.keras 2's node form: the value (and key) as keywords; `apply(query, {value})`. */
  value?: tf.Tensor|tf.SymbolicTensor;
  key?: tf.Tensor|tf.SymbolicTensor;
  /**
   * The last input is the `attentionMask` [B, T, S]: `apply([query, value, (key,) mask], {attentionMaskInput: true})`
   * (or `[x, mask]` for self-attention).
   * How a model graph feeds Keras' `attention_mask` call argument (tfjs passes call arguments
   * only as JSON; loadKerasModel writes this form). The layer keeps it for its node, as for
   * `useCausalMask`. Defaults to false.
   */
  attentionMaskInput?: boolean;
}

/** Call options as keywords, Keras' and tfjs' spellings, and which ones are known. */
const CALL_OPTIONS: {[key: string]: keyof MultiHeadAttentionOptions} = {
  useCausalMask: 'useCausalMask', use_causal_mask: 'useCausalMask',
  returnAttentionScores: 'returnAttentionScores', return_attention_scores: 'returnAttentionScores',
  attentionMask: 'attentionMask', attention_mask: 'attentionMask',
  training: 'training', mask: 'mask', value: 'value', key: 'key',
  attentionMaskInput: 'attentionMaskInput', attention_mask_input: 'attentionMaskInput',
};

/** The resolved layout of one call: how the inputs map onto [N, L, d] sequences. */
interface Layout {
  /** Input rank R (3 for [B, T, d]). */
  rank: number;
  /** Axes attended over (1 .. R-2), ascending. */
  attentionAxes: number[];
  /** The other axes between batch and features (batch-like), ascending. */
  batchAxes: number[];
}

/**
 * Multi-head attention as Keras' `MultiHeadAttention` (Vaswani et al. 2017): per head
 * Q = query·Wq + bq, K = key·Wk + bk, V = value·Wv + bv, A = softmax(Q·Kᵀ/√keyDim) (masked),
 * then (A·V) of every head through the output projection Wo [H, valueDim, out] + bo.
 *
 * Input shapes: query [B, T, dq], value [B, S, dv], key [B, S, dk] (defaults to value); a
 * single input x is self-attention ([x, x]; the layer passes [x, x] on as x, see `apply`); with
 * rank R > 3, attention runs over `attentionAxes` (flattened into one sequence axis) and the
 * other middle axes are batch-like. Output shape: [B, T, ...outputShape] (default [B, T, dq]);
 * with `returnAttentionScores` also the scores [B, H, T, S] (rank > 3: [B, batch axes..., H,
 * query attention axes..., key attention axes...], as Keras).
 *
 * Masks: query_mask[:, :, None] & value_mask[:, None, :] & key_mask[:, None, :] & causal &
 * attentionMask, as Keras. A query whose every key is masked (e.g. a padded query) gets zero
 * weights and a zero attention output, so the layer's output there is the output bias: Keras
 * 3.15 gives the same on its explicit path (with returnAttentionScores or dropout) but the
 * mean of the values on its fused path; see the README.
 */
export class MultiHeadAttention extends tf.layers.Layer {
  static className = 'MultiHeadAttention';

  readonly numHeads: number;
  readonly keyDim: number;
  readonly valueDim: number;
  readonly dropout: number;
  readonly useBias: boolean;
  /** The `outputShape` argument (Layer's own `outputShape` is the built output's shape). */
  readonly outputShapeArg: number|number[]|null;
  readonly attentionAxes: number[]|null;
  readonly seed: number|null;
  private readonly savedShapes: {query: Shape|null; key: Shape|null; value: Shape|null};
  private readonly kernelInitializer: Initializer;
  private readonly biasInitializer: Initializer;
  private readonly kernelRegularizer: Regularizer|null;
  private readonly biasRegularizer: Regularizer|null;
  private readonly kernelConstraint: Constraint|null;
  private readonly biasConstraint: Constraint|null;

  private queryKernel: LayerVariable|null = null;
  private queryBias: LayerVariable|null = null;
  private keyKernel: LayerVariable|null = null;
  private keyBias: LayerVariable|null = null;
  private valueKernel: LayerVariable|null = null;
  private valueBias: LayerVariable|null = null;
  private outputKernel: LayerVariable|null = null;
  private outputBias: LayerVariable|null = null;
  /** The call arguments of this layer's nodes in a model (see recordNodeOptions), or null. */
  private nodeOptions: {useCausalMask: boolean; returnAttentionScores: boolean; attentionMaskInputs: number}|null = null;
  /** Whether the inputs being applied symbolically end with the attention mask (read by build and computeOutputShape). */
  private maskInInputs = false;
  /** Whether the call being applied returns the scores (read by computeOutputShape and computeMask). */
  private returnsScores = false;

  constructor(args: MultiHeadAttentionArgs) {
    const normalized = normalizeKerasArgs(args as unknown as {[key: string]: unknown}) as unknown as MultiHeadAttentionArgs;
    super(normalized);
    args = normalized;
    checkPositiveInteger('numHeads', args.numHeads);
    checkPositiveInteger('keyDim', args.keyDim);
    if (args.valueDim != null) checkPositiveInteger('valueDim', args.valueDim);
    checkRate('dropout', args.dropout ?? 0);
    if (args.useBias != null && typeof args.useBias !== 'boolean') throw invalidArgument('useBias', 'a boolean', args.useBias);
    if (args.outputShape != null) {
      const dims = typeof args.outputShape === 'number' ? [args.outputShape] : args.outputShape;
      if (!Array.isArray(dims) || dims.length === 0 ||
          dims.some(d => typeof d !== 'number' || !Number.isInteger(d) || d < 1)) {
        throw invalidArgument('outputShape', 'a positive integer or a non-empty array of positive integers', args.outputShape);
      }
    }
    let axes: number[]|null = null;
    if (args.attentionAxes != null) {
      axes = typeof args.attentionAxes === 'number' ? [args.attentionAxes] : args.attentionAxes;
      if (!Array.isArray(axes) || axes.length === 0 || axes.some(a => typeof a !== 'number' || !Number.isInteger(a) || a < 1) ||
          new Set(axes).size !== axes.length) {
        throw invalidArgument('attentionAxes', 'null, a positive integer axis or an array of distinct positive integer axes', args.attentionAxes);
      }
      axes = [...axes];
    }
    if (args.activityRegularizer != null) {
      throw invalidArgument('activityRegularizer', 'null (tfjs layers cannot apply an activity regularizer)', args.activityRegularizer);
    }
    if (args.seed != null && (typeof args.seed !== 'number' || !Number.isInteger(args.seed))) {
      throw invalidArgument('seed', 'null or an integer', args.seed);
    }
    this.numHeads = args.numHeads;
    this.keyDim = args.keyDim;
    this.valueDim = args.valueDim ?? args.keyDim;
    this.dropout = args.dropout ?? 0;
    this.useBias = args.useBias ?? true;
    this.outputShapeArg = args.outputShape == null ? null :
        typeof args.outputShape === 'number' ? args.outputShape : [...args.outputShape];
    this.attentionAxes = axes;
    this.seed = args.seed ?? null;
    this.savedShapes = {query: args.queryShape ?? null, key: args.keyShape ?? null, value: args.valueShape ?? null};
    this.kernelInitializer = resolveInitializer('kernelInitializer', args.kernelInitializer, 'glorotUniform');
    this.biasInitializer = resolveInitializer('biasInitializer', args.biasInitializer, 'zeros');
    this.kernelRegularizer = resolveRegularizer('kernelRegularizer', args.kernelRegularizer);
    this.biasRegularizer = resolveRegularizer('biasRegularizer', args.biasRegularizer);
    this.kernelConstraint = resolveConstraint('kernelConstraint', args.kernelConstraint);
    this.biasConstraint = resolveConstraint('biasConstraint', args.biasConstraint);
    this.supportsMasking = true;
  }

  /** The output's trailing dims: `outputShape`, or the query's last dimension. */
  private outputDims(queryDim: number): number[] {
    if (this.outputShapeArg == null) return [queryDim];
    return typeof this.outputShapeArg === 'number' ? [this.outputShapeArg] : this.outputShapeArg;
  }

  override build(inputShape: Shape|Shape[]): void {
    const {query, value, key} = splitShapes(this.withoutMaskShape(inputShape));
    this.layoutFor(query, value, key);  // checks ranks and axes
    const saved = this.savedShapes;
    for (const [name, shape] of [['queryShape', query], ['valueShape', value], ['keyShape', key]] as const) {
      const expected = saved[name.replace('Shape', '') as 'query'|'key'|'value'];
      if (expected != null && expected[expected.length - 1] !== shape[shape.length - 1]) {
        throw new ValueError(
            `The layer's saved \`${name}\` ${formatValue(expected)} does not match its input. ` +
            `Received: ${name}=${formatValue(shape)}`);
      }
    }
    if (this.queryKernel == null) {
      const [h, kd, vd] = [this.numHeads, this.keyDim, this.valueDim];
      const out = this.outputDims(query[query.length - 1] as number);
      const kernel = (name: string, shape: number[]) => this.addWeight(
          name, shape, 'float32', this.kernelInitializer, this.kernelRegularizer ?? undefined, true,
          this.kernelConstraint ?? undefined);
      const bias = (name: string, shape: number[]) => this.addWeight(
          name, shape, 'float32', this.biasInitializer, this.biasRegularizer ?? undefined, true,
          this.biasConstraint ?? undefined);
      // Keras' order: query, key, value, attention_output; each kernel then its bias.
      this.queryKernel = kernel('query/kernel', [query[query.length - 1] as number, h, kd]);
      if (this.useBias) this.queryBias = bias('query/bias', [h, kd]);
      this.keyKernel = kernel('key/kernel', [key[key.length - 1] as number, h, kd]);
      if (this.useBias) this.keyBias = bias('key/bias', [h, kd]);
      this.valueKernel = kernel('value/kernel', [value[value.length - 1] as number, h, vd]);
      if (this.useBias) this.valueBias = bias('value/bias', [h, vd]);
      this.outputKernel = kernel('attention_output/kernel', [h, vd, ...out]);
      if (this.useBias) this.outputBias = bias('attention_output/bias', out);
    }
    this.built = true;
  }

  /**
   * Keras' call forms: `[query, value]`, `[query, value, key]`, and tf.keras 2's keyword form
   * `apply(query, {value, key?})` (rewritten into the list form, so it also works symbolically).
   */
  override apply(
      inputs: tf.Tensor|tf.Tensor[]|tf.SymbolicTensor|tf.SymbolicTensor[], kwargs?: Kwargs):
      tf.Tensor|tf.Tensor[]|tf.SymbolicTensor|tf.SymbolicTensor[] {
    const options: Kwargs = {};
    for (const [name, value] of Object.entries(kwargs ?? {})) {
      const option = CALL_OPTIONS[name];
      if (option == null) {
        throw new ValueError(
            `MultiHeadAttention got an unknown call argument \`${name}\`; it takes ` +
            `${[...new Set(Object.values(CALL_OPTIONS))].join(', ')}. Received: ${name}=${describe(value)}`);
      }
      options[option] = value;
    }
    if (options.value !== undefined || options.key !== undefined) {
      for (const name of ['value', 'key'] as const) {
        const given = options[name];
        if (given !== undefined && !(given instanceof tf.Tensor) && !(given instanceof tf.SymbolicTensor)) {
          throw new ValueError(
              `Argument \`${name}\` must be a tf.Tensor or SymbolicTensor. A saved tf.keras 2 node's keyword ` +
              `reference reaches the layer as raw JSON when tfjs' deserializer loads it: load such a model ` +
              `with loadKerasModel from 'tfjs-attention/keras'. Received: ${name}=${describe(given)}`);
        }
      }
      if (options.value === undefined) throw new ValueError('Argument `key` needs `value` as well. Received: value=undefined');
      const query = Array.isArray(inputs) ? inputs : [inputs];
      if (query.length !== 1) {
        throw new ValueError(
            `With \`value\` as a keyword, the inputs must be the query alone. Received: ${query.length} inputs`);
      }
      inputs = [query[0], options.value, ...(options.key === undefined ? [] : [options.key])] as tf.Tensor[];
      delete options.value;
      delete options.key;
    }
    if (options.attentionMask instanceof tf.SymbolicTensor) {
      throw new ValueError(
          'Argument `attentionMask` must be an eager tf.Tensor: tfjs does not pass call arguments through a ' +
          'saved or symbolic graph. In a model, use `useCausalMask` or padding masks from ' +
          '`tf.layers.embedding({maskZero: true})`. Received: a SymbolicTensor of shape ' +
          `[${options.attentionMask.shape.map(String).join(', ')}]`);
    }
    for (const flag of ['useCausalMask', 'returnAttentionScores', 'training', 'attentionMaskInput'] as const) {
      if (options[flag] != null && typeof options[flag] !== 'boolean') throw invalidArgument(flag, 'a boolean', options[flag]);
    }
    let list = Array.isArray(inputs) ? inputs : [inputs];
    const symbolic = list.some(x => x instanceof tf.SymbolicTensor);
    // The attention mask as the last input: given now, or (eager calls of a model's node, which tfjs
    // makes without call arguments) recorded for the node, when the call has the node's input count.
    const maskInput = options.attentionMaskInput === true ||
        (!symbolic && options.attentionMaskInput == null && this.nodeOptions != null &&
         this.nodeOptions.attentionMaskInputs > 0 && this.nodeOptions.attentionMaskInputs === list.length);
    delete options.attentionMaskInput;
    let maskTensor: tf.Tensor|tf.SymbolicTensor|null = null;
    if (maskInput) {
      if (list.length < 2 || list.length > 4) {
        throw new ValueError(
            'With `attentionMaskInput`, the inputs must be [query, value, mask] or [query, value, key, mask] ' +
            '([x, mask] for self-attention). ' +
            `Received: ${list.length} inputs`);
      }
      if (options.attentionMask != null) {
        throw new ValueError('Argument `attentionMask` was given both as the last input and as an option. Received: both');
      }
      maskTensor = list[list.length - 1];
      list = list.slice(0, -1);
      if (!symbolic) options.attentionMask = maskTensor;
    }
    if (list.length < 1 || list.length > 3) {
      throw new ValueError(
          'MultiHeadAttention takes [query, value] or [query, value, key] (or query with a `value` keyword). ' +
          `Received: ${list.length} inputs`);
    }
    // The same tensor twice goes in once: [x, x] (or [x, x, x]) as x, [q, v, v] as [q, v]. tfjs'
    // model execution counts a tensor's uses per input slot but its consumers per layer, so it
    // disposes an intermediate tensor given twice while later layers (or this layer's second
    // output) still need it. One input x is self-attention: x is the query, value and key.
    if (list.every(x => x === list[0])) list = [list[0]];
    else if (list.length === 3 && list[2] === list[1]) list = [list[0], list[1]];
    inputs = list.length === 1 ? list[0] : list as tf.Tensor[];
    if (symbolic) {
      this.recordNodeOptions(options, maskTensor == null ? 0 : list.length + 1);
      if (maskTensor != null) {
        // The mask stays an input of the node, so that the model feeds it; build and computeOutputShape drop its shape.
        inputs = [...list, maskTensor] as tf.SymbolicTensor[];
        options.attentionMaskInput = true;
        this.maskInInputs = true;
        try {
          this.returnsScores = options.returnAttentionScores === true;
          return super.apply(inputs, options);
        } finally {
          this.maskInInputs = false;
        }
      }
    } else if (this.nodeOptions != null) {
      // tfjs' model.predict and fit call the layer without the node's call arguments: use the node's.
      for (const flag of ['useCausalMask', 'returnAttentionScores'] as const) {
        if (options[flag] == null) options[flag] = this.nodeOptions[flag];
      }
    }
    this.returnsScores = options.returnAttentionScores === true;
    return super.apply(inputs, options);
  }

  /**
   * Keeps the call arguments of a symbolic call (a node of a model): tfjs' `model.predict` and
   * `fit` apply a layer with `training` and the first input's mask only, never with its node's
   * call arguments, so the layer keeps them itself. Its nodes must agree on them.
   */
  private recordNodeOptions(options: Kwargs, attentionMaskInputs: number): void {
    const flags = {useCausalMask: options.useCausalMask === true, returnAttentionScores: options.returnAttentionScores === true,
                   attentionMaskInputs};
    const known = this.nodeOptions;
    if (known != null && (known.useCausalMask !== flags.useCausalMask || known.returnAttentionScores !== flags.returnAttentionScores ||
                          known.attentionMaskInputs !== flags.attentionMaskInputs)) {
      throw new ValueError(
          'A MultiHeadAttention layer applied at several nodes of a model must get the same `useCausalMask`, ' +
          '`returnAttentionScores` and `attentionMaskInput` at each (tfjs\' model execution does not pass call arguments ' +
          `on to layers); use one layer per setting. Received: ${formatValue(flags)} after ${formatValue(known)}`);
    }
    this.nodeOptions = flags;
  }

  /** The input shapes without the attention mask's, while a symbolic call feeds the mask as the last input. */
  private withoutMaskShape(inputShape: Shape|Shape[]): Shape|Shape[] {
    if (!this.maskInInputs || !Array.isArray(inputShape[0])) return inputShape;
    const shapes = (inputShape as Shape[]).slice(0, -1);
    return shapes.length === 1 ? shapes[0] : shapes;
  }

  override call(inputs: tf.Tensor|tf.Tensor[], kwargs: Kwargs): tf.Tensor|tf.Tensor[] {
    const options = kwargs as MultiHeadAttentionOptions;
    const list = Array.isArray(inputs) ? inputs : [inputs];
    const [query, value = query, key = value] = list;
    const layout = this.layoutFor(query.shape, value.shape, key.shape);
    this.checkInputs(query, value, key, layout);
    const masks = this.masksFor(list, options, layout);
    const returnScores = options.returnAttentionScores === true;
    const fusedKernel = this.fusedLayerKernel(list, options, masks, layout);
    if (fusedKernel != null) {
      return tf.tidy(() => this.callFusedLayer(query, value, options, masks, fusedKernel));
    }
    return tf.tidy(() => {
      const [q, tShape] = flattenToSequences(query, layout);  // [N, T, dq], attention dims of the query
      const [v, sShape] = flattenToSequences(value, layout);  // [N, S, dv]
      const [k] = flattenToSequences(key, layout);            // [N, S, dk]
      const heads = {
        query: this.project(q, this.queryKernel!, this.queryBias),  // [N, H, T, kd]
        key: this.project(k, this.keyKernel!, this.keyBias),        // [N, H, S, kd]
        value: this.project(v, this.valueKernel!, this.valueBias),  // [N, H, S, vd]
      };
      const {valueMask, keyMask} = masks;
      const keyPadding = valueMask != null && keyMask != null && valueMask !== keyMask ?
          tf.logicalAnd(tf.cast(valueMask, 'bool'), tf.cast(keyMask, 'bool')) : valueMask ?? keyMask;  // [B, S]
      const attention = {
        mask: masks.attentionMask, queryPaddingMask: masks.queryMask, keyPaddingMask: keyPadding,
        causal: options.useCausalMask === true, scale: 1 / Math.sqrt(this.keyDim), dropout: this.dropout,
        training: options.training === true,
      };
      let attended: tf.Tensor;  // [N, H, T, vd]
      let scores: tf.Tensor|null = null;
      if (returnScores) {
        [attended, scores] = dotProductAttention(heads.query, heads.key, heads.value, {...attention, returnWeights: true});
      } else {
        attended = dotProductAttention(heads.query, heads.key, heads.value, attention);
      }
      const outDims = this.outputDims(query.shape[layout.rank - 1]);
      const output = unflattenSequences(this.outputProjection(attended), query, layout, outDims);  // [B, ..., ...out]
      if (scores == null) return output;
      return [output, this.scoresShaped(scores, query, tShape, sShape, layout)];
    });
  }

  /**
   * The fused wasm kernels that run this call's projections and attention, as ScaledDotProductAttention
   * does, or null: rank-3 inputs whose key is the value (an `attentionMask` going in as a bias), and the planner's
   * 'fused' path with its 'layer' kernel (wasm, inference, no scores, sizes that fit:
   * `fusedAttentionLayer`) or, when a gradient is recorded, its 'layer-gradient' kernel (no
   * active dropout: `fusedAttentionLayerTraining`, the projections' gradients in the kernels
   * too). Otherwise (null) the op plans its own path.
   */
  private fusedLayerKernel(inputs: tf.Tensor[], options: MultiHeadAttentionOptions,
                           masks: {queryMask: tf.Tensor|null; valueMask: tf.Tensor|null; keyMask: tf.Tensor|null;
                                   attentionMask: tf.Tensor|null}, layout: Layout): 'layer'|'layer-gradient'|null {
    if (layout.rank !== 3 || inputs.length > 2 || masks.keyMask != null) return null;
    const [query, value = query] = inputs;
    const [batch, T, dq] = query.shape as number[];
    const [S, dc] = value.shape.slice(1) as number[];
    const plan = planAttention({
      backend: tf.getBackend(), batch, heads: this.numHeads, T, S, dk: this.keyDim, dv: this.valueDim,
      layer: {dq, dc, selfAttention: query === value}, mask: masks.attentionMask != null,
      padding: masks.queryMask != null || masks.valueMask != null, causal: options.useCausalMask === true,
      returnWeights: options.returnAttentionScores === true, dropoutActive: this.dropout > 0 && options.training === true,
      recording: tf.engine().isTapeOn(), fusedKernelAvailable: fusedKernelAvailable(), threads: allowedAttentionThreads(),
    });
    return plan.path === 'fused' && (plan.kernel === 'layer' || plan.kernel === 'layer-gradient') ? plan.kernel : null;
  }

  /**
   * The fused kernels' call (see fusedLayerKernel): padded keys and the `attentionMask` as biases in the kernel, the
   * queries left with no key zeroed after; the kernels' [d, H, depth] weights as [d, H·depth] (their gradients flow
   * back through the reshape).
   */
  private callFusedLayer(query: tf.Tensor, value: tf.Tensor, options: MultiHeadAttentionOptions,
                         masks: {queryMask: tf.Tensor|null; valueMask: tf.Tensor|null; attentionMask: tf.Tensor|null},
                         kernel: 'layer'|'layer-gradient'): tf.Tensor {
    const [h, kd, vd] = [this.numHeads, this.keyDim, this.valueDim];
    const flat = (w: LayerVariable|null, rows: number|null, cols: number) =>
      w == null ? undefined : w.read().reshape(rows == null ? [cols] : [rows, cols]);
    const projections = {
      wq: flat(this.queryKernel, this.queryKernel!.shape[0], h * kd)!, bq: flat(this.queryBias, null, h * kd),  // [dq, H*kd], [H*kd]
      wk: flat(this.keyKernel, this.keyKernel!.shape[0], h * kd)!, bk: flat(this.keyBias, null, h * kd),        // [dc, H*kd]
      wv: flat(this.valueKernel, this.valueKernel!.shape[0], h * vd)!, bv: flat(this.valueBias, null, h * vd),  // [dc, H*vd]
    };
    const causal = options.useCausalMask === true;
    const [B, T] = query.shape as number[];
    const S = value.shape[1] as number;
    const kernelMasks = layerKernelMasks(masks.attentionMask, masks.valueMask, masks.queryMask, causal, [B, h, T, S]);
    const run = kernel === 'layer' ? fusedAttentionLayer : fusedAttentionLayerTraining;
    const attended = kernelMasks.zeroUnattended(run(query, query === value ? null : value, projections,
        {heads: h, dk: kd, dv: vd, scale: 1 / Math.sqrt(kd), causal}, kernelMasks.keyBias, kernelMasks.bias));  // [B, T, H*vd]
    const outputKernel = this.outputKernel!.read();                                 // [H, vd, ...out]
    const outDims = outputKernel.shape.slice(2);
    const outSize = outputKernel.size / (h * vd);
    const bias = this.outputBias == null ? null : this.outputBias.read().reshape([outSize]);
    const output = dense(attended, outputKernel.reshape([h * vd, outSize]), bias);  // [B, T, prod(out)]
    return outDims.length === 1 ? output : output.reshape([...output.shape.slice(0, -1), ...outDims]);
  }

  /** x [N, L, d] through kernel [d, H, depth] (+ bias [H, depth]), split into heads: [N, H, L, depth]. */
  private project(x: tf.Tensor, kernel: LayerVariable, bias: LayerVariable|null): tf.Tensor4D {
    const [d, h, depth] = kernel.shape as number[];
    const [n, length] = x.shape;
    const w = kernel.read().reshape([d, h * depth]);                      // [d, H*depth]
    const b = bias == null ? null : bias.read().reshape([h * depth]);     // [H*depth]
    const y = dense(x, w, b);                                             // [N, L, H*depth]
    if (h === 1) return y.reshape([n, 1, length, depth]) as tf.Tensor4D;  // [N, 1, L, depth]
    return y.reshape([n, length, h, depth]).transpose([0, 2, 1, 3]);      // [N, H, L, depth]
  }

  /** attended [N, H, T, vd] -> [N, T, prod(out)] through attention_output. */
  private outputProjection(attended: tf.Tensor): tf.Tensor {
    const [n, h, length, vd] = attended.shape;
    const kernel = this.outputKernel!.read();                                      // [H, vd, ...out]
    const outSize = kernel.size / (h * vd);
    const merged = h === 1 ? attended.reshape([n, length, vd]) :                   // [N, T, vd]
        attended.transpose([0, 2, 1, 3]).reshape([n, length, h * vd]);             // [N, T, H*vd]
    const bias = this.outputBias == null ? null : this.outputBias.read().reshape([outSize]);
    return dense(merged, kernel.reshape([h * vd, outSize]), bias);                 // [N, T, prod(out)]
  }

  /** scores [N, H, T, S] -> Keras' layout [B, batch axes..., H, query attention dims..., key attention dims...]. */
  private scoresShaped(scores: tf.Tensor, query: tf.Tensor, tShape: number[], sShape: number[], layout: Layout): tf.Tensor {
    if (layout.rank === 3) return scores;                                           // [B, H, T, S]
    const batchDims = [query.shape[0], ...layout.batchAxes.map(a => query.shape[a])];
    return scores.reshape([...batchDims, this.numHeads, ...tShape, ...sShape]);
  }

  /** The layout of a call (rank, attention and batch-like axes), checked against the arguments. */
  private layoutFor(query: Shape, value: Shape, key: Shape): Layout {
    const rank = query.length;
    const shapes = `query.shape=${formatValue(query)}, value.shape=${formatValue(value)}, key.shape=${formatValue(key)}`;
    if (rank < 3 || value.length !== rank || key.length !== rank) {
      throw new ValueError(
          `Arguments \`query\`, \`value\` and \`key\` must have the same rank, at least 3 ([B, T, d]). Received: ${shapes}`);
    }
    for (const [name, shape] of [['query', query], ['value', value], ['key', key]] as const) {
      if (shape[rank - 1] == null) {
        throw new ValueError(`Argument \`${name}\` must have a known last dimension. Received: ${name}.shape=${formatValue(shape)}`);
      }
    }
    const attentionAxes = this.attentionAxes == null ? range(1, rank - 1) : [...this.attentionAxes].sort((a, b) => a - b);
    if (attentionAxes.some(a => a > rank - 2)) {
      throw new ValueError(
          `Argument \`attentionAxes\` must name axes between the batch and the feature axis, 1 to ${rank - 2} for ` +
          `inputs of rank ${rank}. Received: attentionAxes=${formatValue(this.attentionAxes)}, query.shape=${formatValue(query)}`);
    }
    const batchAxes = range(1, rank - 1).filter(a => !attentionAxes.includes(a));
    for (const axis of [0, ...batchAxes]) {
      const sizes = [query[axis], value[axis], key[axis]];
      if (sizes.some(s => s != null && sizes.some(t => t != null && t !== s))) {
        throw new ValueError(
            `Arguments \`query\`, \`value\` and \`key\` must agree on axis ${axis} (${axis === 0 ? 'the batch' : 'a batch-like axis'}). ` +
            `Received: ${shapes}`);
      }
    }
    for (const axis of attentionAxes) {
      if (value[axis] != null && key[axis] != null && value[axis] !== key[axis]) {
        throw new ValueError(`Arguments \`value\` and \`key\` must have the same length on every attention axis. Received: ${shapes}`);
      }
    }
    return {rank, attentionAxes, batchAxes};
  }

  private checkInputs(query: tf.Tensor, value: tf.Tensor, key: tf.Tensor, layout: Layout): void {
    for (const [name, t] of [['query', query], ['value', value], ['key', key]] as const) {
      if (t.dtype !== 'float32') throw new ValueError(`Argument \`${name}\` must be float32. Received: ${name}.dtype=${t.dtype}`);
    }
    const widths = {query: this.queryKernel!.shape[0], value: this.valueKernel!.shape[0], key: this.keyKernel!.shape[0]};
    for (const [name, t] of [['query', query], ['value', value], ['key', key]] as const) {
      if (t.shape[layout.rank - 1] !== widths[name]) {
        throw new ValueError(
            `The layer was built for ${name} width ${widths[name]}. Received: ${name}.shape=${formatValue(t.shape)}`);
      }
    }
  }

  /**
   * The padding masks (tfjs' `mask`: [queryMask, valueMask, keyMask], or the query's alone, which
   * then also masks the value and key when they are the query tensor) and `attentionMask`,
   * checked (before any work); `call` combines the value and key masks (AND) into the op's key padding mask.
   */
  private masksFor(inputs: tf.Tensor[], options: MultiHeadAttentionOptions, layout: Layout):
      {queryMask: tf.Tensor|null; valueMask: tf.Tensor|null; keyMask: tf.Tensor|null; attentionMask: tf.Tensor|null} {
    const [query, value = query, key = value] = inputs;
    let masks: Array<tf.Tensor|null>;
    if (Array.isArray(options.mask)) {
      const [queryMask = null, valueMask = inputs.length === 1 ? queryMask : null, keyMask = null] = options.mask;
      masks = [queryMask, valueMask, keyMask];
    } else {
      const m = options.mask ?? null;
      masks = [m, value === query ? m : null, inputs.length === 3 && key === query ? m : null];
    }
    if (inputs.length < 3) masks[2] = null;  // the key is the value: its mask is the value's
    const attentionMask = options.attentionMask ?? null;
    const anyMask = masks.some(m => m != null) || attentionMask != null;
    if (layout.rank !== 3 && (anyMask || options.useCausalMask)) {
      throw new ValueError(
          'MultiHeadAttention takes masks (padding masks, `attentionMask`, `useCausalMask`) only for rank-3 inputs ' +
          `[B, T, d]. Received: query.shape=${formatValue(query.shape)} with ` +
          `${options.useCausalMask ? 'useCausalMask=true' : 'a mask'}`);
    }
    const [batch, queryLength] = query.shape;
    const keyLength = value.shape[1];
    const names = ['query', 'value', 'key'];
    masks.forEach((m, i) => {
      if (m == null) return;
      const length = i === 0 ? queryLength : keyLength;
      if (!(m instanceof tf.Tensor) || m.rank !== 2 || m.shape[0] !== batch || m.shape[1] !== length) {
        throw new ValueError(
            `Argument \`mask\` (the padding mask of the ${names[i]}) must have shape [${batch}, ${length}]. ` +
            `Received: mask.shape=${m instanceof tf.Tensor ? formatValue(m.shape) : describe(m)}`);
      }
    });
    if (attentionMask != null) {
      const expected = [batch, queryLength, keyLength];
      const fits = attentionMask instanceof tf.Tensor && attentionMask.rank === 3 &&
          attentionMask.shape.every((size, axis) => size === expected[axis] || size === 1);
      if (!fits) {
        throw new ValueError(
            `Argument \`attentionMask\` must have shape [B, T, S] = ${formatValue(expected)} (dims of 1 broadcast). ` +
            `Received: attentionMask.shape=${attentionMask instanceof tf.Tensor ? formatValue(attentionMask.shape) : describe(attentionMask)}`);
      }
    }
    const [queryMask, valueMask, keyMask] = masks;
    return {queryMask, valueMask, keyMask, attentionMask};
  }

  override computeOutputShape(inputShape: Shape|Shape[]): Shape|Shape[] {
    const {query, value, key} = splitShapes(this.withoutMaskShape(inputShape));
    const layout = this.layoutFor(query, value, key);
    const output = [...query.slice(0, -1), ...this.outputDims(query[query.length - 1] as number)];
    if (!this.returnsScores) return output;
    const batchDims = [query[0], ...layout.batchAxes.map(a => query[a])];
    return [output, [...batchDims, this.numHeads, ...layout.attentionAxes.map(a => query[a]),
                     ...layout.attentionAxes.map(a => value[a])]];
  }

  /** Passes the query's padding mask on to the output (and none to the scores), as Keras. */
  override computeMask(inputs: tf.Tensor|tf.Tensor[], mask?: tf.Tensor|tf.Tensor[]): tf.Tensor|tf.Tensor[] {
    const queryMask = Array.isArray(mask) ? (mask[0] ?? null) : (mask ?? null);
    // tfjs' own types say non-null, but its layers return null for "no mask".
    return (this.returnsScores ? [queryMask, null] : queryMask) as tf.Tensor|tf.Tensor[];
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      numHeads: this.numHeads,
      keyDim: this.keyDim,
      valueDim: this.valueDim,
      dropout: this.dropout,
      useBias: this.useBias,
      outputShape: this.outputShapeArg,
      attentionAxes: this.attentionAxes,
      kernelInitializer: serializeObject(this.kernelInitializer),
      biasInitializer: serializeObject(this.biasInitializer),
      kernelRegularizer: serializeObject(this.kernelRegularizer),
      biasRegularizer: serializeObject(this.biasRegularizer),
      activityRegularizer: null,
      kernelConstraint: serializeObject(this.kernelConstraint),
      biasConstraint: serializeObject(this.biasConstraint),
      seed: this.seed,
    };
    return {...super.getConfig(), ...config};
  }
}
tf.serialization.registerClass(MultiHeadAttention);

/** [query, value] or [query, value, key] shapes. */
function splitShapes(inputShape: Shape|Shape[]): {query: Shape; value: Shape; key: Shape} {
  const shapes = Array.isArray(inputShape[0]) ? inputShape as Shape[] : [inputShape as Shape];
  if (shapes.length < 1 || shapes.length > 3) {
    throw new ValueError(
        'MultiHeadAttention takes [query, value] or [query, value, key] (or query with a `value` keyword). ' +
        `Received: ${shapes.length} inputs`);
  }
  const [query, value = query, key = value] = shapes;
  return {query, value, key};
}

/** [a, a+1, ..., b-1]. */
function range(a: number, b: number): number[] {
  return Array.from({length: Math.max(0, b - a)}, (_, i) => a + i);
}

/**
 * x [B, ...middle, d] -> [N, L, d]: batch-like axes moved next to the batch (N = B·their sizes),
 * attention axes flattened into L. Also returns the attention axes' sizes.
 */
function flattenToSequences(x: tf.Tensor, layout: Layout): [tf.Tensor, number[]] {
  const {rank, attentionAxes, batchAxes} = layout;
  const attnDims = attentionAxes.map(a => x.shape[a]);
  if (rank === 3) return [x, attnDims];                                             // [B, T, d]
  const perm = [0, ...batchAxes, ...attentionAxes, rank - 1];
  const moved = perm.every((a, i) => a === i) ? x : x.transpose(perm);              // [B, batch..., attn..., d]
  const n = x.shape[0] * batchAxes.reduce((p, a) => p * x.shape[a], 1);
  const length = attnDims.reduce((p, s) => p * s, 1);
  return [moved.reshape([n, length, x.shape[rank - 1]]), attnDims];                 // [N, L, d]
}

/** y [N, T, prod(out)] -> [B, ...query's middle axes, ...out] (the inverse of flattenToSequences). */
function unflattenSequences(y: tf.Tensor, query: tf.Tensor, layout: Layout, outDims: number[]): tf.Tensor {
  const {rank, attentionAxes, batchAxes} = layout;
  const outSize = y.shape[2];
  const dims = (axes: number[]) => axes.map(a => query.shape[a] as number);
  const moved = y.reshape([query.shape[0] as number, ...dims(batchAxes), ...dims(attentionAxes), outSize as number]);  // [B, batch..., attn..., out]
  const perm = [0, ...batchAxes, ...attentionAxes, rank - 1];
  const inverse = perm.map((_, i) => perm.indexOf(i));
  const back = inverse.every((a, i) => a === i) ? moved : moved.transpose(inverse);  // [B, ..., prod(out)]
  return outDims.length === 1 ? back : back.reshape([...back.shape.slice(0, -1), ...outDims]);
}

/** A short description of a received value for messages (tensors by shape). */
function describe(value: unknown): string {
  if (value instanceof tf.Tensor || value instanceof tf.SymbolicTensor) {
    return `a ${value instanceof tf.Tensor ? 'tensor' : 'SymbolicTensor'} of shape [${value.shape.map(String).join(', ')}]`;
  }
  return formatValue(value);
}

/** Creates a MultiHeadAttention layer (Keras-compatible); see the class for the arguments. */
export function multiHeadAttention(args: MultiHeadAttentionArgs): MultiHeadAttention {
  return new MultiHeadAttention(args);
}
