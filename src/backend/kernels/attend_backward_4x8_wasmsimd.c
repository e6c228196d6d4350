// attend_backward_4x8: the gradients of attention softmax(scale·Q·Kᵀ)·V of one (batch, head)
// pair, FlashAttention-2's backward by tiles of 4 queries against panels of 8 keys: the
// weights of each block are recomputed from the row log-sum-exp that the forward saved, and
// dQ, dK and dV are accumulated block by block, so that no [T, S] matrix ever exists.
#include <stddef.h>
#include <wasm_simd128.h>

#include "exp_wasmsimd.h"
#include "kernels.h"
#include "madd_wasmsimd.h"
#include "scores_4x8_wasmsimd.h"

// acc[j][c] += Σ_r w[4j + r]·x_r[c] for the `keys` rows j of acc (`width` floats, a multiple
// of 8, of rows `acc_row` floats apart) and the four rows x_0..x_3 (`width` floats apart): a
// rank-4 update, eight columns at a time, with the rows' columns in registers (vxRx0123: row R,
// columns 0-3).
static inline void update_rows_4x8(float* acc, uint32_t acc_row, uint32_t width, const float* w, uint32_t keys, const float* x) {
  for (uint32_t c = 0; c < width; c += 8) {
    const v128_t vx0x0123 = wasm_v128_load(x + c);
    const v128_t vx0x4567 = wasm_v128_load(x + c + 4);
    const v128_t vx1x0123 = wasm_v128_load(x + width + c);
    const v128_t vx1x4567 = wasm_v128_load(x + width + c + 4);
    const v128_t vx2x0123 = wasm_v128_load(x + 2 * width + c);
    const v128_t vx2x4567 = wasm_v128_load(x + 2 * width + c + 4);
    const v128_t vx3x0123 = wasm_v128_load(x + 3 * width + c);
    const v128_t vx3x4567 = wasm_v128_load(x + 3 * width + c + 4);
    float* ap = acc + c;
    const float* wp = w;
    for (uint32_t j = 0; j < keys; j++) {
      const v128_t vw0 = wasm_v128_load32_splat(wp);
      const v128_t vw1 = wasm_v128_load32_splat(wp + 1);
      const v128_t vw2 = wasm_v128_load32_splat(wp + 2);
      const v128_t vw3 = wasm_v128_load32_splat(wp + 3);
      wp += 4;
      v128_t vacc0123 = wasm_v128_load(ap);
      v128_t vacc4567 = wasm_v128_load(ap + 4);
      vacc0123 = madd_f32x4(vw0, vx0x0123, vacc0123);
      vacc4567 = madd_f32x4(vw0, vx0x4567, vacc4567);
      vacc0123 = madd_f32x4(vw1, vx1x0123, vacc0123);
      vacc4567 = madd_f32x4(vw1, vx1x4567, vacc4567);
      vacc0123 = madd_f32x4(vw2, vx2x0123, vacc0123);
      vacc4567 = madd_f32x4(vw2, vx2x4567, vacc4567);
      vacc0123 = madd_f32x4(vw3, vx3x0123, vacc0123);
      vacc4567 = madd_f32x4(vw3, vx3x4567, vacc4567);
      wasm_v128_store(ap, vacc0123);
      wasm_v128_store(ap + 4, vacc4567);
      ap += acc_row;
    }
  }
}

// acc_r[c] += Σ_j w[4j + r]·y[j][c] for the tile's four rows acc_0..acc_3 (`acc_row` floats
// apart) and the `keys` rows y[j] (`width` floats apart; both `width` floats per row, a multiple
// of 8): eight columns of the tile in eight registers (vaccRx0123: row R, columns 0-3) while
// the keys go by.
static inline void accumulate_4x8(float* acc, uint32_t acc_row, uint32_t width, const float* w, uint32_t keys, const float* y) {
  float* a0 = acc;
  float* a1 = a0 + acc_row;
  float* a2 = a1 + acc_row;
  float* a3 = a2 + acc_row;
  for (uint32_t c = 0; c < width; c += 8) {
    v128_t vacc0x0123 = wasm_v128_load(a0 + c);
    v128_t vacc0x4567 = wasm_v128_load(a0 + c + 4);
    v128_t vacc1x0123 = wasm_v128_load(a1 + c);
    v128_t vacc1x4567 = wasm_v128_load(a1 + c + 4);
    v128_t vacc2x0123 = wasm_v128_load(a2 + c);
    v128_t vacc2x4567 = wasm_v128_load(a2 + c + 4);
    v128_t vacc3x0123 = wasm_v128_load(a3 + c);
    v128_t vacc3x4567 = wasm_v128_load(a3 + c + 4);
    const float* yp = y + c;
    const float* wp = w;
    for (uint32_t j = 0; j < keys; j++) {
      const v128_t vy0123 = wasm_v128_load(yp);
      const v128_t vy4567 = wasm_v128_load(yp + 4);
      yp += width;
      const v128_t vw0 = wasm_v128_load32_splat(wp);
      vacc0x0123 = madd_f32x4(vw0, vy0123, vacc0x0123);
      vacc0x4567 = madd_f32x4(vw0, vy4567, vacc0x4567);
      const v128_t vw1 = wasm_v128_load32_splat(wp + 1);
      vacc1x0123 = madd_f32x4(vw1, vy0123, vacc1x0123);
      vacc1x4567 = madd_f32x4(vw1, vy4567, vacc1x4567);
      const v128_t vw2 = wasm_v128_load32_splat(wp + 2);
      vacc2x0123 = madd_f32x4(vw2, vy0123, vacc2x0123);
      vacc2x4567 = madd_f32x4(vw2, vy4567, vacc2x4567);
      const v128_t vw3 = wasm_v128_load32_splat(wp + 3);
      vacc3x0123 = madd_f32x4(vw3, vy0123, vacc3x0123);
      vacc3x4567 = madd_f32x4(vw3, vy4567, vacc3x4567);
      wp += 4;
    }
    wasm_v128_store(a0 + c, vacc0x0123);
    wasm_v128_store(a0 + c + 4, vacc0x4567);
    wasm_v128_store(a1 + c, vacc1x0123);
    wasm_v128_store(a1 + c + 4, vacc1x4567);
    wasm_v128_store(a2 + c, vacc2x0123);
    wasm_v128_store(a2 + c + 4, vacc2x4567);
    wasm_v128_store(a3 + c, vacc3x0123);
    wasm_v128_store(a3 + c + 4, vacc3x4567);
  }
}

// Arguments (byte addresses in the memory, sizes; dkp and dvp are dk and dv rounded up to 8):
// - q, dout: the queries and the output's gradient packed by fours (pack_rows), [tiles][dk][4]
//   and [tiles][dv][4] (tiles = ceil(t / 4));
// - k, v: the keys and values packed by eights, [ceil(s / 8)][dk][8] and [ceil(s / 8)][dv][8];
// - q_rows, dout_rows: the same as rows, [tiles·4][dkp] and [tiles·4][dvp]; k_rows the keys
//   [s][dkp]; the padding (rows past t, columns past dk or dv) zeros;
// - lse: each query's log-sum-exp of its scaled (masked) scores, as the forward found it,
//   so that its weights are P[t][j] = exp(scale·score[t][j] - lse[t]); tiles·4 floats;
// - delta: each query's Σ_c dout[t][c]·out[t][c] (FlashAttention's D), tiles·4 floats;
// - grad_q [tiles·4][dkp], grad_k [s][dkp], grad_v [s][dvp]: the gradients, overwritten, their
//   rows grad_q_stride, grad_k_stride and grad_v_stride bytes apart (dkp·4 and dvp·4 where they
//   are rows of their own; wider where they are columns of a larger matrix);
// - scratch: one tile's weights and their gradients for `block` keys, 8·block floats.
// Per block of `block` keys (a multiple of 8) and tile of four queries:
// 1. scores[j] = Σ_d Q[d][0..3]·K[j][d], masked as in attend_4x8 (causal, key_bias, bias), and the
//    weights P[j] = exp(scale·scores[j] - lse), lane by lane;
// 2. dP[j] = Σ_c dO[c][0..3]·V[j][c], and dS[j] = scale·P[j]·(dP[j] - delta);
// 3. dV[j] += Σ_r P[j][r]·dO[r], dK[j] += Σ_r dS[j][r]·Q[r], dQ[r] += Σ_j dS[j][r]·K[j].
// The lanes of the rows past t (in the last tile) get P = dS = 0, whatever the padding holds.
// `causal`, `q0` (the first tile's first query, when the tiles are split between threads) and
// `key_bias`, `bias`, `bias_stride` and `bias_rows` (query t's row from the pair's first query) as in
// attend_4x8. grad_k and grad_v are this call's tiles'
// part: threads that split the tiles write their own and add them up after.
void attend_backward_4x8(const float* q, const float* k, const float* v, const float* dout, const float* q_rows,
                         const float* k_rows, const float* dout_rows, const float* lse, const float* delta, float* grad_q,
                         float* grad_k, float* grad_v, uint32_t grad_q_stride, uint32_t grad_k_stride,
                         uint32_t grad_v_stride, float* scratch, uint32_t t, uint32_t s, uint32_t block, uint32_t dk,
                         uint32_t dv, float scale, uint32_t causal, int32_t q0, const float* key_bias, const float* bias,
                         uint32_t bias_stride, uint32_t bias_rows) {
  if (t == 0 || s == 0 || block == 0 || dk == 0 || dv == 0) return;
  const uint32_t tiles = (t + 3) >> 2;
  const uint32_t dkp = (dk + 7) & ~UINT32_C(7);
  const uint32_t dvp = (dv + 7) & ~UINT32_C(7);
  const v128_t vzero = wasm_f32x4_const_splat(0.0f);
  const v128_t vscale = wasm_f32x4_splat(scale);
  const uint32_t gq_row = grad_q_stride >> 2;  // the gradients' rows, in floats
  const uint32_t gk_row = grad_k_stride >> 2;
  const uint32_t gv_row = grad_v_stride >> 2;
  for (uint32_t r = 0; r < tiles * 4; r++) {
    for (uint32_t c = 0; c < dkp; c += 4) wasm_v128_store(grad_q + r * gq_row + c, vzero);
  }
  for (uint32_t j = 0; j < s; j++) {
    for (uint32_t c = 0; c < dkp; c += 4) wasm_v128_store(grad_k + j * gk_row + c, vzero);
    for (uint32_t c = 0; c < dvp; c += 4) wasm_v128_store(grad_v + j * gv_row + c, vzero);
  }
  float* weights = scratch;                 // [block][4]: P, query in the lane
  float* grads = scratch + 4 * block;       // [block][4]: dP, then dS

  for (uint32_t j0 = 0; j0 < s; j0 += block) {
    const uint32_t block_keys = s - j0 < block ? s - j0 : block;
    for (uint32_t i = 0; i < tiles; i++) {
      uint32_t keys = block_keys;
      const uint32_t r0 = 4 * i;                  // the tile's first row here
      const uint32_t t0 = (uint32_t) q0 + r0;     // and its query, for causal
      if (causal != 0) {
        const int32_t visible = (int32_t) (t0 + 4 - j0);
        if (visible <= 0) continue;  // the block starts after the tile's last query
        if ((uint32_t) visible < keys) keys = (uint32_t) visible;
      }
      const uint32_t panels = (keys + 7) >> 3;
      // The lanes of real queries (all but those past t in the last tile).
      const uint32_t live = t - r0;
      const v128_t vlive = wasm_i32x4_gt(wasm_i32x4_splat((int32_t) (live < 4 ? live : 4)), wasm_i32x4_make(0, 1, 2, 3));

      // 1. The scores, masked, then the weights.
      dot_4x8(q + 4 * dk * i, k + j0 * dk, dk, panels, weights);
      if (causal != 0) {
        mask_causal_4x8(weights, t0, j0, keys);
      }
      if (key_bias != NULL) {
        add_bias_4x8(weights, key_bias, 0, 1, t0, j0, keys);
      }
      if (bias != NULL) {
        add_bias_4x8(weights, bias, bias_stride, bias_rows, t0, j0, keys);
      }
      const v128_t vlse = wasm_v128_load(lse + r0);
      for (uint32_t j = 0; j < keys; j++) {
        const v128_t vp = exp_nonpositive_f32x4(wasm_f32x4_sub(wasm_f32x4_mul(wasm_v128_load(weights + 4 * j), vscale), vlse));
        wasm_v128_store(weights + 4 * j, wasm_v128_and(vp, vlive));
      }

      // 2. dP, then dS = scale·P·(dP - delta).
      dot_4x8(dout + 4 * dv * i, v + j0 * dv, dv, panels, grads);
      const v128_t vdelta = wasm_v128_load(delta + r0);
      for (uint32_t j = 0; j < keys; j++) {
        const v128_t vds = wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(weights + 4 * j), wasm_f32x4_sub(wasm_v128_load(grads + 4 * j), vdelta)), vscale);
        wasm_v128_store(grads + 4 * j, wasm_v128_and(vds, vlive));
      }

      // 3. The three gradients.
      update_rows_4x8(grad_v + j0 * gv_row, gv_row, dvp, weights, keys, dout_rows + r0 * dvp);
      update_rows_4x8(grad_k + j0 * gk_row, gk_row, dkp, grads, keys, q_rows + r0 * dkp);
      accumulate_4x8(grad_q + r0 * gq_row, gq_row, dkp, grads, keys, k_rows + j0 * dkp);
    }
  }
}
