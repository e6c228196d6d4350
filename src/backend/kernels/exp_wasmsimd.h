// exp(x) of four floats at once, for the softmax of attend_4x8_wasmsimd.c.
#pragma once

#include <wasm_simd128.h>

// exp(x) for x <= 0 (the softmax's arguments, scores minus their running max) as 2^n · e^r,
// n = round(x / ln 2), |r| <= ln(2)/2, e^r by Cephes' expf polynomial (relative error
// ~1e-7). n is rounded by adding 1.5·2^23, which leaves n in the low bits of the sum's
// mantissa; 2^n is then built from those bits as (n + 127) << 23. Below -87, where 2^n would
// leave the normal floats, the result is flushed to +0 (so exp(-∞) = 0 exactly, as on the
// other paths); a NaN x fails the compare, keeps the polynomial's NaN and so propagates, as
// IEEE exp does. The operations are in this order on purpose: without -ffast-math the
// compiler keeps it, and so the results, bit for bit.
static inline v128_t exp_nonpositive_f32x4(v128_t vx) {
  v128_t vflush = wasm_f32x4_lt(vx, wasm_f32x4_const_splat(-87.0f));
  // Kept as a mask (as XNNPACK's XNN_FORCE_REALIZATION does), so that the flush below stays
  // one v128.andnot: LLVM otherwise turns it into a v128.bitselect, three x86 instructions.
  __asm__("" : "+r"(vflush));
  const v128_t vmagic_bias = wasm_f32x4_const_splat(0x1.8p+23f);            // 1.5·2^23
  const v128_t vt = wasm_f32x4_add(wasm_f32x4_mul(vx, wasm_f32x4_const_splat(0x1.715476p+0f)), vmagic_bias);  // x·log2(e) + 1.5·2^23
  const v128_t vn = wasm_f32x4_sub(vt, vmagic_bias);                          // n, a whole number
  // r = x - n·ln 2, with ln 2 in two parts (0.693359375 - 2.12194440e-4) to keep r's low bits.
  v128_t vr = wasm_f32x4_sub(vx, wasm_f32x4_mul(vn, wasm_f32x4_const_splat(0x1.63p-1f)));
  vr = wasm_f32x4_sub(vr, wasm_f32x4_mul(vn, wasm_f32x4_const_splat(-0x1.bd0106p-13f)));
  // e^r = 1 + r + r²·p(r), p by Horner's rule.
  v128_t vp = wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_const_splat(0x1.a0d2cep-13f), vr), wasm_f32x4_const_splat(0x1.6e879cp-10f));
  vp = wasm_f32x4_add(wasm_f32x4_mul(vp, vr), wasm_f32x4_const_splat(0x1.11121p-7f));
  vp = wasm_f32x4_add(wasm_f32x4_mul(vp, vr), wasm_f32x4_const_splat(0x1.555382p-5f));
  vp = wasm_f32x4_add(wasm_f32x4_mul(vp, vr), wasm_f32x4_const_splat(0x1.555554p-3f));
  vp = wasm_f32x4_add(wasm_f32x4_mul(vp, vr), wasm_f32x4_const_splat(0x1.0p-1f));
  const v128_t ver = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_mul(vp, vr), vr), vr), wasm_f32x4_const_splat(1.0f));
  const v128_t vtwo_n = wasm_i32x4_shl(wasm_i32x4_add(vt, wasm_i32x4_const_splat(127)), 23);  // 2^n, as bits
  return wasm_v128_andnot(wasm_f32x4_mul(ver, vtwo_n), vflush);             // +0 where x < -87
}
