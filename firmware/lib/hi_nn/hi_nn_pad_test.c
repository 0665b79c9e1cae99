/*
 * hi_nn_pad_test.c - hi_nn_pad_s8 against the definition (out[i] = in[i - before] inside, pad_value
 * outside) on random 6-D paddings, a hand-computed 2-D case, and negative paddings refused.
 */
#include "hi_nn_pad.h"
#include "hi_nn_test.h"

int main(void) {
  enum { D = HI_NN_PAD_MAX_DIMS };
  int t;
  { /* by hand: 1x2 -> 3x3 with one row above, one column left, none right, one row below */
    hi_nn_pad_params_t p = {{1, 1, 1, 1, 1, 2}, {0, 0, 0, 0, 1, 1}, {0, 0, 0, 0, 1, 0}, -7};
    const int8_t in[2] = {4, 5};
    int8_t out[9];
    CHECK(hi_nn_pad_s8(&p, in, out) == HI_NN_OK);
    CHECK(out[0] == -7 && out[1] == -7 && out[2] == -7 && out[3] == -7 && out[4] == 4 && out[5] == 5 && out[6] == -7);
    p.before[2] = -1;
    CHECK(hi_nn_pad_s8(&p, in, out) == HI_NN_ERROR_BAD_PARAMS);
  }
  for (t = 0; t < 200; ++t) {
    hi_nn_pad_params_t p;
    static int8_t in[256], out[20000], ref[20000];
    int32_t d, n_in = 1, n_out = 1, os[D], idx[D] = {0, 0, 0, 0, 0, 0}, k;
    for (d = 0; d < D; ++d) {
      p.in_shape[d] = rnd_range(1, d < 3 ? 1 : 4);
      p.before[d] = rnd_range(0, 2);
      p.after[d] = rnd_range(0, 2);
      os[d] = p.before[d] + p.in_shape[d] + p.after[d];
      n_in *= p.in_shape[d];
      n_out *= os[d];
    }
    if (n_out > 20000) continue;
    p.pad_value = rnd_range(-128, 127);
    for (k = 0; k < n_in; ++k) in[k] = rnd_s8();
    for (k = 0; k < n_out; ++k) {
      int32_t off = 0, inside = 1;
      for (d = 0; d < D; ++d) {
        const int32_t i = idx[d] - p.before[d];
        if (i < 0 || i >= p.in_shape[d]) inside = 0;
        off = off * p.in_shape[d] + (inside ? i : 0);
      }
      ref[k] = inside ? in[off] : (int8_t)p.pad_value;
      for (d = D - 1; d >= 0; --d) {
        if (++idx[d] < os[d]) break;
        idx[d] = 0;
      }
    }
    CHECK(hi_nn_pad_s8(&p, in, out) == HI_NN_OK && memcmp(out, ref, (size_t)n_out) == 0);
  }
  TEST_END("hi_nn_pad_test");
}
