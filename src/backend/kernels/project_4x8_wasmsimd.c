// project_4x8: a dense layer's product x·w + b, 4 rows × 8 columns of the output at a time.
#include <stddef.h>
#include <wasm_simd128.h>

#include "kernels.h"

// out = x·w (+ bias) for x by tiles of four rows, `x_tile_stride` bytes apart, in which the
// four rows' input d lie side by side, `x_step` bytes after their input d - 1: x packed by
// fours (pack_rows, [tiles][d_in][4]: x_step 16, x_tile_stride 16·d_in), or the transpose
// of a row-major matrix read in place (its rows' bytes as x_step, 16 as x_tile_stride); w
// [d_in][d_out] with rows `w_stride` bytes apart; a null `bias` (d_out floats) is none.
// Writes tiles·4 rows of d_out floats, `out_stride` bytes apart. d_out is a multiple of 8:
// per tile of four rows, eight output columns in eight f32x4 registers, vaccRxC holding
// row R's columns C.
void project_4x8(const float* x, uint32_t x_tile_stride, uint32_t x_step, const float* w, uint32_t w_stride,
                 const float* bias, float* out, uint32_t out_stride, uint32_t tiles, uint32_t d_in, uint32_t d_out) {
  if (tiles == 0 || d_out == 0) return;
  for (uint32_t i = 0; i < tiles; i++) {
    float* o0 = (float*) ((uintptr_t) out + 4 * i * out_stride);
    float* o1 = (float*) ((uintptr_t) o0 + out_stride);
    float* o2 = (float*) ((uintptr_t) o1 + out_stride);
    float* o3 = (float*) ((uintptr_t) o2 + out_stride);
    for (uint32_t c = 0; c < d_out; c += 8) {
      v128_t vb0123 = wasm_f32x4_const_splat(0.0f);
      v128_t vb4567 = wasm_f32x4_const_splat(0.0f);
      if (bias != NULL) {
        vb0123 = wasm_v128_load(bias + c);
        vb4567 = wasm_v128_load(bias + c + 4);
      }
      v128_t vacc0x0123 = vb0123;
      v128_t vacc0x4567 = vb4567;
      v128_t vacc1x0123 = vb0123;
      v128_t vacc1x4567 = vb4567;
      v128_t vacc2x0123 = vb0123;
      v128_t vacc2x4567 = vb4567;
      v128_t vacc3x0123 = vb0123;
      v128_t vacc3x4567 = vb4567;
      const float* xp = (const float*) ((uintptr_t) x + i * x_tile_stride);
      const float* wp = w + c;
      for (uint32_t d = 0; d < d_in; d++) {
        const v128_t vw0123 = wasm_v128_load(wp);
        const v128_t vw4567 = wasm_v128_load(wp + 4);
        wp = (const float*) ((uintptr_t) wp + w_stride);
        const v128_t vx0 = wasm_v128_load32_splat(xp);
        vacc0x0123 = wasm_f32x4_add(vacc0x0123, wasm_f32x4_mul(vx0, vw0123));
        vacc0x4567 = wasm_f32x4_add(vacc0x4567, wasm_f32x4_mul(vx0, vw4567));
        const v128_t vx1 = wasm_v128_load32_splat(xp + 1);
        vacc1x0123 = wasm_f32x4_add(vacc1x0123, wasm_f32x4_mul(vx1, vw0123));
        vacc1x4567 = wasm_f32x4_add(vacc1x4567, wasm_f32x4_mul(vx1, vw4567));
        const v128_t vx2 = wasm_v128_load32_splat(xp + 2);
        vacc2x0123 = wasm_f32x4_add(vacc2x0123, wasm_f32x4_mul(vx2, vw0123));
        vacc2x4567 = wasm_f32x4_add(vacc2x4567, wasm_f32x4_mul(vx2, vw4567));
        const v128_t vx3 = wasm_v128_load32_splat(xp + 3);
        vacc3x0123 = wasm_f32x4_add(vacc3x0123, wasm_f32x4_mul(vx3, vw0123));
        vacc3x4567 = wasm_f32x4_add(vacc3x4567, wasm_f32x4_mul(vx3, vw4567));
        xp = (const float*) ((uintptr_t) xp + x_step);
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
