/*
 * hi_nn_softmax_test.c - hi_nn_softmax_s8 (gemmlowp fixed point, TFLM's int8 Softmax) on golden vectors
 * recorded from the tflite-micro interpreter (a Dense -> Softmax model whose two outputs expose the softmax
 * input and output; parameters as the compiler computes them), the properties every int8 softmax output has
 * (scores sum to ~256 in 1/256 units, order kept, uniform input gives uniform output), rows wide enough to
 * push the output shift past 31 (up to the compiler's limit, 4095 classes), and the fixed-point helpers at
 * known points.
 */
#include "hi_nn_softmax.h"
#include "hi_nn_test.h"

static const int8_t g_in[4][10] = {
    {-9, 4, 54, -107, 127, -58, 96, 58, 42, -92},
    {108, -15, -28, -18, -60, 110, -31, 84, -14, -13},
    {6, 17, -51, -56, -32, -6, -52, 127, -5, -27},
    {-58, -4, 42, 16, 54, 42, 27, -100, 37, 41},
};
static const int8_t g_out[4][10] = {
    {-128, -128, -128, -128, 112, -128, -113, -127, -128, -128},
    {-17, -128, -128, -128, -128, 4, -128, -115, -128, -128},
    {-128, -128, -128, -128, -128, -128, -128, 127, -128, -128},
    {-128, -127, -91, -124, -19, -91, -118, -128, -104, -94},
};

int main(void) {
  const hi_nn_softmax_params_t p = {1, 10, 1530366592, 23, -248};
  int8_t out[40];
  int i, t;
  for (i = 0; i < 4; ++i) {
    CHECK(hi_nn_softmax_s8(&p, g_in[i], out) == HI_NN_OK);
    CHECK(memcmp(out, g_out[i], 10) == 0);
  }
  {
    const hi_nn_softmax_params_t p4 = {4, 10, 1530366592, 23, -248}; /* four rows in one call */
    CHECK(hi_nn_softmax_s8(&p4, &g_in[0][0], out) == HI_NN_OK && memcmp(out, g_out, 40) == 0);
  }
  for (t = 0; t < 200; ++t) {
    int8_t in[10];
    int32_t sum = 0, imax = 0, same = rnd_range(0, 9) == 0;
    for (i = 0; i < 10; ++i) {
      in[i] = same ? (int8_t)5 : rnd_s8();
      if (in[i] > in[imax]) imax = i;
    }
    CHECK(hi_nn_softmax_s8(&p, in, out) == HI_NN_OK);
    for (i = 0; i < 10; ++i) {
      sum += out[i] + 128;
      CHECK(out[i] <= out[imax]);
      if (same) CHECK(out[i] == out[0]);
    }
    CHECK(sum >= 256 - 10 && sum <= 256 + 10);
  }
  {
    /* wide, nearly uniform rows: the sum of exps passes 2^28 (>= ~512 classes near the max), where the output
     * shift would reach 32 (undefined; the sanitizers stop the test): every class is ~1/depth, i.e. -128 */
    static int8_t wide_in[4095], wide_out[4095];
    static const int depths[] = {600, 1000, 4095};
    int d;
    for (d = 0; d < 3; ++d) {
      const hi_nn_softmax_params_t pw = {1, depths[d], 1717986944, 23, -248}; /* beta 1, input scale 0.1 */
      int all_min = 1;
      for (i = 0; i < depths[d]; ++i) wide_in[i] = (int8_t)(i % 3);
      CHECK(hi_nn_softmax_s8(&pw, wide_in, wide_out) == HI_NN_OK);
      for (i = 0; i < depths[d]; ++i) all_min &= wide_out[i] == -128;
      CHECK(all_min);
    }
  }
  CHECK(hi_nn_exp_on_negative_values_q5(0) == INT32_MAX);
  CHECK(hi_nn_one_over_one_plus_x(0) >= INT32_MAX - 64);
  TEST_END("hi_nn_softmax_test");
}
