/* hi_nn_add.c - int8 ADD; see hi_nn_add.h for why it is shaped this way. */
#include "hi_nn_add.h"

int hi_nn_add_s8(const hi_nn_add_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out, int32_t n) {
  int32_t i;
  for (i = 0; i < n; ++i) {
    out[i] = hi_nn_add_elem_s8(in1[i], in2[i], p);
  }
  return HI_NN_OK;
}

int hi_nn_add_broadcast_s8(const hi_nn_add_params_t *p, const int32_t in1_shape[HI_NN_MAX_DIMS],
                           const int32_t in2_shape[HI_NN_MAX_DIMS], const int32_t out_shape[HI_NN_MAX_DIMS],
                           const int8_t *in1, const int8_t *in2, int8_t *out) {
  int32_t s1[HI_NN_MAX_DIMS], s2[HI_NN_MAX_DIMS];
  int32_t idx[HI_NN_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
  int32_t st1 = 1, st2 = 1, total = 1, k, d;
  /* Row-major strides; a broadcast dim gets stride 0 so its single element is reused. */
  for (d = HI_NN_MAX_DIMS - 1; d >= 0; --d) {
    s1[d] = in1_shape[d] == 1 ? 0 : st1;
    s2[d] = in2_shape[d] == 1 ? 0 : st2;
    st1 *= in1_shape[d];
    st2 *= in2_shape[d];
    total *= out_shape[d];
  }
  for (k = 0; k < total; ++k) {
    int32_t o1 = 0, o2 = 0;
    for (d = 0; d < HI_NN_MAX_DIMS; ++d) {
      o1 += idx[d] * s1[d];
      o2 += idx[d] * s2[d];
    }
    out[k] = hi_nn_add_elem_s8(in1[o1], in2[o2], p);
    for (d = HI_NN_MAX_DIMS - 1; d >= 0; --d) {
      if (++idx[d] < out_shape[d]) break;
      idx[d] = 0;
    }
  }
  return HI_NN_OK;
}
