/*
 * hi_nn_test.h - what the hi_nn kernel tests share (each *_test.c is its own program, built by the Makefile
 * under ASan/UBSan): CHECK/TEST_END, a seeded generator, and TFLite Micro's reference arithmetic written out
 * literally (gemmlowp's nudge-and-divide SaturatingRoundingDoublingHighMul, RoundingDivideByPOT, AddFunc),
 * independent of the shortcuts in hi_nn_common.h that the kernels use.
 */
#ifndef HI_NN_TEST_H
#define HI_NN_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int hi_nn_test_failures = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++hi_nn_test_failures;                                                   \
    }                                                                          \
  } while (0)
#define TEST_END(name)                                                          \
  do {                                                                          \
    if (hi_nn_test_failures) {                                                  \
      fprintf(stderr, "%s: %d check(s) failed\n", name, hi_nn_test_failures);   \
      return 1;                                                                 \
    }                                                                           \
    printf("%s: ok\n", name);                                                   \
    return 0;                                                                   \
  } while (0)

/* 32-bit LCG (Numerical Recipes constants): deterministic cases on every platform. */
static uint32_t hi_nn_test_state = 12345u;
static inline uint32_t rnd_u32(void) {
  hi_nn_test_state = hi_nn_test_state * 1664525u + 1013904223u;
  return hi_nn_test_state;
}
static inline int32_t rnd_range(int32_t lo, int32_t hi) { /* inclusive */
  return lo + (int32_t)((rnd_u32() >> 8) % (uint32_t)(hi - lo + 1));
}
static inline int8_t rnd_s8(void) { return (int8_t)(rnd_u32() >> 24); }

/* gemmlowp SaturatingRoundingDoublingHighMul, literally (nudge, then divide toward zero). */
static inline int32_t ref_srdhm(int32_t a, int32_t b) {
  const int64_t ab = (int64_t)a * (int64_t)b;
  const int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp RoundingDivideByPOT, literally. */
static inline int32_t ref_rdbpot(int32_t x, int e) {
  const int32_t mask = (int32_t)((1ll << e) - 1);
  const int32_t rem = x & mask;
  const int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> e) + (rem > thr ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier (double rounding). */
static inline int32_t ref_mbqm(int32_t x, int32_t m, int32_t shift) {
  const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
  return ref_rdbpot(ref_srdhm((int32_t)((uint32_t)x << left), m), right);
}

static inline int32_t ref_clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* A multiplier/shift pair as QuantizeMultiplier makes them: m in [2^30, 2^31), shift in [lo, hi]. */
static inline void rnd_multiplier(int32_t *m, int32_t *shift, int32_t lo, int32_t hi) {
  *m = (int32_t)((1u << 30) + (rnd_u32() >> 2));
  *shift = rnd_range(lo, hi);
}

#endif /* HI_NN_TEST_H */
