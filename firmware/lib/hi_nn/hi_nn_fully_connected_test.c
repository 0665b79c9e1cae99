/*
 * hi_nn_fully_connected_test.c - hi_nn_fully_connected_s8 against TFLM's FullyConnected written out
 * literally (acc = bias + sum w * (x + input_offset)), per-tensor and per-channel, odd depths (the DSP loop's
 * tail), batches, and a hand-computed case.
 */
#include "hi_nn_fully_connected.h"
#include "hi_nn_test.h"

int main(void) {
  enum { MAXI = 70, MAXO = 12, MAXB = 3 };
  int8_t x[MAXB * MAXI], w[MAXO * MAXI], out[MAXB * MAXO], ref[MAXB * MAXO];
  int32_t bias[MAXO], bf[MAXO], mult[MAXO], shift[MAXO];
  int t;
  { /* by hand: 2 inputs, 1 output, x + 2 = {3, 5}, acc = 10 + 3*4 + 5*(-2) = 12, x0.25 (2^30, shift -1) = 3 */
    hi_nn_fc_params_t p = {1, 2, 1, -1, -128, 127, 0};
    const int8_t xi[2] = {1, 3}, wi[2] = {4, -2};
    const int32_t b[1] = {10 + 2 * (4 - 2)}, m[1] = {1 << 30}, s[1] = {-1};
    int8_t o[1];
    CHECK(hi_nn_fully_connected_s8(&p, xi, wi, b, m, s, o) == HI_NN_OK && o[0] == 2);
  }
  for (t = 0; t < 300; ++t) {
    hi_nn_fc_params_t p;
    int32_t in_off, i, o, b;
    p.batches = rnd_range(1, MAXB);
    p.in_depth = rnd_range(1, MAXI);
    p.out_depth = rnd_range(1, MAXO);
    p.output_offset = rnd_range(-128, 127);
    p.act_min = rnd_range(0, 1) ? -128 : rnd_range(-128, 0);
    p.act_max = rnd_range(0, 1) ? 127 : rnd_range(0, 127);
    p.per_channel = rnd_range(0, 1);
    in_off = rnd_range(-127, 128);
    for (i = 0; i < p.batches * p.in_depth; ++i) x[i] = rnd_s8();
    for (i = 0; i < p.out_depth * p.in_depth; ++i) w[i] = (int8_t)rnd_range(-127, 127);
    for (o = 0; o < p.out_depth; ++o) {
      int32_t wsum = 0;
      for (i = 0; i < p.in_depth; ++i) wsum += w[o * p.in_depth + i];
      bias[o] = rnd_range(-100000, 100000);
      bf[o] = bias[o] + in_off * wsum;
      rnd_multiplier(&mult[o], &shift[o], -12, 1);
    }
    for (b = 0; b < p.batches; ++b)
      for (o = 0; o < p.out_depth; ++o) {
        const int32_t c = p.per_channel ? o : 0;
        int32_t acc = bias[o];
        for (i = 0; i < p.in_depth; ++i) acc += w[o * p.in_depth + i] * (x[b * p.in_depth + i] + in_off);
        ref[b * p.out_depth + o] =
            (int8_t)ref_clamp(ref_mbqm(acc, mult[c], shift[c]) + p.output_offset, p.act_min, p.act_max);
      }
    CHECK(hi_nn_fully_connected_s8(&p, x, w, bf, mult, shift, out) == HI_NN_OK);
    CHECK(memcmp(out, ref, (size_t)(p.batches * p.out_depth)) == 0);
  }
  TEST_END("hi_nn_fully_connected_test");
}
