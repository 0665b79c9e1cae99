/*
 * hi_nn_quantize_test.c - QUANTIZE / DEQUANTIZE as TFLM computes them: float -> int8/uint8 with roundf
 * (half away from zero) and saturation (also for huge and infinite inputs), int8 <-> uint8 requantization
 * against the literal MultiplyByQuantizedMultiplier, and dequantization in double.
 */
#include <math.h>

#include "hi_nn_quantize.h"
#include "hi_nn_test.h"

int main(void) {
  {
    const float x[7] = {0.25f, 0.75f, -0.75f, 1000.0f, -1.0e30f, 0.0f, (float)INFINITY};
    int8_t q[7];
    uint8_t u[7];
    CHECK(hi_nn_quantize_f32(x, q, HI_NN_TYPE_INT8, 7, 0.5f, 3) == HI_NN_OK);
    /* 0.5 -> 1 (away from zero) + 3; 1.5 -> 2 + 3; -1.5 -> -2 + 3; saturate; saturate; 3; saturate */
    CHECK(q[0] == 4 && q[1] == 5 && q[2] == 1 && q[3] == 127 && q[4] == -128 && q[5] == 3 && q[6] == 127);
    CHECK(hi_nn_quantize_f32(x, u, HI_NN_TYPE_UINT8, 7, 0.5f, 128) == HI_NN_OK);
    CHECK(u[0] == 129 && u[2] == 126 && u[3] == 255 && u[4] == 0);
  }
  {
    int8_t in[256], out8[256];
    uint8_t outu[256];
    int32_t i, t;
    for (t = 0; t < 50; ++t) {
      int32_t m, s;
      const int32_t zin = rnd_range(-128, 127), zout = rnd_range(-128, 127);
      rnd_multiplier(&m, &s, -3, 2);
      for (i = 0; i < 256; ++i) in[i] = (int8_t)(i - 128);
      CHECK(hi_nn_requantize(in, HI_NN_TYPE_INT8, out8, HI_NN_TYPE_INT8, 256, zin, zout, m, s) == HI_NN_OK);
      CHECK(hi_nn_requantize(in, HI_NN_TYPE_INT8, outu, HI_NN_TYPE_UINT8, 256, zin, zout + 128, m, s) == HI_NN_OK);
      for (i = 0; i < 256; ++i) {
        const int32_t v = ref_mbqm(in[i] - zin, m, s);
        CHECK(out8[i] == ref_clamp(v + zout, -128, 127));
        CHECK(outu[i] == ref_clamp(v + zout + 128, 0, 255));
      }
    }
  }
  {
    const int8_t q[3] = {-128, 0, 127};
    float f[3];
    CHECK(hi_nn_dequantize(q, HI_NN_TYPE_INT8, f, 3, 0.1, -3) == HI_NN_OK);
    CHECK(f[0] == (float)(0.1 * -125.0) && f[1] == (float)(0.1 * 3.0) && f[2] == (float)(0.1 * 130.0));
  }
  TEST_END("hi_nn_quantize_test");
}
