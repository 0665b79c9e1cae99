/*
 * hi_nn_common.h - fixed-point primitives shared by every hi_nn kernel.
 *
 * WHY: the kernels must produce the same bytes as TensorFlow Lite Micro's reference kernels. Those use
 * gemmlowp-style fixed point (SaturatingRoundingDoublingHighMul followed by RoundingDivideByPOT, i.e. the
 * "double rounding" MultiplyByQuantizedMultiplier). Every helper below reproduces that integer arithmetic
 * exactly; nothing here may be "simplified" into a single rounding step, which would differ in rare ties.
 *
 * Portable C99. On Cortex-M cores with the DSP extension (__ARM_FEATURE_DSP) the dot-product helpers use
 * SMLAD/SXTB16 from arm_acle.h; both paths compute the same exact integer sums.
 */
#ifndef HI_NN_COMMON_H
#define HI_NN_COMMON_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(HI_NN_NO_DSP)
#include <arm_acle.h>
#define HI_NN_USE_DSP 1
#else
#define HI_NN_USE_DSP 0
#endif

#if defined(__GNUC__)
#define HI_NN_INLINE static inline __attribute__((always_inline))
#define HI_NN_RESTRICT __restrict__
#define HI_NN_ALIGN8 __attribute__((aligned(8)))
#define HI_NN_NOINLINE __attribute__((noinline))
#else
#define HI_NN_NOINLINE
#define HI_NN_INLINE static inline
#define HI_NN_RESTRICT
#define HI_NN_ALIGN8
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes returned by kernels and by generated invoke functions. */
#define HI_NN_OK 0
#define HI_NN_ERROR_BAD_PARAMS (-1)

/* Fused activation bounds are precomputed by the compiler (TFLite's CalculateActivationRangeQuantized). */

HI_NN_INLINE int32_t hi_nn_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
HI_NN_INLINE int32_t hi_nn_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
HI_NN_INLINE int32_t hi_nn_clamp_i32(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

/* gemmlowp SaturatingRoundingDoublingHighMul: trunc((a*b + nudge) / 2^31) with nudge = 2^30 for a*b >= 0 and
 * 1 - 2^30 otherwise, and the single overflow case (INT32_MIN * INT32_MIN) saturated.
 * WHY the shift form: for a*b < 0 the numerator is <= -2^30, and truncating it toward zero equals
 * floor((a*b + 2^30) / 2^31); for a*b >= 0 both are floor too. So one arithmetic shift of a*b + 2^30 gives
 * exactly gemmlowp's result (checked against a big-integer model in tests/firmware/test_kernels_fixedpoint.py)
 * in ~4 instructions on Cortex-M4 instead of a sign-dependent nudge and a 64-bit division. */
HI_NN_INLINE int32_t hi_nn_srdhm(int32_t a, int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN) {
    return INT32_MAX;
  }
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* SRDHM when b is a quantized multiplier (0 <= b < 2^31): the INT32_MIN*INT32_MIN case cannot happen, so the
 * check is skipped. Every multiplier the compiler emits comes from QuantizeMultiplier and is in that range. */
HI_NN_INLINE int32_t hi_nn_srdhm_mult(int32_t a, int32_t b) {
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: arithmetic shift right with round-half-away-from-zero. */
HI_NN_INLINE int32_t hi_nn_rdbpot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)((1u << exponent) - 1u); /* exponent <= 31 */
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier (double-rounding variant, the TFLM default). multiplier >= 0. */
HI_NN_INLINE int32_t hi_nn_mbqm(int32_t x, int32_t multiplier, int32_t shift) {
  if (shift > 0) {
    return hi_nn_srdhm_mult((int32_t)((uint32_t)x << shift), multiplier);
  }
  return hi_nn_rdbpot(hi_nn_srdhm_mult(x, multiplier), (int)-shift);
}

/* Saturating 32-bit add (QADD on cores with the DSP extension). */
HI_NN_INLINE int32_t hi_nn_qadd(int32_t a, int32_t b) {
#if HI_NN_USE_DSP
  return __qadd(a, b);
#else
  const int64_t s = (int64_t)a + (int64_t)b;
  return s > INT32_MAX ? INT32_MAX : (s < INT32_MIN ? INT32_MIN : (int32_t)s);
#endif
}

/* The largest right shift for which hi_nn_mbqm_rs equals hi_nn_mbqm after clamping to int8 (see below). */
#define HI_NN_MBQM_RS_MAX_EXP 22

/* MultiplyByQuantizedMultiplier for a right shift e = -shift in [1, HI_NN_MBQM_RS_MAX_EXP], with
 * rnd = 1 << (e - 1), in fewer instructions: RoundingDivideByPOT(q, e) equals
 * (q + rnd - (q < 0)) >> e for every q (round half away from zero, checked in hi_nn_common_test.c and
 * tests/firmware/test_kernels_fixedpoint.py). The only difference is where q + rnd overflows: the
 * saturating add then gives (2^31 - 1) >> e instead of the true 2^(31-e) or more; both are above
 * 127 + 128 for e <= 22, so the result after adding an int8 zero point and clamping to int8 is identical.
 * WHY: the output stage runs once per output element (86 k times per ResNet-8 inference). */
HI_NN_INLINE int32_t hi_nn_mbqm_rs(int32_t x, int32_t multiplier, int32_t e, int32_t rnd) {
  const int32_t q = hi_nn_srdhm_mult(x, multiplier);
  return (hi_nn_qadd(q, rnd) + (q >> 31)) >> e;
}

/* Unaligned little-endian 32-bit load; compiles to a single LDR on Cortex-M3/M4/M7 and x86. */
HI_NN_INLINE uint32_t hi_nn_load32(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

/* Rotate right by 8 (arm_acle.h has no __ror in GCC). */
HI_NN_INLINE uint32_t hi_nn_ror8(uint32_t x) { return (x >> 8) | (x << 24); }

#if HI_NN_USE_DSP
/* SXTB16 with its built-in ROR #8 operand: bytes 1 and 3 sign-extended to two halfwords in ONE instruction
 * (GCC does not fold a separate rotate into SXTB16, which would cost an extra MOV per word). */
HI_NN_INLINE uint32_t hi_nn_sxtb16_ror8(uint32_t x) {
#if defined(__GNUC__)
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
#else
  return __sxtb16(hi_nn_ror8(x));
#endif
}
#endif

/* Exact int8 dot product sum(a[i] * b[i]) added to acc. */
HI_NN_INLINE int32_t hi_nn_dot_s8(const int8_t *HI_NN_RESTRICT a, const int8_t *HI_NN_RESTRICT b, int32_t n,
                                  int32_t acc) {
  int32_t i = 0;
#if HI_NN_USE_DSP
  for (; i + 4 <= n; i += 4) {
    const uint32_t va = hi_nn_load32(a + i);
    const uint32_t vb = hi_nn_load32(b + i);
    acc = (int32_t)__smlad(__sxtb16(va), __sxtb16(vb), (uint32_t)acc);
    acc = (int32_t)__smlad(hi_nn_sxtb16_ror8(va), hi_nn_sxtb16_ror8(vb), (uint32_t)acc);
  }
#endif
  for (; i < n; ++i) {
    acc += (int32_t)a[i] * (int32_t)b[i];
  }
  return acc;
}

/* Two dot products sharing the same activations (two output channels): halves activation unpacking. */
HI_NN_INLINE void hi_nn_dot2_s8(const int8_t *HI_NN_RESTRICT x, const int8_t *HI_NN_RESTRICT w0,
                                const int8_t *HI_NN_RESTRICT w1, int32_t n, int32_t *acc0, int32_t *acc1) {
  int32_t a0 = *acc0, a1 = *acc1;
  int32_t i = 0;
#if HI_NN_USE_DSP
  for (; i + 4 <= n; i += 4) {
    const uint32_t vx = hi_nn_load32(x + i);
    const uint32_t x02 = __sxtb16(vx);
    const uint32_t x13 = hi_nn_sxtb16_ror8(vx);
    const uint32_t v0 = hi_nn_load32(w0 + i);
    const uint32_t v1 = hi_nn_load32(w1 + i);
    a0 = (int32_t)__smlad(__sxtb16(v0), x02, (uint32_t)a0);
    a0 = (int32_t)__smlad(hi_nn_sxtb16_ror8(v0), x13, (uint32_t)a0);
    a1 = (int32_t)__smlad(__sxtb16(v1), x02, (uint32_t)a1);
    a1 = (int32_t)__smlad(hi_nn_sxtb16_ror8(v1), x13, (uint32_t)a1);
  }
#endif
  for (; i < n; ++i) {
    const int32_t xv = x[i];
    a0 += xv * (int32_t)w0[i];
    a1 += xv * (int32_t)w1[i];
  }
  *acc0 = a0;
  *acc1 = a1;
}

/* Requantize an int32 accumulator to int8 exactly like TFLM's conv/FC output stage. */
HI_NN_INLINE int8_t hi_nn_requant_s8(int32_t acc, int32_t mult, int32_t shift, int32_t out_offset, int32_t act_min,
                                     int32_t act_max) {
  int32_t v = hi_nn_mbqm(acc, mult, shift) + out_offset;
  return (int8_t)hi_nn_clamp_i32(v, act_min, act_max);
}

#ifdef __cplusplus
}
#endif

#endif /* HI_NN_COMMON_H */
