/**
 * The attention planner (src/attention/attention_plan.ts): which path a call takes, as a table
 * of cases written from the documented rules and the measured per-backend choices; that the
 * op, the layer and the bench run what it says (spies on the fused kernels and the blocked
 * path tell which ran); and selectBackend's 'auto' order with injected availability.
 */
import {spawnSync} from 'child_process';
import * as tf from '@tensorflow/tfjs';
import {dotProductAttention, planAttention, scaledDotProductAttention, selectBackend, setAttentionThreads, ValueError} from '../src/node';
import type {AttentionCall, AttentionPlan} from '../src/node';
import {checkStandardPathMemory, MEMORY_EFFICIENT_THRESHOLDS, memoryEfficientThreshold} from '../src/attention/attention_plan';
import * as blocked from '../src/attention/memory_efficient_attention';
import * as fused from '../src/backend/wasm_fused_attention';
import * as fusedTraining from '../src/backend/wasm_fused_attention_backward';
import * as layerTraining from '../src/backend/wasm_fused_layer_training';
import {AUTO_BACKEND_ORDER, chooseBackend} from '../src/backend/select_backend';
import {runBench} from '../scripts/app/bench/run_bench';

/** Whether `require('@tensorflow/tfjs-node')` loads here (found out in a child process, as in select_backend_test). */
function tfjsNodeLoads(): boolean {
  try {
    require.resolve('@tensorflow/tfjs-node');
  } catch {
    return false;
  }
  return spawnSync(process.execPath, ['-e', "require('@tensorflow/tfjs-node')"], {cwd: __dirname, timeout: 60000}).status === 0;
}
const HAS_TFJS_NODE = tfjsNodeLoads();

const base = {batch: 2, heads: 4, T: 128, S: 128, dk: 16, dv: 16};
const long = {batch: 1, heads: 1, T: 1, S: 4096, dk: 8, dv: 8};  // 4096 keys, cheap: one query

/** [what, call, expected path, expected reason (a pattern), expected extras] */
type Case = [string, AttentionCall, AttentionPlan['path'], RegExp, Partial<AttentionPlan>?];
const CASES: Case[] = [
  // wasm: the fused kernel for inference, else by key length (threshold 4096) and the memory budget.
  ['wasm inference', {backend: 'wasm', ...base}, 'fused', /^inference on wasm: the fused kernel$/, {kernel: 'attention', blockSize: 256, threads: 1}],
  ['wasm inference, causal', {backend: 'wasm', ...base, causal: true}, 'fused', /fused kernel/],
  // Recording: the fused kernel and its fused backward, padding included, at every length; one thread.
  ['wasm recording', {backend: 'wasm', ...base, recording: true, threads: 2}, 'fused',
    /^training on wasm: the fused kernel and its fused backward$/, {kernel: 'gradient', threads: 1}],
  ['wasm recording, padding, op', {backend: 'wasm', ...base, recording: true, padding: true}, 'fused', /fused backward/, {kernel: 'gradient'}],
  ['wasm recording, padding, layer', {backend: 'wasm', ...base, recording: true, padding: true, layer: {dq: 64, dc: 64, selfAttention: true}},
    'fused', /^training on wasm: the fused kernel with the projections and its fused backward with theirs$/, {kernel: 'layer-gradient', threads: 1}],
  // A layer call that two threads would speed up: with one head, the layer's projections around the attention's two-thread kernels;
  // with several, the attention's kernels alone.
  ['wasm recording, layer, one head, 268 MFLOP', {backend: 'wasm', batch: 1, heads: 1, T: 1024, S: 1024, dk: 64, dv: 64, threads: 2, recording: true,
    layer: {dq: 64, dc: 64, selfAttention: true}}, 'fused', /^training on wasm: the fused kernel with the projections and its fused backward with theirs, on two threads$/,
    {kernel: 'layer-gradient', threads: 2}],
  // Several heads: the layer's kernels too, their heads side by side, on two threads.
  ['wasm recording, layer, 4 heads, 268 MFLOP', {backend: 'wasm', batch: 1, heads: 4, T: 1024, S: 1024, dk: 16, dv: 16, threads: 2, recording: true,
    layer: {dq: 64, dc: 64, selfAttention: true}}, 'fused',
    /^training on wasm: the fused kernel with the projections and its fused backward with theirs, on two threads$/, {kernel: 'layer-gradient', threads: 2}],
  // The thread choice counts every (batch, head) pair: 2·2·4·512²·32 = 134 MFLOP pays for two threads.
  ['wasm recording, layer, 2 batches × 4 heads, 134 MFLOP', {backend: 'wasm', batch: 2, heads: 4, T: 512, S: 512, dk: 16, dv: 16, threads: 2,
    recording: true, layer: {dq: 64, dc: 64, selfAttention: true}}, 'fused',
    /^training on wasm: the fused kernel with the projections and its fused backward with theirs, on two threads$/, {kernel: 'layer-gradient', threads: 2}],
  ['wasm recording, layer, weights too large for the projection kernel', {backend: 'wasm', ...base, recording: true,
    layer: {dq: 2048, dc: 64, selfAttention: false}}, 'fused', /^training on wasm: the fused kernel and its fused backward$/, {kernel: 'gradient'}],
  ['wasm recording, causal', {backend: 'wasm', ...base, recording: true, causal: true}, 'fused', /fused backward/, {kernel: 'gradient'}],
  // An explicit mask: a bias in the kernels, the attention's for the op, the layer's for a layer call whose weights fit.
  ['wasm recording, explicit mask', {backend: 'wasm', ...base, recording: true, mask: true}, 'fused',
    /^training on wasm: the fused kernel and its fused backward with the explicit mask as a bias$/, {kernel: 'gradient', threads: 1}],
  ['wasm recording, explicit mask and padding', {backend: 'wasm', ...base, recording: true, mask: true, padding: true}, 'fused',
    /with the explicit mask as a bias$/, {kernel: 'gradient'}],
  ['wasm recording, explicit mask, layer', {backend: 'wasm', ...base, recording: true, mask: true, layer: {dq: 64, dc: 64, selfAttention: true}},
    'fused', /^training on wasm: the fused kernel with the projections and its fused backward with theirs, with the explicit mask as a bias$/,
    {kernel: 'layer-gradient'}],
  ['wasm recording, explicit mask, layer, weights too large for the projection kernel', {backend: 'wasm', ...base, recording: true, mask: true,
    layer: {dq: 2048, dc: 64, selfAttention: false}}, 'fused', /^training on wasm: the fused kernel and its fused backward with the explicit mask as a bias$/,
    {kernel: 'gradient'}],
  ['wasm recording, explicit mask, 268 MFLOP, two threads allowed', {backend: 'wasm', batch: 1, heads: 1, T: 1024, S: 1024, dk: 64, dv: 64,
    threads: 2, recording: true, mask: true}, 'fused', /with the explicit mask as a bias, on two threads$/, {kernel: 'gradient', threads: 2}],
  ['wasm recording, explicit mask, work buffers over FUSED_MAX_BYTES', {backend: 'wasm', batch: 1, heads: 1, T: 4096, S: 4096, dk: 1024,
    dv: 1024, recording: true, mask: true}, 'memory-efficient', /^the sizes do not fit the fused backward's work buffers; S=4096 >= 4096/],
  ['wasm recording, dropout', {backend: 'wasm', ...base, recording: true, dropoutActive: true}, 'standard', /no dropout; dropout is active/],
  ['wasm recording, without SIMD', {backend: 'wasm', ...base, recording: true, fusedKernelAvailable: false}, 'standard', /needs wasm SIMD/],
  ['wasm recording, 268 MFLOP, two threads allowed', {backend: 'wasm', batch: 1, heads: 1, T: 1024, S: 1024, dk: 64, dv: 64, threads: 2, recording: true},
    'fused', /^training on wasm: the fused kernel and its fused backward, on two threads$/, {kernel: 'gradient', threads: 2}],
  ['wasm recording, work buffers over FUSED_MAX_BYTES', {backend: 'wasm', batch: 1, heads: 1, T: 4096, S: 4096, dk: 1024, dv: 1024, recording: true},
    'memory-efficient', /^the sizes do not fit the fused backward's work buffers; S=4096 >= 4096/, {blockSize: 512}],
  ['wasm inference, work buffers over FUSED_MAX_BYTES', {backend: 'wasm', batch: 1, heads: 1, T: 4096, S: 4096, dk: 2048, dv: 2048},
    'memory-efficient', /^the sizes do not fit the fused kernel's work buffers; S=4096 >= 4096/, {blockSize: 512}],
  ['wasm explicit mask', {backend: 'wasm', ...base, mask: true}, 'fused', /^inference on wasm: the fused kernel with the explicit mask as a bias$/,
    {kernel: 'attention', threads: 1}],
  ['wasm explicit mask and padding, op', {backend: 'wasm', ...base, mask: true, padding: true}, 'fused', /with the explicit mask as a bias$/,
    {kernel: 'attention'}],
  ['wasm explicit mask, layer', {backend: 'wasm', ...base, mask: true, padding: true, layer: {dq: 64, dc: 64, selfAttention: true}}, 'fused',
    /^inference on wasm: the fused kernel with the projections, with the explicit mask as a bias$/, {kernel: 'layer'}],
  ['wasm explicit mask, layer, weights too large', {backend: 'wasm', ...base, mask: true, layer: {dq: 4096, dc: 4096}}, 'fused',
    /^inference on wasm: the fused kernel after the layer's projections, through the op, with the explicit mask as a bias$/, {kernel: 'attention'}],
  ['wasm explicit mask, weights asked for', {backend: 'wasm', ...base, mask: true, returnWeights: true}, 'standard', /never forms the weights/],
  ['wasm explicit mask, work buffers over FUSED_MAX_BYTES', {backend: 'wasm', batch: 1, heads: 1, T: 4096, S: 4096, dk: 2048, dv: 2048,
    mask: true}, 'memory-efficient', /^the sizes do not fit the fused kernel's work buffers; S=4096 >= 4096/],
  ['wasm padding, op', {backend: 'wasm', ...base, padding: true}, 'fused', /^inference on wasm: the fused kernel with the key padding as a bias$/,
    {kernel: 'attention'}],
  ['wasm padding, layer', {backend: 'wasm', ...base, padding: true, layer: {dq: 64, dc: 64, selfAttention: true}}, 'fused',
    /^inference on wasm: the fused kernel with the projections$/, {kernel: 'layer'}],
  ['wasm layer, weights too large for the projection kernel', {backend: 'wasm', ...base, layer: {dq: 4096, dc: 4096}}, 'fused',
    /^inference on wasm: the fused kernel$/, {kernel: 'attention'}],
  ['wasm padding, layer, weights too large', {backend: 'wasm', ...base, padding: true, layer: {dq: 4096, dc: 4096}}, 'fused',
    /^inference on wasm: the fused kernel after the layer's projections, through the op, with the key padding as a bias$/, {kernel: 'attention'}],
  ['wasm weights asked for', {backend: 'wasm', ...base, returnWeights: true}, 'standard', /the weights are asked for, which only the standard path forms/],
  ['wasm dropout', {backend: 'wasm', ...base, dropoutActive: true}, 'standard', /no dropout; dropout is active/],
  ['wasm without SIMD', {backend: 'wasm', ...base, fusedKernelAvailable: false}, 'standard', /needs wasm SIMD/],
  ['wasm blockSize 0', {backend: 'wasm', ...base, blockSize: 0}, 'standard', /^blockSize=0 forces the standard path$/],
  ['wasm blockSize 32', {backend: 'wasm', ...base, blockSize: 32}, 'memory-efficient', /^blockSize=32 forces/, {blockSize: 32}],
  // With an explicit mask, the fused kernels' own size limits decide, not the memory-efficient threshold.
  ['wasm S = 4096, recording, explicit mask', {backend: 'wasm', ...long, recording: true, mask: true}, 'fused', /fused backward with the explicit mask/,
    {kernel: 'gradient'}],
  ['wasm S = 4096, inference, explicit mask', {backend: 'wasm', ...long, mask: true}, 'fused', /fused kernel with the explicit mask/, {kernel: 'attention'}],
  ['wasm S = 4096, recording, explicit mask, without SIMD', {backend: 'wasm', ...long, recording: true, mask: true, fusedKernelAvailable: false},
    'memory-efficient', /^the fused kernel needs wasm SIMD, not available here; S=4096 >= 4096, the memory-efficient threshold on wasm$/, {blockSize: 512}],
  ['wasm S = 4096, recording', {backend: 'wasm', ...long, recording: true}, 'fused', /fused backward/, {kernel: 'gradient'}],
  ['wasm S = 4096, inference', {backend: 'wasm', ...long}, 'fused', /fused kernel/],
  ['wasm S = 8192, weights asked for', {backend: 'wasm', ...long, S: 8192, returnWeights: true}, 'standard', /the weights are asked for/],
  // Two threads: from 16 MFLOP and with at least two tiles of four queries, where allowed.
  ['wasm 268 MFLOP, two threads allowed', {backend: 'wasm', batch: 1, heads: 1, T: 1024, S: 1024, dk: 64, dv: 64, threads: 2}, 'fused',
    /on two threads$/, {threads: 2}],
  ['wasm 268 MFLOP, one thread allowed', {backend: 'wasm', batch: 1, heads: 1, T: 1024, S: 1024, dk: 64, dv: 64, threads: 1}, 'fused',
    /fused kernel$/, {threads: 1}],
  ['wasm 2 MFLOP', {backend: 'wasm', batch: 32, heads: 1, T: 16, S: 16, dk: 64, dv: 64, threads: 2}, 'fused', /fused kernel$/, {threads: 1}],
  ['wasm 12.6 MFLOP', {backend: 'wasm', batch: 3, heads: 1, T: 128, S: 128, dk: 64, dv: 64, threads: 2}, 'fused', /fused kernel$/, {threads: 1}],
  ['wasm 16.8 MFLOP', {backend: 'wasm', batch: 4, heads: 2, T: 128, S: 128, dk: 32, dv: 32, threads: 2}, 'fused', /on two threads$/, {threads: 2}],
  ['wasm 4 queries (one tile)', {backend: 'wasm', batch: 64, heads: 8, T: 4, S: 8192, dk: 64, dv: 64, threads: 2}, 'fused', /fused kernel$/, {threads: 1}],
  // The memory budget: one score tensor over 512 MiB goes to the blocked path on every backend.
  ['wasm over the budget, short keys', {backend: 'wasm', batch: 64, heads: 16, T: 512, S: 512, dk: 8, dv: 8, recording: true, fusedKernelAvailable: false},
    'memory-efficient', /one score tensor would take 1\.00 GiB, over the standard path's budget of 512 MiB$/],
  ['wasm over the budget, weights asked for', {backend: 'wasm', batch: 64, heads: 16, T: 512, S: 512, dk: 8, dv: 8, returnWeights: true},
    'standard', /weights are asked for/],  // then refused by checkStandardPathMemory
  // cpu: never fused; threshold 4096 as on wasm.
  ['cpu inference', {backend: 'cpu', ...base}, 'standard', /^S=128 < 4096, the memory-efficient threshold on cpu$/],
  ['cpu S = 4096', {backend: 'cpu', ...long}, 'memory-efficient', /S=4096 >= 4096, the memory-efficient threshold on cpu/],
  // tensorflow: measured faster on the standard path at every length: only the budget switches.
  ['tensorflow inference', {backend: 'tensorflow', ...base}, 'standard', /^tensorflow takes the standard path at every length within the memory budget$/],
  ['tensorflow S = 4096, recording', {backend: 'tensorflow', ...long, recording: true}, 'standard', /every length within the memory budget/],
  ['tensorflow S = 8192', {backend: 'tensorflow', batch: 1, heads: 1, T: 8192, S: 8192, dk: 64, dv: 64}, 'standard', /within the memory budget/],
  ['tensorflow S = 16384 (1 GiB of scores)', {backend: 'tensorflow', batch: 1, heads: 1, T: 16384, S: 16384, dk: 64, dv: 64, recording: true},
    'memory-efficient', /over the standard path's budget of 512 MiB/],
  ['tensorflow blockSize 512', {backend: 'tensorflow', ...long, blockSize: 512}, 'memory-efficient', /forces/, {blockSize: 512}],
  // Backends not measured keep wasm's threshold.
  ['webgl S = 4096', {backend: 'webgl', ...long}, 'memory-efficient', /S=4096 >= 4096, the memory-efficient threshold on webgl/],
  ['webgl S = 128', {backend: 'webgl', ...base}, 'standard', /S=128 < 4096/],
];

describe('planAttention: the table of cases', () => {
  // Every row with its extras ({} when none): jest passes `done` in place of a missing last column.
  const rows = CASES.map(([what, call, path, reason, extras]) => [what, call, path, reason, extras ?? {}] as const);
  it.each(rows)('%s', (_, call, path, reason, extras) => {
    const plan = planAttention(call);
    expect(plan.path).toBe(path);
    expect(plan.reason).toMatch(reason);
    expect(plan).toMatchObject(extras);
    if (path !== 'fused') expect(plan.threads).toBeUndefined();
    if (path === 'standard') expect(plan.blockSize).toBeUndefined();
  });

  it('per-backend thresholds: 4096 keys on wasm and cpu (and unmeasured backends), none on tensorflow', () => {
    expect(memoryEfficientThreshold('wasm')).toBe(4096);
    expect(memoryEfficientThreshold('cpu')).toBe(4096);
    expect(memoryEfficientThreshold('webgpu')).toBe(4096);
    expect(memoryEfficientThreshold('tensorflow')).toBe(Infinity);
    expect(Object.isFrozen(MEMORY_EFFICIENT_THRESHOLDS)).toBe(true);
  });

  it('contradicting options and bad calls are errors that name the argument', () => {
    const call = {backend: 'wasm', ...base};
    expect(() => planAttention({...call, blockSize: 8, returnWeights: true})).toThrow(
        /cannot return them\. Use blockSize=0 \(the standard path\) with returnWeights\. Received: blockSize=8$/);
    expect(() => planAttention({...call, blockSize: 8, dropoutActive: true})).toThrow(/does not support dropout.*Received: blockSize=8$/);
    expect(() => planAttention({...call, blockSize: 1.5})).toThrow(ValueError);
    expect(() => planAttention({...call, blockSize: 1.5})).toThrow(/`blockSize`.*Received: blockSize=1\.5/);
    expect(() => planAttention({...call, T: -1})).toThrow(/argument `T`, expected an integer >= 0\. Received: T=-1/);
    expect(() => planAttention({...call, backend: ''})).toThrow(/argument `backend`/);
    expect(() => planAttention({...call, threads: 3 as never})).toThrow(/argument `threads`, expected 1 or 2\. Received: threads=3/);
    expect(() => planAttention(null as never)).toThrow(/argument `call`/);
  });

  it('refuses a call that is not an object, a backend that is not a string and sizes that are not integers', () => {
    const call = {backend: 'wasm', ...base};
    expect(() => planAttention('wasm' as never)).toThrow(/argument `call`, expected an object\. Received: /);
    expect(() => planAttention({...call, backend: 7 as never})).toThrow(/argument `backend`, expected a backend name\. Received: /);
    expect(() => planAttention({...call, T: 1.5})).toThrow(/argument `T`, expected an integer >= 0\. Received: T=1\.5/);
  });

  it('a score tensor of exactly the budget (512 MiB) stays on the standard path; one more key switches', () => {
    // tensorflow has no length threshold, so only the budget decides: 8192 · 16384 · 4 bytes = 512 MiB exactly.
    const call = {backend: 'tensorflow', batch: 1, heads: 1, T: 8192, S: 16384, dk: 8, dv: 8};
    expect(planAttention(call).path).toBe('standard');
    expect(planAttention({...call, S: 16385}).path).toBe('memory-efficient');
  });

  it('says why the fused kernel does not run when the weights are asked for', () => {
    const plan = planAttention({backend: 'wasm', ...base, returnWeights: true});
    expect(plan.path).toBe('standard');
    expect(plan.reason).toMatch(/^the fused kernel never forms the weights; the weights are asked for/);
  });
});

describe('checkStandardPathMemory', () => {
  it('passes a score tensor of exactly the budget and refuses a larger one with the sizes it would take', () => {
    expect(() => checkStandardPathMemory([1, 1, 8192, 16384], 'q')).not.toThrow();  // 512 MiB
    // [1, 1, 16384, 16384] float32: 1 GiB each, 2 for the forward pass, 5 with gradients.
    expect(() => checkStandardPathMemory([1, 1, 16384, 16384], 'query.shape=[1, 16384, 8]')).toThrow(
        new RegExp('^The standard attention path would need score tensors of shape \\[1, 1, 16384, 16384\\], 1\\.00 GiB ' +
                   'each: about 2\\.00 GiB for the forward pass and 5\\.00 GiB with gradients, over its budget of ' +
                   '512 MiB per score tensor \\(wasm memory stops at 4 GiB\\)\\. Use the memory-efficient path ' +
                   '\\(blockSize=null, the default, or a positive blockSize\\), which needs neither the attention ' +
                   'weights nor dropout\\. Received: query\\.shape=\\[1, 16384, 8\\]$'));
  });
});

/** Which path ran in `run`, told by spies on the fused kernels and on the blocked path's kernel. */
function observedPath(run: () => tf.TensorContainer): {path: AttentionPlan['path']; kernel?: AttentionPlan['kernel']} {
  const spies = {
    blocked: jest.spyOn(blocked, 'memoryEfficientAttention'),
    training: jest.spyOn(fusedTraining, 'fusedAttentionTraining'),
    attention: jest.spyOn(fused, 'fusedAttention'),
    heads: jest.spyOn(fused, 'fusedMultiHeadAttention'),
    layer: jest.spyOn(fused, 'fusedAttentionLayer'),
    layerTraining: jest.spyOn(layerTraining, 'fusedAttentionLayerTraining'),
  };
  try {
    tf.dispose(tf.tidy(run));
    const calls = Object.fromEntries(Object.entries(spies).map(([name, spy]) => [name, spy.mock.calls.length]));
    const fusedCalls = calls.attention + calls.heads + calls.layer + calls.training + calls.layerTraining;
    expect(fusedCalls + calls.blocked).toBeLessThanOrEqual(1);
    if (calls.blocked > 0) return {path: 'memory-efficient'};
    if (calls.layer > 0) return {path: 'fused', kernel: 'layer'};
    if (calls.layerTraining > 0) return {path: 'fused', kernel: 'layer-gradient'};
    if (calls.training > 0) return {path: 'fused', kernel: 'gradient'};
    if (fusedCalls > 0) return {path: 'fused', kernel: 'attention'};
    return {path: 'standard'};
  } finally {
    Object.values(spies).forEach(spy => spy.mockRestore());
  }
}

/** Sum of the op's (or layer's) output, as a gradient target: recording while it runs. */
function recorded(f: () => tf.Tensor): () => tf.TensorContainer {
  return () => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(f(), x)))(tf.scalar(1));
}

/** The op and layer calls checked against the planner on each backend, and the path the table says for them. */
function agreementCases(backend: string): Array<[string, () => tf.TensorContainer, AttentionCall, AttentionPlan['path']]> {
  const [B, H, T, S, d] = [2, 2, 12, 12, 8];
  const q = () => tf.randomNormal([B, H, T, d], 0, 1, 'float32', 1);
  const kv = (length: number) => tf.randomNormal([B, H, length, d], 0, 1, 'float32', 2);
  const call = {backend, batch: B, heads: H, T, S, dk: d, dv: d};
  const fusedOnWasm = backend === 'wasm' ? 'fused' : 'standard';
  const longCall = {backend, batch: 1, heads: 1, T: 1, S: 4096, dk: 4, dv: 4};
  const longQ = () => tf.randomNormal([1, 1, 1, 4], 0, 1, 'float32', 3);
  const longK = () => tf.randomNormal([1, 1, 4096, 4], 0, 1, 'float32', 4);
  const longRecorded = backend === 'tensorflow' ? 'standard' : 'memory-efficient';
  const padding = () => tf.tensor2d([Array.from({length: S}, (_, s) => (s < 9 ? 1 : 0)), new Array<number>(S).fill(1)]);
  return [
    ['op, inference', () => tf.tidy(() => dotProductAttention(q(), kv(S), kv(S))), call, fusedOnWasm],
    ['op, inference, causal', () => tf.tidy(() => dotProductAttention(q(), kv(S), kv(S), {causal: true})), {...call, causal: true}, fusedOnWasm],
    ['op, recording', recorded(() => dotProductAttention(q(), kv(S), kv(S))), {...call, recording: true}, fusedOnWasm],
    ['op, recording, padding', recorded(() => dotProductAttention(q(), kv(S), kv(S), {keyPaddingMask: padding(), queryPaddingMask: padding()})),
      {...call, recording: true, padding: true}, fusedOnWasm],
    ['op, recording, explicit mask', recorded(() => dotProductAttention(q(), kv(S), kv(S), {mask: tf.ones([T, S])})),
      {...call, recording: true, mask: true}, fusedOnWasm],
    ['op, inference, explicit mask and key padding', () => tf.tidy(() => dotProductAttention(q(), kv(S), kv(S), {mask: tf.ones([T, S]),
      keyPaddingMask: padding()})), {...call, mask: true, padding: true}, fusedOnWasm],
    ['op, key padding', () => tf.tidy(() => dotProductAttention(q(), kv(S), kv(S), {keyPaddingMask: padding()})), {...call, padding: true}, fusedOnWasm],
    ['op, blockSize 4', () => tf.tidy(() => dotProductAttention(q(), kv(S), kv(S), {blockSize: 4})), {...call, blockSize: 4}, 'memory-efficient'],
    ['op, 4096 keys, inference', () => tf.tidy(() => dotProductAttention(longQ(), longK(), longK())), longCall,
      backend === 'wasm' ? 'fused' : longRecorded],
    ['op, 4096 keys, recording', recorded(() => dotProductAttention(longQ(), longK(), longK())), {...longCall, recording: true},
      backend === 'wasm' ? 'fused' : longRecorded],
  ];
}

function layerCases(backend: string): Array<[string, () => tf.TensorContainer, AttentionCall, AttentionPlan['path']]> {
  const layer = scaledDotProductAttention({numHeads: 2, keyDim: 4});
  const x = () => tf.randomNormal([2, 6, 8], 0, 1, 'float32', 5);
  tf.tidy(() => void layer.apply(x()));  // builds the weights
  const call = {backend, batch: 2, heads: 2, T: 6, S: 6, dk: 4, dv: 4, layer: {dq: 8, dc: 8, selfAttention: true}};
  const mask = () => tf.tensor2d([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]);
  const attentionMask = () => tf.ones([2, 6, 6]);
  return [
    ['layer, inference', () => tf.tidy(() => layer.apply(x()) as tf.Tensor), call, backend === 'wasm' ? 'fused' : 'standard'],
    ['layer, padding mask', () => tf.tidy(() => layer.apply(x(), {mask: mask()}) as tf.Tensor), {...call, padding: true},
      backend === 'wasm' ? 'fused' : 'standard'],
    ['layer, explicit attentionMask', () => tf.tidy(() => layer.apply(x(), {attentionMask: attentionMask()}) as tf.Tensor), {...call, mask: true},
      backend === 'wasm' ? 'fused' : 'standard'],
    ['layer, recording, explicit attentionMask', recorded(() => layer.apply(x(), {attentionMask: attentionMask()}) as tf.Tensor),
      {...call, recording: true, mask: true}, backend === 'wasm' ? 'fused' : 'standard'],
    ['layer, recording', recorded(() => layer.apply(x()) as tf.Tensor), {...call, recording: true}, backend === 'wasm' ? 'fused' : 'standard'],
    ['layer, recording, padding mask', recorded(() => layer.apply(x(), {mask: mask()}) as tf.Tensor), {...call, recording: true, padding: true},
      backend === 'wasm' ? 'fused' : 'standard'],
  ];
}

const BACKENDS = ['cpu', 'wasm', ...(HAS_TFJS_NODE ? ['tensorflow'] : [])];

describe.each(BACKENDS)('on %s, the op and the layer run the path the planner gives', backend => {
  let previous = '';
  beforeAll(async () => {
    previous = tf.getBackend();
    await selectBackend(backend as never);
  });
  afterAll(async () => {
    await tf.setBackend(previous);
  });

  it.each([...agreementCases(backend), ...layerCases(backend)])('%s', (_, run, call, expected) => {
    const before = tf.memory().numTensors;
    const plan = planAttention({
      ...call, fusedKernelAvailable: fused.fusedKernelAvailable(),
    });
    expect(plan.path).toBe(expected);
    const ran = observedPath(run);
    expect(ran.path).toBe(expected);
    if (expected === 'fused') expect(ran.kernel).toBe(plan.kernel);
    expect(tf.memory().numTensors).toBe(before);
  });

  if (backend === 'wasm') {
    it('the fused kernel runs on the threads the plan says', () => {
      const x = tf.randomNormal([1, 1, 1024, 64], 0, 1, 'float32', 6);
      const small = tf.randomNormal([32, 1, 16, 64], 0, 1, 'float32', 7);
      const sizes = {backend: 'wasm', heads: 1, dk: 64, dv: 64, threads: 2 as const};
      expect(planAttention({...sizes, batch: 1, T: 1024, S: 1024}).threads).toBe(2);
      tf.dispose(dotProductAttention(x, x, x));
      expect(fused.fusedThreadsOfLastCall()).toBe(2);
      expect(planAttention({...sizes, batch: 32, T: 16, S: 16}).threads).toBe(1);
      tf.dispose(dotProductAttention(small, small, small));
      expect(fused.fusedThreadsOfLastCall()).toBe(1);
      const previous = setAttentionThreads(1);
      try {
        expect(planAttention({...sizes, batch: 1, T: 1024, S: 1024, threads: 1}).threads).toBe(1);
        tf.dispose(dotProductAttention(x, x, x));
        expect(fused.fusedThreadsOfLastCall()).toBe(1);
      } finally {
        setAttentionThreads(previous);
      }
      tf.dispose([x, small]);
    });
  }

  it('the bench reports the planned path, and that path runs', async () => {
    const grid = [{batch: 1, length: 12, dModel: 8, heads: 2, paths: ['default' as const]}];
    const spy = jest.spyOn(blocked, 'memoryEfficientAttention');
    const fusedSpy = jest.spyOn(fused, 'fusedAttentionLayer');
    try {
      const results = await runBench({backends: [backend as never], grid, quick: true, warmup: 0});
      const rows = results.backends[0].rows;
      expect(rows.map(r => [r.pass, r.ranPath])).toEqual([
        ['forward', backend === 'wasm' ? 'fused' : 'standard'], ['forward+backward', backend === 'wasm' ? 'fused' : 'standard']]);
      expect(rows.every(r => r.reason.length > 0)).toBe(true);
      expect(spy).not.toHaveBeenCalled();
      expect(fusedSpy.mock.calls.length > 0).toBe(backend === 'wasm');
      expect(results.backends[0].memoryEfficientThreshold).toBe(backend === 'tensorflow' ? null : 4096);
    } finally {
      spy.mockRestore();
      fusedSpy.mockRestore();
    }
  });
});

if (!HAS_TFJS_NODE) {
  describe('on tensorflow (skipped: @tensorflow/tfjs-node does not load on this machine)', () => {
    it.skip('the op and the layer run the path the planner gives', () => undefined);
  });
}

describe("selectBackend('auto') picks by the measured order, with availability injected", () => {
  /** A starter that starts only `available`, recording what it was asked. */
  function starter(available: string[]) {
    const tried: string[] = [];
    return {tried, start: async (name: string) => (tried.push(name), available.includes(name))};
  }

  it('tries tensorflow, then wasm, then cpu', () => {
    expect([...AUTO_BACKEND_ORDER]).toEqual(['tensorflow', 'wasm', 'cpu']);
  });

  it.each([
    [['tensorflow', 'wasm', 'cpu'], 'tensorflow', ['tensorflow']],
    [['wasm', 'cpu'], 'wasm', ['tensorflow', 'wasm']],
    [['tensorflow', 'cpu'], 'tensorflow', ['tensorflow']],
    [['cpu'], 'cpu', ['tensorflow', 'wasm', 'cpu']],
  ])('available %p: picks %s after trying %p', async (available, picked, tried) => {
    const s = starter(available);
    await expect(chooseBackend('auto', s.start)).resolves.toBe(picked);
    expect(s.tried).toEqual(tried);
  });

  it('none available: an error, after trying all three', async () => {
    const s = starter([]);
    await expect(chooseBackend('auto', s.start)).rejects.toThrow(/^Backend "auto" could not be started here\. Received: name="auto"$/);
    expect(s.tried).toEqual(['tensorflow', 'wasm', 'cpu']);
  });

  it('a named backend is tried alone: no fallback', async () => {
    const s = starter(['cpu']);
    await expect(chooseBackend('wasm', s.start)).rejects.toThrow(ValueError);
    expect(s.tried).toEqual(['wasm']);
    const t = starter(['wasm']);
    await expect(chooseBackend('wasm', t.start)).resolves.toBe('wasm');
  });

  it('an unknown name is refused before anything is tried', async () => {
    const s = starter(['cpu']);
    await expect(chooseBackend('gpu' as never, s.start)).rejects.toThrow(/argument `name`.*Received: name="gpu"/);
    expect(s.tried).toEqual([]);
  });
});
