/**
 * The WebAssembly SIMD functions behind the fused attention and dense kernels, instantiated
 * on the memory of tfjs' wasm backend itself, so that they read tensors in place and write
 * their outputs straight into output tensors: `attend` (softmax(scale·Q·Kᵀ)·V for one
 * (batch, head) pair), `pack` (a layout change) and `project` (x·w + b). Hand-assembled
 * with wasm_assembler.ts, so that the package needs no toolchain.
 */
import type * as tf from '@tensorflow/tfjs';
import {F32, I32, moduleBytes, op, V128} from './wasm_assembler';
import type {WasmBackendLike} from './wasm_kernel_registry';
import type {WasmFunction} from './wasm_assembler';

const {get, set, tee, i32, loop, block, brIf} = op;

/** local += by (i32). */
const inc = (local: number, by: number[]) => [...get(local), ...by, ...op.i32Add, ...set(local)];

/** The v128 registers of a 4×8 tile: eight accumulators, a splat and two vectors. */
interface TileRegisters {
  acc: number[];
  w: number;
  v0: number;
  v1: number;
}

/**
 * One step of a 4×8 tile, the inner loop of every product here: acc[2r + h] +=
 * a[r] · b[4h .. 4h + 3] for rows r < 4 and halves h < 2, with a[0..3] four floats at the
 * address in local `pa` (each splat), b[0..7] eight floats at `pb`. Then pa += 16 bytes,
 * pb += `bStride` and counter += 1, while counter < end.
 */
function tileSteps(regs: TileRegisters, pa: number, pb: number, bStride: number[], counter: number, end: number): number[] {
  const {acc, w, v0, v1} = regs;
  const mulAdd = (a: number, v: number) => [...get(a), ...get(w), ...get(v), ...op.f32x4Mul, ...op.f32x4Add, ...set(a)];
  return op.whileLoop([...get(counter), ...get(end), ...op.i32LtU], [
    ...get(pb), ...op.v128Load(0), ...set(v0), ...get(pb), ...op.v128Load(16), ...set(v1),
    ...[0, 1, 2, 3].flatMap(r => [...get(pa), ...op.load32Splat(4 * r), ...set(w), ...mulAdd(acc[2 * r], v0), ...mulAdd(acc[2 * r + 1], v1)]),
    ...inc(pa, i32(16)), ...inc(pb, bStride), ...inc(counter, i32(1)),
  ]);
}

/**
 * `attend(q, k, v, rowV, out, rowOut, scratch, state, tiles, S, block, dk, dvp, scale, causal, q0, keyBias)`:
 * attention of one (batch, head) pair. Arguments are byte addresses in the memory and sizes:
 * - q: the queries packed by fours, [tiles][dk][4] (tiles = ceil(T / 4));
 * - k: the keys packed by eights, [ceil(S / 8)][dk][8];
 * - v: the values, S rows of dvp floats `rowV` bytes apart (dvp: a multiple of 8);
 * - out: the output, tiles·4 rows of dvp floats `rowOut` bytes apart;
 * - scratch: one tile's scores, then weights, for `block` keys, [block][4] (query in the
 *   lane), and four floats more;
 * - state: per tile, the running max and sum of its four queries, tiles × 32 bytes.
 * The keys are taken `block` at a time (a multiple of 8), so that their part of K and V
 * stays in cache while every tile of four queries goes through it. Per block and tile:
 * 1. scores[s] = Σ_k Q[k][0..3] · K[s][k], eight keys per panel in eight f32x4 registers;
 * 2. the online softmax (FlashAttention's recurrence), lane-wise: m' = max(m, max_s scores[s]),
 *    α = exp(scale·(m - m')), e[s] = exp(scale·(scores[s] - m')), sum' = α·sum + Σ_s e[s];
 * 3. out[r][c..c+7] = α[r]·out[r][c..c+7] + Σ_s e[s][r] · V[s][c..c+7], eight columns at a time.
 * At the end every row is divided by its sum. With `causal` (1), query t attends only keys
 * s <= t, where the first tile's first query is query `q0` (tiles may be split between
 * threads): blocks wholly after a tile are skipped, and the keys t0 + 1 .. t0 + 3 of a tile
 * t0 .. t0 + 3 are masked, lane by lane, with -inf scores. A nonzero `keyBias` is the address
 * of S floats added to every query's score of each key (a padding mask: 0 or a large negative
 * number).
 */
function attendFunction(): WasmFunction {
  const {f32x4Add: add, f32x4Sub: sub, f32x4Mul: mul, f32x4Pmax: pmax, f32x4Div: div} = op;
  const {i32Add, i32Mul, i32LtU, v128Load, v128Store, load32Splat, f32x4Const, f32x4Lanes, i32x4Const} = op;
  // Parameters.
  const [Q, K, V, ROW_V, OUT, ROW_OUT, SCR, STATE, TILES, S, BLOCK, DK, DVP, SCALE, CAUSAL, Q0, KEY_BIAS] =
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
  // i32 locals.
  const [i, jb, k, s, col, pq, pk, pst, pv, pout, qTile, outTile, colEnd, alpha, j0, keys, state, tileKeys, tilePanels, firstQuery, index] =
      Array.from({length: 21}, (_, n) => 17 + n);
  // v128 locals.
  const acc = Array.from({length: 8}, (_, n) => 38 + n);
  const [m, sum, x, t, y, w, v0, v1, scale, mSafe, cut] = Array.from({length: 11}, (_, n) => 46 + n);

  const zeroAccumulators = acc.flatMap(a => [...f32x4Const(0), ...set(a)]);
  const count = (local: number, end: number[]) => [...get(local), ...i32(1), ...i32Add, ...tee(local), ...end, ...i32LtU, ...brIf(0)];

  // 1. Scores of the tile against one panel of eight keys: for each k,
  // acc[2r + h] += Q[k][r] · K[k][8jb + 4h .. 8jb + 4h + 3] (query r, keys in the lanes),
  // then each 4×4 block is transposed so that scratch[8jb + c] holds key c's four scores.
  const kLoop = tileSteps({acc, w, v0, v1}, pq, pk, i32(32), k, DK);         // Q[k][r] · K[k][8jb .. 8jb + 7]
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
    ...count(jb, get(tilePanels)),
  ]);
  // exp(x) for x <= 0 as 2^n · e^r, n = round(x / ln 2), |r| <= ln(2)/2, e^r by Cephes'
  // expf polynomial (relative error ~1e-7); n is rounded by adding 1.5·2^23, which leaves n
  // in the low bits. Below -87, where 2^n would leave the normal floats, the result is
  // flushed to +0 (so exp(-∞) = 0 exactly, as on the other paths); a NaN x fails the
  // compare, keeps the polynomial's NaN and so propagates, as IEEE exp does.
  const expOfX = [
    ...get(x), ...f32x4Const(-87), ...op.f32x4Lt, ...set(cut),                               // lanes to flush: x < -87
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
    ...get(cut), ...op.v128AndNot,                                                            // +0 where x < -87
  ];
  // x = (value - m)·scale, the argument of exp, with m the running max where it is finite
  // or +∞ and 0 where it is -∞ (every score so far -∞): then exp(-∞ - m) is 0, not NaN.
  // A NaN score is never the max (pmax keeps m) but makes its own x, weight and sum NaN.
  const exponent = (value: number[]) => [...value, ...get(mSafe), ...sub, ...get(scale), ...mul, ...set(x)];
  // 2. The online softmax of the block, four queries in the four lanes.
  const maxLoop = loop([
    ...get(m), ...get(pst), ...v128Load(), ...pmax, ...set(m),
    ...inc(pst, i32(16)),
    ...count(s, get(tileKeys)),
  ]);
  const expLoop = loop([
    ...exponent([...get(pst), ...v128Load()]),
    ...get(pst), ...expOfX, ...tee(y), ...v128Store(),
    ...get(sum), ...get(y), ...add, ...set(sum),
    ...inc(pst, i32(16)),
    ...count(s, get(tileKeys)),
  ]);
  const softmax = [
    ...get(state), ...v128Load(0), ...tee(y), ...set(m),                    // m = the running max
    ...i32(0), ...set(s), ...get(SCR), ...set(pst),
    ...maxLoop,                                                              // m' = max(m, this block's max)
    ...f32x4Const(0), ...get(m), ...get(m), ...f32x4Const(-Infinity), ...op.f32x4Eq, ...op.v128Bitselect,
    ...set(mSafe),                                                           // m' where m' > -∞, else 0
    ...exponent(get(y)), ...get(alpha), ...expOfX, ...tee(y), ...v128Store(),  // α = exp(scale·(m - m'))
    ...get(state), ...v128Load(16), ...get(y), ...mul, ...set(sum),          // α·sum
    ...i32(0), ...set(s), ...get(SCR), ...set(pst),
    ...expLoop,
    ...get(state), ...get(m), ...v128Store(0), ...get(state), ...get(sum), ...v128Store(16),
  ];
  // 3. Eight output columns of the tile: α[r]·out[r] + Σ_s e[s][r] · V[s][col..col+7].
  const sLoop = tileSteps({acc, w, v0, v1}, pst, pv, get(ROW_V), s, tileKeys);     // e[s][r] · V[s][col .. col + 7]
  const columnLoop = loop([
    ...get(outTile), ...get(col), ...i32Add, ...set(pout),
    ...[0, 1, 2, 3].flatMap(r => [                                           // the tile's output so far, times α
      ...get(alpha), ...load32Splat(4 * r), ...set(w),
      ...get(pout), ...get(ROW_OUT), ...i32(r), ...i32Mul, ...i32Add, ...tee(pq),
      ...v128Load(0), ...get(w), ...mul, ...set(acc[2 * r]),
      ...get(pq), ...v128Load(16), ...get(w), ...mul, ...set(acc[2 * r + 1]),
    ]),
    ...get(SCR), ...set(pst), ...get(V), ...get(j0), ...get(ROW_V), ...i32Mul, ...i32Add, ...get(col), ...i32Add, ...set(pv),
    ...i32(0), ...set(s),
    ...sLoop,
    ...[0, 1, 2, 3].flatMap(r => [
      ...get(pout), ...get(acc[2 * r]), ...v128Store(0), ...get(pout), ...get(acc[2 * r + 1]), ...v128Store(16),
      ...inc(pout, get(ROW_OUT)),
    ]),
    ...get(col), ...i32(32), ...i32Add, ...tee(col), ...get(colEnd), ...i32LtU, ...brIf(0),
  ]);
  const tileAddresses = [
    ...get(i), ...get(DK), ...i32Mul, ...i32(16), ...i32Mul, ...get(Q), ...i32Add, ...set(qTile),
    ...get(i), ...i32(4), ...i32Mul, ...get(ROW_OUT), ...i32Mul, ...get(OUT), ...i32Add, ...set(outTile),
    ...get(i), ...i32(32), ...i32Mul, ...get(STATE), ...i32Add, ...set(state),
  ];
  // Causal: query t attends keys s <= t. A tile of queries t0 .. t0 + 3 takes the block's
  // keys up to t0 + 3 (none if the block starts after), and its keys t0 + 1 .. t0 + 3 are
  // masked in the lanes of the queries before them: the scores get -inf there.
  const causalKeys = [
    ...get(CAUSAL), ...op.i32Eqz, ...brIf(0),
    ...get(Q0), ...get(i), ...i32(4), ...i32Mul, ...i32Add, ...set(firstQuery),
    ...get(firstQuery), ...i32(4), ...i32Add, ...get(j0), ...op.i32Sub, ...tee(index),  // keys up to t0 + 3
    ...i32(0), ...op.i32LeS, ...brIf(1),                                       // none: skip the tile
    ...get(index), ...get(tileKeys), ...get(index), ...get(tileKeys), ...i32LtU, ...op.select, ...set(tileKeys),
  ];
  const causalMask = [
    ...get(CAUSAL), ...op.i32Eqz, ...brIf(0),
    ...[1, 2, 3].flatMap(delta => op.block([
      ...get(firstQuery), ...i32(delta), ...i32Add, ...get(j0), ...op.i32Sub, ...tee(index),  // key t0 + delta in the block
      ...get(tileKeys), ...op.i32GeU, ...brIf(0),
      ...get(index), ...i32(16), ...i32Mul, ...get(SCR), ...i32Add, ...tee(pst),
      ...get(pst), ...v128Load(), ...f32x4Lanes(...[0, 1, 2].map(r => (r < delta ? -Infinity : 0)), 0), ...add, ...v128Store(),
    ])),
  ];
  // A key mask: every query's score of key j0 + s gets keyBias[j0 + s] (0, or a large negative number).
  const keyBias = [
    ...get(KEY_BIAS), ...op.i32Eqz, ...brIf(0),
    ...i32(0), ...set(s), ...get(SCR), ...set(pst),
    ...get(KEY_BIAS), ...get(j0), ...i32(4), ...i32Mul, ...i32Add, ...set(pv),
    ...loop([
      ...get(pst), ...get(pst), ...v128Load(), ...get(pv), ...load32Splat(), ...add, ...v128Store(),
      ...inc(pst, i32(16)), ...inc(pv, i32(4)),
      ...count(s, get(tileKeys)),
    ]),
  ];
  const tileLoop = loop([
    ...tileAddresses,
    ...op.block([
      ...get(keys), ...set(tileKeys),
      ...op.block(causalKeys),
      ...get(tileKeys), ...i32(7), ...i32Add, ...i32(3), ...op.i32ShrU, ...set(tilePanels),
      ...i32(0), ...set(jb), ...get(K), ...get(j0), ...get(DK), ...i32Mul, ...i32(4), ...i32Mul, ...i32Add, ...set(pk),
      ...get(SCR), ...set(pst),
      ...panelLoop,
      ...op.block(causalMask),
      ...op.block(keyBias),
      ...softmax,
      ...i32(0), ...set(col),
      ...columnLoop,
    ]),
    ...count(i, get(TILES)),
  ]);
  const blockLoop = loop([
    // keys = min(BLOCK, S - j0)
    ...get(S), ...get(j0), ...op.i32Sub, ...tee(keys), ...get(BLOCK), ...get(keys), ...get(BLOCK), ...i32LtU, ...op.select,
    ...set(keys),
    ...i32(0), ...set(i),
    ...tileLoop,
    ...get(j0), ...get(BLOCK), ...i32Add, ...tee(j0), ...get(S), ...i32LtU, ...brIf(0),
  ]);
  // Before the blocks: max -inf, sum 0 and output 0 for every tile; after: out /= sum.
  const initialize = loop([
    ...tileAddresses,
    ...get(state), ...f32x4Const(-Infinity), ...v128Store(0), ...get(state), ...f32x4Const(0), ...v128Store(16),
    ...i32(0), ...set(col),
    ...loop([
      ...get(outTile), ...get(col), ...i32Add, ...set(pout),
      ...[0, 1, 2, 3].flatMap(() => [
        ...get(pout), ...f32x4Const(0), ...v128Store(0), ...get(pout), ...f32x4Const(0), ...v128Store(16),
        ...inc(pout, get(ROW_OUT)),
      ]),
      ...get(col), ...i32(32), ...i32Add, ...tee(col), ...get(colEnd), ...i32LtU, ...brIf(0),
    ]),
    ...count(i, get(TILES)),
  ]);
  const normalize = loop([
    ...tileAddresses,
    ...get(alpha), ...f32x4Const(1), ...get(state), ...v128Load(16), ...div, ...v128Store(),  // 1/sum
    ...i32(0), ...set(col),
    ...loop([
      ...get(outTile), ...get(col), ...i32Add, ...set(pout),
      ...[0, 1, 2, 3].flatMap(r => [
        ...get(alpha), ...load32Splat(4 * r), ...set(w),
        ...get(pout), ...get(pout), ...v128Load(0), ...get(w), ...mul, ...v128Store(0),
        ...get(pout), ...get(pout), ...v128Load(16), ...get(w), ...mul, ...v128Store(16),
        ...inc(pout, get(ROW_OUT)),
      ]),
      ...get(col), ...i32(32), ...i32Add, ...tee(col), ...get(colEnd), ...i32LtU, ...brIf(0),
    ]),
    ...count(i, get(TILES)),
  ]);
  const code = [
    ...get(DVP), ...i32(4), ...i32Mul, ...set(colEnd),                        // bytes of output columns per row
    ...get(BLOCK), ...i32(16), ...i32Mul, ...get(SCR), ...i32Add, ...set(alpha),  // α (then 1/sum) after the scores
    ...get(SCALE), ...op.f32x4Splat, ...set(scale),
    ...block([
      ...get(TILES), ...op.i32Eqz, ...brIf(0), ...get(BLOCK), ...op.i32Eqz, ...brIf(0),
      ...get(S), ...op.i32Eqz, ...brIf(0), ...get(DK), ...op.i32Eqz, ...brIf(0), ...get(DVP), ...op.i32Eqz, ...brIf(0),
      ...i32(0), ...set(i), ...initialize,
      ...i32(0), ...set(j0), ...blockLoop,
      ...i32(0), ...set(i), ...normalize,
    ]),
  ];
  return {name: 'attend', params: [...new Array<number>(13).fill(I32), F32, I32, I32, I32], locals: [[21, I32], [8 + 11, V128]], code};
}

/**
 * `pack(src, srcRow, dst, rows, cols, group)`: packs a matrix [rows, cols] whose rows start
 * `srcRow` bytes apart at src by groups of `group` rows (a power of two), as the queries (4)
 * and keys (8) are laid out for `attend`: row r, column c goes to float
 * (r - r % group)·cols + c·group + r % group of dst. The rows that fill up the last group
 * are zeros.
 */
function packFunction(): WasmFunction {
  const {i32Add, i32Sub, i32Mul, i32LtU} = op;
  const [SRC, SRC_ROW, DST, ROWS, COLS, GROUP] = [0, 1, 2, 3, 4, 5];
  const [r, c, ps, pd, lane, step] = [6, 7, 8, 9, 10, 11];
  const f32Store = [0x38, 2, 0];
  const f32Zero = [0x43, 0, 0, 0, 0];                                         // f32.const 0
  const i32And = [0x71];
  // pd = where row r, column 0 goes; c = 0.
  const rowStart = [
    ...get(r), ...get(GROUP), ...i32(1), ...i32Sub, ...i32And, ...set(lane),
    ...get(r), ...get(lane), ...i32Sub, ...get(COLS), ...i32Mul, ...get(lane), ...i32Add, ...i32(4), ...i32Mul,
    ...get(DST), ...i32Add, ...set(pd),
    ...i32(0), ...set(c),
  ];
  // Stores `value` (instructions that leave an f32) into each column of the row.
  const columns = (value: number[], next: number[]) => loop([
    ...get(pd), ...value, ...f32Store, ...next,
    ...get(pd), ...get(step), ...i32Add, ...set(pd),
    ...get(c), ...i32(1), ...i32Add, ...tee(c), ...get(COLS), ...i32LtU, ...brIf(0),
  ]);
  const rows = loop([
    ...rowStart,
    ...get(SRC), ...get(r), ...get(SRC_ROW), ...i32Mul, ...i32Add, ...set(ps),
    ...columns([...get(ps), ...op.f32Load()], [...get(ps), ...i32(4), ...i32Add, ...set(ps)]),
    ...get(r), ...i32(1), ...i32Add, ...tee(r), ...get(ROWS), ...i32LtU, ...brIf(0),
  ]);
  // The rows that fill up the last group are zeros: never read as results, but finite.
  const paddingRows = op.whileLoop([...get(r), ...get(GROUP), ...i32(1), ...i32Sub, ...i32And], [
    ...rowStart,
    ...columns(f32Zero, []),
    ...get(r), ...i32(1), ...i32Add, ...set(r),
  ]);
  const code = [
    ...get(GROUP), ...i32(4), ...i32Mul, ...set(step),
    ...block([...get(ROWS), ...op.i32Eqz, ...brIf(0), ...get(COLS), ...op.i32Eqz, ...brIf(0), ...rows, ...paddingRows]),
  ];
  return {name: 'pack', params: new Array<number>(6).fill(I32), locals: [[6, I32]], code};
}

/**
 * `project(x, w, rowW, bias, out, rowOut, tiles, dIn, dOutP)`: out = x·w (+ bias) for x
 * packed by fours, [tiles][dIn][4], and w [dIn][dOutP] with rows `rowW` bytes apart; bias
 * (dOutP floats) is skipped when its address is 0. Writes tiles·4 rows of dOutP floats,
 * `rowOut` bytes apart. dOutP is a multiple of 8: per tile of four rows, eight output
 * columns at a time in eight f32x4 registers, as in step 1 of `attend`.
 */
function projectFunction(): WasmFunction {
  const {i32Add, i32Mul, i32LtU, v128Load, v128Store, f32x4Const} = op;
  const [X, W, ROW_W, BIAS, OUT, ROW_OUT, TILES, D_IN, D_OUT] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [i, col, k, px, pw, pout, xTile, colEnd] = Array.from({length: 8}, (_, n) => 9 + n);
  const acc = Array.from({length: 8}, (_, n) => 17 + n);
  const [w, v0, v1] = [25, 26, 27];
  const kLoop = tileSteps({acc, w, v0, v1}, px, pw, get(ROW_W), k, D_IN);     // x[r][k] · w[k][col .. col + 7]
  const initAccumulators = [
    ...block([
      ...get(BIAS), ...op.i32Eqz, ...brIf(0),
      ...get(BIAS), ...get(col), ...i32Add, ...v128Load(0), ...set(v0),
      ...get(BIAS), ...get(col), ...i32Add, ...v128Load(16), ...set(v1),
    ]),
    ...acc.flatMap((a, n) => [...get(n % 2 === 0 ? v0 : v1), ...set(a)]),
  ];
  const columnLoop = loop([
    ...f32x4Const(0), ...set(v0), ...f32x4Const(0), ...set(v1),              // the bias, or zeros
    ...initAccumulators,
    ...get(xTile), ...set(px), ...get(W), ...get(col), ...i32Add, ...set(pw), ...i32(0), ...set(k),
    ...kLoop,
    ...get(OUT), ...get(i), ...i32(4), ...i32Mul, ...get(ROW_OUT), ...i32Mul, ...i32Add, ...get(col), ...i32Add, ...set(pout),
    ...[0, 1, 2, 3].flatMap(r => [
      ...get(pout), ...get(acc[2 * r]), ...v128Store(0), ...get(pout), ...get(acc[2 * r + 1]), ...v128Store(16),
      ...inc(pout, get(ROW_OUT)),
    ]),
    ...get(col), ...i32(32), ...i32Add, ...tee(col), ...get(colEnd), ...i32LtU, ...brIf(0),
  ]);
  const tileLoop = loop([
    ...get(i), ...get(D_IN), ...i32Mul, ...i32(16), ...i32Mul, ...get(X), ...i32Add, ...set(xTile),
    ...i32(0), ...set(col),
    ...columnLoop,
    ...get(i), ...i32(1), ...i32Add, ...tee(i), ...get(TILES), ...i32LtU, ...brIf(0),
  ]);
  const code = [
    ...get(D_OUT), ...i32(4), ...i32Mul, ...set(colEnd),
    ...block([...get(TILES), ...op.i32Eqz, ...brIf(0), ...get(D_OUT), ...op.i32Eqz, ...brIf(0), ...tileLoop]),
  ];
  return {name: 'project', params: new Array<number>(9).fill(I32), locals: [[8, I32], [11, V128]], code};
}

/** The module's functions, in export order. */
function heapFunctions(): WasmFunction[] {
  return [attendFunction(), packFunction(), projectFunction()];
}

/** The module's functions, called with byte addresses in the wasm backend's heap. */
export interface HeapModule {
  attend: (q: number, k: number, v: number, rowV: number, out: number, rowOut: number, scratch: number, state: number,
           tiles: number, s: number, block: number, dk: number, dvp: number, scale: number, causal: number, q0: number,
           keyBias: number) => void;
  pack: (src: number, srcRow: number, dst: number, rows: number, cols: number, group: number) => void;
  project: (x: number, w: number, rowW: number, bias: number, out: number, rowOut: number, tiles: number, dIn: number, dOutP: number) => void;
}


/** The module per backend memory; null where it cannot run (no SIMD, a shared memory). */
const modules = new WeakMap<object, HeapModule|null>();

/**
 * The module instantiated on this backend's heap (once per heap), or null where it cannot
 * run: a runtime without wasm SIMD, or tfjs' threaded build, whose heap is a shared memory.
 */
export function heapModule(backend: WasmBackendLike): HeapModule|null {
  const memory = backend.wasm?.asm?.memory;
  if (!(memory instanceof WebAssembly.Memory)) return null;
  let module = modules.get(memory);
  if (module !== undefined) return module;
  module = null;
  // The threaded build's memory is shared, and a shared memory needs a matching import.
  if (typeof SharedArrayBuffer === 'undefined' || !(memory.buffer instanceof SharedArrayBuffer)) {
    try {
      const bytes = moduleBytes(heapFunctions(), 'imported');
      if (WebAssembly.validate(bytes)) {
        const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {env: {mem: memory}});
        module = instance.exports as unknown as HeapModule;
      }
    } catch {
      module = null;  // no WebAssembly SIMD (old browsers): callers take the other paths
    }
  }
  modules.set(memory, module);
  return module;
}

/** The module's bytes for a shared memory of at most `pages` 64 KiB pages (see attention_threads.ts). */
export function sharedModuleBytes(pages: number): Uint8Array<ArrayBuffer> {
  return moduleBytes(heapFunctions(), {sharedPages: pages});
}

/**
 * Runs `fn` with a buffer of `floats` float32 from the heap, cache-line aligned, freed
 * afterwards even if `fn` throws. `fn` gets its byte address; views of the heap must be
 * taken inside `fn` (the allocation may grow the heap). Addresses are unsigned: the heap
 * may pass 2 GiB, where wasm's malloc returns negative int32s.
 */
export function withHeapBuffer<R>(backend: WasmBackendLike, floats: number, fn: (address: number) => R): R {
  const allocation = backend.wasm._malloc(4 * floats + 64);
  if (allocation === 0) {
    throw new Error(`tfjs-attention: the wasm heap has no room for ${4 * floats + 64} bytes of work buffers (it stops at 4 GiB)`);
  }
  try {
    return fn(Math.ceil((allocation >>> 0) / 64) * 64);
  } finally {
    backend.wasm._free(allocation);
  }
}

/** A Float32Array over the whole heap (valid until the heap grows). */
export function heapFloats(backend: WasmBackendLike): Float32Array {
  return new Float32Array(backend.wasm.asm!.memory!.buffer);
}

/** The byte address of a tensor's data in the heap. */
export function heapAddress(backend: WasmBackendLike, t: tf.TensorInfo): number {
  return backend.typedArrayFromHeap(t).byteOffset;
}

/**
 * Copies `rows` rows of `width` floats from `src` (rows `srcRow` floats apart from float
 * `from`) to `dst` (rows `dstRow` apart from float `to`): padding or unpadding rows, or
 * taking one head's columns. src and dst may be the same array.
 */
export function copyRows(
    dst: Float32Array, to: number, dstRow: number, src: Float32Array, from: number, srcRow: number, rows: number, width: number): void {
  for (let r = 0; r < rows; r++) {
    const start = from + r * srcRow;
    if (src === dst) dst.copyWithin(to + r * dstRow, start, start + width);
    else dst.set(src.subarray(start, start + width), to + r * dstRow);
  }
}

/** n rounded up to a multiple of `multiple`. */
export function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

