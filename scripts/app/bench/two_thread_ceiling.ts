/**
 * What two threads can give on this machine, whatever the layer does (issue 13's target 9 asks
 * two threads for 1.8× one): the same kernel call, attend_4x8 of one (1024 queries, 1024 keys, 64)
 * pair, made by this thread alone, and by this thread and a worker thread at once, each in
 * memory of its own, so that nothing is shared but the machine. Where two cores run side by
 * side at full speed, two calls at once take the time of one: 2×. On the 2-vCPU machines of
 * this project they often do not: the same call took 14 ms on one thread and 22 ms on the other
 * at the same moment, so that both together made 1.6× the calls of the faster alone; at other
 * moments 2.0× (two processes pinned to one vCPU each alike). The bench times the two calls in
 * the rounds of each two-thread row, so that a row's speed-up can be read against what the
 * machine allowed at the time.
 */
import {Worker} from 'worker_threads';
import {FUSED_KEY_BLOCK, KERNELS_WASM} from '../tfjs_attention';
import {median} from './measure';

/** The size of the call: queries, keys, and the head's width. */
export const CEILING_CALL = {queries: 1024, keys: 1024, depth: 64};

/** Where a ceiling row's time went: the call alone, and with the worker making it at once. */
export interface TwoThreadCeiling {
  /** Median ms of the call made by this thread alone. */
  aloneMs: number;
  /** Median ms of the same call made by this thread while the worker makes it too. */
  togetherMs: number;
  /** Median ms of the worker's calls, made meanwhile. */
  workerMs: number;
  /**
   * Calls per second of both threads together over those of this thread alone:
   * aloneMs / togetherMs + aloneMs / workerMs (2 where the threads do not slow each other).
   */
  ceiling: number;
}

/** The ceiling from the times of the calls made alone and together (ms). */
export function twoThreadCeilingOf(alone: number[], together: number[], worker: number[]): TwoThreadCeiling {
  for (const [name, times] of [['alone', alone], ['together', together], ['worker', worker]] as const) {
    if (times.length === 0 || times.some(t => !(t > 0))) {
      throw new Error(`twoThreadCeilingOf: ${name} needs positive times, received [${times.join(', ')}]`);
    }
  }
  const [aloneMs, togetherMs, workerMs] = [alone, together, worker].map(median);
  return {aloneMs, togetherMs, workerMs, ceiling: aloneMs / togetherMs + aloneMs / workerMs};
}

/**
 * The call, as source that both threads run: instantiates the kernel module `bytes` on a memory
 * of its own, fills Q, K and V with the same values on either thread, and defines `call()`,
 * which makes attend_4x8 once, and `sum()`, the sum of its last output (the same bits on both
 * threads), taken outside the timed call.
 */
const CALL_SOURCE = `
const {queries, keys, depth, block} = size;
const MIB = 1 << 20;
const [Q, K, V, OUT, SCRATCH, STATE] = [1, 2, 3, 4, 5, 6].map(i => i * MIB);  // byte addresses, MiB apart
const memory = new WebAssembly.Memory({initial: 7 * MIB / 65536});
const kernels = new WebAssembly.Instance(new WebAssembly.Module(bytes), {env: {memory}}).exports;
const floats = new Float32Array(memory.buffer);
for (let i = Q / 4; i < OUT / 4; i++) floats[i] = Math.sin(0.37 * i) / 2;  // Q packed by fours, K by eights, V rows
const call = () => kernels.attend_4x8(Q, K, V, 4 * depth, OUT, 4 * depth, SCRATCH, STATE, queries / 4, keys, block,
                                      depth, depth, 1 / Math.sqrt(depth), 0, 0, 0, 0, 0, 0);
const sum = () => {
  let total = 0;
  for (let i = OUT / 4; i < OUT / 4 + queries * depth; i++) total += floats[i];
  return total;
};
`;

/** The body of a function of (bytes, size) that returns {call, sum}. */
const CALL_BODY = `${CALL_SOURCE}\nreturn {call, sum};`;

/**
 * The worker: says whether its call is ready (control[1]: 1, or -1 where it could not be made), then waits for a
 * request (control[0] = 1), makes the call, records its time and sum, and answers (control[0] = 0, or -1 where the
 * call threw, and it stops); 2 ends it.
 */
const WORKER_SOURCE = `
const {workerData} = require('worker_threads');
const {bytes, size, control, results} = workerData;
let call = null;
let sum = null;
try {
  ({call, sum} = new Function('bytes', 'size', ${JSON.stringify(CALL_BODY)})(bytes, size));
  Atomics.store(control, 1, 1);
} catch (error) {
  Atomics.store(control, 1, -1);
}
Atomics.notify(control, 1);
while (call != null) {
  Atomics.wait(control, 0, 0);
  if (Atomics.load(control, 0) === 2) break;
  let answer = 0;
  try {
    const start = performance.now();
    call();
    results[0] = performance.now() - start;
    results[1] = sum();
  } catch (error) {
    answer = -1;
  }
  Atomics.store(control, 0, answer);
  Atomics.notify(control, 0);
  if (answer !== 0) break;
}
`;

/** How long this thread waits for the worker to start, or to make one call, before it gives up. */
const WORKER_WAIT_MS = 60_000;

/** The two threads' calls: `alone()` and `together()` return this thread's ms; `close()` ends the worker. */
export interface CeilingCalls {
  /** Makes the call on this thread alone; returns its ms. */
  alone(): number;
  /** Makes the call on both threads at once; returns this thread's ms and records the worker's. */
  together(): number;
  /** The worker's ms in each `together()` so far. */
  workerTimes: number[];
  /** The output's sum of the last call on this thread and on the worker (the same bits). */
  sums(): {mine: number; worker: number};
  close(): Promise<void>;
}

/** The data a ceiling worker gets: the kernels' bytes, the call's size, and the control and result arrays. */
export interface CeilingWorkerData {
  bytes: Uint8Array;
  size: typeof CEILING_CALL&{block: number};
  control: Int32Array;
  results: Float64Array;
}

/**
 * Starts the worker and makes the call ready on both threads; null where they cannot run it here (no wasm SIMD, a
 * worker that does not start or cannot make the call): the bench then shows no ceiling. `startWorker` (for the
 * tests) starts the worker from its source and data.
 */
export async function startCeilingCalls(
    startWorker = (source: string, workerData: CeilingWorkerData) => new Worker(source, {eval: true, workerData})): Promise<CeilingCalls|null> {
  const bytes = new Uint8Array(Buffer.from(KERNELS_WASM, 'base64'));
  if (!WebAssembly.validate(bytes)) return null;
  const size = {...CEILING_CALL, block: FUSED_KEY_BLOCK};
  const {call, sum} = new Function('bytes', 'size', CALL_BODY)(bytes, size) as {call: () => void; sum: () => number};
  const control = new Int32Array(new SharedArrayBuffer(8));      // [request, ready]
  const results = new Float64Array(new SharedArrayBuffer(16));  // the worker's last ms and sum
  let worker: Worker;
  try {
    worker = startWorker(WORKER_SOURCE, {bytes, size, control, results});
    await new Promise<void>((resolve, reject) => {
      worker.once('online', () => resolve());
      worker.once('error', reject);
    });
  } catch {
    return null;
  }
  worker.unref();  // a bench that throws before close() still exits
  Atomics.wait(control, 1, 0, WORKER_WAIT_MS);
  if (Atomics.load(control, 1) !== 1) {
    await worker.terminate();
    return null;
  }
  const workerTimes: number[] = [];
  const timed = () => {
    const start = performance.now();
    call();
    return performance.now() - start;
  };
  return {
    alone: timed,
    together: () => {
      Atomics.store(control, 0, 1);
      Atomics.notify(control, 0);
      const ms = timed();
      if (Atomics.wait(control, 0, 1, WORKER_WAIT_MS) === 'timed-out') {  // until the worker's call is made
        throw new Error(`two_thread_ceiling: the worker did not make its call in ${WORKER_WAIT_MS / 1000} s`);
      }
      if (Atomics.load(control, 0) !== 0) throw new Error('two_thread_ceiling: the worker\'s call threw');
      workerTimes.push(results[0]);
      return ms;
    },
    workerTimes,
    sums: () => ({mine: sum(), worker: results[1]}),
    close: async () => {
      Atomics.store(control, 0, 2);
      Atomics.notify(control, 0);
      await worker.terminate();
    },
  };
}
