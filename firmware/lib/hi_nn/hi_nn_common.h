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
#else
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

/* 2 pixels x 2 output channels over the same n-long run: each activation word is unpacked once for two
 * channels and each weight word once for two pixels (4 accumulators: a[pixel][channel]). */
HI_NN_INLINE void hi_nn_dot2x2_s8(const int8_t *HI_NN_RESTRICT xa, const int8_t *HI_NN_RESTRICT xb,
                                  const int8_t *HI_NN_RESTRICT w0, const int8_t *HI_NN_RESTRICT w1, int32_t n,
                                  int32_t acc[4]) {
  int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
  int32_t i = 0;
#if HI_NN_USE_DSP
  for (; i + 4 <= n; i += 4) {
    const uint32_t va = hi_nn_load32(xa + i);
    const uint32_t vb = hi_nn_load32(xb + i);
    const uint32_t a02 = __sxtb16(va), a13 = hi_nn_sxtb16_ror8(va);
    const uint32_t b02 = __sxtb16(vb), b13 = hi_nn_sxtb16_ror8(vb);
    uint32_t v = hi_nn_load32(w0 + i);
    uint32_t w02 = __sxtb16(v), w13 = hi_nn_sxtb16_ror8(v);
    a00 = (int32_t)__smlad(w02, a02, (uint32_t)a00);
    a00 = (int32_t)__smlad(w13, a13, (uint32_t)a00);
    a10 = (int32_t)__smlad(w02, b02, (uint32_t)a10);
    a10 = (int32_t)__smlad(w13, b13, (uint32_t)a10);
    v = hi_nn_load32(w1 + i);
    w02 = __sxtb16(v);
    w13 = hi_nn_sxtb16_ror8(v);
    a01 = (int32_t)__smlad(w02, a02, (uint32_t)a01);
    a01 = (int32_t)__smlad(w13, a13, (uint32_t)a01);
    a11 = (int32_t)__smlad(w02, b02, (uint32_t)a11);
    a11 = (int32_t)__smlad(w13, b13, (uint32_t)a11);
  }
#endif
  for (; i < n; ++i) {
    const int32_t x0 = xa[i], x1 = xb[i], k0 = w0[i], k1 = w1[i];
    a00 += x0 * k0;
    a01 += x0 * k1;
    a10 += x1 * k0;
    a11 += x1 * k1;
  }
  acc[0] = a00;
  acc[1] = a01;
  acc[2] = a10;
  acc[3] = a11;
}

/* Packed variants for the gathered conv path: x holds two pixels' windows interleaved in 4-byte groups,
 * w two channels' weights interleaved the same way; k4 is a multiple of 4. acc = a[pixel][channel]. */
HI_NN_INLINE void hi_nn_dot2x2_packed_s8(const int8_t *HI_NN_RESTRICT x, const int8_t *HI_NN_RESTRICT w, int32_t k4,
                                         int32_t acc[4]) {
  int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
  int32_t n = k4 >> 2; /* a down-counter keeps the loop to one SUBS+BNE and frees the end-pointer register */
#if HI_NN_USE_DSP
  do {
    uint64_t xv, wv;
    uint32_t va, vb, v0, v1, a02, a13, b02, b13, p02, p13;
    memcpy(&xv, x, 8); /* LDRD */
    memcpy(&wv, w, 8);
    x += 8;
    w += 8;
    va = (uint32_t)xv;
    vb = (uint32_t)(xv >> 32);
    v0 = (uint32_t)wv;
    v1 = (uint32_t)(wv >> 32);
    a02 = __sxtb16(va);
    a13 = hi_nn_sxtb16_ror8(va);
    b02 = __sxtb16(vb);
    b13 = hi_nn_sxtb16_ror8(vb);
    p02 = __sxtb16(v0);
    p13 = hi_nn_sxtb16_ror8(v0);
    a00 = (int32_t)__smlad(p02, a02, (uint32_t)a00);
    a00 = (int32_t)__smlad(p13, a13, (uint32_t)a00);
    a10 = (int32_t)__smlad(p02, b02, (uint32_t)a10);
    a10 = (int32_t)__smlad(p13, b13, (uint32_t)a10);
    p02 = __sxtb16(v1);
    p13 = hi_nn_sxtb16_ror8(v1);
    a01 = (int32_t)__smlad(p02, a02, (uint32_t)a01);
    a01 = (int32_t)__smlad(p13, a13, (uint32_t)a01);
    a11 = (int32_t)__smlad(p02, b02, (uint32_t)a11);
    a11 = (int32_t)__smlad(p13, b13, (uint32_t)a11);
  } while (--n > 0);
#else
  for (; n > 0; --n, x += 8, w += 8) {
    int j;
    for (j = 0; j < 4; ++j) {
      const int32_t xa = x[j], xb = x[4 + j], w0 = w[j], w1 = w[4 + j];
      a00 += xa * w0;
      a01 += xa * w1;
      a10 += xb * w0;
      a11 += xb * w1;
    }
  }
#endif
  acc[0] = a00;
  acc[1] = a01;
  acc[2] = a10;
  acc[3] = a11;
}

/* One channel (weights packed alone, k4 bytes) against the interleaved two-pixel window. */
HI_NN_INLINE void hi_nn_dot1x2_packed_s8(const int8_t *HI_NN_RESTRICT x, const int8_t *HI_NN_RESTRICT w, int32_t k4,
                                         int32_t *acc_a, int32_t *acc_b) {
  int32_t aa = *acc_a, ab = *acc_b, g, j;
  for (g = 0; g < k4; g += 4) {
    for (j = 0; j < 4; ++j) {
      aa += (int32_t)x[2 * g + j] * w[g + j];
      ab += (int32_t)x[2 * g + 4 + j] * w[g + j];
    }
  }
  *acc_a = aa;
  *acc_b = ab;
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
