/*
 * hi_nn_conv.h - int8 CONV_2D with per-channel requantization, bit-exact with TFLM's
 * reference_integer_ops::ConvPerChannel.
 *
 * WHY these arguments: the compiler precomputes everything that does not depend on the input
 * (per-channel multipliers/shifts, the activation range, and bias_folded = bias + input_offset * sum(w)),
 * so interior pixels need only the raw int8 dot products. Border pixels (where TFLM skips out-of-image
 * taps) fall back to the unfolded arithmetic, which gives the same integers.
 * Two paths: the strip path (strip_w > 0, the fast one, see hi_nn_conv.c) and TFLite's OHWI layout read in
 * place (strip_w == 0, for layers whose widened rows do not fit the scratch budget): for one output channel
 * and one filter row, the kw*in_c weights are contiguous and so are the matching input bytes (when
 * dilation_w == 1), so its inner loop is one long dot product with no im2col buffer.
 */
#ifndef HI_NN_CONV_H
#define HI_NN_CONV_H

#include "hi_nn_add.h"
#include "hi_nn_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Widest strip (output pixels per pass) of the strip path: its accumulators live on the stack. */
#define HI_NN_STRIP_MAX 64

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
  /* > 0: the strip path (hi_nn_conv.c): up to strip_w output pixels per pass from input rows widened to int16
   * in the scratch buffer; the filter is laid out [oc][ky][channel group of 4][kx][4] with zero-padded
   * channels. 0: TFLite's OHWI layout read in place (no scratch). The compiler chooses (lowering.py). */
  int32_t strip_w;
  /* 1: |bias_folded[oc]| + 128 * sum |w[oc]| < 2^30 for every channel, so every accumulator of the strip path
   * fits in +-(2^30 - 1) and the output stage can use the one-instruction rounding high multiply (SMMULR).
   * The compiler proves it from the constants (lowering.py); 0 keeps the 64-bit form. */
  int32_t acc_q30;
} hi_nn_conv_params_t;

/* Optional residual ADD fused into the output stage: out = ADD(conv, residual) (or ADD(residual, conv)
 * when conv_is_input2). residual has the output's shape; out may alias residual. */
typedef struct {
  const int8_t *data;
  hi_nn_add_params_t add;
  int32_t conv_is_input2;
} hi_nn_residual_t;

/* filter: see strip_w; bias: int32 per out channel or NULL (read only by the strip_w == 0 path's border
 * pixels); bias_folded: bias + input_offset*sum(filter[oc]); mult/shift: per out channel. residual may be NULL.
 * scratch: 8-byte aligned, at least hi_nn_conv_scratch_bytes(p, residual != NULL) bytes (NULL when that is 0).
 * Returns HI_NN_ERROR_BAD_PARAMS when the scratch is missing or too small. */
int hi_nn_conv_s8(const hi_nn_conv_params_t *p, const int8_t *in, const int8_t *filter, const int32_t *bias,
                  const int32_t *bias_folded, const int32_t *mult, const int32_t *shift, int8_t *out,
                  const hi_nn_residual_t *residual, void *scratch, int32_t scratch_bytes);

/* Scratch bytes the strip path needs: the residual ADD's two 256-entry operand tables (2 KiB) when a residual
 * is fused, plus k_h * ceil(in_c / 4) * ((strip_w - 1) * stride_w + (k_w - 1) * dil_w + 1) * 8 bytes of
 * widened input rows. 0 for strip_w == 0. lowering.conv_scratch_bytes computes the same number. */
int32_t hi_nn_conv_scratch_bytes(const hi_nn_conv_params_t *p, int has_residual);

#ifdef __cplusplus
}
#endif

#endif /* HI_NN_CONV_H */
