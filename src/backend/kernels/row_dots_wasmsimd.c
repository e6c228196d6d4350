// row_dots: the dot product of each row of two matrices, the backward's
// delta = rowsum(dOut ∘ Out) (FlashAttention-2's D), which every query's dS needs.
#include <wasm_simd128.h>

#include "kernels.h"

// dst[r] = Σ_c a[r][c]·b[r][c] for `rows` rows of `cols` floats, a's rows `a_stride` bytes
// apart, b's `b_stride`. In float32: four lanes summed over the columns c ≡ lane (mod 4) by
// fours, then (lane 0 + lane 1) + (lane 2 + lane 3), then the columns past the last four.
void row_dots(float* dst, const float* a, uint32_t a_stride, const float* b, uint32_t b_stride, uint32_t rows,
              uint32_t cols) {
  for (uint32_t r = 0; r < rows; r++) {
    const float* x = (const float*) ((uintptr_t) a + r * a_stride);
    const float* y = (const float*) ((uintptr_t) b + r * b_stride);
    v128_t lanes = wasm_f32x4_splat(0.0f);
    uint32_t c = 0;
    for (; c + 4 <= cols; c += 4) lanes = wasm_f32x4_add(lanes, wasm_f32x4_mul(wasm_v128_load(x + c), wasm_v128_load(y + c)));
    float sum = (wasm_f32x4_extract_lane(lanes, 0) + wasm_f32x4_extract_lane(lanes, 1)) +
                (wasm_f32x4_extract_lane(lanes, 2) + wasm_f32x4_extract_lane(lanes, 3));
    for (; c < cols; c++) sum += x[c] * y[c];
    dst[r] = sum;
  }
}
