/* hi_nn_mean.c - int8 MEAN; see the header for the arithmetic. */
#include "hi_nn_mean.h"

HI_NN_INLINE int8_t mean_output(const hi_nn_mean_params_t *p, int32_t sum, int32_t count) {
  const int32_t shifted = (int32_t)((int64_t)sum - (int64_t)p->input_zero_point * count);
  const int32_t v = hi_nn_mbqm(shifted, p->multiplier, p->shift) + p->output_zero_point;
  return (int8_t)hi_nn_clamp_i32(v, -128, 127);
}

int hi_nn_mean_s8(const hi_nn_mean_params_t *p, const int8_t *in, int8_t *out) {
  int32_t out_strides[HI_NN_MEAN_MAX_DIMS];
  int32_t idx[HI_NN_MEAN_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
  int32_t total = 1, count = 1, n_out, k, d, st = 1;
  int32_t first = -1, last = -1, outer = 1, inner = 1, contiguous = 1;
  const int nd = (int)p->num_dims;
  if (nd < 1 || nd > HI_NN_MEAN_MAX_DIMS) return HI_NN_ERROR_BAD_PARAMS;
  for (d = nd - 1; d >= 0; --d) {
    out_strides[d] = p->reduce[d] ? 0 : st;
    if (p->reduce[d]) {
      count *= p->in_shape[d];
    } else {
      st *= p->in_shape[d];
    }
    total *= p->in_shape[d];
  }
  n_out = st;
  /* Fast path: the reduced axes (ignoring size-1 ones) form one block: input is [outer][reduced][inner]. */
  for (d = 0; d < nd; ++d) {
    if (p->reduce[d] && p->in_shape[d] != 1) {
      if (first < 0) {
        first = d;
      } else if (last != d - 1) {
        contiguous = 0;
      }
      last = d;
    }
  }
  if (contiguous) {
    int32_t red, o, i, r;
    if (first < 0) {
      first = 0;
      last = -1;
    }
    for (d = 0; d < first; ++d) outer *= p->in_shape[d];
    for (d = last + 1; d < nd; ++d) inner *= p->in_shape[d];
    red = total / (outer * inner);
    for (o = 0; o < outer; ++o) {
      for (i = 0; i < inner; ++i) {
        const int8_t *src = in + o * red * inner + i;
        int32_t sum = 0;
        for (r = 0; r < red; ++r) sum += src[r * inner];
        out[o * inner + i] = mean_output(p, sum, count);
      }
    }
    return HI_NN_OK;
  }
  {
    /* Generic walk in output chunks so no arena scratch is needed. */
    enum { CHUNK = 64 };
    int32_t sums[CHUNK];
    int32_t base;
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
      for (k = 0; k < lim; ++k) out[base + k] = mean_output(p, sums[k], count);
    }
  }
  return HI_NN_OK;
}
