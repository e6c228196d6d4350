/**
 * The second thread's jobs of steps (attention_threads.ts' runStepsOnBothThreads), driven
 * directly with the C kernels' add_rows on the shared memory: each step's calls are all made,
 * by both threads, before either starts the next; a failing call on either thread ends the
 * job with an error instead of a wait. In a file of its own: the worker's failure switches the
 * second thread off for the rest of the process.
 */
import '../src/node';  // hands attention_threads.ts Node's worker_threads
import {
  getSecondThread, MAX_STEPS, runStepsOnBothThreads, SHARED_DATA_START, sharedFloats, tableEntries, writeTableCalls,
} from '../src/backend/attention_threads';
import type {JobStep, SecondThread} from '../src/backend/attention_threads';
import {KERNEL_SIGNATURES} from '../src/backend/kernels/kernel_module';

const ROWS = 96;
const COLS = 20;

/**
 * A job of two steps on rows of COLS floats at float `a` of the shared memory: step 1 writes
 * b = a + a row by row, step 2 c = b + a (each row's call reads the row the other thread may
 * have written in step 1), so that c = 3a only where every call of step 1 came first.
 * `workerCalls` per step (absent: shared); `bad`: a call of step `bad.step` given an address
 * past the memory, at position `bad.call`.
 */
function tripleJob(thread: SecondThread, workerCalls: Array<number|undefined>, bad?: {step: number; call: number}):
    {run: () => void; result: () => Float32Array; input: Float32Array} {
  const table = SHARED_DATA_START;
  const entries = tableEntries('add_rows');
  const at = table + 4 * 2 * ROWS * entries;
  const [a, b, c] = [at, at + 4 * ROWS * COLS, at + 8 * ROWS * COLS];
  const mem = sharedFloats(thread, c + 4 * ROWS * COLS);
  const input = Float32Array.from({length: ROWS * COLS}, (_, i) => ((i * 7919) % 1000) / 250 - 2);
  mem.set(input, a / 4);
  mem.fill(-1, b / 4, (c + 4 * ROWS * COLS) / 4);
  const row = 4 * COLS;
  const outside = 0x7ffffff0;  // past the shared memory's bytes: the call traps
  const calls = (step: number, from: number, plus: number, to: number) => Array.from({length: ROWS}, (_, r) => [
    bad?.step === step && bad.call === r ? outside : to + r * row, row, from + r * row, plus + r * row, 1, 0, row, 1, COLS]);
  writeTableCalls(thread, table, 'add_rows', calls(0, a, a, b));
  writeTableCalls(thread, table + 4 * ROWS * entries, 'add_rows', calls(1, b, a, c));
  const steps: JobStep[] = [0, 1].map(step => ({
    kernel: 'add_rows', calls: ROWS, table: table + 4 * step * ROWS * entries,
    ...(workerCalls[step] == null ? {} : {workerCalls: workerCalls[step]}),
  }));
  return {
    run: () => runStepsOnBothThreads(thread, steps, 0),
    result: () => new Float32Array(thread.memory.buffer, c, ROWS * COLS).slice(),
    input,
  };
}

const tripled = (input: Float32Array) => input.map(v => Math.fround(Math.fround(v + v) + v));

describe('jobs of steps on two threads (runStepsOnBothThreads)', () => {
  it.each([
    ['both steps shared', [undefined, undefined]],
    ['both split: the worker the first 40 rows, this thread the rest', [40, 40]],
    ['a shared step, then a split one where the worker makes every call', [undefined, ROWS]],
    ['a split step where this thread makes every call, then a shared one', [0, undefined]],
  ] as Array<[string, Array<number|undefined>]>)('%s: each step sees all that the one before wrote', (_, workerCalls) => {
    const thread = getSecondThread()!;
    expect(thread).not.toBeNull();
    for (let round = 0; round < 20; round++) {
      const job = tripleJob(thread, workerCalls);
      job.run();
      expect(Array.from(job.result())).toEqual(Array.from(tripled(job.input)));
    }
  });

  it('writes a table\'s calls in the order of kernels.h, an f32 argument as its float bits and the rest as int32, and refuses a call of another length', () => {
    const thread = getSecondThread()!;
    const params = KERNEL_SIGNATURES.attend_4x8;
    const scaleAt = params.findIndex(([name]) => name === 'scale');
    expect(params[scaleAt][1]).toBe('f32');
    const calls = [0, 1].map(call => params.map((_, i) => i === scaleAt ? 0.125 + call : 1000 * call + i));
    writeTableCalls(thread, SHARED_DATA_START, 'attend_4x8', calls);
    const ints = new Int32Array(thread.memory.buffer, SHARED_DATA_START, 2 * params.length);
    const floats = new Float32Array(thread.memory.buffer, SHARED_DATA_START, 2 * params.length);
    for (const call of [0, 1]) {
      params.forEach((_, i) => {
        const at = call * params.length + i;
        if (i === scaleAt) expect(floats[at]).toBe(0.125 + call);
        else expect(ints[at]).toBe(1000 * call + i);
      });
    }
    expect(() => writeTableCalls(thread, SHARED_DATA_START, 'attend_4x8', [calls[0].slice(1)]))
        .toThrow(`attend_4x8 takes ${params.length} arguments, not ${params.length - 1}`);
  });

  it(`refuses a job of no step or of more than ${MAX_STEPS}, and a split of more calls than the step has`, () => {
    const thread = getSecondThread()!;
    const step: JobStep = {kernel: 'add_rows', calls: 0, table: SHARED_DATA_START};
    expect(() => runStepsOnBothThreads(thread, [], 0)).toThrow(`a job on two threads has 1 to ${MAX_STEPS} steps, not 0`);
    expect(() => runStepsOnBothThreads(thread, new Array(MAX_STEPS + 1).fill(step), 0)).toThrow(`not ${MAX_STEPS + 1}`);
    expect(() => runStepsOnBothThreads(thread, [{...step, calls: 2, workerCalls: 3}], 0)).toThrow('the worker cannot make 3 of 2 calls');
  });

  it('a call that traps on this thread ends the job with that error: the worker stops at the next step, and the next job runs on both', () => {
    const thread = getSecondThread()!;
    const failing = tripleJob(thread, [40, 40], {step: 0, call: 70});  // this thread's part of step 1
    const started = performance.now();
    expect(failing.run).toThrow(/memory access out of bounds/);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(Array.from(failing.result().subarray(0, 40 * COLS))).toEqual(new Array(40 * COLS).fill(-1));  // step 2 never ran
    expect(getSecondThread()).toBe(thread);
    const next = tripleJob(thread, [undefined, undefined]);
    next.run();
    expect(Array.from(next.result())).toEqual(Array.from(tripled(next.input)));
  });

  it('a call that traps on the worker ends the job with an error naming the second thread, and switches it off', () => {
    const thread = getSecondThread()!;
    const failing = tripleJob(thread, [40, 40], {step: 0, call: 10});  // the worker's part of step 1
    const started = performance.now();
    expect(failing.run).toThrow('tfjs-attention: the second thread failed in its share of the fused attention');
    expect(performance.now() - started).toBeLessThan(1000);
    expect(Array.from(failing.result().subarray(40 * COLS))).toEqual(new Array((ROWS - 40) * COLS).fill(-1));  // nor here
    expect(getSecondThread()).toBeNull();  // the next calls run on one thread
  });
});
