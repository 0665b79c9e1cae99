/*
 * hi_nn_mean.h - int8 MEAN over any set of axes, bit-exact with TFLM's reference_ops::QuantizedMeanOrSum
 * (integer version): per output an int32 sum over the reduced elements, then
 *   out = clamp(MultiplyByQuantizedMultiplier(sum - in_zp * count, m, s) + out_zp)
 * where (m, s) is QuantizeMultiplier(in_scale / out_scale) with 1/count folded in exactly as TFLM does
 * (the compiler precomputes the folded pair).
 * When the reduced axes form one contiguous block (every MEAN Keras emits) a fast [outer][reduced][inner]
 * loop runs; any other axis set takes a generic index walk.
 */
#ifndef HI_NN_MEAN_H
#define HI_NN_MEAN_H

#include "hi_nn_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HI_NN_MEAN_MAX_DIMS 6

typedef struct {
  int32_t num_dims;
  int32_t in_shape[HI_NN_MEAN_MAX_DIMS];
  int32_t reduce[HI_NN_MEAN_MAX_DIMS]; /* 1 if the axis is reduced */
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier, shift; /* already folded with 1/count */
} hi_nn_mean_params_t;

/* out must have room for the product of the kept dims. */
int hi_nn_mean_s8(const hi_nn_mean_params_t *p, const int8_t *in, int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* HI_NN_MEAN_H */
