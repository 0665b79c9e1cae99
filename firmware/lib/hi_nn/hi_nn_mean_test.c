/*
 * hi_nn_mean_test.c - hi_nn_mean_s8 (TFLM's integer QuantizedMeanOrSum) against the definition written out
 * (sum - zp_in * count, MultiplyByQuantizedMultiplier with 1/count folded in, + zp_out, clamp) on the
 * contiguous fast path (global pooling, last axis) and the generic walk (non-adjacent axes), plus a
 * hand-computed case.
 */
#include "hi_nn_mean.h"
#include "hi_nn_test.h"

static void check_axes(const int32_t shape[4], const int32_t reduce[4]) {
  hi_nn_mean_params_t p;
  int8_t in[4 * 5 * 6 * 3], out[4 * 5 * 6 * 3], ref[4 * 5 * 6 * 3];
  int32_t total = 1, count = 1, d, k, idx[4] = {0, 0, 0, 0}, sums[4 * 5 * 6 * 3], n_out = 1;
  memset(&p, 0, sizeof p);
  p.num_dims = 4;
  for (d = 0; d < 4; ++d) {
    p.in_shape[d] = shape[d];
    p.reduce[d] = reduce[d];
    total *= shape[d];
    if (reduce[d]) {
      count *= shape[d];
    } else {
      n_out *= shape[d];
    }
  }
  p.input_zero_point = rnd_range(-128, 127);
  p.output_zero_point = rnd_range(-128, 127);
  rnd_multiplier(&p.multiplier, &p.shift, -8, 0);
  for (k = 0; k < total; ++k) in[k] = rnd_s8();
  memset(sums, 0, sizeof sums);
  for (k = 0; k < total; ++k) {
    int32_t o = 0;
    for (d = 0; d < 4; ++d) {
      if (!reduce[d]) o = o * shape[d] + idx[d];
    }
    sums[o] += in[k];
    for (d = 3; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  for (k = 0; k < n_out; ++k) {
    ref[k] = (int8_t)ref_clamp(ref_mbqm(sums[k] - p.input_zero_point * count, p.multiplier, p.shift) +
                                   p.output_zero_point, -128, 127);
  }
  CHECK(hi_nn_mean_s8(&p, in, out) == HI_NN_OK && memcmp(out, ref, (size_t)n_out) == 0);
}

int main(void) {
  const int32_t shape[4] = {2, 5, 6, 3};
  int mask, t;
  { /* by hand: mean of {1, 2, 3, 6} = 3 with multiplier 1/4 (2^30, shift -1) and zero points 0 */
    hi_nn_mean_params_t p;
    const int8_t in[4] = {1, 2, 3, 6};
    int8_t out[1];
    memset(&p, 0, sizeof p);
    p.num_dims = 1;
    p.in_shape[0] = 4;
    p.reduce[0] = 1;
    p.multiplier = 1 << 30;
    p.shift = -1;
    CHECK(hi_nn_mean_s8(&p, in, out) == HI_NN_OK && out[0] == 3);
    p.num_dims = 0;
    CHECK(hi_nn_mean_s8(&p, in, out) == HI_NN_ERROR_BAD_PARAMS);
  }
  for (t = 0; t < 4; ++t) {
    for (mask = 0; mask < 16; ++mask) { /* every subset of axes: contiguous ones and the generic walk */
      int32_t reduce[4] = {mask & 1, (mask >> 1) & 1, (mask >> 2) & 1, (mask >> 3) & 1};
      check_axes(shape, reduce);
    }
  }
  TEST_END("hi_nn_mean_test");
}
