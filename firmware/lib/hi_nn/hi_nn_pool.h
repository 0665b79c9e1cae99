/*
 * hi_nn_pool.h - int8 AVERAGE_POOL_2D and MAX_POOL_2D, bit-exact with TFLM's reference_integer_ops::AveragePool
 * (sum of in-image taps, divided with round-half-away-from-zero by the number of in-image taps) and MaxPool.
 * Input and output share quantization parameters (TFLite requires it), so no requantization happens.
 */
#ifndef HI_NN_POOL_H
#define HI_NN_POOL_H

#include "hi_nn_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int32_t batches, in_h, in_w, channels, out_h, out_w;
  int32_t filter_h, filter_w, stride_h, stride_w, pad_h, pad_w;
  int32_t act_min, act_max;
} hi_nn_pool_params_t;

int hi_nn_avg_pool_s8(const hi_nn_pool_params_t *p, const int8_t *in, int8_t *out);
int hi_nn_max_pool_s8(const hi_nn_pool_params_t *p, const int8_t *in, int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* HI_NN_POOL_H */
