/**
 * Watches the wasm backend's heap while `run` runs: every block its _malloc hands out and its
 * _free has not taken back, and how many blocks were taken in all. The heap-leak tests of the
 * fused kernels (forward and training) read what is still live afterwards.
 */
import * as tf from '@tensorflow/tfjs';

export interface WasmHeapView {
  _malloc(bytes: number): number;
  _free(address: number): void;
}

export interface HeapBlocks {
  /** Sizes in bytes of the blocks taken during `run` and still live after it. */
  live: number[];
  /** How many blocks `run` took. */
  allocations: number;
}

export function watchHeapBlocks(wasm: WasmHeapView, run: () => void): HeapBlocks {
  const [malloc, free] = [wasm._malloc, wasm._free];
  const live = new Map<number, number>();
  let allocations = 0;
  wasm._malloc = (bytes: number) => {
    const address = malloc(bytes);
    live.set(address >>> 0, bytes);
    allocations++;
    return address;
  };
  wasm._free = (address: number) => {
    live.delete(address >>> 0);
    free(address);
  };
  try {
    run();
  } finally {
    [wasm._malloc, wasm._free] = [malloc, free];
  }
  return {live: [...live.values()], allocations};
}

/**
 * Runs `steps` training steps (`step` returns its loss, which this reads and disposes) while
 * watching the heap, and asserts that they leak nothing: the tensors and their bytes as before,
 * the heap no larger, and of the blocks taken during the steps only the weights' new values (the
 * optimizer assigns them) still held; and that they took `leastAllocations` blocks at least (the
 * kernels' work buffers) and trained (the last loss below the first). Call it after a first
 * step, which may grow the heap.
 */
export function expectTrainingLeaksNothing(wasm: WasmHeapView&{HEAPU8: Uint8Array}, weights: tf.LayerVariable[], step: () => tf.Scalar,
                                           steps: number, leastAllocations: number): void {
  const before = tf.memory();
  const heapBytes = wasm.HEAPU8.length;
  const losses: number[] = [];
  const {live, allocations} = watchHeapBlocks(wasm, () => {
    for (let i = 0; i < steps; i++) {
      const loss = step();
      if (i === 0 || i === steps - 1) losses.push(loss.dataSync()[0]);
      loss.dispose();
    }
  });
  expect(allocations).toBeGreaterThanOrEqual(leastAllocations);
  const weightBytes = weights.map(w => 4 * w.shape.reduce((a, b) => a! * b!, 1)!);
  expect(live.sort((a, b) => a - b)).toEqual(weightBytes.sort((a, b) => a - b));
  expect(tf.memory().numTensors).toBe(before.numTensors);
  expect(tf.memory().numBytes).toBe(before.numBytes);
  expect(wasm.HEAPU8.length).toBe(heapBytes);
  expect(losses[1]).toBeLessThan(losses[0]);
}
