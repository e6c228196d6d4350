// add_rows: the sum of two matrices' rows, or a copy of one's, between any row strides: the
// two parts of the fused backward's dK and dV added (each thread's share of the query tiles
// gives one part), and the gradients put into the layer's G = [dQ | dK | dV].
#include <wasm_simd128.h>

#include "kernels.h"

// dst = a + b, or dst = a where b is null, for `rows` rows of `cols` floats: the rows of a and
// b start `src_stride` bytes apart, those of dst `dst_stride` bytes apart. Each sum is one
// float32 addition, rounded as IEEE 754 rounds it (as JavaScript's float32 arrays store a + b).
// dst may be a (in place), not otherwise overlap a or b.
void add_rows(float* dst, uint32_t dst_stride, const float* a, const float* b, uint32_t src_stride, uint32_t rows, uint32_t cols) {
  for (uint32_t r = 0; r < rows; r++) {
    float* d = (float*) ((uintptr_t) dst + r * dst_stride);
    const float* x = (const float*) ((uintptr_t) a + r * src_stride);
    uint32_t c = 0;
    if (b == 0) {
      for (; c + 4 <= cols; c += 4) wasm_v128_store(d + c, wasm_v128_load(x + c));
      for (; c < cols; c++) d[c] = x[c];
      continue;
    }
    const float* y = (const float*) ((uintptr_t) b + r * src_stride);
    for (; c + 4 <= cols; c += 4) wasm_v128_store(d + c, wasm_f32x4_add(wasm_v128_load(x + c), wasm_v128_load(y + c)));
    for (; c < cols; c++) d[c] = x[c] + y[c];
  }
}
