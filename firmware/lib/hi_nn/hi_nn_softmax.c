/* hi_nn_softmax.c - int8 SOFTMAX via gemmlowp fixed point; see the header. */
#include "hi_nn_softmax.h"

/* gemmlowp SaturatingRoundingMultiplyByPOT with a positive exponent: saturating left shift. */
static int32_t sat_shl(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)((((int64_t)1) << (31 - exponent)) - 1);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return (int32_t)((uint32_t)x << exponent);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series around -1/8. */
static int32_t exp_on_interval_neg_quarter_to_0(int32_t a) {
  const int32_t constant_term = 1895147668;     /* exp(-1/8) */
  const int32_t constant_1_over_3 = 715827883; /* 1/3 */
  const int32_t x = a + (1 << 28);              /* a + 1/8 */
  const int32_t x2 = hi_nn_srdhm(x, x);
  const int32_t x3 = hi_nn_srdhm(x2, x);
  const int32_t x4 = hi_nn_srdhm(x2, x2);
  const int32_t x4_over_4 = hi_nn_rdbpot(x4, 2);
  const int32_t poly = hi_nn_rdbpot(hi_nn_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
  return constant_term + hi_nn_srdhm(constant_term, x + poly);
}

int32_t hi_nn_exp_on_negative_values_q5(int32_t a) {
  enum { kIntegerBits = 5, kFractionalBits = 26 };
  const int32_t one_quarter = 1 << (kFractionalBits - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
  int32_t result = exp_on_interval_neg_quarter_to_0(sat_shl(a_mod_quarter_minus_one_quarter, kIntegerBits));
  const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
  /* Barrel shifter: multiply by exp(-2^k) for each set bit of the remainder. */
  static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
  int k;
  for (k = 0; k < 7; ++k) {
    const int exponent = k - 2;
    if (kIntegerBits > exponent) {
      const int shift_amount = kFractionalBits + exponent;
      if (remainder & (int32_t)(1u << shift_amount)) {
        result = hi_nn_srdhm(result, multipliers[k]);
      }
    }
  }
  if (a == 0) result = INT32_MAX;
  return result;
}

int32_t hi_nn_one_over_one_plus_x(int32_t a) {
  /* half_denominator = RoundingHalfSum(a, One) in Q0.31. */
  const int64_t sum = (int64_t)a + (int64_t)INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  const int32_t constant_48_over_17 = 1515870810;   /* Q2.29 */
  const int32_t constant_neg_32_over_17 = -1010580540; /* Q2.29 */
  int32_t x = constant_48_over_17 + hi_nn_srdhm(half_denominator, constant_neg_32_over_17);
  int i;
  for (i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = hi_nn_srdhm(half_denominator, x); /* Q2.29 */
    const int32_t one_minus = (1 << 29) - half_denominator_times_x;           /* Q2.29 */
    x = x + sat_shl(hi_nn_srdhm(x, one_minus), 2);                            /* Q4 -> Q2 */
  }
  return sat_shl(x, 1); /* ExactMulByPot<-1> then Rescale to Q0 */
}

static int count_leading_zeros_u32(uint32_t x) {
#if defined(__GNUC__)
  return x == 0 ? 32 : __builtin_clz(x);
#else
  int n = 0;
  if (x == 0) return 32;
  while (!(x & 0x80000000u)) { x <<= 1; ++n; }
  return n;
#endif
}

int hi_nn_softmax_s8(const hi_nn_softmax_params_t *p, const int8_t *in, int8_t *out) {
  enum { kAccumulationIntegerBits = 12 };
  int32_t i, c;
  for (i = 0; i < p->outer; ++i) {
    const int8_t *x = in + i * p->depth;
    int8_t *y = out + i * p->depth;
    int32_t max_in_row = -128;
    int32_t sum_of_exps = 0;
    int headroom_plus_one, num_bits_over_unit;
    int32_t shifted_scale;
    for (c = 0; c < p->depth; ++c) max_in_row = x[c] > max_in_row ? x[c] : max_in_row;
    for (c = 0; c < p->depth; ++c) {
      const int32_t diff = (int32_t)x[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t rescaled =
            hi_nn_srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
        sum_of_exps += hi_nn_rdbpot(hi_nn_exp_on_negative_values_q5(rescaled), kAccumulationIntegerBits);
      }
    }
    headroom_plus_one = count_leading_zeros_u32((uint32_t)sum_of_exps);
    num_bits_over_unit = kAccumulationIntegerBits - headroom_plus_one;
    shifted_scale = hi_nn_one_over_one_plus_x(
        (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31)));
    for (c = 0; c < p->depth; ++c) {
      const int32_t diff = (int32_t)x[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t rescaled =
            hi_nn_srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
        const int32_t e = hi_nn_exp_on_negative_values_q5(rescaled);
        /* a shift by 32 or more (a sum of exps >= 2^28: hundreds of classes near the row's max) is undefined
         * in C and in gemmlowp; |x| < 2^31, so x / 2^32 and beyond rounds to 0 */
        const int out_exp = num_bits_over_unit + 31 - 8;
        const int32_t unsat = out_exp > 31 ? 0 : hi_nn_rdbpot(hi_nn_srdhm(shifted_scale, e), out_exp);
        y[c] = (int8_t)hi_nn_clamp_i32(unsat - 128, -128, 127);
      } else {
        y[c] = -128;
      }
    }
  }
  return HI_NN_OK;
}
