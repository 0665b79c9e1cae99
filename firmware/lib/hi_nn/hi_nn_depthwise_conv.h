/*
 * hi_nn_depthwise_conv.h - int8 DEPTHWISE_CONV_2D, bit-exact with TFLM's
 * reference_integer_ops::DepthwiseConvPerChannel (any depth multiplier, per-channel or per-tensor).
 *
 * Filter layout is TFLite's [1, k_h, k_w, in_c * depth_multiplier]; output channel oc reads input channel
 * oc / depth_multiplier. As in hi_nn_conv, interior pixels use the compiler's folded bias.
 */
#ifndef HI_NN_DEPTHWISE_CONV_H
#define HI_NN_DEPTHWISE_CONV_H

#include "hi_nn_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int32_t batches;
  int32_t in_h, in_w, in_c;
  int32_t out_h, out_w, out_c;
  int32_t depth_multiplier;
  int32_t k_h, k_w;
  int32_t stride_h, stride_w;
  int32_t dil_h, dil_w;
  int32_t pad_h, pad_w;
  int32_t input_offset, output_offset;
  int32_t act_min, act_max;
} hi_nn_dwconv_params_t;

int hi_nn_depthwise_conv_s8(const hi_nn_dwconv_params_t *p, const int8_t *in, const int8_t *filter,
                            const int32_t *bias, const int32_t *bias_folded, const int32_t *mult,
                            const int32_t *shift, int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* HI_NN_DEPTHWISE_CONV_H */
