/* hi_nn_conv.c - int8 CONV_2D; see hi_nn_conv.h for the design. */
#include "hi_nn_conv.h"

/* Output stage shared by all paths: requantize, clamp, then (optionally) the fused residual ADD. */
HI_NN_INLINE int8_t conv_output(const hi_nn_conv_params_t *p, int32_t acc, int32_t mult, int32_t shift,
                                const hi_nn_residual_t *res, int32_t out_index) {
  const int8_t c = hi_nn_requant_s8(acc, mult, shift, p->output_offset, p->act_min, p->act_max);
  if (res == NULL) return c;
  {
    const int8_t r = res->data[out_index];
    return res->conv_is_input2 ? hi_nn_add_elem_s8(r, c, &res->add) : hi_nn_add_elem_s8(c, r, &res->add);
  }
}

/* Copy two pixels' receptive fields (k_h x k_w x in_c, OHWI order) into win, interleaved in 4-byte groups
 * (a0..a3 b0..b3 a4..a7 b4..b7 ...). Taps outside the image get the input zero point, i.e.
 * (x + input_offset) == 0: with the folded bias this is exactly TFLM's "skip taps outside the image", so
 * border pixels need no separate arithmetic. */
static void conv_gather_pair(const hi_nn_conv_params_t *p, const int8_t *in_b, int32_t in_y0, int32_t in_x0a,
                             int32_t in_x0b, int8_t *win, int32_t k4) {
  const int32_t in_c = p->in_c;
  const int8_t pad = (int8_t)(-p->input_offset);
  int32_t w;
  for (w = 0; w < 2; ++w) {
    const int32_t in_x0 = w ? in_x0b : in_x0a;
    int32_t pos = 0; /* byte position in the window */
    int32_t ky, kx, c;
    for (ky = 0; ky < p->k_h; ++ky) {
      const int32_t iy = in_y0 + p->dil_h * ky;
      for (kx = 0; kx < p->k_w; ++kx) {
        const int32_t ix = in_x0 + p->dil_w * kx;
        const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
        const int8_t *src = in_b + (iy * p->in_w + ix) * in_c;
        if (inside && (pos & 3) == 0 && (in_c & 3) == 0) {
          for (c = 0; c < in_c; c += 4, pos += 4) {
            memcpy(win + 2 * pos + 4 * w, src + c, 4);
          }
        } else {
          for (c = 0; c < in_c; ++c, ++pos) {
            win[((pos >> 2) << 3) + 4 * w + (pos & 3)] = inside ? src[c] : pad;
          }
        }
      }
    }
    for (; pos < k4; ++pos) win[((pos >> 2) << 3) + 4 * w + (pos & 3)] = 0; /* weights are 0 there */
  }
}

/* Output stage with everything it needs in locals: the int8 stores below may alias any memory as far as the
 * C compiler knows, so reading p-> / res-> fields per output would reload them after every store. */
typedef struct {
  int32_t out_offset, act_min, act_max;
  const int8_t *res_data; /* NULL: no fused residual */
  int32_t conv_is_input2;
  hi_nn_add_params_t add;
} conv_out_stage_t;

static void conv_out_stage_init(conv_out_stage_t *st, const hi_nn_conv_params_t *p, const hi_nn_residual_t *res) {
  st->out_offset = p->output_offset;
  st->act_min = p->act_min;
  st->act_max = p->act_max;
  st->res_data = res ? res->data : NULL;
  st->conv_is_input2 = res ? res->conv_is_input2 : 0;
  if (res) {
    st->add = res->add;
  } else {
    memset(&st->add, 0, sizeof(st->add)); /* unused without a residual; keeps -Wmaybe-uninitialized quiet */
  }
}

HI_NN_INLINE int8_t conv_out_value(const conv_out_stage_t *st, int32_t acc, int32_t mult, int32_t shift,
                                   int32_t out_index) {
  const int8_t c = hi_nn_requant_s8(acc, mult, shift, st->out_offset, st->act_min, st->act_max);
  if (st->res_data == NULL) return c;
  {
    const int8_t r = st->res_data[out_index];
    return st->conv_is_input2 ? hi_nn_add_elem_s8(r, c, &st->add) : hi_nn_add_elem_s8(c, r, &st->add);
  }
}

/* Both pixels' outputs for all channels from an interleaved window pair and the packed filter. */
static void conv_pair_packed(const hi_nn_conv_params_t *p, const int8_t *win, int32_t k4, const int8_t *filter,
                             const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                             int8_t *HI_NN_RESTRICT out_px, const conv_out_stage_t *stage, int32_t out_index,
                             int second_valid) {
  const int32_t out_c = p->out_c;
  const int8_t *w = filter;
  const conv_out_stage_t st = *stage;
  int32_t oc = 0;
  for (; oc + 2 <= out_c; oc += 2, w += 2 * k4) {
    int32_t acc[4];
    const int32_t m0 = mult[oc], m1 = mult[oc + 1], s0 = shift[oc], s1 = shift[oc + 1];
    acc[0] = acc[2] = bias_folded[oc];
    acc[1] = acc[3] = bias_folded[oc + 1];
    hi_nn_dot2x2_packed_s8(win, w, k4, acc);
    out_px[oc] = conv_out_value(&st, acc[0], m0, s0, out_index + oc);
    out_px[oc + 1] = conv_out_value(&st, acc[1], m1, s1, out_index + oc + 1);
    if (second_valid) {
      out_px[out_c + oc] = conv_out_value(&st, acc[2], m0, s0, out_index + out_c + oc);
      out_px[out_c + oc + 1] = conv_out_value(&st, acc[3], m1, s1, out_index + out_c + oc + 1);
    }
  }
  if (oc < out_c) {
    int32_t a0 = bias_folded[oc], a1 = bias_folded[oc];
    hi_nn_dot1x2_packed_s8(win, w, k4, &a0, &a1);
    out_px[oc] = conv_out_value(&st, a0, mult[oc], shift[oc], out_index + oc);
    if (second_valid) out_px[out_c + oc] = conv_out_value(&st, a1, mult[oc], shift[oc], out_index + out_c + oc);
  }
}

/* Border pixel: TFLM semantics, taps outside the image are skipped. */
static void conv_pixel_border(const hi_nn_conv_params_t *p, const int8_t *in_b, const int8_t *filter,
                              const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out_px,
                              const hi_nn_residual_t *res, int32_t out_index, int32_t in_y0, int32_t in_x0) {
  const int32_t in_c = p->in_c;
  int32_t oc;
  for (oc = 0; oc < p->out_c; ++oc) {
    const int8_t *w_oc = filter + (int32_t)oc * p->k_h * p->k_w * in_c;
    int32_t acc = bias ? bias[oc] : 0;
    int32_t ky, kx, ic;
    for (ky = 0; ky < p->k_h; ++ky) {
      const int32_t iy = in_y0 + p->dil_h * ky;
      if (iy < 0 || iy >= p->in_h) continue;
      for (kx = 0; kx < p->k_w; ++kx) {
        const int32_t ix = in_x0 + p->dil_w * kx;
        const int8_t *x;
        const int8_t *w;
        if (ix < 0 || ix >= p->in_w) continue;
        x = in_b + ((int32_t)iy * p->in_w + ix) * in_c;
        w = w_oc + (ky * p->k_w + kx) * in_c;
        for (ic = 0; ic < in_c; ++ic) {
          acc += (int32_t)w[ic] * ((int32_t)x[ic] + p->input_offset);
        }
      }
    }
    out_px[oc] = conv_output(p, acc, mult[oc], shift[oc], res, out_index + oc);
  }
}

/* Interior pixel: every tap is inside the image, so the folded bias applies and each filter row is one
 * contiguous dot product (dilation_w == 1) of length k_w*in_c. Two output channels share activation loads. */
static void conv_pixel_interior(const hi_nn_conv_params_t *p, const int8_t *in_b, const int8_t *filter,
                                const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                                int8_t *out_px, const hi_nn_residual_t *res, int32_t out_index, int32_t in_y0,
                                int32_t in_x0) {
  const int32_t in_c = p->in_c;
  const int32_t row_len = p->k_w * in_c;
  const int32_t w_per_oc = p->k_h * row_len;
  const int32_t in_row_stride = p->in_w * in_c * p->dil_h;
  const int8_t *x0 = in_b + ((int32_t)in_y0 * p->in_w + in_x0) * in_c;
  int32_t oc = 0;
  if (p->dil_w == 1) {
    for (; oc + 2 <= p->out_c; oc += 2) {
      const int8_t *w0 = filter + oc * w_per_oc;
      const int8_t *w1 = w0 + w_per_oc;
      int32_t a0 = bias_folded[oc], a1 = bias_folded[oc + 1];
      const int8_t *x = x0;
      int32_t ky;
      for (ky = 0; ky < p->k_h; ++ky) {
        hi_nn_dot2_s8(x, w0 + ky * row_len, w1 + ky * row_len, row_len, &a0, &a1);
        x += in_row_stride;
      }
      out_px[oc] = conv_output(p, a0, mult[oc], shift[oc], res, out_index + oc);
      out_px[oc + 1] = conv_output(p, a1, mult[oc + 1], shift[oc + 1], res, out_index + oc + 1);
    }
    for (; oc < p->out_c; ++oc) {
      const int8_t *w0 = filter + oc * w_per_oc;
      int32_t a0 = bias_folded[oc];
      const int8_t *x = x0;
      int32_t ky;
      for (ky = 0; ky < p->k_h; ++ky) {
        a0 = hi_nn_dot_s8(x, w0 + ky * row_len, row_len, a0);
        x += in_row_stride;
      }
      out_px[oc] = conv_output(p, a0, mult[oc], shift[oc], res, out_index + oc);
    }
  } else {
    for (; oc < p->out_c; ++oc) {
      const int8_t *w0 = filter + oc * w_per_oc;
      int32_t a0 = bias_folded[oc];
      int32_t ky, kx;
      for (ky = 0; ky < p->k_h; ++ky) {
        for (kx = 0; kx < p->k_w; ++kx) {
          const int8_t *x = x0 + ky * in_row_stride + kx * p->dil_w * in_c;
          a0 = hi_nn_dot_s8(x, w0 + ky * row_len + kx * in_c, in_c, a0);
        }
      }
      out_px[oc] = conv_output(p, a0, mult[oc], shift[oc], res, out_index + oc);
    }
  }
}

/* Two horizontally adjacent interior pixels (dilation_w == 1) at once, two output channels at a time. */
static void conv_pixel_pair_interior(const hi_nn_conv_params_t *p, const int8_t *in_b, const int8_t *filter,
                                     const int32_t *bias_folded, const int32_t *mult, const int32_t *shift,
                                     int8_t *out_px, const hi_nn_residual_t *res, int32_t out_index,
                                     int32_t in_y0, int32_t in_x0) {
  const int32_t in_c = p->in_c;
  const int32_t row_len = p->k_w * in_c;
  const int32_t w_per_oc = p->k_h * row_len;
  const int32_t in_row_stride = p->in_w * in_c * p->dil_h;
  const int32_t pixel_step = p->stride_w * in_c;
  const int32_t out_c = p->out_c;
  const int8_t *x0 = in_b + ((int32_t)in_y0 * p->in_w + in_x0) * in_c;
  int32_t oc = 0;
  for (; oc + 2 <= out_c; oc += 2) {
    const int8_t *w0 = filter + oc * w_per_oc;
    const int8_t *w1 = w0 + w_per_oc;
    int32_t acc[4];
    const int8_t *x = x0;
    int32_t ky;
    acc[0] = acc[2] = bias_folded[oc];
    acc[1] = acc[3] = bias_folded[oc + 1];
    for (ky = 0; ky < p->k_h; ++ky) {
      hi_nn_dot2x2_s8(x, x + pixel_step, w0, w1, row_len, acc);
      x += in_row_stride;
      w0 += row_len;
      w1 += row_len;
    }
    out_px[oc] = conv_output(p, acc[0], mult[oc], shift[oc], res, out_index + oc);
    out_px[oc + 1] = conv_output(p, acc[1], mult[oc + 1], shift[oc + 1], res, out_index + oc + 1);
    out_px[out_c + oc] = conv_output(p, acc[2], mult[oc], shift[oc], res, out_index + out_c + oc);
    out_px[out_c + oc + 1] = conv_output(p, acc[3], mult[oc + 1], shift[oc + 1], res, out_index + out_c + oc + 1);
  }
  for (; oc < out_c; ++oc) {
    const int8_t *w0 = filter + oc * w_per_oc;
    int32_t a0 = bias_folded[oc], a1 = bias_folded[oc];
    const int8_t *x = x0;
    int32_t ky;
    for (ky = 0; ky < p->k_h; ++ky) {
      hi_nn_dot2_s8(w0 + ky * row_len, x, x + pixel_step, row_len, &a0, &a1);
      x += in_row_stride;
    }
    out_px[oc] = conv_output(p, a0, mult[oc], shift[oc], res, out_index + oc);
    out_px[out_c + oc] = conv_output(p, a1, mult[oc], shift[oc], res, out_index + out_c + oc);
  }
}

int hi_nn_conv_s8(const hi_nn_conv_params_t *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                  const int32_t *bias_folded, const int32_t *mult, const int32_t *shift, int8_t *out,
                  const hi_nn_residual_t *residual) {
  const int32_t in_batch = p->in_h * p->in_w * p->in_c;
  const int32_t out_batch = p->out_h * p->out_w * p->out_c;
  const int32_t span_h = (p->k_h - 1) * p->dil_h;
  const int32_t span_w = (p->k_w - 1) * p->dil_w;
  int32_t b, oy, ox;
  if (p->in_c <= 0 || p->out_c <= 0 || p->k_h <= 0 || p->k_w <= 0) return HI_NN_ERROR_BAD_PARAMS;
  if (p->packed) {
    /* Two output pixels at a time through interleaved gathered windows (2 x K bytes on the stack). */
    const int32_t k4 = (p->k_h * p->k_w * p->in_c + 3) & ~3;
    int8_t win[2 * HI_NN_CONV_GATHER_MAX] HI_NN_ALIGN8;
    conv_out_stage_t stage;
    if (k4 > HI_NN_CONV_GATHER_MAX) return HI_NN_ERROR_BAD_PARAMS;
    conv_out_stage_init(&stage, p, residual);
    for (b = 0; b < p->batches; ++b) {
      const int8_t *in_b = in + b * in_batch;
      for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t in_y0 = oy * p->stride_h - p->pad_h;
        for (ox = 0; ox < p->out_w; ox += 2) {
          const int32_t in_x0 = ox * p->stride_w - p->pad_w;
          const int second = ox + 1 < p->out_w;
          const int32_t out_index = b * out_batch + (oy * p->out_w + ox) * p->out_c;
          conv_gather_pair(p, in_b, in_y0, in_x0, second ? in_x0 + p->stride_w : in_x0, win, k4);
          conv_pair_packed(p, win, k4, filter, bias_folded, mult, shift, out + out_index, &stage, out_index, second);
        }
      }
    }
    return HI_NN_OK;
  }
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = in + b * in_batch;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t in_y0 = oy * p->stride_h - p->pad_h;
      const int y_inside = in_y0 >= 0 && in_y0 + span_h < p->in_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        const int32_t out_index = b * out_batch + (oy * p->out_w + ox) * p->out_c;
        int8_t *out_px = out + out_index;
        const int32_t in_x1 = in_x0 + p->stride_w;
        const int inside = y_inside && in_x0 >= 0 && in_x0 + span_w < p->in_w;
        if (inside && p->dil_w == 1 && ox + 1 < p->out_w && in_x1 + span_w < p->in_w) {
          /* This pixel and the next are interior: do them together, reading the input in place. */
          conv_pixel_pair_interior(p, in_b, filter, bias_folded, mult, shift, out_px, residual, out_index, in_y0,
                                   in_x0);
          ++ox;
        } else if (inside) {
          conv_pixel_interior(p, in_b, filter, bias_folded, mult, shift, out_px, residual, out_index, in_y0, in_x0);
        } else {
          conv_pixel_border(p, in_b, filter, bias, mult, shift, out_px, residual, out_index, in_y0, in_x0);
        }
      }
    }
  }
  return HI_NN_OK;
}
