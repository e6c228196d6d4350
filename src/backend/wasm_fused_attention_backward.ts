/**
 * Training with the fused kernels on tfjs' wasm backend: softmax(scale·Q·Kᵀ)·V whose forward
 * runs `attend_4x8` and keeps each query's log-sum-exp, and whose gradient, a tfjs custom
 * gradient, runs `attend_backward_4x8` (src/backend/kernels/attend_backward_4x8_wasmsimd.c,
 * FlashAttention-2's backward): the weights are recomputed per block of keys from the
 * log-sum-exp, so neither pass forms a [T, S] matrix and memory stays linear in T and S.
 * A large call runs both passes on two threads in Node: the forward as the inference kernel
 * does (wasm_fused_attention.ts' attendPairsOnTwoThreads, which keeps the log-sum-exp too), the
 * backward with the threads sharing the parts of each pair's query tiles; the same bits as on one.
 * The planner (attention_plan.ts) sends recorded calls on wasm here.
 */
import * as tf from '@tensorflow/tfjs';
import {
  getSecondThread, noteTwoThreadCall, runStepsOnBothThreads, SHARED_DATA_START, SHARED_MAX_BYTES, sharedFloats, tableEntries,
  tableStep, twoThreadCallStart, twoThreadsPay, withWorkerAwake,
} from './attention_threads';
import type {JobStep, SecondThread} from './attention_threads';
import {biasArgsOfPair, copyBiases, heapBiases, placedBiasFloats} from './attention_bias';
import type {PlacedBiases} from './attention_bias';
import {addRowsArgs, KERNEL_SIGNATURES} from './kernels/kernel_module';
import type {KernelExports} from './kernels/kernel_module';
import {attendPairsOnTwoThreads, FUSED_KEY_BLOCK, FUSED_MAX_BYTES, logSumExp, noteFusedCallThreads} from './wasm_fused_attention';
import {copyRows, heapAddress, heapFloats, heapModule, roundUp, withHeapBuffer} from './wasm_heap_module';
import {runWasmKernelOutputs} from './wasm_kernel_registry';
import type {WasmBackendLike, WasmKernelArgs} from './wasm_kernel_registry';

/**
 * Keys per block of the backward kernel. For each block every tile of four queries streams its
 * Q, dO, their rows, lse and delta past the block and adds into its dQ rows: some 24 MB per block
 * at T = 16384, d = 64, from L3 or memory, while the block's K, V, dK and dV rows (64 KiB each
 * at 256 keys) stay in L2. Measured (the layer's training step, d = 64, one thread / two, ms,
 * 2026-12-01): at T = 16384, 5499 / 2958 with 32 keys, 5085-5310 / 2581-2660 with 128, 5051 / 2513
 * with 256; at T = 1024, 4096 and 8192 the same within the noise for 32, 128 and 256.
 */
export const FUSED_BACKWARD_KEY_BLOCK = 256;

/** The parameters of attend_backward_4x8 (kernels.h), and how many. */
const BACKWARD_PARAMS = KERNEL_SIGNATURES.attend_backward_4x8;
const BACKWARD_ENTRIES = tableEntries('attend_backward_4x8');
/** Each parameter's position in attend_backward_4x8's arguments, by its name in kernels.h. */
const BACKWARD_PARAM_AT = Object.fromEntries(BACKWARD_PARAMS.map(([param], i) => [param, i])) as Record<typeof BACKWARD_PARAMS[number][0], number>;

const FORWARD_KERNEL_NAME = 'TfjsAttentionFusedForwardLse';
const BACKWARD_KERNEL_NAME = 'TfjsAttentionFusedBackward';

/** The sizes of one call: P (batch, head) pairs of T queries, S keys, head sizes dk and dv. */
export interface PairSizes {
  T: number;
  S: number;
  dk: number;
  dv: number;
}

/** Where the backward's work buffers of one pair lie, in floats from their start (-1: used in place). */
export interface BackwardLayout {
  tiles: number;
  dkp: number;
  dvp: number;
  block: number;
  q: number; k: number; dout: number; v: number;
  qRows: number; kRows: number; doutRows: number;
  lse: number; delta: number;
  gradQ: number; gradK: number; gradV: number;
  /** The parts of the query tiles (backwardParts), each with its own dK and dV and its own scratch. */
  parts: number;
  /**
   * Parts 1 .. parts - 1's dK and dV, one after another (partK = S·dkp and partV = S·dvp floats
   * apart), besides part 0's (gradK, gradV); -1 with one part.
   */
  gradKParts: number; gradVParts: number; partK: number; partV: number;
  /** Each part's scratch, 8·block floats apart. */
  scratch: number;
  total: number;
}

/** backwardLayoutOf's `inPlace` where every buffer is the pair's own (its copies of the operands and its gradients). */
export const NOTHING_IN_PLACE = {rows: false, gradients: false};

/**
 * `parts`: room for that many parts' dK, dV and scratch (backwardParts); `inPlace`: the
 * operands' rows (`rows`) and the gradients (`gradients`) that need no padding are used in place
 * (their offsets -1), the operand's or the output's own [T, d] rows.
 */
export function backwardLayoutOf(
    {T, S, dk, dv}: PairSizes, parts: number, inPlace: {rows: boolean; gradients: boolean} = {rows: true, gradients: true}): BackwardLayout {
  const tiles = Math.ceil(T / 4);
  const panels = Math.ceil(S / 8);
  const [dkp, dvp] = [roundUp(dk, 8), roundUp(dv, 8)];
  const block = Math.min(FUSED_BACKWARD_KEY_BLOCK, panels * 8);
  const rowsInPlace = tiles * 4 === T;
  let next = 0;
  const take = (floats: number, canBeInPlace = false) => {
    if (canBeInPlace) return -1;
    const at = next;
    next += roundUp(floats, 16);
    return at;
  };
  const q = take(tiles * dk * 4);
  const k = take(panels * dk * 8);
  const dout = take(tiles * dv * 4);
  const v = take(panels * dv * 8);
  const [rows, gradients] = [inPlace.rows, inPlace.gradients];
  const qRows = take(tiles * 4 * dkp, rows && rowsInPlace && dkp === dk);
  const kRows = take(S * dkp, rows && dkp === dk);
  const doutRows = take(tiles * 4 * dvp, rows && rowsInPlace && dvp === dv);
  const lse = take(tiles * 4);
  const delta = take(tiles * 4);
  const gradQ = take(tiles * 4 * dkp, gradients && rowsInPlace && dkp === dk);
  const gradK = take(S * dkp, gradients && dkp === dk);
  const gradV = take(S * dvp, gradients && dvp === dv);
  const gradKParts = parts > 1 ? take((parts - 1) * S * dkp) : -1;
  const gradVParts = parts > 1 ? take((parts - 1) * S * dvp) : -1;
  const scratch = take(parts * 8 * block);
  return {
    tiles, dkp, dvp, block, q, k, dout, v, qRows, kRows, doutRows, lse, delta, gradQ, gradK, gradV, parts, gradKParts, gradVParts,
    partK: S * dkp, partV: S * dvp, scratch, total: next,
  };
}

/**
 * Pair buffers' dK, dV and scratch of each part (PairBuffers) from `place` at float p0: part
 * 0's dK and dV `gradK` and `gradV` (p0 + place's own by default), the others in place's parts.
 */
export function partBuffers(place: BackwardLayout, p0: number, gradK = p0 + place.gradK, gradV = p0 + place.gradV):
    Pick<PairBuffers, 'gradK'|'gradV'|'scratch'|'partK'|'partV'> {
  const {parts, block} = place;
  return {
    gradK: Array.from({length: parts}, (_, j) => (j === 0 ? gradK : p0 + place.gradKParts + (j - 1) * place.partK)),
    gradV: Array.from({length: parts}, (_, j) => (j === 0 ? gradV : p0 + place.gradVParts + (j - 1) * place.partV)),
    scratch: Array.from({length: parts}, (_, j) => p0 + place.scratch + j * 8 * block), partK: place.partK, partV: place.partV,
  };
}

/**
 * add_rows' arguments that put a gradient's parts, added left to right (`parts` of a pair's
 * buffers: PairBuffers' gradK or gradV, parts 1 .. on `partFloats` apart: its partK or partV), into `rows` rows of
 * `cols` floats at float `to`, `toRow` floats apart; the parts' rows are `srcRow` floats apart.
 * One part is copied.
 */
export function partsSumArgs(to: number, toRow: number, parts: number[], partFloats: number, srcRow: number, rows: number, cols: number):
    Parameters<KernelExports['add_rows']> {
  return addRowsArgs(to, toRow, parts[0], parts.length > 1 ? parts[1] : null, srcRow, rows, cols, parts.length - 1, partFloats);
}

/** Most parts of a pair's query tiles in the backward (backwardParts). */
const BACKWARD_MOST_PARTS = 8;
/** Fewest calls of the backward's kernel on two threads (pairs × parts), where the parts allow. */
const BACKWARD_LEAST_CALLS = 8;
/** Most bytes of one pair's extra parts' dK and dV (parts 1 .. parts - 1), each S·(dkp + dvp) floats. */
const BACKWARD_PARTS_MAX_BYTES = 8 * 2 ** 20;

/**
 * Most parts that backwardParts gives a pair of S keys, whatever the pairs and T: the work
 * buffers' bounds take it. At least 2 (a pair's tiles on both threads), more while the extra
 * parts' dK and dV stay within BACKWARD_PARTS_MAX_BYTES (8 at S <= 2048, d = 64; 3 at 8192).
 */
export function backwardMostParts(S: number, dk: number, dv: number): number {
  const partBytes = 4 * S * (roundUp(dk, 8) + roundUp(dv, 8));
  return Math.max(2, Math.min(BACKWARD_MOST_PARTS, 1 + Math.floor(BACKWARD_PARTS_MAX_BYTES / partBytes)));
}

/**
 * Where the backward cuts each pair's query tiles into parts, each with its own dK and dV,
 * added left to right after: [0, b_1, …, tiles], one part ([0, tiles]) below `twoThreadsPay`'s
 * size (as the forward). On two threads the parts of all pairs are the calls of a shared step:
 * each thread takes the next one left, so that a slower core (a contended one runs a third
 * slower here) makes fewer and neither waits long for the other; on one thread this thread
 * makes them all, so that one and two threads give the same bits. Enough parts for
 * BACKWARD_LEAST_CALLS calls in all (2 at 4 pairs or more, 8 for one pair), within
 * backwardMostParts and one tile per part at least; their work shrinks part by part (parts, …,
 * 2, 1 shares: 2/3 and 1/3 of a pair's work for two parts), so that the last calls are short and
 * the thread that ends first waits little for the other. The work of a tile is the keys it
 * attends: one for all without causal; with causal, tile i sees about i + 1 blocks of keys.
 */
export function backwardParts(sizes: PairSizes&{pairs: number; causal: boolean}): number[] {
  const {T, S, causal} = sizes;
  const tiles = Math.ceil(T / 4);
  const parts = backwardPartCount(sizes);
  if (parts === 1) return [0, tiles];
  const work = (tile: number) => (causal ? Math.min(S, 4 * tile + 4) : 1);
  let total = 0;
  for (let i = 0; i < tiles; i++) total += work(i);
  const bounds = [0];
  let [tile, done, share] = [0, 0, 0];
  for (let j = 1; j < parts; j++) {
    // Part j - 1 takes (parts - j + 1) / (1 + 2 + … + parts) of the work: the first tile past the shares so far
    // (rounded to the nearer cut), leaving a tile for each part after.
    share += (parts - j + 1) / (parts * (parts + 1) / 2);
    const target = share * total;
    while (tile < tiles && done + work(tile) / 2 < target) done += work(tile++);
    const cut = Math.min(Math.max(tile, bounds[j - 1] + 1), tiles - (parts - j));
    while (tile < cut) done += work(tile++);
    bounds.push(cut);
  }
  bounds.push(tiles);
  return bounds;
}

/** How many parts backwardParts gives (whatever causal). */
export function backwardPartCount({pairs, T, S, dk, dv}: PairSizes&{pairs: number}): number {
  // The forward's measure (2·P·T·S·(dk + dv)): the backward does 2.5 times its work, but copies
  // and packs more per pair too. (8, 4, 128, 16), 34 MFLOP so measured, ran 2.9 ms on two threads
  // against 2.5 ms on one.
  if (!twoThreadsPay(2 * pairs * T * S * (dk + dv), T)) return 1;
  return Math.min(Math.ceil(T / 4), Math.max(2, Math.min(backwardMostParts(S, dk, dv), Math.ceil(BACKWARD_LEAST_CALLS / pairs))));
}

/** Where one pair's operands and gradients lie for attend_backward_4x8: float indices in its memory. */
export interface PairBuffers {
  q: number; k: number; v: number; dout: number;
  qRows: number; kRows: number; doutRows: number;
  lse: number; delta: number;
  gradQ: number;
  /** Each part's (backwardParts; one with one part); parts 1 .. on partK and partV floats apart (BackwardLayout's). */
  gradK: number[]; gradV: number[]; scratch: number[]; partK: number; partV: number;
  /** The kernel's key_bias, bias, bias_stride and bias_rows for this pair (attention_bias.ts' biasArgsOfPair). */
  biases: [number, number, number, number];
  /**
   * Floats between the rows of dQ, dK and dV: dkp, dkp and dvp (the default) where they are
   * rows of their own, a matrix's width where the kernel writes them into its columns.
   */
  gradRows?: [number, number, number];
}

/**
 * The arguments of attend_backward_4x8 (kernels.h) for part `part` of a pair, its tiles
 * bounds[part] .. bounds[part + 1] - 1 (backwardParts), in the declared order.
 */
export function backwardArgs(
    b: PairBuffers, part: number, bounds: number[], sizes: PairSizes&TrainingAttrs&{dkp: number; dvp: number; block: number}): number[] {
  const {T, S, dk, dv, dkp, dvp, block, scale, causal} = sizes;
  const [lo, hi] = [bounds[part], bounds[part + 1]];
  const at = BACKWARD_PARAM_AT;
  const args = new Array<number>(BACKWARD_ENTRIES);
  args[at.q] = 4 * (b.q + lo * dk * 4);
  args[at.k] = 4 * b.k;
  args[at.v] = 4 * b.v;
  args[at.dout] = 4 * (b.dout + lo * dv * 4);
  args[at.qRows] = 4 * (b.qRows + lo * 4 * dkp);
  args[at.kRows] = 4 * b.kRows;
  args[at.doutRows] = 4 * (b.doutRows + lo * 4 * dvp);
  args[at.lse] = 4 * (b.lse + 4 * lo);
  args[at.delta] = 4 * (b.delta + 4 * lo);
  const [gradQRow, gradKRow, gradVRow] = b.gradRows ?? [dkp, dkp, dvp];
  args[at.gradQ] = 4 * (b.gradQ + lo * 4 * gradQRow);
  args[at.gradK] = 4 * b.gradK[part];
  args[at.gradV] = 4 * b.gradV[part];
  args[at.gradQStride] = 4 * gradQRow;
  args[at.gradKStride] = 4 * gradKRow;
  args[at.gradVStride] = 4 * gradVRow;
  args[at.scratch] = 4 * b.scratch[part];
  args[at.t] = Math.min(T, 4 * hi) - 4 * lo;
  args[at.s] = S;
  args[at.block] = block;
  args[at.dk] = dk;
  args[at.dv] = dv;
  args[at.scale] = scale;
  args[at.causal] = causal ? 1 : 0;
  args[at.q0] = 4 * lo;
  args[at.keyBias] = b.biases[0];
  args[at.bias] = b.biases[1];
  args[at.biasStride] = b.biases[2];
  args[at.biasRows] = b.biases[3];
  return args;
}

/** Floats of the forward's work buffers of one pair: Q and K packed, V and the output padded, the scratch and the state. */
function forwardFloats({T, S, dk, dv}: PairSizes): number {
  const [tiles, panels, dvp] = [Math.ceil(T / 4), Math.ceil(S / 8), roundUp(dv, 8)];
  const block = Math.min(FUSED_KEY_BLOCK, panels * 8);
  return tiles * dk * 4 + panels * dk * 8 + S * dvp + tiles * 4 * dvp + roundUp(block * 4 + 4, 16) + tiles * 8 + 64;
}

/** Bytes of work buffers that the forward or the backward takes from the heap (the larger), besides their outputs. */
export function fusedTrainingBytes(sizes: PairSizes): number {
  return 4 * Math.max(forwardFloats(sizes), backwardLayoutOf(sizes, backwardMostParts(sizes.S, sizes.dk, sizes.dv)).total);
}

/** Whether sizes suit `fusedAttentionTraining`: non-empty, and at most FUSED_MAX_BYTES of work buffers. */
export function fusedTrainingSizesFit(sizes: PairSizes): boolean {
  return Math.min(sizes.T, sizes.S, sizes.dk, sizes.dv) > 0 && fusedTrainingBytes(sizes) <= FUSED_MAX_BYTES;
}

/** Attributes of both kernels: the heads per batch (pair n is batch ⌊n / heads⌋), the scale and causal. */
export interface TrainingAttrs {
  heads: number;
  scale: number;
  causal: boolean;
}

/**
 * The forward: q [P, T, dk], k [P, S, dk], v [P, S, dv] and, optionally, a key bias [B, S] and
 * a bias [Bb, Hb, Tb, S] (P = B·heads; see attention_bias.ts) -> out [P, T, dv] and lse [P, T], each
 * query's log-sum-exp of its scaled scores: scale·max + log(sum) from the kernel's running max and sum.
 */
function forwardKernelFunc(args: WasmKernelArgs): tf.TensorInfo[] {
  const backend = args.backend;
  const module = heapModule(backend)!;
  const {q, k, v} = args.inputs;
  const {heads, scale, causal} = args.attrs as unknown as TrainingAttrs;
  const [P, T, dk] = q.shape as [number, number, number];
  const [S, dv] = v.shape.slice(1) as [number, number];
  const out = backend.makeOutput([P, T, dv], 'float32');
  const lse = backend.makeOutput([P, T], 'float32');
  const [tiles, panels, dvp] = [Math.ceil(T / 4), Math.ceil(S / 8), roundUp(dv, 8)];
  const block = Math.min(FUSED_KEY_BLOCK, panels * 8);
  const [qAt, kAt, vAt, outAt, lseAt] = [q, k, v, out, lse].map(x => heapAddress(backend, x) >>> 2);
  if (attendPairsOnTwoThreads(backend, args.inputs, {heads, scale, causal}, 4 * outAt, 4 * lseAt)) return [out, lse];
  const biases = heapBiases(backend, args.inputs.keyBias, args.inputs.bias);
  // V and the output are used in place when their rows need no padding (dv a multiple of 8, and T of 4 for the output).
  const [vInPlace, outInPlace] = [dvp === dv, dvp === dv && tiles * 4 === T];
  const [qp, kp] = [0, tiles * dk * 4];
  const vPad = kp + panels * dk * 8;
  const outPad = vPad + (vInPlace ? 0 : S * dvp);
  const scratch = roundUp(outPad + (outInPlace ? 0 : tiles * 4 * dvp), 16);
  const state = scratch + roundUp(block * 4 + 4, 16);
  withHeapBuffer(backend, state + tiles * 8, base => {
    const heap = heapFloats(backend);
    const at = (floats: number) => base + 4 * floats;
    const b0 = base >>> 2;
    for (let n = 0; n < P; n++) {
      module.pack_rows(4 * (qAt + n * T * dk), 4 * dk, at(qp), T, dk, 4);            // [T, dk] -> [tiles][dk][4]
      module.pack_rows(4 * (kAt + n * S * dk), 4 * dk, at(kp), S, dk, 8);            // [S, dk] -> [panels][dk][8]
      if (!vInPlace) copyRows(heap, b0 + vPad, dvp, heap, vAt + n * S * dv, dv, S, dv);  // [S, dv] -> [S, dvp]
      const vHere = vInPlace ? 4 * (vAt + n * S * dv) : at(vPad);
      const outHere = outInPlace ? 4 * (outAt + n * T * dv) : at(outPad);
      module.attend_4x8(at(qp), at(kp), vHere, 4 * dvp, outHere, 4 * dvp, at(scratch), at(state), tiles, S, block, dk, dvp,
                        scale, causal ? 1 : 0, 0, ...biasArgsOfPair(biases, n, heads));
      if (!outInPlace) copyRows(heap, outAt + n * T * dv, dv, heap, b0 + outPad, dvp, T, dv);  // [tiles·4, dvp] -> [T, dv]
      logSumExp(heap, lseAt + n * T, heap, b0 + state, T, scale);
    }
  });
  return [out, lse];
}

/**
 * The backward: q, k, v as the forward's, dy and out [P, T, dv], lse [P, T] and the bias
 * if the forward had it -> dq [P, T, dk], dk [P, S, dk], dv [P, S, dv]. Per pair, the
 * operands are packed (and padded where their sizes need it), delta = rowsum(dy ∘ out) is
 * taken, and `attend_backward_4x8` writes the gradients: in the heap on one thread (in place
 * when their rows need no padding), or in the worker's shared memory on two
 * (`backwardOnTwoThreads`), the threads sharing the parts of the query tiles (`backwardParts`).
 */
function backwardKernelFunc(args: WasmKernelArgs): tf.TensorInfo[] {
  const backend = args.backend;
  const module = heapModule(backend)!;
  const inputs = args.inputs as unknown as BackwardInputs;
  const {q, v} = inputs;
  const attrs = args.attrs as unknown as TrainingAttrs;
  const {heads} = attrs;
  const [P, T, dk] = q.shape as [number, number, number];
  const [S, dv] = v.shape.slice(1) as [number, number];
  const gradQ = backend.makeOutput([P, T, dk], 'float32');
  const gradK = backend.makeOutput([P, S, dk], 'float32');
  const gradV = backend.makeOutput([P, S, dv], 'float32');
  const [gQ, gK, gV] = [gradQ, gradK, gradV].map(g => heapAddress(backend, g) >>> 2);
  const gradsAt = {gradQ: gQ, gradK: gK, gradV: gV};
  const out = (thread: SecondThread, mem: Float32Array, pairs: PairBuffers[], free: number) =>
    gradientsOut(backend, thread, mem, pairs, free, gradsAt, {T, S, dk, dv});
  if (attendBackwardOnTwoThreads(backend, inputs, attrs, gradientsOutFloats(P), out)) return [gradQ, gradK, gradV];
  const bounds = backwardParts({pairs: P, T, S, dk, dv, causal: attrs.causal});
  const at = {...heapOperands(backend, inputs), ...gradsAt};
  const place = backwardLayoutOf({T, S, dk, dv}, bounds.length - 1);
  const {dkp, dvp, block} = place;
  const call = {T, S, dk, dv, dkp, dvp, block, ...attrs};
  const pairSizes = {T, S, dk, dv};
  withHeapBuffer(backend, place.total, base => {
    const heap = heapFloats(backend);
    const b0 = base >>> 2;
    zeroRowPadding(heap, place, b0, pairSizes);
    for (let n = 0; n < P; n++) {
      const dyn = pairRows(at.dy, n, T, dv, 1);
      const operands = {q: pairRows(at.q, n, T, dk, 1), k: pairRows(at.k, n, S, dk, 1), v: pairRows(at.v, n, S, dv, 1), dy: dyn};
      heap.set(heap.subarray(at.lse + n * T, at.lse + (n + 1) * T), b0 + place.lse);
      const outn = pairRows(at.out, n, T, dv, 1);
      module.row_dots(4 * (b0 + place.delta), 4 * dyn.from, 4 * dyn.stride, 4 * outn.from, 4 * outn.stride, T, dv);  // rowsum(dy ∘ out)
      const gq = place.gradQ < 0 ? at.gradQ + n * T * dk : b0 + place.gradQ;
      const gk = place.gradK < 0 ? at.gradK + n * S * dk : b0 + place.gradK;
      const gv = place.gradV < 0 ? at.gradV + n * S * dv : b0 + place.gradV;
      const buffers: PairBuffers = {
        q: b0 + place.q, k: b0 + place.k, v: b0 + place.v, dout: b0 + place.dout,
        qRows: 0, kRows: 0, doutRows: 0, lse: b0 + place.lse, delta: b0 + place.delta, gradQ: gq,
        ...partBuffers(place, b0, gk, gv), biases: biasArgsOfPair(at.biases, n, heads),
      };
      layPairOperands(place, b0, operands, pairSizes, module.pack_rows, module.add_rows, buffers);
      for (let part = 0; part < place.parts; part++) {
        module.attend_backward_4x8(...(backwardArgs(buffers, part, bounds, call) as Parameters<KernelExports['attend_backward_4x8']>));
      }
      // Into the outputs' rows where the kernel did not write them there, dK and dV with their parts added.
      const [parted, toQ, toK, toV] = [place.parts > 1, at.gradQ + n * T * dk, at.gradK + n * S * dk, at.gradV + n * S * dv];
      if (place.gradQ >= 0) module.add_rows(...addRowsArgs(toQ, dk, gq, null, dkp, T, dk));
      if (place.gradK >= 0 || parted) module.add_rows(...partsSumArgs(toK, dk, buffers.gradK, buffers.partK, dkp, S, dk));
      if (place.gradV >= 0 || parted) module.add_rows(...partsSumArgs(toV, dv, buffers.gradV, buffers.partV, dvp, S, dv));
    }
  });
  noteFusedCallThreads(1);
  return [gradQ, gradK, gradV];
}

/** The backward's inputs: q, k, v as the forward's, dy and out [P, T, dv], lse [P, T], and the masks' biases if the forward had them. */
interface BackwardInputs {
  q: tf.TensorInfo; k: tf.TensorInfo; v: tf.TensorInfo; dy: tf.TensorInfo; out: tf.TensorInfo; lse: tf.TensorInfo;
  keyBias?: tf.TensorInfo; bias?: tf.TensorInfo;
}

/** Float indices of the heap operands of one backward call. */
interface HeapOperands {
  q: number; k: number; v: number; dy: number; out: number; lse: number; biases: PlacedBiases;
}

function heapOperands(backend: WasmBackendLike, inputs: BackwardInputs): HeapOperands {
  const address = (x: tf.TensorInfo) => heapAddress(backend, x) >>> 2;
  return {
    q: address(inputs.q), k: address(inputs.k), v: address(inputs.v), dy: address(inputs.dy), out: address(inputs.out),
    lse: address(inputs.lse), biases: heapBiases(backend, inputs.keyBias, inputs.bias),
  };
}

/**
 * Where a two-thread backward puts things in the shared memory, in floats from its start: the
 * job's tables (BACKWARD_ENTRIES per part of each pair for the kernel; each pair's operands
 * packed and its rows padded), the biases (as given), the operands q, k, v and dy as the heap
 * holds them (`raw`: copied in whole, the pairs' rows read from there), then per pair (`pair`
 * floats apart) the layout of backwardLayoutOf with nothing in place, its parts' scratch included.
 */
interface SharedBackwardLayout {
  table: number;
  packTable: number;
  rowsTable: number;
  bias: number;
  raw: {q: number; k: number; v: number; dy: number};
  first: number;
  pair: number;
  place: BackwardLayout;
  end: number;
}

function sharedBackwardLayoutOf({P, T, S, dk, dv, parts}: PairSizes&{P: number; parts: number}, biasSize: number): SharedBackwardLayout {
  const place = backwardLayoutOf({T, S, dk, dv}, parts, NOTHING_IN_PLACE);
  const table = SHARED_DATA_START >>> 2;
  const packTable = roundUp(table + BACKWARD_ENTRIES * parts * P, 16);  // each pair's parts
  const rowsTable = roundUp(packTable + tableEntries('pack_rows') * 4 * P, 16);  // each pair's Q, K, dy and V packed
  const bias = roundUp(rowsTable + tableEntries('add_rows') * 3 * P, 16);  // each pair's Q, K and dy rows padded
  const q = roundUp(bias + biasSize, 16);
  const k = roundUp(q + P * T * dk, 16);
  const v = roundUp(k + P * S * dk, 16);
  const dy = roundUp(v + P * S * dv, 16);
  const first = roundUp(dy + P * T * dv, 16);
  const pair = roundUp(place.total, 16);
  return {table, packTable, rowsTable, bias, raw: {q, k, v, dy}, first, pair, place, end: first + P * pair};
}

/**
 * Where pair n's rows of an operand lie: from float `base`, pairs of `rows` rows of
 * `d` floats, `sideBySide` heads side by side in each row ([B, rows, H·d], the layer's Q, K, V,
 * dy and output; pair n is batch ⌊n / H⌋, head n % H) or, with 1, one pair after another
 * ([P, rows, d], the op's). Returns the pair's first float and how far apart its rows lie.
 */
export function pairRows(base: number, n: number, rows: number, d: number, sideBySide: number): {from: number; stride: number} {
  const [b, h] = [Math.floor(n / sideBySide), n % sideBySide];
  return {from: base + (b * rows * sideBySide + h) * d, stride: sideBySide * d};
}

/** Where a pair's rows of an operand lie (pairRows): its first float and the floats between its rows. */
export interface PairRows {
  from: number;
  stride: number;
}

/**
 * Lays one pair's operands out for attend_backward_4x8 in the memory that holds them and its
 * work buffers (backwardLayoutOf's `place`, from float p0): `pack` (pack_rows' signature) packs
 * Q and dy by fours and K and V by eights; `addRows` (add_rows') copies the rows of Q, K and dy
 * into rows of dkp or dvp floats where `place` does not read them in place. Both are the
 * module's own on one thread, or put calls in a job's tables on two. Sets where the kernel finds
 * those rows in `buffers`. The rows' padding is zeroRowPadding's.
 */
export function layPairOperands(
    place: BackwardLayout, p0: number, operands: {q: PairRows; k: PairRows; v: PairRows; dy: PairRows}, {T, S, dk, dv}: PairSizes,
    pack: KernelExports['pack_rows'], addRows: KernelExports['add_rows'], buffers: PairBuffers): void {
  const {q, k, v, dy} = operands;
  const {dkp, dvp} = place;
  pack(4 * q.from, 4 * q.stride, 4 * (p0 + place.q), T, dk, 4);      // [tiles][dk][4]
  pack(4 * k.from, 4 * k.stride, 4 * (p0 + place.k), S, dk, 8);      // [panels][dk][8]
  pack(4 * dy.from, 4 * dy.stride, 4 * (p0 + place.dout), T, dv, 4);  // [tiles][dv][4]
  pack(4 * v.from, 4 * v.stride, 4 * (p0 + place.v), S, dv, 8);      // [panels][dv][8]
  buffers.qRows = operandRows(place.qRows, p0, q, T, dk, dkp, addRows);
  buffers.kRows = operandRows(place.kRows, p0, k, S, dk, dkp, addRows);
  buffers.doutRows = operandRows(place.doutRows, p0, dy, T, dv, dvp, addRows);
}

/**
 * Where attend_backward_4x8 reads an operand's `count` rows of d floats as rows of dp: the
 * operand's own (`offset` -1, its rows dp apart), or a copy by `addRows` at float p0 + offset.
 */
function operandRows(
    offset: number, p0: number, operand: PairRows, count: number, d: number, dp: number, addRows: KernelExports['add_rows']): number {
  if (offset < 0) {
    if (operand.stride !== dp) throw new Error(`tfjs-attention: rows ${operand.stride} floats apart cannot be read in place as rows of ${dp}`);
    return operand.from;
  }
  addRows(...addRowsArgs(p0 + offset, dp, operand.from, null, operand.stride, count, d));
  return p0 + offset;
}

/**
 * Zeroes the padding of a pair's rows of Q, K and dy in `mem` (columns past dk or dv, rows past
 * T; `place` from float p0), which attend_backward_4x8 multiplies by zero weights; the rest of
 * the buffers the packing, the rows' copies and the kernel overwrite for every pair.
 */
export function zeroRowPadding(mem: Float32Array, place: BackwardLayout, p0: number, {T, S, dk, dv}: PairSizes): void {
  const {dkp, dvp} = place;
  const tileRows = Math.ceil(T / 4) * 4;
  if (dkp !== dk || tileRows !== T) mem.fill(0, p0 + place.qRows, p0 + place.qRows + tileRows * dkp);
  if (dkp !== dk) mem.fill(0, p0 + place.kRows, p0 + place.kRows + S * dkp);
  if (dvp !== dv || tileRows !== T) mem.fill(0, p0 + place.doutRows, p0 + place.doutRows + tileRows * dvp);
}

/**
 * The backward on two threads (see attention_threads.ts), in `mem`, a view of the shared memory
 * grown for the call: q, k, v and dy are copied in whole, as the heap holds them (`sideBySide`:
 * see pairRows), and each pair's delta computed where dy and out are; then one job: each pair's
 * operands packed and its rows padded on both threads, the parts of every pair's query tiles
 * (`bounds`: backwardParts; each part's dK and dV apart) shared between the threads, and the
 * steps that `then` adds after them (which add the parts and copy the results out: StepsAfter).
 */
function backwardOnTwoThreads(
    thread: SecondThread, mem: Float32Array, backend: WasmBackendLike, at: HeapOperands,
    call: PairSizes&TrainingAttrs&{P: number; sideBySide: number; bounds: number[]; shared: SharedBackwardLayout},
    then: (pairs: PairBuffers[]) => StepsAfter): void {
  const {P, T, S, dk, dv, heads, sideBySide, bounds, shared: layout} = call;
  const {place} = layout;
  const {dkp, dvp, block} = place;
  const started = twoThreadCallStart();
  const rowsOf = (base: number, n: number, rows: number, d: number) => pairRows(base, n, rows, d, sideBySide);
  withHeapBuffer(backend, P * T, deltas => {                 // each pair's rowsum(dy ∘ out), where dy and out are
    const module = heapModule(backend)!;
    for (let n = 0; n < P; n++) {
      const [dy, out] = [rowsOf(at.dy, n, T, dv), rowsOf(at.out, n, T, dv)];
      module.row_dots(deltas + 4 * n * T, 4 * dy.from, 4 * dy.stride, 4 * out.from, 4 * out.stride, T, dv);
    }
    const [from, heap] = [deltas >>> 2, heapFloats(backend)];
    for (let n = 0; n < P; n++) mem.set(heap.subarray(from + n * T, from + (n + 1) * T), layout.first + n * layout.pair + place.delta);
  });
  const heap = heapFloats(backend);
  const biases = copyBiases(at.biases, heap, mem, layout.bias);
  const {raw} = layout;
  mem.set(heap.subarray(at.q, at.q + P * T * dk), raw.q);                  // the operands whole, as the heap holds them
  mem.set(heap.subarray(at.k, at.k + P * S * dk), raw.k);
  mem.set(heap.subarray(at.v, at.v + P * S * dv), raw.v);
  mem.set(heap.subarray(at.dy, at.dy + P * T * dv), raw.dy);
  const [packs, rows]: number[][][] = [[], []];
  const pairSizes = {T, S, dk, dv};
  const packInTable = (...args: number[]) => void packs.push(args);
  const copyInTable = (...args: number[]) => void rows.push(args);
  const sizes = {T, S, dk, dv, dkp, dvp, block, heads, scale: call.scale, causal: call.causal};
  const pairs: PairBuffers[] = [];
  for (let n = 0; n < P; n++) {
    const p0 = layout.first + n * layout.pair;
    zeroRowPadding(mem, place, p0, pairSizes);
    const operands = {q: rowsOf(raw.q, n, T, dk), k: rowsOf(raw.k, n, S, dk), v: rowsOf(raw.v, n, S, dv), dy: rowsOf(raw.dy, n, T, dv)};
    mem.set(heap.subarray(at.lse + n * T, at.lse + (n + 1) * T), p0 + place.lse);
    const buffers: PairBuffers = {
      q: p0 + place.q, k: p0 + place.k, v: p0 + place.v, dout: p0 + place.dout, qRows: 0, kRows: 0, doutRows: 0,
      lse: p0 + place.lse, delta: p0 + place.delta, gradQ: p0 + place.gradQ, ...partBuffers(place, p0),
      biases: biasArgsOfPair(biases, n, heads),
    };
    layPairOperands(place, p0, operands, pairSizes, packInTable, copyInTable, buffers);
    pairs.push(buffers);
  }
  // The parts shared, pair by pair: each writes its own dK, dV and scratch, so either thread may make it, and each
  // part's dK and dV are those of the one-thread backward, added in the same order after.
  const parts = pairs.flatMap(buffers => Array.from({length: place.parts}, (_, part) => backwardArgs(buffers, part, bounds, sizes)));
  const steps: JobStep[] = [
    tableStep(thread, 4 * layout.packTable, 'pack_rows', packs),
    tableStep(thread, 4 * layout.rowsTable, 'add_rows', rows),
    tableStep(thread, 4 * layout.table, 'attend_backward_4x8', parts),
  ];
  const after = then(pairs);
  steps.push(...after.steps);
  runStepsOnBothThreads(thread, steps, 2 * P * T * S * (3 * dk + 2 * dv) + after.flops);
  after.finish();
  noteTwoThreadCall('attend_backward_4x8', started);
}

/**
 * What a caller of `attendBackwardOnTwoThreads` adds to its job: steps after the attention's
 * backward (which read its gradients), their FLOPs, and what is left after the job (`finish`:
 * copying results out to the heap).
 */
export interface StepsAfter {
  steps: JobStep[];
  flops: number;
  finish: () => void;
}

/**
 * The attention's own backward after the kernel: each pair's parts of dK and dV added into its
 * first, left to right (a step of add_rows calls, its table from float `free`), as on one
 * thread; then each pair's dQ, dK and dV copied out to the heap.
 */
function gradientsOut(
    backend: WasmBackendLike, thread: SecondThread, mem: Float32Array, pairs: PairBuffers[], free: number,
    at: {gradQ: number; gradK: number; gradV: number}, {T, S, dk, dv}: PairSizes): StepsAfter {
  const [dkp, dvp] = [roundUp(dk, 8), roundUp(dv, 8)];
  const sums = pairs.flatMap(b => [partsSumArgs(b.gradK[0], 0, b.gradK, b.partK, 0, 1, S * dkp), partsSumArgs(b.gradV[0], 0, b.gradV, b.partV, 0, 1, S * dvp)]);
  const finish = () => {
    const to = heapFloats(backend);
    pairs.forEach((b, n) => {
      copyRows(to, at.gradQ + n * T * dk, dk, mem, b.gradQ, dkp, T, dk);
      copyRows(to, at.gradK + n * S * dk, dk, mem, b.gradK[0], dkp, S, dk);
      copyRows(to, at.gradV + n * S * dv, dv, mem, b.gradV[0], dvp, S, dv);
    });
  };
  return {steps: [tableStep(thread, 4 * free, 'add_rows', sums)], flops: 0, finish};
}

/** Floats of gradientsOut's table: two add_rows calls per pair. */
function gradientsOutFloats(P: number): number {
  return roundUp(tableEntries('add_rows') * 2 * P, 16);
}

/**
 * The backward (the inputs as `attendBackward` takes them, P = B·heads pairs; or, with
 * `sideBySide` H, q [B, T, H·dk], k [B, S, H·dk], v [B, S, H·dv], dy and out [B, T, H·dv] with
 * the heads side by side, P = B·H, as the layer keeps them: `pairRows`) on two threads, where
 * they pay (`backwardParts`), as one job: each pair's operands packed, the kernel's parts of
 * the query tiles, then the steps that `then` adds (`StepsAfter`); `then` gets the shared memory
 * and each pair's buffers, whose dK and dV are in parts (PairBuffers), with `reserve`
 * floats free for its tables and buffers from float `free`. The attention's own kernel adds the
 * parts and copies the gradients out (`gradientsOut`); the layer's training
 * (wasm_fused_layer_training.ts) builds its G there instead and goes on to the projections'
 * gradients. Returns false, having done nothing, where the call stays on one thread: below
 * `backwardParts`' size, without a second thread, or too large for its memory.
 */
export function attendBackwardOnTwoThreads(
    backend: WasmBackendLike, inputs: BackwardInputs, attrs: TrainingAttrs, reserve: number,
    then: (thread: SecondThread, mem: Float32Array, pairs: PairBuffers[], free: number) => StepsAfter, sideBySide = 1): boolean {
  const [B, T, wQ] = inputs.q.shape as [number, number, number];
  const [S, wV] = inputs.v.shape.slice(1) as [number, number];
  const [P, dk, dv] = [B * sideBySide, wQ / sideBySide, wV / sideBySide];
  const bounds = backwardParts({pairs: P, T, S, dk, dv, causal: attrs.causal});
  if (bounds.length === 2) return false;
  const at = heapOperands(backend, inputs);
  const sizes = {P, T, S, dk, dv, heads: attrs.heads, sideBySide};
  const shared = sharedBackwardLayoutOf({...sizes, parts: bounds.length - 1}, placedBiasFloats(at.biases));
  const free = roundUp(shared.end, 16);
  const thread = 4 * (free + reserve) <= SHARED_MAX_BYTES ? getSecondThread() : null;
  if (thread == null) return false;
  noteFusedCallThreads(2);
  withWorkerAwake(thread, () => {
    const mem = sharedFloats(thread, 4 * (free + reserve));
    const call = {...sizes, ...attrs, bounds, shared};
    backwardOnTwoThreads(thread, mem, backend, at, call, pairs => then(thread, mem, pairs, free));
  });
  return true;
}

/**
 * The forward kernel alone: q [P, T, dk], k [P, S, dk], v [P, S, dv] (P = B·heads) and keyBias
 * [B, S] or null -> out [P, T, dv] and lse [P, T], on two threads where they pay. No gradient.
 */
export function attendWithLse(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, keyBias: tf.Tensor|null, attrs: TrainingAttrs): tf.Tensor[] {
  return runWasmKernelOutputs(FORWARD_KERNEL_NAME, forwardKernelFunc, keyBias == null ? {q, k, v} : {q, k, v, keyBias}, attrs);
}

/**
 * The backward kernel alone: `attendWithLse`'s inputs and outputs and dy [P, T, dv] -> dq, dk, dv,
 * on two threads where they pay (the same bits as on one).
 */
export function attendBackward(
    saved: {q: tf.Tensor; k: tf.Tensor; v: tf.Tensor; out: tf.Tensor; lse: tf.Tensor; keyBias: tf.Tensor|null}, dy: tf.Tensor,
    attrs: TrainingAttrs): tf.Tensor[] {
  const {q, k, v, out, lse, keyBias} = saved;
  const inputs: tf.NamedTensorMap = {q, k, v, dy, out, lse};
  if (keyBias != null) inputs.keyBias = keyBias;
  return runWasmKernelOutputs(BACKWARD_KERNEL_NAME, backwardKernelFunc, inputs, attrs);
}

/**
 * softmax(scale·Q·Kᵀ + keyBias + bias)·V on the wasm backend with a fused gradient: query
 * [B, (H,) T, dk], key [B, (H,) S, dk], value [B, (H,) S, dv] -> [B, (H,) T, dv]. The masks'
 * biases (float32, 0 or MASKED_LOGIT) are added to the scores: `keyBias` [B, S] to every score
 * of each key (key padding), `bias` [Bb, Hb, Tb, S] with Bb 1 or B, Hb 1 or H (1 for rank-3
 * inputs) and Tb 1 or T (an explicit mask, attention_bias.ts); with `causal`, query t attends keys s <= t. Fully
 * masked rows are the caller's to zero (as the standard path does, by multiplying the
 * output). Callers check `fusedTrainingSizesFit` and that the fused kernels run here
 * (`fusedKernelAvailable`).
 */
export function fusedAttentionTraining(
    query: tf.Tensor, key: tf.Tensor, value: tf.Tensor,
    options: {scale: number; causal: boolean; keyBias?: tf.Tensor|null; bias?: tf.Tensor|null}): tf.Tensor {
  const [T, dk] = query.shape.slice(-2) as [number, number];
  const [S, dv] = value.shape.slice(-2) as [number, number];
  const heads = query.rank === 4 ? query.shape[1] as number : 1;
  const pairs = query.size / (T * dk);
  const attrs: TrainingAttrs = {heads, scale: options.scale, causal: options.causal};
  const biases: tf.NamedTensorMap = {};
  if (options.keyBias != null) biases.keyBias = options.keyBias;
  if (options.bias != null) biases.bias = options.bias;
  const names = Object.keys(biases);
  const attention = tf.customGrad((...args: Array<tf.Tensor|tf.GradSaveFunc>) => {
    const [q, k, v] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const [out, lse] = runWasmKernelOutputs(FORWARD_KERNEL_NAME, forwardKernelFunc, {q, k, v, ...biases}, attrs);  // [P, T, dv], [P, T]
    // The biases are saved, not read through the closure: the caller may dispose them before the backward.
    save([q, k, v, out, lse, ...names.map(name => biases[name])]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [qS, kS, vS, outS, lseS, ...biasesS] = saved;
        const savedBiases = Object.fromEntries(names.map((name, i) => [name, biasesS[i]]));
        return runWasmKernelOutputs(BACKWARD_KERNEL_NAME, backwardKernelFunc,
                                    {q: qS, k: kS, v: vS, dy, out: outS, lse: lseS, ...savedBiases}, attrs);  // dq, dk, dv
      },
    };
  });
  return tf.tidy(() => {
    const as3d = (x: tf.Tensor, rows: number, cols: number) => x.reshape([pairs, rows, cols]);
    const out = attention(as3d(query, T, dk), as3d(key, S, dk), as3d(value, S, dv));  // [P, T, dv]
    return out.reshape([...query.shape.slice(0, -2), T, dv]);                         // [B, (H,) T, dv]
  });
}
