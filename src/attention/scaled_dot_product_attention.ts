/** The ScaledDotProductAttention layer: self-, cross- and multi-head attention with trainable Wq, Wk, Wv. */
import * as tf from '@tensorflow/tfjs';
import {checkPositiveFinite, checkPositiveInteger, checkRate, invalidArgument, ValueError} from '../errors';
import {Constraint, Initializer, ObjectIdentifier, Regularizer, resolveConstraint, resolveInitializer,
        resolveRegularizer, serializeObject} from '../keras_objects';
import {dotProductAttention} from './dot_product_attention';
import {AttentionPlan, checkStandardPathMemory, planAttention} from './attention_plan';
import {fusedAttentionLayer, fusedKernelAvailable, fusedMultiHeadAttention} from '../backend/wasm_fused_attention';
import {allowedAttentionThreads} from '../backend/attention_threads';
import {fusedAttentionLayerTraining} from '../backend/wasm_fused_layer_training';
import {paddingMask, toBoolMask} from './masks';
import {layerKernelMasks} from './fused_masks';
import {dense} from './matmul';
import type {Kwargs, LayerArgs, LayerVariable, Shape} from '../layers/layer_types';

export interface ScaledDotProductAttentionArgs extends LayerArgs {
  /** Size of each head's query and key vectors, dk. Defaults to the query's last dimension. */
  keyDim?: number|null;
  /** Size of each head's value vectors, dv; may differ from keyDim. Defaults to keyDim. */
  valueDim?: number|null;
  /** Number of attention heads H. Defaults to 1. */
  numHeads?: number;
  /** Whether the projections (and the output projection) add a bias. Defaults to false. */
  useBias?: boolean;
  /**
   * Size of an output projection Wo [H*dv, outputDim] applied to the concatenated heads.
   * Defaults to unset: no output projection, and the output's last dimension is H*dv.
   */
  outputDim?: number|null;
  /** Query t attends key s only if s <= t (top-left aligned). Defaults to false. */
  causal?: boolean;
  /** Dropout rate on the attention weights, applied only in training. Defaults to 0. */
  dropout?: number;
  /** Multiplies Q·Kᵀ. Defaults to 1/sqrt(keyDim). */
  scale?: number|null;
  /** Initializer of wq, wk, wv and wo. Defaults to 'glorotUniform'. */
  kernelInitializer?: ObjectIdentifier<Initializer>;
  /** Initializer of the biases. Defaults to 'zeros'. */
  biasInitializer?: ObjectIdentifier<Initializer>;
  /** Regularizer of wq, wk, wv and wo. Defaults to none. */
  kernelRegularizer?: ObjectIdentifier<Regularizer>|null;
  /** Regularizer of the biases. Defaults to none. */
  biasRegularizer?: ObjectIdentifier<Regularizer>|null;
  /** Constraint on wq, wk, wv and wo. Defaults to none. */
  kernelConstraint?: ObjectIdentifier<Constraint>|null;
  /** Constraint on the biases. Defaults to none. */
  biasConstraint?: ObjectIdentifier<Constraint>|null;
  /** Output `[output, weights]`, weights [B, H, T, S]. Defaults to false. */
  returnAttentionScores?: boolean;
  /**
   * Key block size of the memory-efficient path: a number forces it, 0 forces the standard
   * path, null (the default) lets `planAttention` choose: the fused kernel on wasm (for
   * training with its fused backward), else by key length and backend. Any number turns the
   * fused kernels off.
   */
  blockSize?: number|null;
}

/** Call-time options of `layer.apply(inputs, options)`. */
export interface ScaledDotProductAttentionOptions {
  /** [B, T, S] (dims of 1 broadcast), 1 = query t may attend key s. Eager tensors only. */
  attentionMask?: tf.Tensor|null;
  /** Whether dropout is active. Set by `model.fit`. */
  training?: boolean;
  /** Padding masks, passed by tfjs from e.g. `tf.layers.embedding({maskZero: true})`. */
  mask?: tf.Tensor|Array<tf.Tensor|null>|null;
}

/** Query, key and value after projection, split into heads: [B, H, T|S, d]. */
export interface ProjectedHeads {
  query: tf.Tensor4D;
  key: tf.Tensor4D;
  value: tf.Tensor4D;
}

/**
 * Scaled dot-product attention (Vaswani et al. 2017, "Attention Is All You Need"):
 * Q = x·Wq, K = c·Wk, V = c·Wv, then per head R = softmax(Q·Kᵀ·scale)·V, heads
 * concatenated, then optionally ·Wo. With one input it is self-attention (c = x); with
 * `[query, context]` it is encoder-decoder (cross) attention.
 *
 * Input shape: x [B, T, d], or [query [B, T, dq], context [B, S, dc]].
 * Output shape: [B, T, outputDim ?? numHeads*valueDim]; with `returnAttentionScores` also
 * the weights [B, numHeads, T, S]. B is the batch, T the query length, S the key length.
 */
export class ScaledDotProductAttention extends tf.layers.Layer {
  static className = 'ScaledDotProductAttention';

  readonly keyDim: number|null;
  readonly valueDim: number|null;
  readonly numHeads: number;
  readonly useBias: boolean;
  readonly outputDim: number|null;
  readonly causal: boolean;
  readonly dropout: number;
  readonly scale: number|null;
  readonly returnAttentionScores: boolean;
  readonly blockSize: number|null;
  private readonly kernelInitializer: Initializer;
  private readonly biasInitializer: Initializer;
  private readonly kernelRegularizer: Regularizer|null;
  private readonly biasRegularizer: Regularizer|null;
  private readonly kernelConstraint: Constraint|null;
  private readonly biasConstraint: Constraint|null;

  private wq: LayerVariable|null = null;
  private wk: LayerVariable|null = null;
  private wv: LayerVariable|null = null;
  private bq: LayerVariable|null = null;
  private bk: LayerVariable|null = null;
  private bv: LayerVariable|null = null;
  private wo: LayerVariable|null = null;
  private bo: LayerVariable|null = null;

  constructor(args: ScaledDotProductAttentionArgs = {}) {
    super(args);
    if (args.keyDim != null) checkDimension('keyDim', args.keyDim);
    if (args.valueDim != null) checkDimension('valueDim', args.valueDim);
    checkDimension('numHeads', args.numHeads ?? 1);
    if (args.outputDim != null) checkDimension('outputDim', args.outputDim);
    for (const dim of ['keyDim', 'valueDim'] as const) {
      const size = args[dim];
      if (size != null && (args.numHeads ?? 1) * size > MAX_WEIGHT_ELEMENTS) {
        throw new ValueError(
            `Arguments \`numHeads\` and \`${dim}\` make weights of numHeads·${dim} = ${(args.numHeads ?? 1) * size} columns, ` +
            `over the limit of ${MAX_WEIGHT_ELEMENTS} elements per weight. Received: numHeads=${args.numHeads ?? 1}, ${dim}=${size}`);
      }
    }
    checkRate('dropout', args.dropout ?? 0);
    if (args.scale != null) checkPositiveFinite('scale', args.scale);
    if (args.blockSize != null && args.blockSize !== 0) checkPositiveInteger('blockSize', args.blockSize);
    for (const flag of ['useBias', 'causal', 'returnAttentionScores'] as const) {
      if (args[flag] != null && typeof args[flag] !== 'boolean') throw invalidArgument(flag, 'a boolean', args[flag]);
    }
    if (args.returnAttentionScores && args.blockSize) {
      throw new ValueError(
          'The memory-efficient path never forms the attention weights, so `returnAttentionScores` needs ' +
          `blockSize=0 or null. Received: returnAttentionScores=true, blockSize=${args.blockSize}`);
    }
    this.keyDim = args.keyDim ?? null;
    this.valueDim = args.valueDim ?? null;
    this.numHeads = args.numHeads ?? 1;
    this.useBias = args.useBias ?? false;
    this.outputDim = args.outputDim ?? null;
    this.causal = args.causal ?? false;
    this.dropout = args.dropout ?? 0;
    this.scale = args.scale ?? null;
    this.returnAttentionScores = args.returnAttentionScores ?? false;
    this.blockSize = args.blockSize ?? null;
    this.kernelInitializer = resolveInitializer('kernelInitializer', args.kernelInitializer, 'glorotUniform');
    this.biasInitializer = resolveInitializer('biasInitializer', args.biasInitializer, 'zeros');
    this.kernelRegularizer = resolveRegularizer('kernelRegularizer', args.kernelRegularizer);
    this.biasRegularizer = resolveRegularizer('biasRegularizer', args.biasRegularizer);
    this.kernelConstraint = resolveConstraint('kernelConstraint', args.kernelConstraint);
    this.biasConstraint = resolveConstraint('biasConstraint', args.biasConstraint);
    this.supportsMasking = true;
  }

  /** dk once the query's width is known. */
  private resolvedKeyDim(queryDim: number): number {
    return this.keyDim ?? queryDim;
  }

  private resolvedValueDim(queryDim: number): number {
    return this.valueDim ?? this.resolvedKeyDim(queryDim);
  }

  override build(inputShape: Shape|Shape[]): void {
    const [queryShape, contextShape] = splitShapes(inputShape);
    const dQuery = queryShape[2] as number;
    const dContext = contextShape[2] as number;
    const dk = this.resolvedKeyDim(dQuery);
    const dv = this.resolvedValueDim(dQuery);
    const h = this.numHeads;
    if (this.wq == null) {
      const received = `numHeads=${h}, keyDim=${dk}, valueDim=${dv}, query width ${dQuery}, context width ${dContext}`;
      const shapes: Array<[string, number[]]> = [['wq', [dQuery, h * dk]], ['wk', [dContext, h * dk]], ['wv', [dContext, h * dv]]];
      if (this.outputDim != null) shapes.push(['wo', [h * dv, this.outputDim]]);
      for (const [name, [rows, cols]] of shapes) {
        if (rows * cols > MAX_WEIGHT_ELEMENTS) {
          throw new ValueError(
              `The layer's weight \`${name}\` would have shape [${rows}, ${cols}], over the limit of ${MAX_WEIGHT_ELEMENTS} ` +
              `elements per weight. Received: ${received}${this.outputDim != null ? `, outputDim=${this.outputDim}` : ''}`);
        }
      }
      const kernel = (name: string, shape: number[]) => this.addWeight(
          name, shape, 'float32', this.kernelInitializer, this.kernelRegularizer ?? undefined, true,
          this.kernelConstraint ?? undefined);
      const bias = (name: string, size: number) => this.addWeight(
          name, [size], 'float32', this.biasInitializer, this.biasRegularizer ?? undefined, true,
          this.biasConstraint ?? undefined);
      this.wq = kernel('wq', [dQuery, h * dk]);
      this.wk = kernel('wk', [dContext, h * dk]);
      this.wv = kernel('wv', [dContext, h * dv]);
      if (this.useBias) {
        this.bq = bias('bq', h * dk);
        this.bk = bias('bk', h * dk);
        this.bv = bias('bv', h * dv);
      }
      if (this.outputDim != null) {
        this.wo = kernel('wo', [h * dv, this.outputDim]);
        if (this.useBias) this.bo = bias('bo', this.outputDim);
      }
    }
    this.built = true;
  }

  override apply(
      inputs: tf.Tensor|tf.Tensor[]|tf.SymbolicTensor|tf.SymbolicTensor[], kwargs?: Kwargs):
      tf.Tensor|tf.Tensor[]|tf.SymbolicTensor|tf.SymbolicTensor[] {
    if (kwargs?.attentionMask instanceof tf.SymbolicTensor) {
      throw new ValueError(
          'Argument `attentionMask` must be an eager tf.Tensor: tfjs does not pass call arguments ' +
          'through a saved or symbolic graph. In a model, use `causal` or padding masks from ' +
          '`tf.layers.embedding({maskZero: true})`. Received: a SymbolicTensor of shape ' +
          `[${kwargs.attentionMask.shape.map(String).join(', ')}]`);
    }
    return super.apply(inputs, kwargs);
  }

  override call(inputs: tf.Tensor|tf.Tensor[], kwargs: Kwargs): tf.Tensor|tf.Tensor[] {
    const options = kwargs as ScaledDotProductAttentionOptions;
    const [query, context] = splitInputs(inputs);
    const plan = this.planCall(query, context, options);
    if (plan?.path === 'standard') this.checkScoresFit(query, context);
    return tf.tidy(() => {
      // 'gradient', or masks for the attention's kernel: the projections here, the attention (and its fused backward) in
      // the op, which applies the masks as biases. The layer's kernels take the masks themselves.
      const masked = options.attentionMask != null || hasPadding(options);
      const throughTheOp = plan?.kernel === 'gradient' || (plan?.kernel === 'attention' && masked);
      if (plan?.path === 'fused' && !throughTheOp) {
        return this.callFused(query, context, options, plan.kernel as 'layer'|'attention'|'layer-gradient');
      }
      // The padding masks go to the op as [B, T] and [B, S]: the memory-efficient path keeps them vectors.
      const {attentionMask, queryMask, contextMask} = this.masksFor(query, context, options);
      const heads = this.projectHeads(query, context);
      const attention = {
        mask: attentionMask, queryPaddingMask: queryMask, keyPaddingMask: contextMask,
        causal: this.causal, scale: this.scale, dropout: this.dropout,
        training: options.training === true, blockSize: this.blockSize,
      };
      if (this.returnAttentionScores) {
        const [attended, weights] = dotProductAttention(
            heads.query, heads.key, heads.value, {...attention, returnWeights: true});  // [B, H, T, dv], [B, H, T, S]
        return [this.mergeHeads(attended), weights];
      }
      const attended = dotProductAttention(heads.query, heads.key, heads.value, attention);  // [B, H, T, dv]
      return this.mergeHeads(attended);                                                       // [B, T, out]
    });
  }

  /**
   * The path of this call (see `planAttention`): with the active backend, whether a gradient is
   * recorded, the call's masks and options. Null when the inputs are not rank-3 tensors (the
   * checks of `projectHeads` then say so). The op that `call` runs for the other paths plans
   * the same way for the projected heads.
   */
  planCall(query: tf.Tensor, context: tf.Tensor, options: ScaledDotProductAttentionOptions): AttentionPlan|null {
    if (!(query instanceof tf.Tensor) || !(context instanceof tf.Tensor) || query.rank !== 3 || context.rank !== 3) return null;
    const heads = this.numHeads;
    const [batch, T, dq] = query.shape as [number, number, number];
    const [S, dc] = context.shape.slice(1) as [number, number];
    return planAttention({
      backend: tf.getBackend(), batch, heads, T, S,
      dk: this.wq!.read().shape[1]! / heads, dv: this.wv!.read().shape[1]! / heads,
      layer: {dq, dc, selfAttention: query === context},
      blockSize: this.blockSize, mask: options.attentionMask != null, padding: hasPadding(options), causal: this.causal,
      returnWeights: this.returnAttentionScores, dropoutActive: this.dropout > 0 && options.training === true,
      recording: tf.engine().isTapeOn(), fusedKernelAvailable: fusedKernelAvailable(), threads: allowedAttentionThreads(),
    });
  }

  /**
   * Inference on wasm, where the plan says 'fused': with `kernel` 'layer', the projections and
   * the attention in one kernel call (`fusedAttentionLayer`), which writes the heads side by
   * side (no split or merge of heads), the masks (tfjs' padding `mask`, `attentionMask`) as
   * biases and `causal` applied in the kernel, the queries left with no key zeroed after; with
   * 'attention' (weights too large for the projection kernel, no padding and no
   * `attentionMask`, which `call` sends through the op instead), XNNPACK's projections then the
   * attention kernel; with 'layer-gradient' (a gradient is recorded), as 'layer' with a fused
   * gradient for the inputs and the projections (`fusedAttentionLayerTraining`). Then the
   * output projection.
   */
  private callFused(
      query: tf.Tensor, context: tf.Tensor, options: ScaledDotProductAttentionOptions,
      kernel: 'layer'|'attention'|'layer-gradient'): tf.Tensor {
    const heads = this.numHeads;
    const dk = this.wq!.read().shape[1]! / heads;
    const dv = this.wv!.read().shape[1]! / heads;
    const [B, T] = query.shape as [number, number, number];
    const S = context.shape[1] as number;
    this.checkInputs(query, context);
    const {attentionMask, queryMask, contextMask} = this.masksFor(query, context, options);
    const selfAttention = query === context;
    const scale = this.scale ?? 1 / Math.sqrt(dk);
    const causal = this.causal;
    let attended: tf.Tensor;                                                    // [B, T, H*dv]
    if (kernel === 'layer' || kernel === 'layer-gradient') {
      const projections = {
        wq: this.wq!.read(), wk: this.wk!.read(), wv: this.wv!.read(), bq: this.bq?.read(), bk: this.bk?.read(), bv: this.bv?.read(),
      };
      // Padded keys and the keys an explicit mask leaves out get MASKED_LOGIT in their scores; queries left with no key
      // output zeros, as on the standard path.
      const masks = layerKernelMasks(attentionMask, contextMask, queryMask, causal, [B, heads, T, S]);
      const run = kernel === 'layer' ? fusedAttentionLayer : fusedAttentionLayerTraining;
      attended = masks.zeroUnattended(
          run(query, selfAttention ? null : context, projections, {heads, dk, dv, scale, causal}, masks.keyBias, masks.bias));
    } else {  // weights too large for the projection kernel, no mask (`call` sends masks to the op): XNNPACK's products, then the attention kernel
      const q = dense(query, this.wq!.read(), this.bq?.read());                 // [B, T, H*dk]
      const k = dense(context, this.wk!.read(), this.bk?.read());               // [B, S, H*dk]
      const v = dense(context, this.wv!.read(), this.bv?.read());               // [B, S, H*dv]
      attended = fusedMultiHeadAttention({x: q, column: 0}, {x: k, column: 0}, {x: v, column: 0}, {heads, dk, dv, scale, causal});
    }
    return this.wo == null ? attended : dense(attended, this.wo.read(), this.bo?.read());  // [B, T, out]
  }

  /**
   * Refuses, before any op, inputs whose attention scores the standard path (which the plan
   * chose) could not hold (see STANDARD_PATH_MAX_SCORE_BYTES). The op checks too, but only
   * after the projections: inside tf.grads an error at that point would leave behind the
   * tensors that tfjs saved for the backward pass.
   */
  private checkScoresFit(query: tf.Tensor, context: tf.Tensor): void {
    const [batch, queryLength] = query.shape as [number, number, number];
    const keyLength = context.shape[1] as number;
    const scoresShape = [batch, this.numHeads, queryLength, keyLength];
    const received = query === context ? `inputs.shape=[${query.shape.join(', ')}]` :
        `query.shape=[${query.shape.join(', ')}], context.shape=[${context.shape.join(', ')}]`;
    checkStandardPathMemory(scoresShape, received);
  }

  /**
   * Projects the query and the context and splits them into heads:
   * Q [B, H, T, dk], K [B, H, S, dk], V [B, H, S, dv]. Used by `call` and `traceAttention`.
   */
  projectHeads(query: tf.Tensor, context: tf.Tensor): ProjectedHeads {
    this.checkInputs(query, context);
    return tf.tidy(() => {
      const dk = this.wq!.read().shape[1]! / this.numHeads;
      const dv = this.wv!.read().shape[1]! / this.numHeads;
      const q = dense(query, this.wq!.read(), this.bq?.read());      // [B, T, H*dk]
      const k = dense(context, this.wk!.read(), this.bk?.read());    // [B, S, H*dk]
      const v = dense(context, this.wv!.read(), this.bv?.read());    // [B, S, H*dv]
      return {query: this.splitHeads(q, dk), key: this.splitHeads(k, dk), value: this.splitHeads(v, dv)};
    });
  }

  /** [B, L, H*d] -> [B, H, L, d]. */
  private splitHeads(x: tf.Tensor, depth: number): tf.Tensor4D {
    const [batch, length] = x.shape;
    if (this.numHeads === 1) return x.expandDims(1) as tf.Tensor4D;                 // [B, 1, L, d]
    return x.reshape([batch, length, this.numHeads, depth]).transpose([0, 2, 1, 3]);  // [B, H, L, d]
  }

  /** [B, H, T, dv] -> [B, T, H*dv], then the output projection when there is one. */
  mergeHeads(x: tf.Tensor): tf.Tensor {
    const [batch, heads, length, depth] = x.shape;
    const merged = heads === 1 ?
        x.reshape([batch, length, depth]) :                                         // [B, T, dv]
        x.transpose([0, 2, 1, 3]).reshape([batch, length, heads * depth]);         // [B, T, H*dv]
    return this.wo == null ? merged : dense(merged, this.wo.read(), this.bo?.read());  // [B, T, outputDim]
  }

  /**
   * The padding masks that tfjs passes as `mask`: the query's [B, T] and the context's [B, S]
   * (for self-attention the query's, which then also masks the keys), checked; null where
   * there is none.
   */
  private paddingMasksFor(query: tf.Tensor, context: tf.Tensor, options: ScaledDotProductAttentionOptions):
      {queryMask: tf.Tensor|null; contextMask: tf.Tensor|null} {
    const [batch, queryLength] = query.shape as [number, number, number];
    const keyLength = context.shape[1] as number;
    const selfAttention = query === context;
    let queryMask: tf.Tensor|null = null;
    let contextMask: tf.Tensor|null = null;
    if (Array.isArray(options.mask)) {
      queryMask = options.mask[0] ?? null;
      contextMask = options.mask[1] ?? (selfAttention ? queryMask : null);
    } else if (options.mask != null) {
      queryMask = options.mask;
      if (selfAttention) contextMask = queryMask;
    }
    checkPaddingMask('mask', queryMask, batch, queryLength, 'query', query.shape);
    checkPaddingMask('mask', contextMask, batch, keyLength, 'context', context.shape);
    return {queryMask, contextMask};
  }

  /**
   * The [B, T, S] mask from the explicit `attentionMask` and the padding masks that tfjs
   * passes as `mask` (the query's alone, or [queryMask, contextMask]); null if none.
   * For self-attention the query's padding mask also masks the keys.
   */
  attentionMaskFor(query: tf.Tensor, context: tf.Tensor, options: ScaledDotProductAttentionOptions): tf.Tensor|null {
    const [queryLength, keyLength] = [query.shape[1] as number, context.shape[1] as number];
    const {attentionMask, queryMask, contextMask} = this.masksFor(query, context, options);
    const padding = paddingMask(queryMask, contextMask, queryLength, keyLength);  // [B, T, S] or null
    if (attentionMask == null) return padding;
    const attend = toBoolMask(attentionMask);                                     // [B, T, S]
    return padding == null ? attend : tf.logicalAnd(padding, attend);
  }

  /**
   * The call's masks, checked, kept apart: the explicit `attentionMask` (broadcastable to
   * [B, T, S]) and the padding masks of the query [B, T] and the context [B, S] (see
   * `paddingMasksFor`); null where there is none.
   */
  private masksFor(query: tf.Tensor, context: tf.Tensor, options: ScaledDotProductAttentionOptions):
      {attentionMask: tf.Tensor|null; queryMask: tf.Tensor|null; contextMask: tf.Tensor|null} {
    const [batch, queryLength] = query.shape as [number, number, number];
    const keyLength = context.shape[1] as number;
    const {queryMask, contextMask} = this.paddingMasksFor(query, context, options);
    const explicit = options.attentionMask ?? null;
    if (explicit != null) {
      const expected = [batch, queryLength, keyLength];
      const fits = explicit instanceof tf.Tensor && explicit.rank === 3 &&
          explicit.shape.every((size, axis) => size === expected[axis] || size === 1);
      if (!fits) {
        throw new ValueError(
            'Argument `attentionMask` must have shape [B, T, S] = ' +
            `[${expected.join(', ')}] (dims of 1 broadcast) for query.shape=[${query.shape.join(', ')}] and ` +
            `context.shape=[${context.shape.join(', ')}]. Received: attentionMask.shape=` +
            `${explicit instanceof tf.Tensor ? `[${explicit.shape.join(', ')}]` : String(explicit)}`);
      }
    }
    return {attentionMask: explicit, queryMask, contextMask};
  }

  private checkInputs(query: tf.Tensor, context: tf.Tensor): void {
    const names: Array<[string, tf.Tensor]> = query === context ? [['inputs', query]] : [['query', query], ['context', context]];
    for (const [name, t] of names) {
      if (!(t instanceof tf.Tensor) || t.rank !== 3) {
        throw new ValueError(
            `Argument \`${name}\` must be a tensor of rank 3 [B, T, d]. Received: ${name}.shape=` +
            `${t instanceof tf.Tensor ? `[${t.shape.join(', ')}]` : String(t)}`);
      }
      if (t.dtype !== 'float32') {
        throw new ValueError(`Argument \`${name}\` must be float32. Received: ${name}.dtype=${t.dtype}`);
      }
    }
    if (query.shape[0] !== context.shape[0]) {
      throw new ValueError(
          'Arguments `query` and `context` must have the same batch size. Received: ' +
          `query.shape=[${query.shape.join(', ')}], context.shape=[${context.shape.join(', ')}]`);
    }
    const [dQuery, dContext] = [this.wq!.read().shape[0], this.wk!.read().shape[0]];
    if (query.shape[2] !== dQuery || context.shape[2] !== dContext) {
      throw new ValueError(
          `The layer was built for query width ${dQuery} and context width ${dContext}. Received: ` +
          `query.shape=[${query.shape.join(', ')}], context.shape=[${context.shape.join(', ')}]`);
    }
  }

  override computeOutputShape(inputShape: Shape|Shape[]): Shape|Shape[] {
    const [queryShape, contextShape] = splitShapes(inputShape);
    const dQuery = queryShape[2] as number;
    const width = this.outputDim ?? this.numHeads * this.resolvedValueDim(dQuery);
    const outputShape = [queryShape[0], queryShape[1], width];
    if (!this.returnAttentionScores) return outputShape;
    return [outputShape, [queryShape[0], this.numHeads, queryShape[1], contextShape[1]]];
  }

  /** Passes the query's padding mask on to the output (and none to the weights). */
  override computeMask(inputs: tf.Tensor|tf.Tensor[], mask?: tf.Tensor|tf.Tensor[]): tf.Tensor|tf.Tensor[] {
    const queryMask = Array.isArray(mask) ? (mask[0] ?? null) : (mask ?? null);
    // tfjs' own types say non-null, but its layers return null for "no mask".
    return (this.returnAttentionScores ? [queryMask, null] : queryMask) as tf.Tensor|tf.Tensor[];
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      keyDim: this.keyDim,
      valueDim: this.valueDim,
      numHeads: this.numHeads,
      useBias: this.useBias,
      outputDim: this.outputDim,
      causal: this.causal,
      dropout: this.dropout,
      scale: this.scale,
      kernelInitializer: serializeObject(this.kernelInitializer),
      biasInitializer: serializeObject(this.biasInitializer),
      kernelRegularizer: serializeObject(this.kernelRegularizer),
      biasRegularizer: serializeObject(this.biasRegularizer),
      kernelConstraint: serializeObject(this.kernelConstraint),
      biasConstraint: serializeObject(this.biasConstraint),
      returnAttentionScores: this.returnAttentionScores,
      blockSize: this.blockSize,
    };
    return {...super.getConfig(), ...config};
  }
}
tf.serialization.registerClass(ScaledDotProductAttention);

/** Whether the call has a padding mask (tfjs' `mask`): the query's alone, or any of [query, context]. */
function hasPadding(options: ScaledDotProductAttentionOptions): boolean {
  return Array.isArray(options.mask) ? options.mask.some(m => m != null) : options.mask != null;
}

/** [x] or x -> [x, x]; [query, context] -> itself. */
export function splitInputs(inputs: tf.Tensor|tf.Tensor[]): [tf.Tensor, tf.Tensor] {
  if (!Array.isArray(inputs)) return [inputs, inputs];
  if (inputs.length === 1) return [inputs[0], inputs[0]];
  if (inputs.length === 2) return [inputs[0], inputs[1]];
  throw new ValueError(
      'The layer takes one input x (self-attention) or [query, context] (cross-attention). ' +
      `Received: ${inputs.length} inputs`);
}

function splitShapes(inputShape: Shape|Shape[]): [Shape, Shape] {
  const shapes = Array.isArray(inputShape[0]) ? inputShape as Shape[] : [inputShape as Shape];
  if (shapes.length < 1 || shapes.length > 2) {
    throw new ValueError(
        'The layer takes one input x (self-attention) or [query, context] (cross-attention). ' +
        `Received: ${shapes.length} inputs`);
  }
  const [queryShape, contextShape = queryShape] = shapes;
  const names = shapes.length === 1 ? ['inputs'] : ['query', 'context'];
  shapes.forEach((shape, i) => {
    if (shape.length !== 3 || shape[2] == null) {
      throw new ValueError(
          `Argument \`${names[i]}\` must have shape [B, T, d] with a known d. ` +
          `Received: ${names[i]}.shape=[${shape.map(String).join(', ')}]`);
    }
  });
  if (queryShape[0] != null && contextShape[0] != null && queryShape[0] !== contextShape[0]) {
    throw new ValueError(
        'Arguments `query` and `context` must have the same batch size. Received: ' +
        `query.shape=[${queryShape.map(String).join(', ')}], context.shape=[${contextShape.map(String).join(', ')}]`);
  }
  return [queryShape, contextShape];
}

function checkPaddingMask(
    name: string, mask: tf.Tensor|null, batch: number, length: number, of: string, shape: number[]): void {
  if (mask == null) return;
  if (mask.rank !== 2 || mask.shape[0] !== batch || mask.shape[1] !== length) {
    throw new ValueError(
        `Argument \`${name}\` (the padding mask of the ${of}) must have shape [${batch}, ${length}] for ` +
        `${of}.shape=[${shape.join(', ')}]. Received: ${name}.shape=[${mask.shape.join(', ')}]`);
  }
}

/**
 * Most elements of one weight matrix of the layer (and so the largest keyDim, valueDim,
 * numHeads and outputDim): 2^28, 1 GiB of float32, a quarter of wasm's 4 GiB memory. Beyond
 * it the layer refuses the arguments by name instead of failing in an allocation (a
 * RangeError from a typed array, or a wasm heap out of memory).
 */
export const MAX_WEIGHT_ELEMENTS = 2 ** 28;

/** Throws unless `value` is an integer in [1, MAX_WEIGHT_ELEMENTS]. */
function checkDimension(name: string, value: unknown): void {
  checkPositiveInteger(name, value);
  if ((value as number) > MAX_WEIGHT_ELEMENTS) throw invalidArgument(name, `a positive integer at most ${MAX_WEIGHT_ELEMENTS}`, value);
}

/** Creates a ScaledDotProductAttention layer; see the class for the arguments. */
export function scaledDotProductAttention(args: ScaledDotProductAttentionArgs = {}): ScaledDotProductAttention {
  return new ScaledDotProductAttention(args);
}
