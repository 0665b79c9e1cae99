/*
 * hi_nn_fully_connected.h - int8 FULLY_CONNECTED, bit-exact with TFLM's reference_integer_ops::FullyConnected
 * (per-tensor) and FullyConnectedPerChannel. Weights are [out, in] row-major as in TFLite, so each output is
 * one contiguous dot product; bias_folded = bias + input_offset * sum(row) (weights are symmetric, zero
 * point 0, which the compiler checks).
 */
#ifndef HI_NN_FULLY_CONNECTED_H
#define HI_NN_FULLY_CONNECTED_H

#include "hi_nn_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int32_t batches, in_depth, out_depth;
  int32_t output_offset;
  int32_t act_min, act_max;
  int32_t per_channel; /* 1: mult/shift have out_depth entries; 0: one entry */
} hi_nn_fc_params_t;

int hi_nn_fully_connected_s8(const hi_nn_fc_params_t *p, const int8_t *in, const int8_t *weights,
                             const int32_t *bias_folded, const int32_t *mult, const int32_t *shift, int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* HI_NN_FULLY_CONNECTED_H */
