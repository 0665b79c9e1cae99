/*
 * hi_nn_pool_test.c - hi_nn_avg_pool_s8 / hi_nn_max_pool_s8 on hand-computed cases: TFLM's average pooling
 * divides by the number of in-image taps with rounding half away from zero; SAME padding taps are not
 * counted; max pooling ignores padding; activation clamps; a window with no in-image tap is refused.
 */
#include "hi_nn_pool.h"
#include "hi_nn_test.h"

int main(void) {
  /* 3x3 one-channel image, 2x2 window, stride 1, SAME-style bottom/right padding (pad 0 top/left) */
  const int8_t img[9] = {1, 2, 3, 4, 5, 6, 7, 8, -9};
  int8_t out[9];
  hi_nn_pool_params_t p = {1, 3, 3, 1, 3, 3, 2, 2, 1, 1, 0, 0, -128, 127};
  CHECK(hi_nn_avg_pool_s8(&p, img, out) == HI_NN_OK);
  /* (1+2+4+5)/4 = 3; (2+3+5+6)/4 = 4; (3+6)/2 = 4.5 -> 5; (4+5+7+8)/4 = 6; (5+6+8-9)/4 = 2.5 -> 3;
   * (6-9)/2 = -1.5 -> -2 (away from zero); (7+8)/2 = 7.5 -> 8; (8-9)/2 = -0.5 -> -1; -9 */
  CHECK(out[0] == 3 && out[1] == 4 && out[2] == 5 && out[3] == 6 && out[4] == 3 && out[5] == -2 && out[6] == 8 &&
        out[7] == -1 && out[8] == -9);
  CHECK(hi_nn_max_pool_s8(&p, img, out) == HI_NN_OK);
  CHECK(out[0] == 5 && out[1] == 6 && out[2] == 6 && out[3] == 8 && out[4] == 8 && out[5] == 6 && out[6] == 8 &&
        out[7] == 8 && out[8] == -9);
  p.act_min = 0; /* fused ReLU */
  p.act_max = 4;
  CHECK(hi_nn_max_pool_s8(&p, img, out) == HI_NN_OK && out[0] == 4 && out[8] == 0);
  { /* two channels, global 2x2 window, stride 2 */
    const int8_t two[8] = {10, -1, 20, -2, 30, -3, 41, -5};
    hi_nn_pool_params_t g = {1, 2, 2, 2, 1, 1, 2, 2, 2, 2, 0, 0, -128, 127};
    CHECK(hi_nn_avg_pool_s8(&g, two, out) == HI_NN_OK && out[0] == 25 && out[1] == -3); /* 25.25, -2.75 */
    CHECK(hi_nn_max_pool_s8(&g, two, out) == HI_NN_OK && out[0] == 41 && out[1] == -1);
  }
  { /* a window entirely in the padding has no tap to average */
    hi_nn_pool_params_t bad = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, -128, 127};
    CHECK(hi_nn_avg_pool_s8(&bad, img, out) == HI_NN_ERROR_BAD_PARAMS);
  }
  TEST_END("hi_nn_pool_test");
}
