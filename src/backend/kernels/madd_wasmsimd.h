// madd_f32x4: acc + a·b, the step of the kernels' sums of products. Where the module is built
// with relaxed SIMD (scripts/build_kernels.ts defines RELAXED_SIMD and passes -mrelaxed-simd for
// the backward's relaxed variant), one f32x4.relaxed_madd: a fused multiply-add where the
// hardware has one (rounded once), else a multiply and an add (rounded twice), as the engine
// chooses. Otherwise always a multiply and an add, so that every engine gives the same bits.
#pragma once

#include <wasm_simd128.h>

static inline v128_t madd_f32x4(v128_t a, v128_t b, v128_t acc) {
#ifdef RELAXED_SIMD
  return __builtin_wasm_relaxed_madd_f32x4(a, b, acc);
#else
  return wasm_f32x4_add(acc, wasm_f32x4_mul(a, b));
#endif
}
