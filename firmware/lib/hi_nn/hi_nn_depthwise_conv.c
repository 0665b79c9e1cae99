/* hi_nn_depthwise_conv.c - int8 DEPTHWISE_CONV_2D; see the header. */
#include "hi_nn_depthwise_conv.h"

int hi_nn_depthwise_conv_s8(const hi_nn_dwconv_params_t *p, const int8_t *in, const int8_t *filter,
                            const int32_t *bias, const int32_t *bias_folded, const int32_t *mult,
                            const int32_t *shift, int8_t *out) {
  const int32_t in_batch = p->in_h * p->in_w * p->in_c;
  const int32_t out_c = p->out_c;
  const int32_t span_h = (p->k_h - 1) * p->dil_h;
  const int32_t span_w = (p->k_w - 1) * p->dil_w;
  int32_t b, oy, ox, oc, ky, kx;
  if (out_c != p->in_c * p->depth_multiplier) return HI_NN_ERROR_BAD_PARAMS;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = in + b * in_batch;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t in_y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        const int interior = in_y0 >= 0 && in_y0 + span_h < p->in_h && in_x0 >= 0 && in_x0 + span_w < p->in_w;
        int8_t *out_px = out + ((b * p->out_h + oy) * p->out_w + ox) * out_c;
        for (oc = 0; oc < out_c; ++oc) {
          const int32_t ic = oc / p->depth_multiplier;
          int32_t acc;
          if (interior) {
            acc = bias_folded[oc];
            for (ky = 0; ky < p->k_h; ++ky) {
              const int8_t *x_row = in_b + ((in_y0 + p->dil_h * ky) * p->in_w + in_x0) * p->in_c + ic;
              const int8_t *w_row = filter + ky * p->k_w * out_c + oc;
              for (kx = 0; kx < p->k_w; ++kx) {
                acc += (int32_t)w_row[kx * out_c] * (int32_t)x_row[kx * p->dil_w * p->in_c];
              }
            }
          } else {
            acc = bias ? bias[oc] : 0;
            for (ky = 0; ky < p->k_h; ++ky) {
              const int32_t iy = in_y0 + p->dil_h * ky;
              if (iy < 0 || iy >= p->in_h) continue;
              for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = in_x0 + p->dil_w * kx;
                if (ix < 0 || ix >= p->in_w) continue;
                acc += (int32_t)filter[(ky * p->k_w + kx) * out_c + oc] *
                       ((int32_t)in_b[(iy * p->in_w + ix) * p->in_c + ic] + p->input_offset);
              }
            }
          }
          out_px[oc] = hi_nn_requant_s8(acc, mult[oc], shift[oc], p->output_offset, p->act_min, p->act_max);
        }
      }
    }
  }
  return HI_NN_OK;
}
