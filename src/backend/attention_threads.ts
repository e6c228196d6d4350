/**
 * A second thread for the fused attention kernel in Node. tfjs' wasm backend runs on one
 * core in Node (its threaded build starts Workers from blob: URLs, which Node refuses), so
 * this starts one worker_threads Worker of its own, which instantiates the C kernels
 * (src/backend/kernels/) on a shared WebAssembly.Memory and runs `attend_4x8` there (or the
 * backward, `attend_backward_4x8`, for wasm_fused_attention_backward.ts, or the layer's
 * projections, `project_4x8`, and the packing and adding between them, `pack_rows` and
 * `add_rows`). For a large call the kernel copies the operands into that memory, and writes the
 * calls' arguments into tables there: a job of steps (`runStepsOnBothThreads`), each step's calls
 * made before the next starts. The calls of a step the two threads share (each takes the next call
 * left, so that a slower thread makes fewer: the backward's parts of each pair's query tiles write
 * dK and dV apart, added in a fixed order after, so either thread may make any), or split ahead
 * (JobStep's workerCalls: each thread's share known, as the tests of a failing share need);
 * they meet again through Atomics. The worker is woken as the call
 * starts (`withWorkerAwake`), so that its wake-up overlaps the copies, and spins a little after
 * each job for the next. The Node entry
 * (src/node.ts) hands this file worker_threads; browsers, and runtimes without shared memory,
 * keep to one thread.
 */
import {ValueError} from '../errors';
import {KERNEL_SIGNATURES, KERNELS_SHARED_MAX_PAGES, sharedKernelBytes, sharedRelaxedKernelBytes} from './kernels/kernel_module';
import type {KernelExports} from './kernels/kernel_module';

/**
 * Most 64 KiB pages of the shared memory: 1 GiB of address space, reserved (the maximum that
 * the shared kernel module declares). It holds what the largest call so far needed (at most
 * SHARED_MAX_BYTES) and never shrinks.
 */
const SHARED_PAGES = KERNELS_SHARED_MAX_PAGES;
/** Most bytes that one two-thread call may use of the shared memory. */
export const SHARED_MAX_BYTES = 256 * 2 ** 20;
/**
 * Fewest FLOPs of one call, 2·B·H·T·S·(dk + dv), for which the second thread is used: below,
 * copying the operands, setting up the job and waking the worker cost about what half the work
 * saves. Measured on the 2-core machine with each call a job of steps (the layer, d = 64, each
 * call after a 1024² matMul; time on one thread / time on two, medians of 40, forward and
 * training step, 2026-12-01): at (B, T, H) = (32, 16, 1), 2.1 MFLOP, 0.88 and 0.86; (16, 32, 1),
 * 4.2 MFLOP, 0.91 and 0.74; (8, 64, 4) and (2, 128, 4), 8.4 MFLOP, 1.08-1.12 and 0.92-1.02;
 * (3, 128, 1), (12, 64, 1) and (1, 224, 1), 12.6-12.8 MFLOP, 1.02-1.24 and 0.97-1.28; (4, 128, 2),
 * 16.8 MFLOP, 1.34 and 1.24; 33.6 MFLOP ((8, 128, 4), (32, 64, 1), (2, 256, 1)), 1.33-1.59 and
 * 1.31-1.37; (1, 320, 1), 26 MFLOP, 1.49 and 1.45; 1.6-1.8 at (1, 1024, 1).
 */
export const TWO_THREAD_MIN_FLOPS = 16e6;

/**
 * Whether a fused call of `flops` FLOPs (2·B·H·T·S·(dk + dv)) over T queries is worth the
 * second thread: at least TWO_THREAD_MIN_FLOPS, and at least two tiles of four queries to
 * share. The kernel (wasm_fused_attention.ts) and the planner (attention_plan.ts) both ask it.
 */
export function twoThreadsPay(flops: number, T: number): boolean {
  return flops >= TWO_THREAD_MIN_FLOPS && Math.ceil(T / 4) >= 2;
}

/** How long this thread waits for the worker to start, once. */
const WORKER_START_TIMEOUT_MS = 10_000;

/** Bytes of the job's fields (int32), its steps and the clock readings at the start of the shared memory. */
const HEADER_BYTES = 256;
/** Byte offset in the shared memory where a call's data may start, after the header. */
export const SHARED_DATA_START = HEADER_BYTES;

/** Int32 slots of the header: the handshake, then the job. */
const SLOT = {
  job: 0,       // 0: idle, 1: a job for the worker, 2: stop, 3: a job is coming (the worker spins for it: withWorkerAwake)
  done: 1,      // set to 1 by the worker when its share is done
  failed: 2,    // set to 1 by the worker when its share threw
  ready: 3,     // set by the worker once started: 1, or -1 if it could not instantiate the kernel
  steps: 4,     // the job: `steps` steps, described from byte `list` of the shared memory (STEP_ENTRIES int32 each)
  list: 5,
  abandoned: 6, // set to 1 by this thread when its share threw: the worker stops at the next step
};
/** Byte offset in the header of a job's step list (STEP_ENTRIES int32 per step, at most MAX_STEPS). */
const STEPS_BYTE = 32;
/**
 * Byte offset in the header of three float64 clock readings (ms, `clock()`, comparable across
 * threads): the job handed over, the worker's start and its end of its share.
 */
const TIMES_BYTE = 232;
const TIME = {handedOver: 0, workerStarted: 1, workerDone: 2};
if (4 * (SLOT.abandoned + 1) > STEPS_BYTE || TIMES_BYTE + 3 * 8 > HEADER_BYTES) {
  throw new Error('tfjs-attention: the second thread\'s header cannot hold the job and the clock readings');
}

/**
 * The kernels that the worker runs, from a table that holds every argument of each call (an
 * f32 as its bits): step kind i is TABLE_KERNELS[i].
 */
const TABLE_KERNELS = ['attend_backward_4x8', 'attend_4x8', 'project_4x8', 'pack_rows', 'add_rows'] as const;
export type TableKernel = typeof TABLE_KERNELS[number];

/** Int32 entries per call of `kernel` in a table job: its arguments, as declared in kernels.h. */
export function tableEntries(kernel: TableKernel): number {
  return KERNEL_SIGNATURES[kernel].length;
}

/** Per table kernel, which of its arguments are f32 (1) and which i32 (0), in the order of kernels.h. */
const FLOAT_ARGUMENTS = Object.fromEntries(TABLE_KERNELS.map(kernel => {
  const params = KERNEL_SIGNATURES[kernel] as ReadonlyArray<readonly [string, string]>;
  return [kernel, Uint8Array.from(params.map(([, type]) => type === 'f32' ? 1 : 0))];
})) as Record<TableKernel, Uint8Array>;

/**
 * Writes the calls of a table job of `kernel` into its table at byte `table` of the shared
 * memory: each call's arguments in the order of kernels.h, an f32 as its bits.
 */
export function writeTableCalls(thread: SecondThread, table: number, kernel: TableKernel, calls: number[][]): void {
  const isFloat = FLOAT_ARGUMENTS[kernel];
  const width = isFloat.length;
  const ints = new Int32Array(thread.memory.buffer, table, width * calls.length);
  const floats = new Float32Array(thread.memory.buffer, table, width * calls.length);
  for (let call = 0; call < calls.length; call++) {
    const args = calls[call];
    if (args.length !== width) throw new Error(`tfjs-attention: ${kernel} takes ${width} arguments, not ${args.length}`);
    const at = width * call;
    for (let i = 0; i < width; i++) {
      if (isFloat[i] === 1) floats[at + i] = args[i];
      else ints[at + i] = args[i];
    }
  }
}

/**
 * One step of a job whose calls are `calls` (each one's arguments, as kernels.h declares them):
 * they are written into its table at byte `table` of the shared memory (`writeTableCalls`), and
 * the step names that table with their kernel and count. `workerCalls`: see JobStep.
 */
export function tableStep(thread: SecondThread, table: number, kernel: TableKernel, calls: number[][], workerCalls?: number): JobStep {
  writeTableCalls(thread, table, kernel, calls);
  return {kernel, calls: calls.length, table, ...(workerCalls == null ? {} : {workerCalls})};
}

/**
 * Int32 entries of each step in a job's step list: the kernel (its index in TABLE_KERNELS), the
 * calls, the table's byte address, the calls that the worker makes (-1: the threads share them),
 * then two counters: the next call not taken (shared steps) and the calls made.
 */
const STEP_ENTRIES = 6;
const STEP = {kernel: 0, calls: 1, table: 2, workerCalls: 3, next: 4, made: 5};

/**
 * Source of an array, in TABLE_KERNELS' order, of each table kernel's call from its table entries, of the kernels
 * `host.module` (looked up at each call): `(t, f, e)`, `t` the table as int32, `f` as float32, `e` the call's first
 * entry. Both threads evaluate it (the worker in its source, this one in getSecondThread), so that a table is read one way.
 */
const TABLE_CALLERS_SOURCE = `[${TABLE_KERNELS.map(kernel => {
  const args = Array.from(FLOAT_ARGUMENTS[kernel], (isFloat, j) => `${isFloat === 1 ? 'f' : 't'}[e + ${j}]`);
  return `(t, f, e) => host.module.${kernel}(${args.join(', ')})`;
}).join(', ')}]`;

/** A table kernel's call from its table's entries (TABLE_CALLERS_SOURCE). */
type TableCaller = (t: Int32Array, f: Float32Array, e: number) => void;

/** Int32 entries of one call of each table kernel, in TABLE_KERNELS' order. */
const CALL_ENTRIES = TABLE_KERNELS.map(kernel => FLOAT_ARGUMENTS[kernel].length);

/** Most steps of one job (the header holds their list). */
export const MAX_STEPS = Math.floor((TIMES_BYTE - STEPS_BYTE) / (4 * STEP_ENTRIES));

/**
 * How long a thread spins for the other's end of a step before it sleeps (a millisecond at a
 * time, then it looks again): the shared steps end within a call of each other, and a thread
 * woken from Atomics.wait resumes 30-100 µs after the notify on this machine.
 */
const STEP_SPIN_MS = 2;

/** `stepMade` (below) for the worker. */
const WORKER_STEP_MADE = `function stepMade(list, at, calls, over) {
  const until = clock() + ${STEP_SPIN_MS};
  for (let i = 1; ; i++) {
    const made = Atomics.load(list, at);
    if (made >= calls || over()) return;
    if ((i & 1023) === 0 && clock() > until) Atomics.wait(list, at, made, 1);
  }
}`;

/** The job slot's value while a job is coming (withWorkerAwake). */
const JOB_COMING = 3;
/**
 * How long the woken worker spins for its job before it sleeps again: longer than any
 * call's copies into the shared memory take at the sizes that use the worker.
 */
const WORKER_SPIN_MS = 20;

/**
 * How long the worker spins for the next job after each before it sleeps: jobs that follow
 * each other closely (several heads' or layers' calls in a row) pay its wake-up once.
 */
const WORKER_LINGER_MS = 0.5;

/** The worker's code: wait for a job, make its calls (or its share of them), report, repeat. */
const WORKER_SOURCE = `
const {workerData} = require('worker_threads');
const {memory, bytes, relaxedBytes} = workerData;
const h = new Int32Array(memory.buffer, 0, ${HEADER_BYTES / 4});
const times = new Float64Array(memory.buffer, ${TIMES_BYTE}, 3);
const clock = () => Number(process.hrtime.bigint()) / 1e6;
let kernels = null;
try {
  kernels = new WebAssembly.Instance(new WebAssembly.Module(bytes), {env: {memory}}).exports;
  if (relaxedBytes != null) {  // the relaxed build's functions in place of the plain ones, as on the calling thread
    kernels = {...kernels, ...new WebAssembly.Instance(new WebAssembly.Module(relaxedBytes), {env: {memory}}).exports};
  }
  Atomics.store(h, ${SLOT.ready}, 1);
} catch (error) {
  Atomics.store(h, ${SLOT.ready}, -1);
}
Atomics.notify(h, ${SLOT.ready});
const host = {module: kernels};
const callers = ${TABLE_CALLERS_SOURCE};
const entries = ${JSON.stringify(CALL_ENTRIES)};
${WORKER_STEP_MADE}
let lingerUntil = 0;
while (kernels != null) {
  let state = Atomics.load(h, ${SLOT.job});
  for (let i = 1; state === 0 && ((i & 1023) !== 0 || clock() < lingerUntil); i++) state = Atomics.load(h, ${SLOT.job});
  if (state === 0) {
    Atomics.wait(h, ${SLOT.job}, 0);
    state = Atomics.load(h, ${SLOT.job});
  }
  if (state === ${JOB_COMING}) {  // awake ahead of the job: spin for it, and sleep again after ${WORKER_SPIN_MS} ms
    const until = clock() + ${WORKER_SPIN_MS};
    for (let i = 0; (state = Atomics.load(h, ${SLOT.job})) === ${JOB_COMING}; i++) {
      if ((i & 1023) === 0 && clock() > until) {
        Atomics.wait(h, ${SLOT.job}, ${JOB_COMING});
        i = -1;
      }
    }
  }
  if (state === 2) break;
  if (state !== 1) continue;  // 0: the job was called off
  times[${TIME.workerStarted}] = clock();
  try {
    const steps = h[${SLOT.steps}];
    const list = new Int32Array(memory.buffer, ${STEPS_BYTE}, ${STEP_ENTRIES} * steps);
    for (let s = 0; s < steps && Atomics.load(h, ${SLOT.abandoned}) === 0; s++) {
      const e = ${STEP_ENTRIES} * s;
      const [kind, calls, workerCalls] = [list[e + ${STEP.kernel}], list[e + ${STEP.calls}], list[e + ${STEP.workerCalls}]];
      const [call, width] = [callers[kind], entries[kind]];
      const t = new Int32Array(memory.buffer, list[e + ${STEP.table}], width * calls);
      const f = new Float32Array(memory.buffer, list[e + ${STEP.table}], width * calls);
      let made = 0;
      if (workerCalls < 0) {  // shared: the next call not taken yet, until none is left
        for (let p = Atomics.add(list, e + ${STEP.next}, 1); p < calls; p = Atomics.add(list, e + ${STEP.next}, 1), made++) call(t, f, width * p);
      } else {
        for (; made < workerCalls; made++) call(t, f, width * made);
      }
      if (Atomics.add(list, e + ${STEP.made}, made) + made >= calls) Atomics.notify(list, e + ${STEP.made});
      if (s + 1 < steps) stepMade(list, e + ${STEP.made}, calls, () => Atomics.load(h, ${SLOT.abandoned}) !== 0);
    }
  } catch (error) {
    Atomics.store(h, ${SLOT.failed}, 1);
  }
  times[${TIME.workerDone}] = clock();
  lingerUntil = times[${TIME.workerDone}] + ${WORKER_LINGER_MS};
  Atomics.store(h, ${SLOT.job}, 0);
  Atomics.store(h, ${SLOT.done}, 1);
  Atomics.notify(h, ${SLOT.done});
}
`;

/** The shared memory, this thread's instance on it, and the worker. */
export interface SecondThread {
  memory: WebAssembly.Memory;
  module: KernelExports;
  /** Int32 view of the header. */
  header: Int32Array;
  /** This thread's calls of the table kernels (of `module`), in TABLE_KERNELS' order (TABLE_CALLERS_SOURCE). */
  callers: TableCaller[];
  /** The header's clock readings (TIME), float64. */
  times: Float64Array;
}

/** undefined: not tried; null: not available here. */
let secondThread: SecondThread|null|undefined;

/** What this file uses of a worker_threads Worker. */
export interface WorkerLike {
  unref(): void;
  on(event: 'error', listener: (error: Error) => void): void;
}
/** What this file uses of Node's worker_threads module. */
export interface WorkerThreadsLike {
  Worker: new (source: string, options: {eval: true; workerData: unknown}) => WorkerLike;
}

/**
 * Node's worker_threads, handed in by the Node entry (src/node.ts), so that this file imports
 * no Node built-in and bundles for browsers; null (one thread) until then, and in browsers.
 */
let workerThreadsModule: WorkerThreadsLike|null = null;

/** Lets the fused kernel start its second thread with `threads` (src/node.ts passes worker_threads). */
export function provideWorkerThreads(threads: WorkerThreadsLike|null): void {
  if (workerThreadsModule == null && secondThread === null) secondThread = undefined;  // had none before: try again
  workerThreadsModule = threads;
}

/** Threads the fused kernel may use: 2 by default, 1 to keep it on the calling thread. */
let threadCount: 1|2 = 2;

/**
 * How many threads the fused attention kernel may use in Node: 2 (the default) runs large
 * calls on this thread and one worker; 1 keeps every call on this thread (and never starts
 * the worker). Returns the previous setting.
 */
export function setAttentionThreads(count: 1|2): 1|2 {
  if (count !== 1 && count !== 2) {
    throw new ValueError(`Argument \`count\` must be 1 or 2. Received: count=${String(count)}`);
  }
  const previous = threadCount;
  threadCount = count;
  return previous;
}

/**
 * Threads the fused kernel may use here: 2 when `setAttentionThreads` allows it and the runtime
 * can run the second thread (the Node entry handed in worker_threads, shared memory exists), else 1.
 * Says nothing of whether the worker starts (the kernel keeps to one thread if it does not).
 */
export function allowedAttentionThreads(): 1|2 {
  const possible = workerThreadsModule != null && typeof SharedArrayBuffer !== 'undefined' && typeof Atomics !== 'undefined';
  return threadCount === 2 && possible && secondThread !== null ? 2 : 1;
}

/** The second thread, started on first use; null where it cannot run or is switched off. */
export function getSecondThread(): SecondThread|null {
  if (threadCount === 1) return null;
  if (secondThread !== undefined) return secondThread;
  secondThread = null;
  const threads = workerThreadsModule;
  if (threads == null || typeof SharedArrayBuffer === 'undefined' || typeof Atomics === 'undefined') return null;
  try {
    const memory = new WebAssembly.Memory({initial: 1, maximum: SHARED_PAGES, shared: true});
    const [bytes, relaxedBytes] = [sharedKernelBytes(), sharedRelaxedKernelBytes()];
    const instantiate = (from: Uint8Array<ArrayBuffer>) => new WebAssembly.Instance(new WebAssembly.Module(from), {env: {memory}}).exports;
    const kernels = {...instantiate(bytes), ...(relaxedBytes == null ? {} : instantiate(relaxedBytes))} as unknown as KernelExports;
    const worker = new threads.Worker(WORKER_SOURCE, {eval: true, workerData: {memory, bytes, relaxedBytes}});
    worker.unref();  // never keeps the process alive
    worker.on('error', () => {
      secondThread = null;
    });
    const header = new Int32Array(memory.buffer, 0, HEADER_BYTES / 4);
    // Wait (once, some 50 ms) until the worker runs, so that no job ever waits on a worker that failed to start.
    Atomics.wait(header, SLOT.ready, 0, WORKER_START_TIMEOUT_MS);
    if (Atomics.load(header, SLOT.ready) !== 1) return null;
    const thread: SecondThread = {memory, module: kernels, header, callers: [], times: new Float64Array(memory.buffer, TIMES_BYTE, 3)};
    thread.callers = new Function('host', `return ${TABLE_CALLERS_SOURCE};`)(thread) as TableCaller[];
    secondThread = thread;
  } catch {
    secondThread = null;
  }
  return secondThread;
}

/** Grows the shared memory to at least `needed` bytes from its start; returns a fresh Float32Array of it all. */
export function sharedFloats(thread: SecondThread, needed: number): Float32Array {
  const have = thread.memory.buffer.byteLength;
  if (have < needed) thread.memory.grow(Math.ceil((needed - have) / 65536));
  return new Float32Array(thread.memory.buffer);
}

/**
 * One step of a job on both threads (`runStepsOnBothThreads`): `calls` calls of `kernel`, their
 * arguments in the table at byte `table` of the shared memory (`tableStep` writes it and makes the step).
 */
export interface JobStep {
  kernel: TableKernel;
  calls: number;
  table: number;
  /**
   * The worker makes calls 0 .. workerCalls - 1 and this thread the rest, each in order (a split
   * fixed ahead); absent, the threads share the calls: each takes the next one left (an atomic
   * counter), so that a thread that runs slower (on this machine a core that was idle runs at
   * about half speed for some milliseconds) makes fewer, and neither waits long for the other.
   * Shared calls must write only their own outputs (see `tileChunks`).
   */
  workerCalls?: number;
}

/**
 * Runs the steps of a job on both threads, one after the other: each step's calls are all made
 * before either thread starts the next (which may read what they wrote). One hand-over for
 * the whole job; returns when both threads are done. `flops`: the job's work, for its timeout.
 * Throws if the worker's share failed.
 */
export function runStepsOnBothThreads(thread: SecondThread, steps: JobStep[], flops: number): void {
  if (steps.length === 0 || steps.length > MAX_STEPS) {
    throw new Error(`tfjs-attention: a job on two threads has 1 to ${MAX_STEPS} steps, not ${steps.length}`);
  }
  const h = thread.header;
  const list = new Int32Array(thread.memory.buffer, STEPS_BYTE, STEP_ENTRIES * steps.length);
  steps.forEach((step, s) => {
    const workerCalls = step.workerCalls ?? -1;
    if (workerCalls > step.calls) throw new Error(`tfjs-attention: the worker cannot make ${workerCalls} of ${step.calls} calls`);
    list.set([TABLE_KERNELS.indexOf(step.kernel), step.calls, step.table, workerCalls, 0, 0], STEP_ENTRIES * s);
  });
  h[SLOT.steps] = steps.length;
  runJob(thread, Math.max(120_000, flops / 1e6), () => {
    for (let s = 0; s < steps.length && Atomics.load(h, SLOT.failed) === 0; s++) {
      const {kernel: name, calls, table, workerCalls} = steps[s];
      const e = STEP_ENTRIES * s;
      const kind = TABLE_KERNELS.indexOf(name);
      const [call, width] = [thread.callers[kind], CALL_ENTRIES[kind]];
      const ints = new Int32Array(thread.memory.buffer, table, width * calls);
      const floats = new Float32Array(thread.memory.buffer, table, width * calls);
      const make = (p: number) => call(ints, floats, width * p);
      let made = 0;
      if (workerCalls == null) {
        for (let p = Atomics.add(list, e + STEP.next, 1); p < calls; p = Atomics.add(list, e + STEP.next, 1), made++) make(p);
      } else {
        for (let p = workerCalls; p < calls; p++, made++) make(p);
      }
      if (Atomics.add(list, e + STEP.made, made) + made >= calls) Atomics.notify(list, e + STEP.made);
      if (s + 1 < steps.length) stepMade(list, e + STEP.made, calls, () => Atomics.load(h, SLOT.failed) !== 0);
    }
  });
}

/**
 * Waits until `calls` calls of a step are made (the count at list[at]) or `over()` (the other
 * thread's share failed): spinning for STEP_SPIN_MS, then asleep a millisecond at a time (the
 * thread that makes the last call wakes it). The worker's copy: WORKER_STEP_MADE.
 */
function stepMade(list: Int32Array, at: number, calls: number, over: () => boolean): void {
  const until = clock() + STEP_SPIN_MS;
  for (let i = 1; ; i++) {
    const made = Atomics.load(list, at);
    if (made >= calls || over()) return;
    if ((i & 1023) === 0 && clock() > until) Atomics.wait(list, at, made, 1);
  }
}

/** Query tiles [first, first + count) of pair `pair`: one call of a shared job (`tileChunks`). */
export interface TileChunk {
  pair: number;
  first: number;
  count: number;
}

/** Of the work left, the share that each chunk takes (guided self-scheduling), and the least share of all the work. */
const CHUNK_OF_LEFT = 1 / 6;
const CHUNK_LEAST = 1 / 256;

/**
 * The tiles (of four queries, or rows) of `pairs` pairs cut into the calls of a shared step (`runStepsOnBothThreads`),
 * in the order the threads take them: each about a sixth of the work left, but at least 1/256
 * of all of it and `leastWork`, within one pair, the heaviest first (a pair's last tiles
 * first: under causal they see the most keys). So the first calls are long, the last short,
 * and the two threads end within a short call of each other. `workOfTile(i)`: tile i's work
 * (the keys it attends, or 1 per row tile). Each tile's result is the same whichever call computes it.
 */
export function tileChunks(pairs: number, tiles: number, workOfTile: (tile: number) => number, leastWork = 0): TileChunk[] {
  const work = Array.from({length: tiles}, (_, i) => Math.max(1, workOfTile(i)));
  const perPair = work.reduce((a, b) => a + b, 0);
  let left = pairs * perPair;
  const least = Math.max(CHUNK_LEAST * left, leastWork);
  const chunks: TileChunk[] = [];
  for (let pair = 0; pair < pairs; pair++) {
    let end = tiles;
    while (end > 0) {
      const target = Math.max(least, CHUNK_OF_LEFT * left);
      let [first, taken] = [end, 0];
      while (first > 0 && taken < target) taken += work[--first];
      chunks.push({pair, first, count: end - first});
      left -= taken;
      end = first;
    }
  }
  return chunks;
}

/**
 * Wakes the worker ahead of a job, so that its wake-up (some 50-150 µs from Atomics.wait on
 * this machine) overlaps this thread's copies into the shared memory instead of delaying
 * the worker's share: it spins until `runStepsOnBothThreads` hands the
 * job over. Calls `prepare` (the copies and the job's set-up) and returns what it returns;
 * if no job was handed over by then (`prepare` threw, or made none), calls the wake off.
 */
export function withWorkerAwake<R>(thread: SecondThread, prepare: () => R): R {
  const h = thread.header;
  Atomics.store(h, SLOT.job, JOB_COMING);
  Atomics.notify(h, SLOT.job);
  try {
    return prepare();
  } finally {
    if (Atomics.compareExchange(h, SLOT.job, JOB_COMING, 0) === JOB_COMING) Atomics.notify(h, SLOT.job);
  }
}

/** Hands the job set up in the header to the worker, runs `mine`, and waits for the worker (at most `timeout` ms). */
function runJob(thread: SecondThread, timeout: number, mine: () => void): void {
  const {header: h, times} = thread;
  Atomics.store(h, SLOT.done, 0);
  Atomics.store(h, SLOT.failed, 0);
  Atomics.store(h, SLOT.abandoned, 0);
  times[TIME.handedOver] = clock();
  Atomics.store(h, SLOT.job, 1);
  Atomics.notify(h, SLOT.job);
  let mineDone = NaN;
  try {
    mine();
    mineDone = clock();
  } catch (error) {
    Atomics.store(h, SLOT.abandoned, 1);  // the worker stops at its next step instead of waiting for this thread's calls
    throw error;
  } finally {
    if (Atomics.wait(h, SLOT.done, 0, timeout) === 'timed-out') {
      secondThread = null;  // never again: the next calls run on one thread
      // eslint-disable-next-line no-unsafe-finally
      throw new Error(`tfjs-attention: the second thread did not finish its share of the fused attention in ${Math.round(timeout / 1000)} s`);
    }
  }
  if (Atomics.load(h, SLOT.failed) !== 0) {
    secondThread = null;
    throw new Error('tfjs-attention: the second thread failed in its share of the fused attention');
  }
  const [handedOver, workerStarted, workerDone] = [times[TIME.handedOver], times[TIME.workerStarted], times[TIME.workerDone]];
  lastJob = {
    handedOver, wakeMs: workerStarted - handedOver, mineMs: mineDone - handedOver, workerMs: workerDone - workerStarted,
    waitMs: clock() - mineDone, ended: clock(),
  };
}

/**
 * The clock of the job timings, in ms: Node's monotonic hrtime, which this thread and the
 * worker read alike (each thread's `performance.timeOrigin` is its own wall-clock reading, so
 * theirs may disagree by more than a wake-up). Only Node has the second thread; elsewhere
 * (never timing a job) performance.now.
 */
function clock(): number {
  const hrtime = (globalThis as {process?: {hrtime?: {bigint(): bigint}}}).process?.hrtime;
  return hrtime != null ? Number(hrtime.bigint()) / 1e6 : performance.now();
}

/**
 * Where the time of one call on two threads went, in ms: the answer to "why are two threads
 * not twice as fast" (npm run bench prints these for its two-thread rows).
 */
export interface TwoThreadCallTimes {
  /** The kernel the two threads ran. */
  kernel: string;
  /** This thread alone, before the hand-over: operands copied into the shared memory and packed there. */
  beforeMs: number;
  /** From the hand-over until the worker started its share: its wake-up. */
  wakeMs: number;
  /** This thread's share (from the hand-over). */
  mineMs: number;
  /** The worker's share. */
  workerMs: number;
  /** This thread idle after its share, waiting for the worker's. */
  waitMs: number;
  /** This thread alone, after both: results copied out, the two threads' parts added. */
  afterMs: number;
}

/** The timings of the last job, until the call that ran it notes them (`noteTwoThreadCall`). */
let lastJob: {handedOver: number; wakeMs: number; mineMs: number; workerMs: number; waitMs: number; ended: number}|null = null;
/** The calls noted since `recordTwoThreadCalls(true)`; null while not recording. */
let callLog: TwoThreadCallTimes[]|null = null;

/** The clock reading that a call on two threads takes when it starts, for `noteTwoThreadCall`. */
export function twoThreadCallStart(): number {
  return clock();
}

/**
 * Called by a call on two threads when it is done (`started` from `twoThreadCallStart`):
 * records where its time went, when recording.
 */
export function noteTwoThreadCall(kernel: string, started: number): void {
  const job = lastJob;
  lastJob = null;
  if (callLog == null || job == null) return;
  const {handedOver, ended, ...parts} = job;
  callLog.push({kernel, beforeMs: handedOver - started, ...parts, afterMs: clock() - ended});
}

/**
 * Starts (true) or stops (false) recording where the time of each call on two threads goes;
 * returns the calls recorded since the last start (empty when none), and starts afresh.
 * For the benchmark; recording costs a few clock readings per call.
 */
export function recordTwoThreadCalls(on: boolean): TwoThreadCallTimes[] {
  const recorded = callLog ?? [];
  callLog = on ? [] : null;
  return recorded;
}
