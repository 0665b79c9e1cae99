/* hi_nn_fully_connected.c - int8 FULLY_CONNECTED; see the header. */
#include "hi_nn_fully_connected.h"

int hi_nn_fully_connected_s8(const hi_nn_fc_params_t *p, const int8_t *in, const int8_t *weights,
                             const int32_t *bias_folded, const int32_t *mult, const int32_t *shift, int8_t *out) {
  int32_t b, o;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = in + b * p->in_depth;
    int8_t *y = out + b * p->out_depth;
    o = 0;
    for (; o + 2 <= p->out_depth; o += 2) {
      int32_t a0 = bias_folded[o], a1 = bias_folded[o + 1];
      const int32_t c0 = p->per_channel ? o : 0;
      const int32_t c1 = p->per_channel ? o + 1 : 0;
      hi_nn_dot2_s8(x, weights + o * p->in_depth, weights + (o + 1) * p->in_depth, p->in_depth, &a0, &a1);
      y[o] = hi_nn_requant_s8(a0, mult[c0], shift[c0], p->output_offset, p->act_min, p->act_max);
      y[o + 1] = hi_nn_requant_s8(a1, mult[c1], shift[c1], p->output_offset, p->act_min, p->act_max);
    }
    for (; o < p->out_depth; ++o) {
      const int32_t c = p->per_channel ? o : 0;
      const int32_t acc = hi_nn_dot_s8(x, weights + o * p->in_depth, p->in_depth, bias_folded[o]);
      y[o] = hi_nn_requant_s8(acc, mult[c], shift[c], p->output_offset, p->act_min, p->act_max);
    }
  }
  return HI_NN_OK;
}
