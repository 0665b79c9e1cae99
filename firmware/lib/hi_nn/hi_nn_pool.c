/* hi_nn_pool.c - int8 pooling; see the header. */
#include "hi_nn_pool.h"

static int pool_s8(const hi_nn_pool_params_t *p, const int8_t *in, int8_t *out, int is_max) {
  int32_t b, oy, ox, c, fy, fx;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = in + b * p->in_h * p->in_w * p->channels;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      const int32_t fy_start = hi_nn_max_i32(0, -y0);
      const int32_t fy_end = hi_nn_min_i32(p->filter_h, p->in_h - y0);
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        const int32_t fx_start = hi_nn_max_i32(0, -x0);
        const int32_t fx_end = hi_nn_min_i32(p->filter_w, p->in_w - x0);
        int8_t *o = out + ((b * p->out_h + oy) * p->out_w + ox) * p->channels;
        for (c = 0; c < p->channels; ++c) {
          int32_t acc = is_max ? -128 : 0;
          int32_t count = 0;
          for (fy = fy_start; fy < fy_end; ++fy) {
            const int8_t *row = in_b + ((y0 + fy) * p->in_w + x0) * p->channels + c;
            for (fx = fx_start; fx < fx_end; ++fx) {
              const int32_t v = row[fx * p->channels];
              if (is_max) {
                acc = v > acc ? v : acc;
              } else {
                acc += v;
              }
              ++count;
            }
          }
          if (!is_max) {
            if (count == 0) return HI_NN_ERROR_BAD_PARAMS;
            acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
          }
          o[c] = (int8_t)hi_nn_clamp_i32(acc, p->act_min, p->act_max);
        }
      }
    }
  }
  return HI_NN_OK;
}

int hi_nn_avg_pool_s8(const hi_nn_pool_params_t *p, const int8_t *in, int8_t *out) { return pool_s8(p, in, out, 0); }
int hi_nn_max_pool_s8(const hi_nn_pool_params_t *p, const int8_t *in, int8_t *out) { return pool_s8(p, in, out, 1); }
