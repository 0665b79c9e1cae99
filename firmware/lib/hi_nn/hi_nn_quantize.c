/* hi_nn_quantize.c - QUANTIZE / DEQUANTIZE; see the header. */
#include "hi_nn_quantize.h"

#include <math.h>

static void store_q(void *out, int32_t out_type, int32_t i, int32_t v) {
  if (out_type == HI_NN_TYPE_UINT8) {
    ((uint8_t *)out)[i] = (uint8_t)hi_nn_clamp_i32(v, 0, 255);
  } else {
    ((int8_t *)out)[i] = (int8_t)hi_nn_clamp_i32(v, -128, 127);
  }
}

static int32_t load_q(const void *in, int32_t in_type, int32_t i) {
  return in_type == HI_NN_TYPE_UINT8 ? (int32_t)((const uint8_t *)in)[i] : (int32_t)((const int8_t *)in)[i];
}

int hi_nn_quantize_f32(const float *in, void *out, int32_t out_type, int32_t n, float scale, int32_t zero_point) {
  int32_t i;
  for (i = 0; i < n; ++i) {
    float r = roundf(in[i] / scale);
    /* Out-of-range floats saturate instead of invoking undefined float->int conversion. */
    if (r > 1.0e6f) r = 1.0e6f;
    if (r < -1.0e6f) r = -1.0e6f;
    store_q(out, out_type, i, (int32_t)r + zero_point);
  }
  return HI_NN_OK;
}

int hi_nn_requantize(const void *in, int32_t in_type, void *out, int32_t out_type, int32_t n, int32_t in_zero_point,
                     int32_t out_zero_point, int32_t multiplier, int32_t shift) {
  int32_t i;
  for (i = 0; i < n; ++i) {
    const int32_t x = load_q(in, in_type, i) - in_zero_point;
    store_q(out, out_type, i, hi_nn_mbqm(x, multiplier, shift) + out_zero_point);
  }
  return HI_NN_OK;
}

int hi_nn_dequantize(const void *in, int32_t in_type, float *out, int32_t n, double scale, int32_t zero_point) {
  int32_t i;
  for (i = 0; i < n; ++i) {
    out[i] = (float)(scale * (double)(load_q(in, in_type, i) - zero_point));
  }
  return HI_NN_OK;
}
