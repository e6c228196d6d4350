/**
 * The example app's one way into the library (browser-safe part): everything the package's main
 * entry exports, as `import … from 'tfjs-attention'` gives it, plus the few internals the app
 * shares with the library (argument checks, the bench's path and kernel probes). The app never
 * deep-imports src/ elsewhere, and src/ never imports the app (test/package_layout_test.ts).
 * Code that also runs in the demo page imports this file; Node-only app code imports
 * ./tfjs_attention_node, which adds the Node entry.
 */
export * from '../../src/index';

// Internals, for the app only (not part of the package's API).
export {checkPositiveFinite, checkPositiveInteger, formatValue, invalidArgument} from '../../src/errors';
export {checkStandardPathMemory, memoryEfficientThreshold} from '../../src/attention/attention_plan';
export {FUSED_KEY_BLOCK, fusedAttentionLayerBytes, fusedKernelAvailable, fusedThreadsOfLastCall} from '../../src/backend/wasm_fused_attention';
export {fusedTrainingBytes} from '../../src/backend/wasm_fused_attention_backward';
export {fusedLayerTrainingBytes} from '../../src/backend/wasm_fused_layer_training';
export {allowedAttentionThreads, recordTwoThreadCalls, TWO_THREAD_MIN_FLOPS} from '../../src/backend/attention_threads';
export type {TwoThreadCallTimes} from '../../src/backend/attention_threads';
export {kernelVariant} from '../../src/backend/kernels/kernel_module';
export {KERNELS_RELAXED_WASM, KERNELS_WASM} from '../../src/backend/kernels/kernels_wasm.generated';
export {FUSED_BACKWARD_KEY_BLOCK} from '../../src/backend/wasm_fused_attention_backward';
