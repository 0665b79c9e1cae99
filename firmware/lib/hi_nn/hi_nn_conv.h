/*
 * hi_nn_conv.h - int8 CONV_2D with per-channel requantization, bit-exact with TFLM's
 * reference_integer_ops::ConvPerChannel.
 *
 * WHY these arguments: the compiler precomputes everything that does not depend on the input
 * (per-channel multipliers/shifts, the activation range, and bias_folded = bias + input_offset * sum(w)),
 * so interior pixels need only the raw int8 dot products. Border pixels (where TFLM skips out-of-image
 * taps) fall back to the unfolded arithmetic, which gives the same integers.
 * Filters stay in TFLite's OHWI layout: for one output channel and one filter row, the kw*in_c weights are
 * contiguous and so are the matching input bytes (when dilation_w == 1), so the inner loop is one long dot
 * product with no im2col buffer.
 */
#ifndef HI_NN_CONV_H
#define HI_NN_CONV_H

#include "hi_nn_add.h"
#include "hi_nn_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest receptive field (k_h*k_w*in_c bytes) run through the two-pixel gathered path; the stack holds
 * 2 * HI_NN_CONV_GATHER_MAX bytes of windows. Must match the compiler's value (it decides the filter layout). */
#ifndef HI_NN_CONV_GATHER_MAX
#define HI_NN_CONV_GATHER_MAX 640
#endif

typedef struct {
  int32_t batches;
  int32_t in_h, in_w, in_c;
  int32_t out_h, out_w, out_c;
  int32_t k_h, k_w;
  int32_t stride_h, stride_w;
  int32_t dil_h, dil_w;
  int32_t pad_h, pad_w; /* top / left padding, as TFLite computes it */
  int32_t input_offset;  /* -input zero point */
  int32_t output_offset; /* output zero point */
  int32_t act_min, act_max;
  /* 1: the compiler packed the filter for the two-pixel gathered path (see hi_nn_conv_packed_filter_size);
   * 0: TFLite's OHWI layout, read in place (receptive fields larger than HI_NN_CONV_GATHER_MAX bytes). */
  int32_t packed;
} hi_nn_conv_params_t;

/* Optional residual ADD fused into the output stage: out = ADD(conv, residual) (or ADD(residual, conv)
 * when conv_is_input2). residual has the output's shape; out may alias residual. */
typedef struct {
  const int8_t *data;
  hi_nn_add_params_t add;
  int32_t conv_is_input2;
} hi_nn_residual_t;

/* Packed filter layout (packed == 1), prepared at compile time. K = k_h*k_w*in_c rounded up to a multiple of
 * 4 (zero weights in the padding). For each pair of output channels (2p, 2p+1) and each 4-byte group g:
 * the 4 weights of channel 2p, then the 4 weights of channel 2p+1; an odd last channel follows alone.
 * The two gathered input windows use the same interleaving, so one 8-byte load fetches both operands. */

/* filter: OHWI int8 (or packed, see above); bias: int32 per out channel or NULL; bias_folded: bias + input_offset*sum(filter[oc]);
 * mult/shift: per out channel. residual may be NULL. */
int hi_nn_conv_s8(const hi_nn_conv_params_t *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                  const int32_t *bias_folded, const int32_t *mult, const int32_t *shift, int8_t *out,
                  const hi_nn_residual_t *residual);

#ifdef __cplusplus
}
#endif

#endif /* HI_NN_CONV_H */
