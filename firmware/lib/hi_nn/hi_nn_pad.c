/* hi_nn_pad.c - PAD; copies each contiguous innermost row once and fills the padding with memset. */
#include "hi_nn_pad.h"

int hi_nn_pad_s8(const hi_nn_pad_params_t *p, const int8_t *in, int8_t *out) {
  enum { D = HI_NN_PAD_MAX_DIMS };
  int32_t out_shape[D], idx[D - 1];
  int32_t outer = 1, d;
  const int32_t last = D - 1;
  const int8_t pad = (int8_t)p->pad_value;
  for (d = 0; d < D; ++d) {
    if (p->before[d] < 0 || p->after[d] < 0) return HI_NN_ERROR_BAD_PARAMS;
    out_shape[d] = p->before[d] + p->in_shape[d] + p->after[d];
  }
  for (d = 0; d < last; ++d) {
    idx[d] = 0;
    outer *= out_shape[d];
  }
  {
    const int32_t row_in = p->in_shape[last];
    const int32_t row_out = out_shape[last];
    int32_t r;
    for (r = 0; r < outer; ++r) {
      int8_t *o = out + r * row_out;
      int inside = 1;
      int32_t in_off = 0;
      for (d = 0; d < last; ++d) {
        const int32_t i = idx[d] - p->before[d];
        if (i < 0 || i >= p->in_shape[d]) inside = 0;
        in_off = in_off * p->in_shape[d] + (inside ? i : 0);
      }
      if (!inside) {
        memset(o, pad, (size_t)row_out);
      } else {
        memset(o, pad, (size_t)p->before[last]);
        memcpy(o + p->before[last], in + in_off * row_in, (size_t)row_in);
        memset(o + p->before[last] + row_in, pad, (size_t)p->after[last]);
      }
      for (d = last - 1; d >= 0; --d) {
        if (++idx[d] < out_shape[d]) break;
        idx[d] = 0;
      }
    }
  }
  return HI_NN_OK;
}
