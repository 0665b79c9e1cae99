/*
 * hi_nn_common_test.c - tests for the fixed-point primitives in hi_nn_common.h and the softmax helpers.
 *
 * Two uses: built as a program (make -C firmware/host test) it checks hand-derived vectors and exits
 * non-zero on failure; built into the host shared library it exports hi_nn_test_* wrappers around the
 * inline primitives so tests/firmware/test_kernels_fixedpoint.py can compare them with an independent
 * Python big-integer model on random inputs (hypothesis).
 */
#include <stdio.h>

#include "hi_nn.h"

int32_t hi_nn_test_srdhm(int32_t a, int32_t b) { return hi_nn_srdhm(a, b); }
int32_t hi_nn_test_rdbpot(int32_t x, int32_t e) { return hi_nn_rdbpot(x, (int)e); }
int32_t hi_nn_test_mbqm(int32_t x, int32_t m, int32_t s) { return hi_nn_mbqm(x, m, s); }
int32_t hi_nn_test_dot(const int8_t *a, const int8_t *b, int32_t n, int32_t acc) { return hi_nn_dot_s8(a, b, n, acc); }
int32_t hi_nn_test_mbqm_rs(int32_t x, int32_t m, int32_t e) {
  return hi_nn_mbqm_rs(x, m, e, (int32_t)(1u << (e - 1)));
}
void hi_nn_test_dot2(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t n, int32_t *a0, int32_t *a1) {
  hi_nn_dot2_s8(x, w0, w1, n, a0, a1);
}

#ifdef HI_NN_TEST_MAIN
static int failures = 0;
#define CHECK(cond)                                                \
  do {                                                             \
    if (!(cond)) {                                                 \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                  \
    }                                                              \
  } while (0)

static int32_t iabs32(int32_t v) { return v < 0 ? -v : v; }

int main(void) {
  /* Rounding divide by power of two rounds half away from zero. */
  CHECK(hi_nn_rdbpot(5, 1) == 3);
  CHECK(hi_nn_rdbpot(-5, 1) == -3);
  CHECK(hi_nn_rdbpot(4, 1) == 2);
  CHECK(hi_nn_rdbpot(-3, 1) == -2);
  CHECK(hi_nn_rdbpot(-1, 1) == -1);
  CHECK(hi_nn_rdbpot(7, 0) == 7);
  /* The only saturating case of the doubling high multiply. */
  CHECK(hi_nn_srdhm(INT32_MIN, INT32_MIN) == INT32_MAX);
  CHECK(hi_nn_srdhm(1 << 30, 1 << 30) == 1 << 29); /* 0.5 * 0.5 = 0.25 in Q0.31 */
  /* Multiplier 2^30 with shift 1 is exactly x1. */
  CHECK(hi_nn_mbqm(12345, 1 << 30, 1) == 12345);
  CHECK(hi_nn_mbqm(-12345, 1 << 30, 1) == -12345);
  CHECK(hi_nn_mbqm(3, 1 << 30, 0) == 2);   /* 1.5 rounds away from zero */
  CHECK(hi_nn_mbqm(-3, 1 << 30, 0) == -1); /* -1.5: gemmlowp's nudge rounds this tie toward zero */
  /* The shortcut form with a right shift equals the double rounding one, ties and signs included ... */
  CHECK(hi_nn_mbqm_rs(3, 1 << 30, 1, 1) == hi_nn_mbqm(3, 1 << 30, -1));
  CHECK(hi_nn_mbqm_rs(-3, 1 << 30, 1, 1) == hi_nn_mbqm(-3, 1 << 30, -1));
  CHECK(hi_nn_mbqm_rs(-2, 1 << 30, 1, 1) == hi_nn_mbqm(-2, 1 << 30, -1));
  CHECK(hi_nn_mbqm_rs(-1, INT32_MAX, 1, 1) == hi_nn_mbqm(-1, INT32_MAX, -1));
  CHECK(hi_nn_mbqm_rs(-123457, 1518500250, 7, 64) == hi_nn_mbqm(-123457, 1518500250, -7));
  /* ... and where its saturating add clips (near INT32_MAX) both are far above int8 after the shift. */
  CHECK(hi_nn_mbqm_rs(INT32_MAX, INT32_MAX, 22, 1 << 21) == (INT32_MAX >> 22));
  CHECK(hi_nn_mbqm(INT32_MAX, INT32_MAX, -22) == (1 << 9));
  /* exp(0) = 1 (saturated Q0.31), exp(-1) ~ 0.3679 * 2^31 = 790015084; the polynomial is good to ~1e-6. */
  CHECK(hi_nn_exp_on_negative_values_q5(0) == INT32_MAX);
  CHECK(iabs32(hi_nn_exp_on_negative_values_q5(-(1 << 26)) - 790015084) < 1000);
  CHECK(iabs32(hi_nn_exp_on_negative_values_q5(-(1 << 25)) - 1302514674) < 1000); /* exp(-1/2) */
  /* 1/(1+x): x = 0.5 -> 2/3 = 1431655765 in Q0.31; x = 0 -> 1. */
  CHECK(iabs32(hi_nn_one_over_one_plus_x(1 << 30) - 1431655765) < 64);
  CHECK(hi_nn_one_over_one_plus_x(0) >= INT32_MAX - 64);
  {
    int8_t a[11] = {1, -2, 3, -4, 5, -6, 7, -8, 9, -128, 127};
    int8_t b[11] = {-1, 2, -3, 4, -5, 6, -7, 8, -9, -128, 127};
    int32_t a0 = 10, a1 = 0;
    CHECK(hi_nn_dot_s8(a, b, 11, 0) == -(1 + 4 + 9 + 16 + 25 + 36 + 49 + 64 + 81) + 16384 + 16129);
    hi_nn_dot2_s8(a, a, b, 11, &a0, &a1);
    CHECK(a0 == 10 + (1 + 4 + 9 + 16 + 25 + 36 + 49 + 64 + 81) + 16384 + 16129);
    CHECK(a1 == hi_nn_dot_s8(a, b, 11, 0));
  }
  if (failures) {
    fprintf(stderr, "%d hi_nn_common check(s) failed\n", failures);
    return 1;
  }
  printf("hi_nn_common: all checks passed\n");
  return 0;
}
#endif
