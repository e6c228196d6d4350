// batch_matmul_4x4: small batched products, 4×4 tiles of C, for the blocked path's
// products on wasm (whose own batched matMul runs a scalar loop).
#include <wasm_simd128.h>

#include "kernels.h"

// For each batch n < `batches`, C[n] = scale·A[n]·B[n] with A [m, k], B [k, n], C [m, n]
// row-major and each batch's matrices one after the other; m and n are multiples of 4.
// Each step of the inner loop loads four floats of a row of B once and multiply-adds them
// into a 4×4 tile of C, vaccR holding row R's four columns.
void batch_matmul_4x4(const float* a, const float* b, float* c, uint32_t batches, uint32_t m, uint32_t k, uint32_t n,
                      float scale) {
  if (batches == 0 || m == 0 || n == 0) return;
  const v128_t vscale = wasm_f32x4_splat(scale);
  for (uint32_t batch = 0; batch < batches; batch++) {
    const float* ab = a + batch * m * k;
    const float* bb = b + batch * k * n;
    float* cb = c + batch * m * n;
    for (uint32_t i = 0; i < m; i += 4) {
      for (uint32_t j = 0; j < n; j += 4) {
        v128_t vacc0 = wasm_f32x4_const_splat(0.0f);
        v128_t vacc1 = wasm_f32x4_const_splat(0.0f);
        v128_t vacc2 = wasm_f32x4_const_splat(0.0f);
        v128_t vacc3 = wasm_f32x4_const_splat(0.0f);
        const float* a0 = ab + i * k;
        const float* a1 = a0 + k;
        const float* a2 = a1 + k;
        const float* a3 = a2 + k;
        const float* bp = bb + j;
        for (uint32_t d = 0; d < k; d++) {
          const v128_t vb = wasm_v128_load(bp);
          bp += n;
          vacc0 = wasm_f32x4_add(vacc0, wasm_f32x4_mul(wasm_v128_load32_splat(a0 + d), vb));
          vacc1 = wasm_f32x4_add(vacc1, wasm_f32x4_mul(wasm_v128_load32_splat(a1 + d), vb));
          vacc2 = wasm_f32x4_add(vacc2, wasm_f32x4_mul(wasm_v128_load32_splat(a2 + d), vb));
          vacc3 = wasm_f32x4_add(vacc3, wasm_f32x4_mul(wasm_v128_load32_splat(a3 + d), vb));
        }
        float* c0 = cb + i * n + j;
        float* c1 = c0 + n;
        float* c2 = c1 + n;
        float* c3 = c2 + n;
        wasm_v128_store(c0, wasm_f32x4_mul(vacc0, vscale));
        wasm_v128_store(c1, wasm_f32x4_mul(vacc1, vscale));
        wasm_v128_store(c2, wasm_f32x4_mul(vacc2, vscale));
        wasm_v128_store(c3, wasm_f32x4_mul(vacc3, vscale));
      }
    }
  }
}
