/*
 * hi_nn_depthwise_conv_test.c - hi_nn_depthwise_conv_s8 against TFLM's reference DepthwiseConvPerChannel
 * written out literally (filter [1][kh][kw][out_c], output channel oc reads input channel oc / multiplier),
 * random geometries with depth multipliers 1-3, strides, dilation and padding, and a hand-computed case.
 */
#include <stdlib.h>

#include "hi_nn_depthwise_conv.h"
#include "hi_nn_test.h"

static void run_case(void) {
  hi_nn_dwconv_params_t p;
  int32_t i, oc, b, oy, ox, ky, kx, n_in, n_out, n_w, pad_h_total, pad_w_total;
  int8_t *in, *w, *out, *ref;
  int32_t *bias, *bf, *mult, *shift;
  memset(&p, 0, sizeof p);
  p.batches = rnd_range(1, 2);
  p.in_h = rnd_range(1, 8);
  p.in_w = rnd_range(1, 8);
  p.in_c = rnd_range(1, 7);
  p.depth_multiplier = rnd_range(1, 3);
  p.out_c = p.in_c * p.depth_multiplier;
  p.k_h = rnd_range(1, 3);
  p.k_w = rnd_range(1, 3);
  p.stride_h = rnd_range(1, 2);
  p.stride_w = rnd_range(1, 2);
  p.dil_h = rnd_range(1, 2);
  p.dil_w = rnd_range(1, 2);
  pad_h_total = (p.k_h - 1) * p.dil_h;
  pad_w_total = (p.k_w - 1) * p.dil_w;
  p.pad_h = pad_h_total / 2;
  p.pad_w = pad_w_total / 2;
  p.out_h = (p.in_h + pad_h_total - ((p.k_h - 1) * p.dil_h + 1)) / p.stride_h + 1;
  p.out_w = (p.in_w + pad_w_total - ((p.k_w - 1) * p.dil_w + 1)) / p.stride_w + 1;
  p.input_offset = rnd_range(-127, 128);
  p.output_offset = rnd_range(-128, 127);
  p.act_min = rnd_range(0, 1) ? -128 : rnd_range(-128, 0);
  p.act_max = 127;
  n_in = p.batches * p.in_h * p.in_w * p.in_c;
  n_out = p.batches * p.out_h * p.out_w * p.out_c;
  n_w = p.k_h * p.k_w * p.out_c;
  in = malloc((size_t)n_in);
  w = malloc((size_t)n_w);
  out = malloc((size_t)n_out);
  ref = malloc((size_t)n_out);
  bias = malloc(4u * (size_t)p.out_c);
  bf = malloc(4u * (size_t)p.out_c);
  mult = malloc(4u * (size_t)p.out_c);
  shift = malloc(4u * (size_t)p.out_c);
  for (i = 0; i < n_in; ++i) in[i] = rnd_s8();
  for (i = 0; i < n_w; ++i) w[i] = (int8_t)rnd_range(-127, 127);
  for (oc = 0; oc < p.out_c; ++oc) {
    int32_t wsum = 0;
    for (i = 0; i < p.k_h * p.k_w; ++i) wsum += w[i * p.out_c + oc];
    bias[oc] = rnd_range(-50000, 50000);
    bf[oc] = bias[oc] + p.input_offset * wsum;
    rnd_multiplier(&mult[oc], &shift[oc], -10, 0);
  }
  for (b = 0; b < p.batches; ++b)
    for (oy = 0; oy < p.out_h; ++oy)
      for (ox = 0; ox < p.out_w; ++ox)
        for (oc = 0; oc < p.out_c; ++oc) {
          int32_t acc = bias[oc];
          for (ky = 0; ky < p.k_h; ++ky)
            for (kx = 0; kx < p.k_w; ++kx) {
              const int32_t iy = oy * p.stride_h - p.pad_h + ky * p.dil_h;
              const int32_t ix = ox * p.stride_w - p.pad_w + kx * p.dil_w;
              if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) continue;
              acc += w[(ky * p.k_w + kx) * p.out_c + oc] *
                     (in[((b * p.in_h + iy) * p.in_w + ix) * p.in_c + oc / p.depth_multiplier] + p.input_offset);
            }
          ref[((b * p.out_h + oy) * p.out_w + ox) * p.out_c + oc] =
              (int8_t)ref_clamp(ref_mbqm(acc, mult[oc], shift[oc]) + p.output_offset, p.act_min, p.act_max);
        }
  CHECK(hi_nn_depthwise_conv_s8(&p, in, w, bias, bf, mult, shift, out) == HI_NN_OK);
  CHECK(memcmp(out, ref, (size_t)n_out) == 0);
  p.out_c += 1; /* inconsistent channel counts are refused */
  CHECK(hi_nn_depthwise_conv_s8(&p, in, w, bias, bf, mult, shift, out) == HI_NN_ERROR_BAD_PARAMS);
  free(in);
  free(w);
  free(out);
  free(ref);
  free(bias);
  free(bf);
  free(mult);
  free(shift);
}

int main(void) {
  int t;
  { /* by hand: 1x1 input with 2 channels, multiplier 2, 1x1 filter {1, -1, 2, 3}; x + 1 = {4, -2} */
    hi_nn_dwconv_params_t p;
    const int8_t in[2] = {3, -3}, w[4] = {1, -1, 2, 3};
    const int32_t bias[4] = {0, 0, 0, 0}, bf[4] = {1, -1, 2, 3}, mult[4] = {1 << 30, 1 << 30, 1 << 30, 1 << 30},
                  shift[4] = {1, 1, 1, 1}; /* x1 */
    int8_t out[4];
    memset(&p, 0, sizeof p);
    p.batches = p.in_h = p.in_w = p.out_h = p.out_w = p.k_h = p.k_w = p.stride_h = p.stride_w = p.dil_h = p.dil_w = 1;
    p.in_c = 2;
    p.depth_multiplier = 2;
    p.out_c = 4;
    p.input_offset = 1;
    p.act_min = -128;
    p.act_max = 127;
    CHECK(hi_nn_depthwise_conv_s8(&p, in, w, bias, bf, mult, shift, out) == HI_NN_OK);
    CHECK(out[0] == 4 && out[1] == -4 && out[2] == -4 && out[3] == -6);
  }
  for (t = 0; t < 300; ++t) run_case();
  TEST_END("hi_nn_depthwise_conv_test");
}
