/*
 * hi_nn_quantize.h - QUANTIZE and DEQUANTIZE, bit-exact with TFLM's reference paths:
 *  - float -> int8/uint8: AffineQuantize, q = round(x / scale) + zp in float (roundf), clamped;
 *  - int8/uint8 -> int8/uint8: Requantize, q = MultiplyByQuantizedMultiplier(x - in_zp, m, s) + out_zp, clamped;
 *  - int8/uint8 -> float: Dequantize, (float)(scale_as_double * (x - zp)).
 * Element types are passed as flags so one kernel serves all TFLite-allowed combinations.
 */
#ifndef HI_NN_QUANTIZE_H
#define HI_NN_QUANTIZE_H

#include "hi_nn_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HI_NN_TYPE_INT8 0
#define HI_NN_TYPE_UINT8 1

int hi_nn_quantize_f32(const float *in, void *out, int32_t out_type, int32_t n, float scale, int32_t zero_point);
int hi_nn_requantize(const void *in, int32_t in_type, void *out, int32_t out_type, int32_t n, int32_t in_zero_point,
                     int32_t out_zero_point, int32_t multiplier, int32_t shift);
int hi_nn_dequantize(const void *in, int32_t in_type, float *out, int32_t n, double scale, int32_t zero_point);

#ifdef __cplusplus
}
#endif

#endif /* HI_NN_QUANTIZE_H */
