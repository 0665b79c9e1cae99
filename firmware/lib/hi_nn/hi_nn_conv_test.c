/*
 * hi_nn_conv_test.c - hi_nn_conv_s8 against TFLM's reference ConvPerChannel written out literally (taps
 * outside the image skipped, acc = bias + sum w * (x + input_offset), MultiplyByQuantizedMultiplier, clamp),
 * with the fused residual ADD as TFLM's AddFunc. Random geometries (channels that are and are not multiples
 * of 4, 1x1 to 5x5 kernels, strides 1-2, dilation, padding), both paths (strip path at several strip widths,
 * so the 8- and 4-pixel blocks and the scalar tail all run, and the in-place OHWI path), extreme multipliers
 * (shift 0 and left shifts take the exact requantization), activation ranges, the output stage with and
 * without acc_q30 (SMMULR); plus a hand-computed case and the scratch checks. `make qemu-test` runs it on the
 * emulated Cortex-M4, where the assembly kernels and output stages are the ones tested.
 */
#include <stdlib.h>

#include "hi_nn_conv.h"
#include "hi_nn_test.h"

typedef struct {
  hi_nn_conv_params_t p;
  int8_t *in, *filter, *packed, *res, *out, *ref;
  int32_t *bias, *bias_folded, *mult, *shift;
  hi_nn_add_params_t add;
  int conv_is_input2, has_res;
} conv_case_t;

static int32_t ref_add(const hi_nn_add_params_t *a, int32_t x, int32_t y) {
  const int32_t in1 = (int32_t)((uint32_t)(a->input1_offset + x) << a->left_shift);
  const int32_t in2 = (int32_t)((uint32_t)(a->input2_offset + y) << a->left_shift);
  const int32_t s1 = ref_mbqm(in1, a->input1_multiplier, a->input1_shift);
  const int32_t s2 = ref_mbqm(in2, a->input2_multiplier, a->input2_shift);
  return ref_clamp(ref_mbqm(s1 + s2, a->output_multiplier, a->output_shift) + a->output_offset, a->act_min, a->act_max);
}

static void reference(const conv_case_t *c) {
  const hi_nn_conv_params_t *p = &c->p;
  int32_t b, oy, ox, oc, ky, kx, ic;
  for (b = 0; b < p->batches; ++b)
    for (oy = 0; oy < p->out_h; ++oy)
      for (ox = 0; ox < p->out_w; ++ox)
        for (oc = 0; oc < p->out_c; ++oc) {
          int32_t acc = c->bias[oc], v;
          const int32_t idx = ((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc;
          for (ky = 0; ky < p->k_h; ++ky)
            for (kx = 0; kx < p->k_w; ++kx) {
              const int32_t iy = oy * p->stride_h - p->pad_h + ky * p->dil_h;
              const int32_t ix = ox * p->stride_w - p->pad_w + kx * p->dil_w;
              if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) continue;
              for (ic = 0; ic < p->in_c; ++ic) {
                const int32_t x = c->in[((b * p->in_h + iy) * p->in_w + ix) * p->in_c + ic];
                acc += c->filter[((oc * p->k_h + ky) * p->k_w + kx) * p->in_c + ic] * (x + p->input_offset);
              }
            }
          v = ref_clamp(ref_mbqm(acc, c->mult[oc], c->shift[oc]) + p->output_offset, p->act_min, p->act_max);
          if (c->has_res) v = c->conv_is_input2 ? ref_add(&c->add, c->res[idx], v) : ref_add(&c->add, v, c->res[idx]);
          c->ref[idx] = (int8_t)v;
        }
}

/* The strip path's filter layout [oc][ky][group of 4 channels][kx][4], zero-padded (lowering.pack_strip_filter). */
static void pack_strip(const conv_case_t *c, int8_t *dst) {
  const hi_nn_conv_params_t *p = &c->p;
  const int32_t groups = (p->in_c + 3) / 4;
  int32_t oc, ky, g, kx, j, n = 0;
  for (oc = 0; oc < p->out_c; ++oc)
    for (ky = 0; ky < p->k_h; ++ky)
      for (g = 0; g < groups; ++g)
        for (kx = 0; kx < p->k_w; ++kx)
          for (j = 0; j < 4; ++j) {
            const int32_t ic = 4 * g + j;
            dst[n++] = ic < p->in_c ? c->filter[((oc * p->k_h + ky) * p->k_w + kx) * p->in_c + ic] : 0;
          }
}

static int32_t out_size(int32_t in, int32_t k, int32_t stride, int32_t dil, int32_t pad_total) {
  return (in + pad_total - ((k - 1) * dil + 1)) / stride + 1;
}

static void run_case(int index) {
  conv_case_t c;
  hi_nn_conv_params_t *p = &c.p;
  int32_t n_in, n_out, n_w, i, oc, pad_h_total, pad_w_total, strip;
  static int8_t scratch[16384] __attribute__((aligned(8)));
  memset(&c, 0, sizeof c);
  p->batches = rnd_range(1, 2);
  p->in_h = rnd_range(1, 9);
  p->in_w = rnd_range(1, 23);
  p->in_c = rnd_range(1, 3) == 1 ? 4 * rnd_range(1, 4) : rnd_range(1, 13);
  p->out_c = rnd_range(1, 11);
  p->k_h = rnd_range(1, 3) == 1 ? 1 : rnd_range(1, 5);
  p->k_w = rnd_range(1, 3) == 1 ? 3 : rnd_range(1, 5);
  p->stride_h = rnd_range(1, 2);
  p->stride_w = rnd_range(1, 2);
  p->dil_h = rnd_range(1, 4) == 1 ? 2 : 1;
  p->dil_w = rnd_range(1, 4) == 1 ? 2 : 1;
  pad_h_total = rnd_range(0, 1) ? (p->k_h - 1) * p->dil_h : 0;
  pad_w_total = rnd_range(0, 1) ? (p->k_w - 1) * p->dil_w : 0;
  if ((p->k_h - 1) * p->dil_h + 1 > p->in_h + pad_h_total) pad_h_total = (p->k_h - 1) * p->dil_h;
  if ((p->k_w - 1) * p->dil_w + 1 > p->in_w + pad_w_total) pad_w_total = (p->k_w - 1) * p->dil_w;
  p->pad_h = pad_h_total / 2;
  p->pad_w = pad_w_total / 2;
  p->out_h = out_size(p->in_h, p->k_h, p->stride_h, p->dil_h, pad_h_total);
  p->out_w = out_size(p->in_w, p->k_w, p->stride_w, p->dil_w, pad_w_total);
  p->input_offset = rnd_range(-127, 128);
  p->output_offset = rnd_range(-128, 127);
  p->act_min = rnd_range(0, 2) ? -128 : rnd_range(-128, 0);
  p->act_max = rnd_range(0, 2) ? 127 : rnd_range(0, 127);
  n_in = p->batches * p->in_h * p->in_w * p->in_c;
  n_out = p->batches * p->out_h * p->out_w * p->out_c;
  n_w = p->out_c * p->k_h * p->k_w * p->in_c;
  c.in = malloc((size_t)n_in);
  c.filter = malloc((size_t)n_w);
  c.packed = malloc((size_t)(p->out_c * p->k_h * p->k_w * 4 * ((p->in_c + 3) / 4)));
  c.res = malloc((size_t)n_out);
  c.out = malloc((size_t)n_out);
  c.ref = malloc((size_t)n_out);
  c.bias = malloc(sizeof(int32_t) * (size_t)p->out_c);
  c.bias_folded = malloc(sizeof(int32_t) * (size_t)p->out_c);
  c.mult = malloc(sizeof(int32_t) * (size_t)p->out_c);
  c.shift = malloc(sizeof(int32_t) * (size_t)p->out_c);
  for (i = 0; i < n_in; ++i) c.in[i] = rnd_s8();
  for (i = 0; i < n_w; ++i) c.filter[i] = (int8_t)(rnd_range(0, 9) == 0 ? -127 : rnd_range(-127, 127));
  for (i = 0; i < n_out; ++i) c.res[i] = rnd_s8();
  for (oc = 0; oc < p->out_c; ++oc) {
    int64_t wsum = 0;
    c.bias[oc] = rnd_range(-200000, 200000);
    for (i = 0; i < p->k_h * p->k_w * p->in_c; ++i) wsum += c.filter[oc * p->k_h * p->k_w * p->in_c + i];
    c.bias_folded[oc] = (int32_t)((int64_t)c.bias[oc] + (int64_t)p->input_offset * wsum);
    rnd_multiplier(&c.mult[oc], &c.shift[oc], -13, rnd_range(0, 5) == 0 ? 2 : -1);
  }
  { /* the SMMULR output stage is allowed when every accumulator provably fits in +-(2^30 - 1) */
    int64_t bound = 0;
    for (oc = 0; oc < p->out_c; ++oc) {
      int64_t b = c.bias_folded[oc] < 0 ? -(int64_t)c.bias_folded[oc] : c.bias_folded[oc];
      for (i = 0; i < p->k_h * p->k_w * p->in_c; ++i) {
        const int32_t w = c.filter[oc * p->k_h * p->k_w * p->in_c + i];
        b += 128 * (w < 0 ? -w : w);
      }
      if (b > bound) bound = b;
    }
    p->acc_q30 = bound < (1 << 30) - 1 ? rnd_range(0, 1) : 0;
  }
  c.has_res = rnd_range(0, 1);
  c.conv_is_input2 = rnd_range(0, 1);
  c.add.input1_offset = rnd_range(-127, 128);
  c.add.input2_offset = rnd_range(-127, 128);
  c.add.output_offset = rnd_range(-128, 127);
  c.add.left_shift = 20;
  rnd_multiplier(&c.add.input1_multiplier, &c.add.input1_shift, -3, 0);
  rnd_multiplier(&c.add.input2_multiplier, &c.add.input2_shift, -3, 0);
  rnd_multiplier(&c.add.output_multiplier, &c.add.output_shift, rnd_range(0, 4) == 0 ? -25 : -19, -16);
  c.add.act_min = rnd_range(0, 1) ? -128 : rnd_range(-128, 0);
  c.add.act_max = 127;
  reference(&c);
  pack_strip(&c, c.packed);
  /* strip widths: whole rows, 8-pixel and 4-pixel blocks, scalar tails, and the in-place path (0) */
  for (strip = 0; strip <= 3; ++strip) {
    hi_nn_residual_t res;
    int32_t need, rc;
    const int32_t widths[4] = {0, p->out_w, 8 + rnd_range(0, 7), 1 + rnd_range(0, 3)};
    p->strip_w = widths[strip] > HI_NN_STRIP_MAX ? HI_NN_STRIP_MAX : widths[strip];
    if (p->strip_w > p->out_w) p->strip_w = p->out_w;
    res.data = c.res;
    res.add = c.add;
    res.conv_is_input2 = c.conv_is_input2;
    need = hi_nn_conv_scratch_bytes(p, c.has_res);
    CHECK(need <= (int32_t)sizeof scratch);
    if (need > (int32_t)sizeof scratch) continue;
    memset(c.out, 0x55, (size_t)n_out);
    rc = hi_nn_conv_s8(p, c.in, p->strip_w ? c.packed : c.filter, c.bias, c.bias_folded, c.mult, c.shift, c.out,
                       c.has_res ? &res : NULL, need ? scratch : NULL, need);
    CHECK(rc == HI_NN_OK);
    if (memcmp(c.out, c.ref, (size_t)n_out) != 0) {
      fprintf(stderr, "case %d strip_w %d: in %dx%dx%d k %dx%d s %d,%d d %d,%d out %dx%dx%d res %d differs\n", index,
              (int)p->strip_w, (int)p->in_h, (int)p->in_w, (int)p->in_c, (int)p->k_h, (int)p->k_w,
              (int)p->stride_h, (int)p->stride_w, (int)p->dil_h, (int)p->dil_w, (int)p->out_h, (int)p->out_w,
              (int)p->out_c, c.has_res);
      ++hi_nn_test_failures;
    }
    if (c.has_res && strip == 1) { /* in place: the output overwrites the residual (what the planner does) */
      int8_t *copy = malloc((size_t)n_out);
      memcpy(copy, c.res, (size_t)n_out);
      res.data = copy;
      rc = hi_nn_conv_s8(p, c.in, c.packed, c.bias, c.bias_folded, c.mult, c.shift, copy, &res, scratch, need);
      CHECK(rc == HI_NN_OK && memcmp(copy, c.ref, (size_t)n_out) == 0);
      free(copy);
    }
    if (need > 0) { /* a scratch one byte short, or misaligned, is refused */
      CHECK(hi_nn_conv_s8(p, c.in, c.packed, c.bias, c.bias_folded, c.mult, c.shift, c.out, c.has_res ? &res : NULL,
                          scratch, need - 1) == HI_NN_ERROR_BAD_PARAMS);
      CHECK(hi_nn_conv_s8(p, c.in, c.packed, c.bias, c.bias_folded, c.mult, c.shift, c.out, c.has_res ? &res : NULL,
                          scratch + 4, need) == HI_NN_ERROR_BAD_PARAMS);
    }
  }
  free(c.in);
  free(c.filter);
  free(c.packed);
  free(c.res);
  free(c.out);
  free(c.ref);
  free(c.bias);
  free(c.bias_folded);
  free(c.mult);
  free(c.shift);
}

/* 1x3 input, one 1x2 filter, VALID: by hand. x + 5 = {6, 7, 8}; acc = 100 + 2*6 - 1*7 = 105 and
 * 100 + 2*7 - 8 = 106; multiplier 0.5 (2^30, shift 0) -> 52.5 -> 53 (ties away), 53; + zp 3. */
static void hand_case(void) {
  hi_nn_conv_params_t p;
  const int8_t in[3] = {1, 2, 3}, filter[2] = {2, -1};
  int8_t packed[8] = {2, 0, 0, 0, -1, 0, 0, 0}, out[2];
  const int32_t bias[1] = {100}, mult[1] = {1 << 30}, shift[1] = {0};
  int32_t bias_folded[1];
  static int8_t scratch[256] __attribute__((aligned(8)));
  memset(&p, 0, sizeof p);
  p.batches = p.in_h = p.out_h = p.in_c = p.out_c = p.k_h = p.stride_h = p.stride_w = p.dil_h = p.dil_w = 1;
  p.in_w = 3;
  p.out_w = 2;
  p.k_w = 2;
  p.input_offset = 5;
  p.output_offset = 3;
  p.act_min = -128;
  p.act_max = 127;
  bias_folded[0] = 100 + 5 * (2 - 1);
  CHECK(hi_nn_conv_s8(&p, in, filter, bias, bias_folded, mult, shift, out, NULL, NULL, 0) == HI_NN_OK);
  CHECK(out[0] == 56 && out[1] == 56);
  p.strip_w = 2;
  CHECK(hi_nn_conv_scratch_bytes(&p, 0) == 1 * 1 * 3 * 8);
  CHECK(hi_nn_conv_scratch_bytes(&p, 1) == 2048 + 1 * 1 * 3 * 8);
  memset(out, 0, sizeof out);
  CHECK(hi_nn_conv_s8(&p, in, packed, bias, bias_folded, mult, shift, out, NULL, scratch, 24) == HI_NN_OK);
  CHECK(out[0] == 56 && out[1] == 56);
  CHECK(hi_nn_conv_s8(&p, in, packed, bias, bias_folded, mult, shift, out, NULL, NULL, 0) == HI_NN_ERROR_BAD_PARAMS);
}

int main(void) {
  int i;
  hand_case();
  for (i = 0; i < 300; ++i) run_case(i);
  TEST_END("hi_nn_conv_test");
}
