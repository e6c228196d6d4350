// pack_rows: the layout change that puts rows side by side for the 4×8 tiles of
// attend_4x8 (queries by 4, keys by 8) and project_4x8 (inputs by 4).
#include "kernels.h"

// Packs a matrix [rows, cols], whose rows start `src_stride` bytes apart at src, by groups
// of `group` rows (a power of two): row r, column c goes to float
// (r - r % group)·cols + c·group + r % group of dst, so that the group's values of one
// column are `group` consecutive floats. The rows that fill up the last group are zeros:
// never read as results, but finite.
void pack_rows(const float* src, uint32_t src_stride, float* dst, uint32_t rows, uint32_t cols, uint32_t group) {
  if (rows == 0 || cols == 0) return;
  const uint32_t lane_mask = group - 1;
  uint32_t r = 0;
  for (; r < rows; r++) {
    const uint32_t lane = r & lane_mask;
    const float* s = (const float*) ((uintptr_t) src + r * src_stride);
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
