/*
 * hi_nn_add_test.c - hi_nn_add_s8 / hi_nn_add_broadcast_s8 against TFLM's AddFunc written out literally,
 * random quantization parameters and values, every broadcast pattern of a small 6-D shape, in place (out
 * aliasing either input), and a hand-computed case.
 */
#include "hi_nn_add.h"
#include "hi_nn_test.h"

static int32_t ref_add(const hi_nn_add_params_t *a, int32_t x, int32_t y) {
  const int32_t in1 = (int32_t)((uint32_t)(a->input1_offset + x) << a->left_shift);
  const int32_t in2 = (int32_t)((uint32_t)(a->input2_offset + y) << a->left_shift);
  const int32_t s1 = ref_mbqm(in1, a->input1_multiplier, a->input1_shift);
  const int32_t s2 = ref_mbqm(in2, a->input2_multiplier, a->input2_shift);
  return ref_clamp(ref_mbqm(s1 + s2, a->output_multiplier, a->output_shift) + a->output_offset, a->act_min, a->act_max);
}

static void random_params(hi_nn_add_params_t *a) {
  a->input1_offset = rnd_range(-127, 128);
  a->input2_offset = rnd_range(-127, 128);
  a->output_offset = rnd_range(-128, 127);
  a->left_shift = 20;
  rnd_multiplier(&a->input1_multiplier, &a->input1_shift, -3, 0);
  rnd_multiplier(&a->input2_multiplier, &a->input2_shift, -3, 0);
  rnd_multiplier(&a->output_multiplier, &a->output_shift, -22, -15);
  a->act_min = rnd_range(0, 1) ? -128 : rnd_range(-128, 0);
  a->act_max = rnd_range(0, 1) ? 127 : rnd_range(0, 127);
}

int main(void) {
  enum { N = 257 };
  int8_t x[N], y[N], out[N], ref[N];
  hi_nn_add_params_t a;
  int t, i;
  /* by hand: unit scales (multipliers 0.5 = 2^30 with shift 0 halve, the output doubles back with shift 1) */
  a.input1_offset = 0;
  a.input2_offset = 0;
  a.output_offset = 0;
  a.left_shift = 20;
  a.input1_multiplier = a.input2_multiplier = 1 << 30;
  a.input1_shift = a.input2_shift = 0;
  a.output_multiplier = 1 << 30;
  a.output_shift = -18; /* (x*2^19 + y*2^19) * 0.5 / 2^18 = x + y */
  a.act_min = -128;
  a.act_max = 127;
  x[0] = 3;
  y[0] = 4;
  x[1] = 100;
  y[1] = 100;
  x[2] = -70;
  y[2] = -70;
  CHECK(hi_nn_add_s8(&a, x, y, out, 3) == HI_NN_OK);
  CHECK(out[0] == 7 && out[1] == 127 && out[2] == -128);
  for (t = 0; t < 200; ++t) {
    random_params(&a);
    for (i = 0; i < N; ++i) {
      x[i] = rnd_s8();
      y[i] = rnd_s8();
      ref[i] = (int8_t)ref_add(&a, x[i], y[i]);
    }
    CHECK(hi_nn_add_s8(&a, x, y, out, N) == HI_NN_OK && memcmp(out, ref, N) == 0);
    memcpy(out, x, N); /* in place over input 1 */
    CHECK(hi_nn_add_s8(&a, out, y, out, N) == HI_NN_OK && memcmp(out, ref, N) == 0);
  }
  { /* broadcast: shape 2x1x3x1x2x2 against every pattern of 1s */
    const int32_t full[HI_NN_MAX_DIMS] = {2, 1, 3, 1, 2, 2};
    int mask;
    for (mask = 0; mask < 64; ++mask) {
      int32_t s2[HI_NN_MAX_DIMS], d, n1 = 1, n2 = 1, k;
      int32_t idx[HI_NN_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
      for (d = 0; d < HI_NN_MAX_DIMS; ++d) {
        s2[d] = (mask >> d) & 1 ? 1 : full[d];
        n1 *= full[d];
        n2 *= s2[d];
      }
      random_params(&a);
      for (i = 0; i < n1; ++i) x[i] = rnd_s8();
      for (i = 0; i < n2; ++i) y[i] = rnd_s8();
      for (k = 0; k < n1; ++k) {
        int32_t o2 = 0;
        for (d = 0; d < HI_NN_MAX_DIMS; ++d) o2 = o2 * s2[d] + (s2[d] == 1 ? 0 : idx[d]);
        ref[k] = (int8_t)ref_add(&a, x[k], y[o2]);
        for (d = HI_NN_MAX_DIMS - 1; d >= 0; --d) {
          if (++idx[d] < full[d]) break;
          idx[d] = 0;
        }
      }
      CHECK(hi_nn_add_broadcast_s8(&a, full, s2, full, x, y, out) == HI_NN_OK && memcmp(out, ref, (size_t)n1) == 0);
    }
  }
  TEST_END("hi_nn_add_test");
}
