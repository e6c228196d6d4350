// attend_4x8: attention of one (batch, head) pair, softmax(scale·Q·Kᵀ)·V, by tiles of 4
// queries against panels of 8 keys, with FlashAttention's online softmax over blocks of keys.
#include <stddef.h>
#include <wasm_simd128.h>

#include "exp_wasmsimd.h"
#include "kernels.h"
#include "scores_4x8_wasmsimd.h"

// Arguments (byte addresses in the memory, strides in bytes, and sizes):
// - q: the queries packed by fours (pack_rows), [tiles][dk][4] (tiles = ceil(T / 4));
// - k: the keys packed by eights, [ceil(s / 8)][dk][8];
// - v: the values, s rows of dvp floats `v_stride` bytes apart (dvp: a multiple of 8);
// - out: the output, tiles·4 rows of dvp floats `out_stride` bytes apart;
// - scratch: one tile's scores, then weights, for `block` keys, [block][4] (query in the
//   lane), and four floats more;
// - state: per tile, the running max and sum of its four queries, tiles × 8 floats.
// The keys are taken `block` at a time (a multiple of 8), so that their part of K and V stays
// in cache while every tile of four queries goes through it. Per block and tile:
// 1. scores[j] = Σ_d Q[d][0..3] · K[j][d], a panel of eight keys in eight f32x4 registers;
// 2. the online softmax, lane-wise: m' = max(m, max_j scores[j]), α = exp(scale·(m - m')),
//    e[j] = exp(scale·(scores[j] - m')), sum' = α·sum + Σ_j e[j];
// 3. out[r][c..c+7] = α[r]·out[r][c..c+7] + Σ_j e[j][r] · V[j][c..c+7], eight columns at a time.
// At the end every row is divided by its sum. With `causal` (1), query t attends only keys
// j <= t, where the first tile's first query is query `q0` (tiles may be split between
// threads): blocks wholly after a tile are skipped, and the keys t0 + 1 .. t0 + 3 of a tile
// t0 .. t0 + 3 are masked, lane by lane, with -inf scores. A non-null `key_bias` (s floats,
// the same for every query: a key padding mask) and then a non-null `bias` are added to the
// scores after (masks: 0 or a large negative number): query t's (counted from the pair's
// first query, as causal counts) row of s floats at bias + min(t, bias_rows - 1)·bias_stride
// bytes; stride 0 gives every query the same row.
void attend_4x8(const float* q, const float* k, const float* v, uint32_t v_stride, float* out, uint32_t out_stride,
                float* scratch, float* state, uint32_t tiles, uint32_t s, uint32_t block, uint32_t dk, uint32_t dvp,
                float scale, uint32_t causal, int32_t q0, const float* key_bias, const float* bias, uint32_t bias_stride,
                uint32_t bias_rows) {
  if (tiles == 0 || block == 0 || s == 0 || dk == 0 || dvp == 0) return;
  const v128_t vzero = wasm_f32x4_const_splat(0.0f);
  const v128_t vminus_inf = wasm_f32x4_const_splat(-INFINITY);
  const v128_t vscale = wasm_f32x4_splat(scale);

  // Before the blocks: max -∞, sum 0 and output 0 for every tile.
  for (uint32_t i = 0; i < tiles; i++) {
    wasm_v128_store(state + 8 * i, vminus_inf);
    wasm_v128_store(state + 8 * i + 4, vzero);
    float* o0 = (float*) ((uintptr_t) out + 4 * i * out_stride);
    float* o1 = (float*) ((uintptr_t) o0 + out_stride);
    float* o2 = (float*) ((uintptr_t) o1 + out_stride);
    float* o3 = (float*) ((uintptr_t) o2 + out_stride);
    for (uint32_t c = 0; c < dvp; c += 8) {
      wasm_v128_store(o0 + c, vzero);
      wasm_v128_store(o0 + c + 4, vzero);
      wasm_v128_store(o1 + c, vzero);
      wasm_v128_store(o1 + c + 4, vzero);
      wasm_v128_store(o2 + c, vzero);
      wasm_v128_store(o2 + c + 4, vzero);
      wasm_v128_store(o3 + c, vzero);
      wasm_v128_store(o3 + c + 4, vzero);
    }
  }

  for (uint32_t j0 = 0; j0 < s; j0 += block) {
    const uint32_t block_keys = s - j0 < block ? s - j0 : block;
    for (uint32_t i = 0; i < tiles; i++) {
      uint32_t keys = block_keys;
      // The tile's queries t0 .. t0 + 3, t0 = q0 + 4i; causal: the block's keys up to t0 + 3.
      const uint32_t t0 = (uint32_t) q0 + 4 * i;
      if (causal != 0) {
        const int32_t visible = (int32_t) (t0 + 4 - j0);
        if (visible <= 0) continue;  // the block starts after the tile's last query
        if ((uint32_t) visible < keys) keys = (uint32_t) visible;
      }

      // 1. The scores of the tile against its keys, a panel of eight at a time, key by key
      // into the scratch (query in the lane).
      const uint32_t panels = (keys + 7) >> 3;
      dot_4x8(q + 4 * dk * i, k + j0 * dk, dk, panels, scratch);

      // Causal: keys t0 + 1, t0 + 2 and t0 + 3, where they fall in this block, are masked
      // in the lanes of the queries before them.
      if (causal != 0) {
        mask_causal_4x8(scratch, t0, j0, keys);
      }
      // The masks: every query's score of key j0 + j gets key_bias[j0 + j], then query t's its bias.
      if (key_bias != NULL) {
        add_bias_4x8(scratch, key_bias, 0, 1, t0, j0, keys);
      }
      if (bias != NULL) {
        add_bias_4x8(scratch, bias, bias_stride, bias_rows, t0, j0, keys);
      }

      // 2. The online softmax of the block, four queries in the four lanes.
      float* st = state + 8 * i;
      const v128_t vm_old = wasm_v128_load(st);
      v128_t vm = vm_old;                                                      // m' = max(m, this block's max)
      for (uint32_t j = 0; j < keys; j++) vm = wasm_f32x4_pmax(vm, wasm_v128_load(scratch + 4 * j));
      // m' where it is finite or +∞, 0 where it is -∞ (every score so far -∞): then
      // exp(-∞ - m') is 0, not NaN. A NaN score is never the max (pmax keeps m) but makes its
      // own weight and sum NaN.
      const v128_t vm_safe = wasm_v128_bitselect(vzero, vm, wasm_f32x4_eq(vm, vminus_inf));
      const v128_t valpha = exp_nonpositive_f32x4(wasm_f32x4_mul(wasm_f32x4_sub(vm_old, vm_safe), vscale));
      v128_t vsum = wasm_f32x4_mul(wasm_v128_load(st + 4), valpha);
      for (uint32_t j = 0; j < keys; j++) {
        const v128_t ve = exp_nonpositive_f32x4(wasm_f32x4_mul(wasm_f32x4_sub(wasm_v128_load(scratch + 4 * j), vm_safe), vscale));
        wasm_v128_store(scratch + 4 * j, ve);
        vsum = wasm_f32x4_add(vsum, ve);
      }
      wasm_v128_store(st, vm);
      wasm_v128_store(st + 4, vsum);

      // 3. The tile's output, eight columns at a time: α[r]·out[r] + Σ_j e[j][r] · V[j].
      const v128_t valpha0 = wasm_i32x4_shuffle(valpha, valpha, 0, 0, 0, 0);
      const v128_t valpha1 = wasm_i32x4_shuffle(valpha, valpha, 1, 1, 1, 1);
      const v128_t valpha2 = wasm_i32x4_shuffle(valpha, valpha, 2, 2, 2, 2);
      const v128_t valpha3 = wasm_i32x4_shuffle(valpha, valpha, 3, 3, 3, 3);
      float* o0 = (float*) ((uintptr_t) out + 4 * i * out_stride);
      float* o1 = (float*) ((uintptr_t) o0 + out_stride);
      float* o2 = (float*) ((uintptr_t) o1 + out_stride);
      float* o3 = (float*) ((uintptr_t) o2 + out_stride);
      const float* vblock = (const float*) ((uintptr_t) v + j0 * v_stride);
      for (uint32_t c = 0; c < dvp; c += 8) {
        v128_t vacc0x0123 = wasm_f32x4_mul(wasm_v128_load(o0 + c), valpha0);
        v128_t vacc0x4567 = wasm_f32x4_mul(wasm_v128_load(o0 + c + 4), valpha0);
        v128_t vacc1x0123 = wasm_f32x4_mul(wasm_v128_load(o1 + c), valpha1);
        v128_t vacc1x4567 = wasm_f32x4_mul(wasm_v128_load(o1 + c + 4), valpha1);
        v128_t vacc2x0123 = wasm_f32x4_mul(wasm_v128_load(o2 + c), valpha2);
        v128_t vacc2x4567 = wasm_f32x4_mul(wasm_v128_load(o2 + c + 4), valpha2);
        v128_t vacc3x0123 = wasm_f32x4_mul(wasm_v128_load(o3 + c), valpha3);
        v128_t vacc3x4567 = wasm_f32x4_mul(wasm_v128_load(o3 + c + 4), valpha3);
        const float* vp = vblock + c;
        const float* ep = scratch;
        for (uint32_t j = 0; j < keys; j++) {
          const v128_t vv0123 = wasm_v128_load(vp);
          const v128_t vv4567 = wasm_v128_load(vp + 4);
          vp = (const float*) ((uintptr_t) vp + v_stride);
          const v128_t ve0 = wasm_v128_load32_splat(ep);
          vacc0x0123 = wasm_f32x4_add(vacc0x0123, wasm_f32x4_mul(ve0, vv0123));
          vacc0x4567 = wasm_f32x4_add(vacc0x4567, wasm_f32x4_mul(ve0, vv4567));
          const v128_t ve1 = wasm_v128_load32_splat(ep + 1);
          vacc1x0123 = wasm_f32x4_add(vacc1x0123, wasm_f32x4_mul(ve1, vv0123));
          vacc1x4567 = wasm_f32x4_add(vacc1x4567, wasm_f32x4_mul(ve1, vv4567));
          const v128_t ve2 = wasm_v128_load32_splat(ep + 2);
          vacc2x0123 = wasm_f32x4_add(vacc2x0123, wasm_f32x4_mul(ve2, vv0123));
          vacc2x4567 = wasm_f32x4_add(vacc2x4567, wasm_f32x4_mul(ve2, vv4567));
          const v128_t ve3 = wasm_v128_load32_splat(ep + 3);
          vacc3x0123 = wasm_f32x4_add(vacc3x0123, wasm_f32x4_mul(ve3, vv0123));
          vacc3x4567 = wasm_f32x4_add(vacc3x4567, wasm_f32x4_mul(ve3, vv4567));
          ep += 4;
        }
        wasm_v128_store(o0 + c, vacc0x0123);
        wasm_v128_store(o0 + c + 4, vacc0x4567);
        wasm_v128_store(o1 + c, vacc1x0123);
        wasm_v128_store(o1 + c + 4, vacc1x4567);
        wasm_v128_store(o2 + c, vacc2x0123);
        wasm_v128_store(o2 + c + 4, vacc2x4567);
        wasm_v128_store(o3 + c, vacc3x0123);
        wasm_v128_store(o3 + c + 4, vacc3x4567);
      }
    }
  }

  // After the blocks: every row divided by its sum.
  for (uint32_t i = 0; i < tiles; i++) {
    const v128_t vrecip = wasm_f32x4_div(wasm_f32x4_const_splat(1.0f), wasm_v128_load(state + 8 * i + 4));
    const v128_t vrecip0 = wasm_i32x4_shuffle(vrecip, vrecip, 0, 0, 0, 0);
    const v128_t vrecip1 = wasm_i32x4_shuffle(vrecip, vrecip, 1, 1, 1, 1);
    const v128_t vrecip2 = wasm_i32x4_shuffle(vrecip, vrecip, 2, 2, 2, 2);
    const v128_t vrecip3 = wasm_i32x4_shuffle(vrecip, vrecip, 3, 3, 3, 3);
    float* o0 = (float*) ((uintptr_t) out + 4 * i * out_stride);
    float* o1 = (float*) ((uintptr_t) o0 + out_stride);
    float* o2 = (float*) ((uintptr_t) o1 + out_stride);
    float* o3 = (float*) ((uintptr_t) o2 + out_stride);
    for (uint32_t c = 0; c < dvp; c += 8) {
      wasm_v128_store(o0 + c, wasm_f32x4_mul(wasm_v128_load(o0 + c), vrecip0));
      wasm_v128_store(o0 + c + 4, wasm_f32x4_mul(wasm_v128_load(o0 + c + 4), vrecip0));
      wasm_v128_store(o1 + c, wasm_f32x4_mul(wasm_v128_load(o1 + c), vrecip1));
      wasm_v128_store(o1 + c + 4, wasm_f32x4_mul(wasm_v128_load(o1 + c + 4), vrecip1));
      wasm_v128_store(o2 + c, wasm_f32x4_mul(wasm_v128_load(o2 + c), vrecip2));
      wasm_v128_store(o2 + c + 4, wasm_f32x4_mul(wasm_v128_load(o2 + c + 4), vrecip2));
      wasm_v128_store(o3 + c, wasm_f32x4_mul(wasm_v128_load(o3 + c), vrecip3));
      wasm_v128_store(o3 + c + 4, wasm_f32x4_mul(wasm_v128_load(o3 + c + 4), vrecip3));
    }
  }
}
