// The exported functions of the kernel module: the one place where their signatures are
// written. scripts/build_kernels.ts reads this file to generate their TypeScript types
// (kernels_wasm.generated.ts), and every kernel's .c file includes it, so that a definition
// that strays from its declaration does not compile.
//
// Pointers are byte addresses in the module's memory (tfjs' wasm heap, the worker's shared
// memory, or the matMul's own); `*_stride` arguments are in bytes; sizes are counts.
// Addresses are unsigned: the heap may pass 2 GiB.
#pragma once

#include <stdint.h>

#define KERNEL_EXPORT(name) __attribute__((export_name(#name)))

// Attention of one (batch, head) pair, softmax(scale·Q·Kᵀ + bias)·V, by tiles of 4 queries and
// panels of 8 keys, with an online softmax over blocks of `block` keys (attend_4x8_wasmsimd.c).
// `key_bias` (null for none) holds s floats added to every query's scores (a key padding
// mask); `bias` (null for none) the pair's additive mask, `bias_rows` rows of s floats
// `bias_stride` bytes apart (stride 0: one row for every query); see add_bias_4x8 in
// scores_4x8_wasmsimd.h.
KERNEL_EXPORT(attend_4x8)
void attend_4x8(const float* q, const float* k, const float* v, uint32_t v_stride, float* out, uint32_t out_stride,
                float* scratch, float* state, uint32_t tiles, uint32_t s, uint32_t block, uint32_t dk, uint32_t dvp,
                float scale, uint32_t causal, int32_t q0, const float* key_bias, const float* bias, uint32_t bias_stride,
                uint32_t bias_rows);

// The gradients dQ, dK and dV of attend_4x8's attention of one (batch, head) pair, from the
// row log-sum-exp of its forward, by tiles of 4 queries and panels of 8 keys over blocks of
// `block` keys (attend_backward_4x8_wasmsimd.c), each gradient's rows `grad_*_stride` bytes
// apart; `key_bias` and `bias` as attend_4x8's.
KERNEL_EXPORT(attend_backward_4x8)
void attend_backward_4x8(const float* q, const float* k, const float* v, const float* dout, const float* q_rows,
                         const float* k_rows, const float* dout_rows, const float* lse, const float* delta, float* grad_q,
                         float* grad_k, float* grad_v, uint32_t grad_q_stride, uint32_t grad_k_stride,
                         uint32_t grad_v_stride, float* scratch, uint32_t t, uint32_t s, uint32_t block, uint32_t dk,
                         uint32_t dv, float scale, uint32_t causal, int32_t q0, const float* key_bias, const float* bias,
                         uint32_t bias_stride, uint32_t bias_rows);

// Packs the rows of a matrix by groups of `group` rows (4 or 8; 1: a copy), column by column
// (pack_rows_wasmsimd.c).
KERNEL_EXPORT(pack_rows)
void pack_rows(const float* src, uint32_t src_stride, float* dst, uint32_t rows, uint32_t cols, uint32_t group);

// dst = a + b_0 + … + b_{b_parts - 1}, left to right, b_j at b + j·b_part_stride (b null: a copy
// of a) for `rows` rows of `cols` floats, a's and each b_j's rows `src_stride` bytes apart, dst's
// `dst_stride` (add_rows_wasmsimd.c).
KERNEL_EXPORT(add_rows)
void add_rows(float* dst, uint32_t dst_stride, const float* a, const float* b, uint32_t b_parts, uint32_t b_part_stride,
              uint32_t src_stride, uint32_t rows, uint32_t cols);

// dst[r] = Σ_c a[r][c]·b[r][c] for `rows` rows of `cols` floats, a's rows `a_stride` bytes apart,
// b's `b_stride`: the fused backward's delta = rowsum(dOut ∘ Out) (row_dots_wasmsimd.c).
KERNEL_EXPORT(row_dots)
void row_dots(float* dst, const float* a, uint32_t a_stride, const float* b, uint32_t b_stride, uint32_t rows, uint32_t cols);

// out = x·w (+ bias), 4 rows × 8 columns at a time, for x by tiles of four rows whose inputs
// lie side by side, `x_step` bytes from one input to the next: packed by fours (pack_rows),
// or a row-major matrix's transpose read in place (project_4x8_wasmsimd.c).
KERNEL_EXPORT(project_4x8)
void project_4x8(const float* x, uint32_t x_tile_stride, uint32_t x_step, const float* w, uint32_t w_stride,
                 const float* bias, float* out, uint32_t out_stride, uint32_t tiles, uint32_t d_in, uint32_t d_out);

// C[n] = scale·A[n]·B[n] for each of `batches` row-major products, 4×4 tiles of C
// (batch_matmul_4x4_wasmsimd.c).
KERNEL_EXPORT(batch_matmul_4x4)
void batch_matmul_4x4(const float* a, const float* b, float* c, uint32_t batches, uint32_t m, uint32_t k, uint32_t n,
                      float scale);
