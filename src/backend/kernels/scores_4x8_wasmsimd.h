// The scores of a tile of four queries against panels of eight keys, shared by the forward
// (attend_4x8) and the backward (attend_backward_4x8) kernels: the 4×8 products, key by key
// with the four queries in the lanes, the masking of single keys (causal), and the additive
// bias of an explicit or padding mask.
#ifndef TFJS_ATTENTION_SCORES_4X8_WASMSIMD_H_
#define TFJS_ATTENTION_SCORES_4X8_WASMSIMD_H_

#include <stdint.h>
#include <wasm_simd128.h>

#ifndef INFINITY
#define INFINITY __builtin_inff()
#endif

// The 4×8 products of one tile of four rows of A, packed by fours [depth][4], with `panels`
// panels of eight rows of B, packed by eights [depth][8] each, over `depth`: written to out
// key by key, out[4j + r] = Σ_d A[r][d]·B[j][d] (the row r in the lane). vaccRxJ holds row
// R's products with the panel's rows J (0123 or 4567).
static inline void dot_4x8(const float* a, const float* b, uint32_t depth, uint32_t panels, float* out) {
  const v128_t vzero = wasm_f32x4_const_splat(0.0f);
  for (uint32_t p = 0; p < panels; p++) {
    v128_t vacc0x0123 = vzero;
    v128_t vacc0x4567 = vzero;
    v128_t vacc1x0123 = vzero;
    v128_t vacc1x4567 = vzero;
    v128_t vacc2x0123 = vzero;
    v128_t vacc2x4567 = vzero;
    v128_t vacc3x0123 = vzero;
    v128_t vacc3x4567 = vzero;
    const float* ap = a;
    for (uint32_t d = 0; d < depth; d++) {
      const v128_t vb0123 = wasm_v128_load(b);
      const v128_t vb4567 = wasm_v128_load(b + 4);
      b += 8;
      const v128_t va0 = wasm_v128_load32_splat(ap);
      vacc0x0123 = wasm_f32x4_add(vacc0x0123, wasm_f32x4_mul(va0, vb0123));
      vacc0x4567 = wasm_f32x4_add(vacc0x4567, wasm_f32x4_mul(va0, vb4567));
      const v128_t va1 = wasm_v128_load32_splat(ap + 1);
      vacc1x0123 = wasm_f32x4_add(vacc1x0123, wasm_f32x4_mul(va1, vb0123));
      vacc1x4567 = wasm_f32x4_add(vacc1x4567, wasm_f32x4_mul(va1, vb4567));
      const v128_t va2 = wasm_v128_load32_splat(ap + 2);
      vacc2x0123 = wasm_f32x4_add(vacc2x0123, wasm_f32x4_mul(va2, vb0123));
      vacc2x4567 = wasm_f32x4_add(vacc2x4567, wasm_f32x4_mul(va2, vb4567));
      const v128_t va3 = wasm_v128_load32_splat(ap + 3);
      vacc3x0123 = wasm_f32x4_add(vacc3x0123, wasm_f32x4_mul(va3, vb0123));
      vacc3x4567 = wasm_f32x4_add(vacc3x4567, wasm_f32x4_mul(va3, vb4567));
      ap += 4;
    }
    // Transposed, key by key: vsJ holds key J's products with rows 0..3.
    const v128_t v01x01 = wasm_i32x4_shuffle(vacc0x0123, vacc1x0123, 0, 4, 1, 5);
    const v128_t v01x23 = wasm_i32x4_shuffle(vacc0x0123, vacc1x0123, 2, 6, 3, 7);
    const v128_t v23x01 = wasm_i32x4_shuffle(vacc2x0123, vacc3x0123, 0, 4, 1, 5);
    const v128_t v23x23 = wasm_i32x4_shuffle(vacc2x0123, vacc3x0123, 2, 6, 3, 7);
    const v128_t v01x45 = wasm_i32x4_shuffle(vacc0x4567, vacc1x4567, 0, 4, 1, 5);
    const v128_t v01x67 = wasm_i32x4_shuffle(vacc0x4567, vacc1x4567, 2, 6, 3, 7);
    const v128_t v23x45 = wasm_i32x4_shuffle(vacc2x4567, vacc3x4567, 0, 4, 1, 5);
    const v128_t v23x67 = wasm_i32x4_shuffle(vacc2x4567, vacc3x4567, 2, 6, 3, 7);
    wasm_v128_store(out, wasm_i32x4_shuffle(v01x01, v23x01, 0, 1, 4, 5));       // vs0
    wasm_v128_store(out + 4, wasm_i32x4_shuffle(v01x01, v23x01, 2, 3, 6, 7));   // vs1
    wasm_v128_store(out + 8, wasm_i32x4_shuffle(v01x23, v23x23, 0, 1, 4, 5));   // vs2
    wasm_v128_store(out + 12, wasm_i32x4_shuffle(v01x23, v23x23, 2, 3, 6, 7));  // vs3
    wasm_v128_store(out + 16, wasm_i32x4_shuffle(v01x45, v23x45, 0, 1, 4, 5));  // vs4
    wasm_v128_store(out + 20, wasm_i32x4_shuffle(v01x45, v23x45, 2, 3, 6, 7));  // vs5
    wasm_v128_store(out + 24, wasm_i32x4_shuffle(v01x67, v23x67, 0, 1, 4, 5));  // vs6
    wasm_v128_store(out + 28, wasm_i32x4_shuffle(v01x67, v23x67, 2, 3, 6, 7));  // vs7
    out += 32;
  }
}

// Adds `vmask` to the scores of key `key` of the block (its four queries in the lanes), if
// the block's first `keys` keys hold it (`key` is huge when the key lies before the block).
static inline void mask_key(float* scores, uint32_t key, uint32_t keys, v128_t vmask) {
  if (key >= keys) return;
  float* sk = scores + 4 * key;
  wasm_v128_store(sk, wasm_f32x4_add(wasm_v128_load(sk), vmask));
}

// Causal masking of a tile of queries t0 .. t0 + 3 against the block of keys from j0, whose
// first `keys` keys the scores hold: keys t0 + 1, t0 + 2 and t0 + 3, where they fall in the
// block, get -inf in the lanes of the queries before them.
static inline void mask_causal_4x8(float* scores, uint32_t t0, uint32_t j0, uint32_t keys) {
  mask_key(scores, t0 + 1 - j0, keys, wasm_f32x4_make(-INFINITY, 0.0f, 0.0f, 0.0f));            // query t0
  mask_key(scores, t0 + 2 - j0, keys, wasm_f32x4_make(-INFINITY, -INFINITY, 0.0f, 0.0f));       // t0, t0 + 1
  mask_key(scores, t0 + 3 - j0, keys, wasm_f32x4_make(-INFINITY, -INFINITY, -INFINITY, 0.0f));  // t0 .. t0 + 2
}

// Adds the additive mask `bias` to the scores of the tile of queries t0 .. t0 + 3 against the
// block's first `keys` keys, from key j0 (key by key, query in the lane): query t's row of
// keys is the floats from bias + min(t, rows - 1)·stride bytes (t counts from the pair's
// first query, so that tiles split between threads find their rows; rows past the last,
// the lanes of a last tile's padding, read the last row and never beyond it). Stride 0: one
// row for every query (a key padding mask), one splat per key. Otherwise four keys at a
// time, a 4×4 transpose of the four rows' floats (vbR: row R, keys j .. j + 3; vkJ: key J,
// rows 0..3), then one key at a time.
static inline void add_bias_4x8(float* scores, const float* bias, uint32_t stride, uint32_t rows, uint32_t t0, uint32_t j0,
                                uint32_t keys) {
  if (stride == 0) {
    const float* bp = bias + j0;
    for (uint32_t j = 0; j < keys; j++) {
      wasm_v128_store(scores + 4 * j, wasm_f32x4_add(wasm_v128_load(scores + 4 * j), wasm_v128_load32_splat(bp + j)));
    }
    return;
  }
  const uint32_t last = rows - 1;
  const float* b0 = (const float*) ((uintptr_t) bias + (t0 < last ? t0 : last) * stride) + j0;
  const float* b1 = (const float*) ((uintptr_t) bias + (t0 + 1 < last ? t0 + 1 : last) * stride) + j0;
  const float* b2 = (const float*) ((uintptr_t) bias + (t0 + 2 < last ? t0 + 2 : last) * stride) + j0;
  const float* b3 = (const float*) ((uintptr_t) bias + (t0 + 3 < last ? t0 + 3 : last) * stride) + j0;
  uint32_t j = 0;
  for (; j + 4 <= keys; j += 4) {
    const v128_t vb0 = wasm_v128_load(b0 + j);
    const v128_t vb1 = wasm_v128_load(b1 + j);
    const v128_t vb2 = wasm_v128_load(b2 + j);
    const v128_t vb3 = wasm_v128_load(b3 + j);
    const v128_t v01x01 = wasm_i32x4_shuffle(vb0, vb1, 0, 4, 1, 5);  // rows 0, 1 of keys j, j + 1
    const v128_t v01x23 = wasm_i32x4_shuffle(vb0, vb1, 2, 6, 3, 7);
    const v128_t v23x01 = wasm_i32x4_shuffle(vb2, vb3, 0, 4, 1, 5);
    const v128_t v23x23 = wasm_i32x4_shuffle(vb2, vb3, 2, 6, 3, 7);
    float* sj = scores + 4 * j;
    const v128_t vk0 = wasm_i32x4_shuffle(v01x01, v23x01, 0, 1, 4, 5);
    const v128_t vk1 = wasm_i32x4_shuffle(v01x01, v23x01, 2, 3, 6, 7);
    const v128_t vk2 = wasm_i32x4_shuffle(v01x23, v23x23, 0, 1, 4, 5);
    const v128_t vk3 = wasm_i32x4_shuffle(v01x23, v23x23, 2, 3, 6, 7);
    wasm_v128_store(sj, wasm_f32x4_add(wasm_v128_load(sj), vk0));
    wasm_v128_store(sj + 4, wasm_f32x4_add(wasm_v128_load(sj + 4), vk1));
    wasm_v128_store(sj + 8, wasm_f32x4_add(wasm_v128_load(sj + 8), vk2));
    wasm_v128_store(sj + 12, wasm_f32x4_add(wasm_v128_load(sj + 12), vk3));
  }
  for (; j < keys; j++) {
    const v128_t vk = wasm_f32x4_make(b0[j], b1[j], b2[j], b3[j]);
    wasm_v128_store(scores + 4 * j, wasm_f32x4_add(wasm_v128_load(scores + 4 * j), vk));
  }
}

#endif  // TFJS_ATTENTION_SCORES_4X8_WASMSIMD_H_
