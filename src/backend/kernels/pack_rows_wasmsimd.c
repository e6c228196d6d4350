// pack_rows: the layout change that puts rows side by side for the 4×8 tiles of
// attend_4x8 (queries by 4, keys by 8) and project_4x8 (inputs by 4), 4 rows × 4 columns
// at a time, transposed in registers.
#include <wasm_simd128.h>

#include "kernels.h"

// Rows r .. r + 3 (their starts s0 .. s3), columns c .. c + 3, into dst's columns c .. c + 3,
// each `group` floats apart: the column's four values side by side.
static inline void pack_4x4(const float* s0, const float* s1, const float* s2, const float* s3, uint32_t c, float* d,
                            uint32_t group) {
  const v128_t row0 = wasm_v128_load(s0 + c);  // a0 a1 a2 a3
  const v128_t row1 = wasm_v128_load(s1 + c);  // b0 b1 b2 b3
  const v128_t row2 = wasm_v128_load(s2 + c);
  const v128_t row3 = wasm_v128_load(s3 + c);
  const v128_t ab01 = wasm_i32x4_shuffle(row0, row1, 0, 4, 1, 5);  // a0 b0 a1 b1
  const v128_t ab23 = wasm_i32x4_shuffle(row0, row1, 2, 6, 3, 7);  // a2 b2 a3 b3
  const v128_t cd01 = wasm_i32x4_shuffle(row2, row3, 0, 4, 1, 5);
  const v128_t cd23 = wasm_i32x4_shuffle(row2, row3, 2, 6, 3, 7);
  wasm_v128_store(d + c * group, wasm_i32x4_shuffle(ab01, cd01, 0, 1, 4, 5));             // a0 b0 c0 d0
  wasm_v128_store(d + (c + 1) * group, wasm_i32x4_shuffle(ab01, cd01, 2, 3, 6, 7));       // a1 b1 c1 d1
  wasm_v128_store(d + (c + 2) * group, wasm_i32x4_shuffle(ab23, cd23, 0, 1, 4, 5));
  wasm_v128_store(d + (c + 3) * group, wasm_i32x4_shuffle(ab23, cd23, 2, 3, 6, 7));
}

static inline const float* row_at(const float* src, uint32_t src_stride, uint32_t r) {
  return (const float*) ((uintptr_t) src + r * src_stride);
}

// Packs a matrix [rows, cols], whose rows start `src_stride` bytes apart at src, by groups
// of `group` rows (a power of two): row r, column c goes to float
// (r - r % group)·cols + c·group + r % group of dst, so that the group's values of one
// column are `group` consecutive floats. The rows that fill up the last group are zeros:
// never read as results, but finite. Group 1 is a copy of the rows, side by side.
void pack_rows(const float* src, uint32_t src_stride, float* dst, uint32_t rows, uint32_t cols, uint32_t group) {
  if (rows == 0 || cols == 0) return;
  const uint32_t lane_mask = group - 1;
  uint32_t r = 0;
  if (group == 1) {
    for (; r < rows; r++) {
      const float* s = row_at(src, src_stride, r);
      float* d = dst + r * cols;
      uint32_t c = 0;
      for (; c + 4 <= cols; c += 4) wasm_v128_store(d + c, wasm_v128_load(s + c));
      for (; c < cols; c++) d[c] = s[c];
    }
    return;
  }
  if ((group & 3) == 0) {  // whole quads of rows, each a quarter (or half, ...) of a group
    for (; r + 4 <= rows; r += 4) {
      const uint32_t lane = r & lane_mask;
      const float* s0 = row_at(src, src_stride, r);
      const float* s1 = row_at(src, src_stride, r + 1);
      const float* s2 = row_at(src, src_stride, r + 2);
      const float* s3 = row_at(src, src_stride, r + 3);
      float* d = dst + (r - lane) * cols + lane;
      uint32_t c = 0;
      for (; c + 4 <= cols; c += 4) pack_4x4(s0, s1, s2, s3, c, d, group);
      for (; c < cols; c++) {
        float* column = d + c * group;
        column[0] = s0[c];
        column[1] = s1[c];
        column[2] = s2[c];
        column[3] = s3[c];
      }
    }
  }
  for (; r < rows; r++) {  // the rows left, one by one
    const uint32_t lane = r & lane_mask;
    const float* s = row_at(src, src_stride, r);
    float* d = dst + (r - lane) * cols + lane;
    for (uint32_t c = 0; c < cols; c++) {
      *d = s[c];
      d += group;
    }
  }
  for (; (r & lane_mask) != 0; r++) {
    const uint32_t lane = r & lane_mask;
    float* d = dst + (r - lane) * cols + lane;
    for (uint32_t c = 0; c < cols; c++) {
      *d = 0.0f;
      d += group;
    }
  }
}
