/* hi_nn_mean.c - int8 MEAN; see the header for the (float) arithmetic TFLM uses. */
#include "hi_nn_mean.h"

#include <math.h>

int hi_nn_mean_s8(const hi_nn_mean_params_t *p, const int8_t *in, int8_t *out) {
  int32_t out_strides[HI_NN_MEAN_MAX_DIMS];
  int32_t idx[HI_NN_MEAN_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
  int32_t total = 1, n_reduced = 1, n_out = 1, k, d, st = 1;
  const int nd = (int)p->num_dims;
  if (nd < 1 || nd > HI_NN_MEAN_MAX_DIMS) return HI_NN_ERROR_BAD_PARAMS;
  for (d = nd - 1; d >= 0; --d) {
    out_strides[d] = p->reduce[d] ? 0 : st;
    if (!p->reduce[d]) st *= p->in_shape[d];
    if (p->reduce[d]) n_reduced *= p->in_shape[d];
    total *= p->in_shape[d];
  }
  n_out = st;
  {
    /* Fast path: the reduced axes form one contiguous block, so the input is [outer][reduced][inner]. */
    int32_t first = -1, last = -1, outer = 1, inner = 1, contiguous = 1;
    for (d = 0; d < nd; ++d) {
      if (p->reduce[d] && p->in_shape[d] != 1) {
        if (first < 0) first = d;
        else if (last != d - 1) contiguous = 0;
        last = d;
      }
    }
    if (first < 0) { first = 0; last = -1; }
    for (d = 0; d < first; ++d) outer *= p->in_shape[d];
    for (d = last + 1; d < nd; ++d) inner *= p->in_shape[d];
    if (contiguous) {
      const float scale = p->input_scale / p->output_scale;
      const float bias = (float)(-p->input_zero_point) * scale;
      const int32_t red = total / (outer * inner);
      int32_t o, i, r;
      for (o = 0; o < outer; ++o) {
        for (i = 0; i < inner; ++i) {
          const int8_t *src = in + o * red * inner + i;
          int32_t sum = 0;
          float mean, v;
          for (r = 0; r < red; ++r) sum += src[r * inner];
          mean = (float)sum / (float)n_reduced;
          v = roundf(mean * scale + bias) + (float)p->output_zero_point;
          if (v > 127.0f) v = 127.0f;
          if (v < -128.0f) v = -128.0f;
          out[o * inner + i] = (int8_t)v;
        }
      }
      return HI_NN_OK;
    }
  }
  {
    /* Pass 1: walk the input once, accumulating int32 sums into the output slots' positions. The sums
     * live in a small stack array processed in chunks so no arena scratch is needed. */
    enum { CHUNK = 64 };
    int32_t sums[CHUNK];
    int32_t base;
    const float scale = p->input_scale / p->output_scale;
    const float bias = (float)(-p->input_zero_point) * scale;
    for (base = 0; base < n_out; base += CHUNK) {
      const int32_t lim = (n_out - base) < CHUNK ? (n_out - base) : CHUNK;
      for (k = 0; k < lim; ++k) sums[k] = 0;
      for (d = 0; d < nd; ++d) idx[d] = 0;
      for (k = 0; k < total; ++k) {
        int32_t o = 0;
        for (d = 0; d < nd; ++d) o += idx[d] * out_strides[d];
        if (o >= base && o < base + lim) sums[o - base] += in[k];
        for (d = nd - 1; d >= 0; --d) {
          if (++idx[d] < p->in_shape[d]) break;
          idx[d] = 0;
        }
      }
      for (k = 0; k < lim; ++k) {
        const float mean = (float)sums[k] / (float)n_reduced;
        float r = roundf(mean * scale + bias) + (float)p->output_zero_point;
        if (r > 127.0f) r = 127.0f;
        if (r < -128.0f) r = -128.0f;
        out[base + k] = (int8_t)r;
      }
    }
  }
  return HI_NN_OK;
}
