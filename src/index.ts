/**
 * tfjs-attention: scaled dot-product attention layers and ops for TensorFlow.js.
 *
 * The browser-safe entry: it imports no Node built-in, directly or through anything it
 * imports (test/package_layout_test.ts walks the imports), so that bundlers build it for
 * browsers. Node gets src/node.ts, which re-exports this and adds the file:// handler and the
 * second attention thread (package.json's `exports` picks it under the `node` condition).
 */
import {registerWasmKernels} from './backend/wasm_kernels';

export {ValueError} from './errors';
export {
  ScaledDotProductAttention, scaledDotProductAttention,
} from './attention/scaled_dot_product_attention';
export type {
  ScaledDotProductAttentionArgs, ScaledDotProductAttentionOptions, ProjectedHeads,
} from './attention/scaled_dot_product_attention';
export {dotProductAttention} from './attention/dot_product_attention';
export type {DotProductAttentionOptions} from './attention/dot_product_attention';
export {
  planAttention, DEFAULT_BLOCK_SIZE, MEMORY_EFFICIENT_THRESHOLD, MEMORY_EFFICIENT_THRESHOLDS,
} from './attention/attention_plan';
export type {AttentionCall, AttentionPlan, AttentionPath} from './attention/attention_plan';
export type {AttentionSizes} from './backend/wasm_fused_attention';
export {memoryEfficientAttention} from './attention/memory_efficient_attention';
export {causalMask} from './attention/masks';
export {PositionEmbedding, positionEmbedding} from './layers/position_embedding';
export type {PositionEmbeddingArgs} from './layers/position_embedding';
export {LastPosition, lastPosition} from './layers/last_position';
export {Cropping1D, cropping1D} from './layers/cropping_1d';
export type {Cropping1DArgs} from './layers/cropping_1d';
export {MultiHeadAttention, multiHeadAttention} from './layers/multi_head_attention';
export type {MultiHeadAttentionArgs, MultiHeadAttentionOptions} from './layers/multi_head_attention';
export {traceAttention} from './attention/trace_attention';
export type {AttentionTrace} from './attention/trace_attention';
export {selectBackend, BACKEND_NAMES} from './backend/select_backend';
export {setAttentionThreads} from './backend/attention_threads';
export type {BackendName} from './backend/select_backend';

// tfjs' wasm backend has no UnsortedSegmentSum, the gradient of embeddings.
registerWasmKernels();
