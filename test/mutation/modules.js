/**
 * The modules `npm run mutate` mutates (scripts/mutate.js, stryker.config.mjs), each with the source files Stryker
 * mutates and the test files run against its mutants: the tests that exercise that module in this process. Tests
 * that load the built package (dist/) in child processes are left out: a mutant of src/ never reaches them.
 * `ignoreStatic: true` leaves out the mutants that run outside any one test (Stryker's `ignoreStatic`).
 */
module.exports = {
  masks: {
    mutate: ['src/attention/masks.ts'],
    tests: ['test/masks_test.ts', 'test/dot_product_attention_test.ts', 'test/memory_efficient_attention_test.ts',
            'test/non_finite_test.ts'],
  },
  attention_plan: {
    mutate: ['src/attention/attention_plan.ts'],
    tests: ['test/attention_plan_test.ts', 'test/non_finite_test.ts'],
    // 95 of its 231 mutants are "static" (run while the test files load or in beforeAll, so every test would run
    // for each: about 35 s apiece); Stryker leaves them out of the score (reported as ignored).
    ignoreStatic: true,
  },
  dot_product_attention: {
    mutate: ['src/attention/dot_product_attention.ts'],
    // wasm_fused_backward_test.ts: explicit masks and padding on the fused route (the op's fusedPath and its checks).
    tests: ['test/dot_product_attention_test.ts', 'test/attention_fixtures_test.ts', 'test/attention_gradients_test.ts',
            'test/non_finite_test.ts', 'test/wasm_fused_backward_test.ts'],
  },
  fused_masks: {
    mutate: ['src/attention/fused_masks.ts'],
    // The op's fused route (dot_product_attention and the backward's mask cases) and the layers' (layerKernelMasks).
    tests: ['test/dot_product_attention_test.ts', 'test/wasm_fused_attention_test.ts', 'test/wasm_fused_backward_test.ts',
            'test/multi_head_attention_test.ts'],
  },
  memory_efficient_attention: {
    mutate: ['src/attention/memory_efficient_attention.ts'],
    tests: ['test/memory_efficient_attention_test.ts', 'test/dot_product_attention_test.ts', 'test/non_finite_test.ts'],
  },
  scaled_dot_product_attention: {
    mutate: ['src/attention/scaled_dot_product_attention.ts'],
    // The wasm tests cover the layer's fused paths (callFused: inference, and training with the fused backward).
    tests: ['test/attention_layer_test.ts', 'test/attention_layer_arguments_test.ts', 'test/attention_fixtures_test.ts',
            'test/attention_gradients_test.ts', 'test/layer_in_models_test.ts', 'test/non_finite_test.ts',
            'test/wasm_fused_attention_test.ts', 'test/wasm_fused_backward_test.ts'],
  },
  io: {
    // The children of concurrent_save_load_test.ts and save_load_child_test.ts run dist/, never a mutant, and made
    // every save mutant cost seconds: they are left out (split from file_system_io_test.ts and save_load_test.ts).
    mutate: ['src/io/file_system_io.ts', 'src/io/save_target.ts', 'src/io/folder_lock.ts'],
    tests: ['test/file_system_io_test.ts', 'test/save_load_test.ts', 'test/folder_lock_test.ts',
            'test/save_target_test.ts', 'test/file_system_io_edge_test.ts', 'test/file_system_router_test.ts'],
  },
};
