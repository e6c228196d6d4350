/**
 * The whole attention forward, softmax(scale·Q·Kᵀ)·V, as one WebAssembly SIMD kernel for
 * tfjs' wasm backend. Four queries at a time, it computes their scores against every key
 * into a small scratch buffer, takes the softmax there and multiplies by V: the T×S score
 * matrix never exists, so memory stays linear in T, and the four steps cost one kernel
 * call instead of five ops. Inference only: no gradient is registered.
 */
import * as tf from '@tensorflow/tfjs';
import {F32, I32, moduleBytes, op, V128} from './wasm_assembler';
import type {WasmFunction} from './wasm_assembler';

const {get, set, tee, i32, loop, block, brIf} = op;

/**
 * `attend(q, k, v, rowV, out, rowOut, scratch, tiles, S, panels, dk, dvp, scale)`: attention
 * of one (batch, head) pair. Arguments are byte addresses in the memory and sizes:
 * - q: the queries packed by fours, [tiles][dk][4] (tiles = ceil(T / 4));
 * - k: the keys packed by eights, [panels][dk][8] (panels = ceil(S / 8));
 * - v: the values, S rows of dvp floats `rowV` bytes apart (dvp: a multiple of 8);
 * - out: the output, tiles·4 rows of dvp floats `rowOut` bytes apart;
 * - scratch: one tile's scores, then weights, [panels·8][4] (query in the lane), and the
 *   tile's four 1/rowsum.
 * Per tile of four queries:
 * 1. scores[s] = Σ_k Q[k][0..3] · K[s][k], eight keys per panel in eight f32x4 registers;
 * 2. m = max_s scores[s], e[s] = exp(scale·(scores[s] - m)), sum = Σ_s e[s], lane-wise;
 * 3. out[r][c..c+7] = Σ_s e[s][r] · V[s][c..c+7] / sum[r], eight columns at a time.
 */
function attendFunction(): WasmFunction {
  const {f32x4Add: add, f32x4Sub: sub, f32x4Mul: mul, f32x4Pmax: pmax, f32x4Div: div} = op;
  const {i32Add, i32Mul, i32LtU, v128Load, v128Store, load32Splat, f32x4Const, i32x4Const} = op;
  // Parameters.
  const [Q, K, V, ROW_V, OUT, ROW_OUT, SCR, TILES, S, PANELS, DK, DVP, SCALE] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
  // i32 locals.
  const [i, jb, k, s, col, pq, pk, pst, pv, pout, qTile, outTile, colEnd, inv] =
      Array.from({length: 14}, (_, n) => 13 + n);
  // v128 locals.
  const acc = Array.from({length: 8}, (_, n) => 27 + n);
  const [m, sum, x, t, y, w, v0, v1, scale] = Array.from({length: 9}, (_, n) => 35 + n);

  const inc = (local: number, by: number[]) => [...get(local), ...by, ...i32Add, ...set(local)];
  const zeroAccumulators = acc.flatMap(a => [...f32x4Const(0), ...set(a)]);
  const mulAdd = (a: number, left: number[], right: number[]) => [...get(a), ...left, ...right, ...mul, ...add, ...set(a)];

  // 1. Scores of the tile against one panel of eight keys: for each k,
  // acc[2r + h] += Q[k][r] · K[k][8jb + 4h .. 8jb + 4h + 3] (query r, keys in the lanes),
  // then each 4×4 block is transposed so that scratch[8jb + c] holds key c's four scores.
  const kLoop = op.whileLoop([...get(k), ...get(DK), ...i32LtU], [
    ...get(pk), ...v128Load(0), ...set(v0), ...get(pk), ...v128Load(16), ...set(v1),  // K[k][8jb .. 8jb + 7]
    ...[0, 1, 2, 3].flatMap(r => [
      ...get(pq), ...load32Splat(4 * r), ...set(w),                             // Q[k][r]
      ...mulAdd(acc[2 * r], get(w), get(v0)), ...mulAdd(acc[2 * r + 1], get(w), get(v1)),
    ]),
    ...inc(pq, i32(16)), ...inc(pk, i32(32)), ...inc(k, i32(1)),
  ]);
  // Transposes the rows acc[h], acc[2 + h], acc[4 + h], acc[6 + h] into scratch[8jb + 4h + j].
  const lanes = (...picks: number[]) => picks.flatMap(lane => [4 * lane, 4 * lane + 1, 4 * lane + 2, 4 * lane + 3]);
  const shuffle = (picks: number[]) => [0xfd, 0x0d, ...lanes(...picks)];     // i8x16.shuffle of two f32x4
  const [t0, t1, t2, t3] = [x, t, y, w];
  const storeTransposed = (h: number) => [
    ...get(acc[h]), ...get(acc[2 + h]), ...shuffle([0, 4, 1, 5]), ...set(t0),  // a0 b0 a1 b1
    ...get(acc[h]), ...get(acc[2 + h]), ...shuffle([2, 6, 3, 7]), ...set(t1),  // a2 b2 a3 b3
    ...get(acc[4 + h]), ...get(acc[6 + h]), ...shuffle([0, 4, 1, 5]), ...set(t2),  // c0 d0 c1 d1
    ...get(acc[4 + h]), ...get(acc[6 + h]), ...shuffle([2, 6, 3, 7]), ...set(t3),  // c2 d2 c3 d3
    ...get(pst), ...get(t0), ...get(t2), ...shuffle([0, 1, 4, 5]), ...v128Store(64 * h),       // a0 b0 c0 d0
    ...get(pst), ...get(t0), ...get(t2), ...shuffle([2, 3, 6, 7]), ...v128Store(64 * h + 16),  // a1 b1 c1 d1
    ...get(pst), ...get(t1), ...get(t3), ...shuffle([0, 1, 4, 5]), ...v128Store(64 * h + 32),  // a2 b2 c2 d2
    ...get(pst), ...get(t1), ...get(t3), ...shuffle([2, 3, 6, 7]), ...v128Store(64 * h + 48),  // a3 b3 c3 d3
  ];
  const panelLoop = loop([
    ...zeroAccumulators,
    ...get(qTile), ...set(pq), ...i32(0), ...set(k),
    ...kLoop,
    ...storeTransposed(0), ...storeTransposed(1),
    ...inc(pst, i32(128)),
    ...get(jb), ...i32(1), ...i32Add, ...tee(jb), ...get(PANELS), ...i32LtU, ...brIf(0),
  ]);
  // 2. Softmax over the S keys, four queries in the four lanes: row max, then exp and sum.
  const maxLoop = loop([
    ...get(m), ...get(pst), ...v128Load(), ...pmax, ...set(m),
    ...inc(pst, i32(16)),
    ...get(s), ...i32(1), ...i32Add, ...tee(s), ...get(S), ...i32LtU, ...brIf(0),
  ]);
  // exp(x) for x <= 0 as 2^n · e^r, n = round(x / ln 2), |r| <= ln(2)/2, e^r by Cephes'
  // expf polynomial (relative error ~1e-7). x is clamped at -87, where 2^n stays a normal
  // float; n is rounded by adding 1.5·2^23, which leaves n in the low bits of the sum.
  const expOfX = [
    ...get(x), ...f32x4Const(1.44269504), ...mul, ...f32x4Const(12582912), ...add, ...set(t),  // t = x·log2(e) + 1.5·2^23
    ...get(t), ...f32x4Const(12582912), ...sub, ...set(y),                                     // y = n
    ...get(x), ...get(y), ...f32x4Const(0.693359375), ...mul, ...sub,
    ...get(y), ...f32x4Const(-2.12194440e-4), ...mul, ...sub, ...set(x),                      // x = r = x - n·ln 2
    ...f32x4Const(1.9875691500e-4), ...get(x), ...mul, ...f32x4Const(1.3981999507e-3), ...add,
    ...get(x), ...mul, ...f32x4Const(8.3334519073e-3), ...add,
    ...get(x), ...mul, ...f32x4Const(4.1665795894e-2), ...add,
    ...get(x), ...mul, ...f32x4Const(1.6666665459e-1), ...add,
    ...get(x), ...mul, ...f32x4Const(5.0000001201e-1), ...add,
    ...get(x), ...mul, ...get(x), ...mul, ...get(x), ...add, ...f32x4Const(1), ...add,      // e^r
    ...get(t), ...i32x4Const(127), ...op.i32x4Add, ...i32(23), ...op.i32x4Shl,                // 2^n, as bits (n + 127) << 23
    ...mul,
  ];
  const expLoop = loop([
    ...f32x4Const(-87), ...get(pst), ...v128Load(), ...get(m), ...sub, ...get(scale), ...mul, ...pmax, ...set(x),
    ...get(pst), ...expOfX, ...tee(y), ...v128Store(),
    ...get(sum), ...get(y), ...add, ...set(sum),
    ...inc(pst, i32(16)),
    ...get(s), ...i32(1), ...i32Add, ...tee(s), ...get(S), ...i32LtU, ...brIf(0),
  ]);
  // 3. Eight output columns of the tile: Σ_s e[s][r] · V[s][col..col+7], times 1/sum[r].
  const sLoop = op.whileLoop([...get(s), ...get(S), ...i32LtU], [
    ...get(pv), ...v128Load(0), ...set(v0), ...get(pv), ...v128Load(16), ...set(v1),  // V[s][col .. col + 7]
    ...[0, 1, 2, 3].flatMap(r => [
      ...get(pst), ...load32Splat(4 * r), ...set(w),                            // e[s][r]
      ...mulAdd(acc[2 * r], get(w), get(v0)), ...mulAdd(acc[2 * r + 1], get(w), get(v1)),
    ]),
    ...inc(pst, i32(16)), ...inc(pv, get(ROW_V)), ...inc(s, i32(1)),
  ]);
  const columnLoop = loop([
    ...zeroAccumulators,
    ...get(SCR), ...set(pst), ...get(V), ...get(col), ...i32Add, ...set(pv), ...i32(0), ...set(s),
    ...sLoop,
    ...get(outTile), ...get(col), ...i32Add, ...set(pout),
    ...[0, 1, 2, 3].flatMap(r => [
      ...get(inv), ...load32Splat(4 * r), ...set(w),
      ...get(pout), ...get(acc[2 * r]), ...get(w), ...mul, ...v128Store(0),
      ...get(pout), ...get(acc[2 * r + 1]), ...get(w), ...mul, ...v128Store(16),
      ...inc(pout, get(ROW_OUT)),
    ]),
    ...get(col), ...i32(32), ...i32Add, ...tee(col), ...get(colEnd), ...i32LtU, ...brIf(0),
  ]);
  const tileLoop = loop([
    ...get(i), ...get(DK), ...i32Mul, ...i32(16), ...i32Mul, ...get(Q), ...i32Add, ...set(qTile),
    ...get(i), ...i32(4), ...i32Mul, ...get(ROW_OUT), ...i32Mul, ...get(OUT), ...i32Add, ...set(outTile),
    ...i32(0), ...set(jb), ...get(K), ...set(pk), ...get(SCR), ...set(pst),
    ...panelLoop,
    ...f32x4Const(-Infinity), ...set(m), ...i32(0), ...set(s), ...get(SCR), ...set(pst),
    ...maxLoop,
    ...f32x4Const(0), ...set(sum), ...i32(0), ...set(s), ...get(SCR), ...set(pst),
    ...expLoop,
    ...get(inv), ...f32x4Const(1), ...get(sum), ...div, ...v128Store(),
    ...i32(0), ...set(col),
    ...columnLoop,
    ...get(i), ...i32(1), ...i32Add, ...tee(i), ...get(TILES), ...i32LtU, ...brIf(0),
  ]);
  const code = [
    ...get(DVP), ...i32(4), ...i32Mul, ...set(colEnd),                        // bytes of output columns per row
    ...get(PANELS), ...i32(128), ...i32Mul, ...get(SCR), ...i32Add, ...set(inv),  // 1/sum after the scores
    ...get(SCALE), ...op.f32x4Splat, ...set(scale),
    ...block([
      ...get(TILES), ...op.i32Eqz, ...brIf(0),
      ...get(S), ...op.i32Eqz, ...brIf(0), ...get(DK), ...op.i32Eqz, ...brIf(0), ...get(DVP), ...op.i32Eqz, ...brIf(0),
      ...i32(0), ...set(i),
      ...tileLoop,
    ]),
  ];
  return {name: 'attend', params: [...new Array<number>(12).fill(I32), F32], locals: [[14, I32], [8 + 9, V128]], code};
}

/**
 * `pack(src, srcRow, dst, rows, cols, group)`: packs a matrix [rows, cols] whose rows start
 * `srcRow` bytes apart at src by groups of `group` rows (a power of two), as the queries (4)
 * and keys (8) are laid out for `attend`: row r, column c goes to float
 * (r - r % group)·cols + c·group + r % group of dst.
 */
function packFunction(): WasmFunction {
  const {i32Add, i32Sub, i32Mul, i32LtU} = op;
  const [SRC, SRC_ROW, DST, ROWS, COLS, GROUP] = [0, 1, 2, 3, 4, 5];
  const [r, c, ps, pd, lane, step] = [6, 7, 8, 9, 10, 11];
  const f32Store = [0x38, 2, 0];
  const i32And = [0x71];
  const columns = loop([
    ...get(pd), ...get(ps), ...op.f32Load(), ...f32Store,
    ...get(ps), ...i32(4), ...i32Add, ...set(ps), ...get(pd), ...get(step), ...i32Add, ...set(pd),
    ...get(c), ...i32(1), ...i32Add, ...tee(c), ...get(COLS), ...i32LtU, ...brIf(0),
  ]);
  const rows = loop([
    ...get(r), ...get(GROUP), ...i32(1), ...i32Sub, ...i32And, ...set(lane),
    ...get(r), ...get(lane), ...i32Sub, ...get(COLS), ...i32Mul, ...get(lane), ...i32Add, ...i32(4), ...i32Mul,
    ...get(DST), ...i32Add, ...set(pd),
    ...get(SRC), ...get(r), ...get(SRC_ROW), ...i32Mul, ...i32Add, ...set(ps),
    ...i32(0), ...set(c),
    ...columns,
    ...get(r), ...i32(1), ...i32Add, ...tee(r), ...get(ROWS), ...i32LtU, ...brIf(0),
  ]);
  const code = [
    ...get(GROUP), ...i32(4), ...i32Mul, ...set(step),
    ...block([...get(ROWS), ...op.i32Eqz, ...brIf(0), ...get(COLS), ...op.i32Eqz, ...brIf(0), ...rows]),
  ];
  return {name: 'pack', params: new Array<number>(6).fill(I32), locals: [[6, I32]], code};
}

/** The two functions, instantiated on the wasm backend's own memory: no copies in or out. */
interface AttentionModule {
  attend: (q: number, k: number, v: number, rowV: number, out: number, rowOut: number, scratch: number,
           tiles: number, s: number, panels: number, dk: number, dvp: number, scale: number) => void;
  pack: (src: number, srcRow: number, dst: number, rows: number, cols: number, group: number) => void;
}

/** What the kernel below uses of tfjs-backend-wasm's backend object. */
interface WasmBackendLike {
  /** A view of a tensor's memory in the wasm heap (invalid once the heap grows). */
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  /** The Emscripten module: its exports (with the memory), malloc and free. */
  wasm: {asm?: {memory?: WebAssembly.Memory}; _malloc(bytes: number): number; _free(address: number): void};
}

/** The module per backend memory; null where it cannot run (no SIMD, a shared memory). */
const modules = new WeakMap<object, AttentionModule|null>();

function attentionModule(backend: WasmBackendLike): AttentionModule|null {
  const memory = backend.wasm?.asm?.memory;
  if (!(memory instanceof WebAssembly.Memory)) return null;
  let module = modules.get(memory);
  if (module !== undefined) return module;
  module = null;
  // The threaded build's memory is shared, and a shared memory needs a matching import.
  if (typeof SharedArrayBuffer === 'undefined' || !(memory.buffer instanceof SharedArrayBuffer)) {
    try {
      const bytes = moduleBytes([attendFunction(), packFunction()], true);
      if (WebAssembly.validate(bytes)) {
        const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {env: {mem: memory}});
        module = {attend: instance.exports.attend as AttentionModule['attend'], pack: instance.exports.pack as AttentionModule['pack']};
      }
    } catch {
      module = null;  // no WebAssembly SIMD (old browsers): callers take the other paths
    }
  }
  modules.set(memory, module);
  return module;
}

/** Sizes of one call: B batches of H heads, T queries, S keys, head sizes dk and dv. */
interface FusedSizes {
  batch: number;
  heads: number;
  T: number;
  S: number;
  dk: number;
  dv: number;
}

/** Where one call's work buffers lie, in floats from the start of their allocation. */
interface Layout {
  tiles: number;
  panels: number;
  dvp: number;
  /** One pair's queries packed by 4 and keys packed by 8. */
  q: number;
  k: number;
  /** One pair's values [S, dvp] and output [tiles·4, dvp], when not used in place (else -1). */
  v: number;
  out: number;
  scratch: number;
  /** Floats in all. */
  total: number;
}

function layoutOf({T, S, dk, dv}: FusedSizes): Layout {
  const tiles = Math.ceil(T / 4);
  const panels = Math.ceil(S / 8);
  const dvp = Math.ceil(dv / 8) * 8;
  const padV = dvp !== dv;
  const padOut = padV || tiles * 4 !== T;
  const q = 0;
  const k = q + tiles * dk * 4;
  const v = k + panels * dk * 8;
  const out = v + (padV ? S * dvp : 0);
  const scratch = out + (padOut ? tiles * 4 * dvp : 0);
  return {tiles, panels, dvp, q, k, v: padV ? v : -1, out: padOut ? out : -1, scratch, total: scratch + panels * 8 * 4 + 4};
}

/**
 * Most bytes of work buffers that one call takes from the wasm heap, freed after the call:
 * one pair's packed Q and K, V and output when their rows need padding, and 16·S bytes of
 * scores. 64 MiB is T = S = 64 Ki keys with d = 64: the kernel is linear in T.
 */
export const FUSED_MAX_BYTES = 64 * 2 ** 20;

/** Bytes of work buffers of one call (see FUSED_MAX_BYTES), besides the output. */
export function fusedAttentionBytes(T: number, S: number, dk: number, dv: number): number {
  return 4 * layoutOf({batch: 1, heads: 1, T, S, dk, dv}).total;
}

/**
 * Whether `fusedAttention` can run: the wasm backend (unthreaded) in a runtime with wasm
 * SIMD, non-empty operands and at most FUSED_MAX_BYTES of work buffers.
 */
export function fusedAttentionFits(T: number, S: number, dk: number, dv: number): boolean {
  return tf.getBackend() === 'wasm' && Math.min(T, S, dk, dv) > 0 &&
      fusedAttentionBytes(T, S, dk, dv) <= FUSED_MAX_BYTES &&
      attentionModule(tf.backend() as unknown as WasmBackendLike) != null;
}

const FUSED_KERNEL_NAME = 'TfjsAttentionFusedAttention';

/**
 * The kernel function. Inputs q [B, T, Cq], k [B, S, Ck], v [B, S, Cv] (possibly one tensor);
 * head h's queries are the dk columns of q from column `qColumn + h·dk`, its keys and values
 * likewise. Output [B, T, H·dv], the heads side by side. For each (batch, head) pair it packs
 * Q and K into a buffer of the wasm heap and runs `attend` on the heap in place.
 */
function fusedKernelFunc(args: {inputs: tf.NamedTensorMap; attrs?: {[name: string]: unknown}; backend: unknown}): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const module = attentionModule(backend)!;
  const {q, k, v} = args.inputs;
  const attrs = args.attrs as unknown as FusedSizes&{qColumn: number; kColumn: number; vColumn: number; scale: number};
  const {batch, heads, T, S, dk, dv, qColumn, kColumn, vColumn, scale} = attrs;
  const [cq, ck, cv] = [q, k, v].map(x => x.shape[2] as number);
  const layout = layoutOf(attrs);
  const {tiles, panels, dvp} = layout;
  const output = backend.makeOutput([batch, T, heads * dv], 'float32');
  const allocation = backend.wasm._malloc(4 * layout.total + 60);         // may grow the heap: views come after
  const base = (allocation + 63) & ~63;                                    // cache-line aligned (malloc gives 8 bytes)
  const at = (floats: number) => base + 4 * floats;                        // byte address in the heap
  const address = (t: tf.TensorInfo) => backend.typedArrayFromHeap(t).byteOffset;
  try {
    const heap = new Float32Array(backend.typedArrayFromHeap(output).buffer);
    const [qAt, kAt, vAt, outAt] = [address(q), address(k), address(v), address(output)];
    // Padding queries and keys are zeros: their results are never read, but stay finite.
    if (T % 4 !== 0) heap.fill(0, (base >> 2) + layout.q + (tiles - 1) * dk * 4, (base >> 2) + layout.q + tiles * dk * 4);
    if (S % 8 !== 0) heap.fill(0, (base >> 2) + layout.k + (panels - 1) * dk * 8, (base >> 2) + layout.k + panels * dk * 8);
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        module.pack(qAt + 4 * (b * T * cq + qColumn + h * dk), 4 * cq, at(layout.q), T, dk, 4);  // [T, dk] -> [tiles][dk][4]
        module.pack(kAt + 4 * (b * S * ck + kColumn + h * dk), 4 * ck, at(layout.k), S, dk, 8);  // [S, dk] -> [panels][dk][8]
        let [vHere, rowV] = [vAt + 4 * (b * S * cv + vColumn + h * dv), 4 * cv];
        if (layout.v >= 0) {                                               // [S, dv] -> [S, dvp]
          for (let s = 0; s < S; s++) {
            const from = (vHere >> 2) + s * cv;
            heap.copyWithin((base >> 2) + layout.v + s * dvp, from, from + dv);
          }
          [vHere, rowV] = [at(layout.v), 4 * dvp];
        }
        const outHere = outAt + 4 * (b * T * heads * dv + h * dv);
        if (layout.out < 0) {
          module.attend(at(layout.q), at(layout.k), vHere, rowV, outHere, 4 * heads * dv, at(layout.scratch),
                        tiles, S, panels, dk, dvp, scale);
          continue;
        }
        module.attend(at(layout.q), at(layout.k), vHere, rowV, at(layout.out), 4 * dvp, at(layout.scratch),
                      tiles, S, panels, dk, dvp, scale);
        for (let t = 0; t < T; t++) {                                      // [tiles·4, dvp] -> T rows of dv
          const from = (base >> 2) + layout.out + t * dvp;
          heap.copyWithin((outHere >> 2) + t * heads * dv, from, from + dv);
        }
      }
    }
  } finally {
    backend.wasm._free(allocation);
  }
  return output;
}

function runFused(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, attrs: FusedSizes&{qColumn: number; kColumn: number; vColumn: number; scale: number}): tf.Tensor {
  if (tf.getKernel(FUSED_KERNEL_NAME, 'wasm') == null) {
    tf.registerKernel({
      kernelName: FUSED_KERNEL_NAME, backendName: 'wasm', kernelFunc: fusedKernelFunc as unknown as tf.KernelFunc,
    });
  }
  return tf.engine().runKernel(FUSED_KERNEL_NAME, {q, k, v}, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/**
 * softmax(scale·Q·Kᵀ)·V over the last two axes, in one kernel call on the wasm backend:
 * query [..., T, dk], key [..., S, dk], value [..., S, dv] with equal leading dims ->
 * [..., T, dv]. Never forms the [T, S] weights. Not differentiable (no gradient is
 * registered), no mask; callers check `fusedAttentionFits` first.
 */
export function fusedAttention(query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, scale: number): tf.Tensor {
  const [T, dk] = query.shape.slice(-2);
  const [S, dv] = value.shape.slice(-2);
  const lead = query.shape.slice(0, -2);
  const batch = query.size / (T * dk);
  return tf.tidy(() => {
    const as3d = (x: tf.Tensor, rows: number, cols: number) => x.reshape([batch, rows, cols]);
    const out = runFused(as3d(query, T, dk), as3d(key, S, dk), as3d(value, S, dv),
                         {batch, heads: 1, T, S, dk, dv, qColumn: 0, kColumn: 0, vColumn: 0, scale});  // [B·H, T, dv]
    return out.reshape([...lead, T, dv]);                                   // [..., T, dv]
  });
}

/**
 * Multi-head attention on projections whose heads sit side by side in the last axis, as
 * one product x·[Wq | Wk | Wv] gives them: head h's queries are columns
 * `query.column + h·dk` to `+ dk` of query.x [B, T, Cq], its keys and values likewise in
 * key.x [B, S, Ck] and value.x [B, S, Cv] (which may be the same tensor). Returns the heads'
 * outputs side by side, [B, T, H·dv], ready for the output projection: no split or merge
 * of heads is ever copied. Same conditions as `fusedAttention`.
 */
export function fusedMultiHeadAttention(
    query: {x: tf.Tensor; column: number}, key: {x: tf.Tensor; column: number}, value: {x: tf.Tensor; column: number},
    sizes: {heads: number; dk: number; dv: number; scale: number}): tf.Tensor {
  const [batch, T] = query.x.shape as [number, number];
  const S = key.x.shape[1] as number;
  return runFused(query.x, key.x, value.x, {
    batch, heads: sizes.heads, T, S, dk: sizes.dk, dv: sizes.dv,
    qColumn: query.column, kColumn: key.column, vColumn: value.column, scale: sizes.scale,
  });  // [B, T, H·dv]
}
