/**
 * Watches the wasm backend's heap while `run` runs: every block its _malloc hands out and its
 * _free has not taken back, and how many blocks were taken in all. The heap-leak tests of the
 * fused kernels (forward and training) read what is still live afterwards.
 */
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
