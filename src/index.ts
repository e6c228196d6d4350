/** tfjs-attention: scaled dot-product attention layers and ops for TensorFlow.js. */
import {registerWasmKernels} from './backend/wasm_kernels';
import {registerFileSystemRouters} from './io/file_system_io';

export {ValueError} from './errors';
export {
  ScaledDotProductAttention, scaledDotProductAttention,
} from './attention/scaled_dot_product_attention';
export type {
  ScaledDotProductAttentionArgs, ScaledDotProductAttentionOptions, ProjectedHeads,
} from './attention/scaled_dot_product_attention';
export {
  dotProductAttention, DEFAULT_BLOCK_SIZE, MEMORY_EFFICIENT_THRESHOLD,
} from './attention/dot_product_attention';
export type {DotProductAttentionOptions} from './attention/dot_product_attention';
export {memoryEfficientAttention} from './attention/memory_efficient_attention';
export {causalMask} from './attention/masks';
export {PositionEmbedding, positionEmbedding} from './layers/position_embedding';
export type {PositionEmbeddingArgs} from './layers/position_embedding';
export {LastPosition, lastPosition} from './layers/last_position';
export {traceAttention} from './attention/trace_attention';
export type {AttentionTrace} from './attention/trace_attention';
export {selectBackend, BACKEND_NAMES} from './backend/select_backend';
export {setAttentionThreads} from './backend/attention_threads';
export type {BackendName} from './backend/select_backend';
export {fileSystem, FileSystemIO} from './io/file_system_io';

// Plain @tensorflow/tfjs in Node has no file:// handler; this gives model.save and
// tf.loadLayersModel one (it steps aside when tfjs-node is loaded).
registerFileSystemRouters();
// tfjs' wasm backend has no UnsortedSegmentSum, the gradient of embeddings.
registerWasmKernels();
