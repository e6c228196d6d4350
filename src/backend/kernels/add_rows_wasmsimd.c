// add_rows: the sum of a matrix's rows and several others', or a copy of one's, between any row
// strides: the parts of the fused backward's dK and dV added (each part a share of the query
// tiles that either thread may take), and the gradients put into the layer's G = [dQ | dK | dV].
#include <wasm_simd128.h>

#include "kernels.h"

// dst = ((a + b_0) + b_1) + … + b_{b_parts - 1}, left to right, where b_j starts
// j·b_part_stride bytes after b; dst = a where b is null or b_parts is 0. `rows` rows of `cols`
// floats: the rows of a and of each b_j start `src_stride` bytes apart, those of dst
// `dst_stride` bytes apart. Each sum is one float32 addition, rounded as IEEE 754 rounds it (as
// JavaScript's float32 arrays store a + b), in that order. dst may be a (in place), not
// otherwise overlap a or any b_j.
void add_rows(float* dst, uint32_t dst_stride, const float* a, const float* b, uint32_t b_parts, uint32_t b_part_stride,
              uint32_t src_stride, uint32_t rows, uint32_t cols) {
  const uint32_t parts = b == 0 ? 0 : b_parts;
  for (uint32_t r = 0; r < rows; r++) {
    float* d = (float*) ((uintptr_t) dst + r * dst_stride);
    const float* x = (const float*) ((uintptr_t) a + r * src_stride);
    const uintptr_t y = (uintptr_t) b + r * src_stride;  // b_0's row r; b_j's is b_part_stride·j bytes on
    uint32_t c = 0;
    for (; c + 4 <= cols; c += 4) {
      v128_t vsum = wasm_v128_load(x + c);
      for (uint32_t j = 0; j < parts; j++) vsum = wasm_f32x4_add(vsum, wasm_v128_load((const float*) (y + j * b_part_stride) + c));
      wasm_v128_store(d + c, vsum);
    }
    for (; c < cols; c++) {
      float sum = x[c];
      for (uint32_t j = 0; j < parts; j++) sum += ((const float*) (y + j * b_part_stride))[c];
      d[c] = sum;
    }
  }
}
