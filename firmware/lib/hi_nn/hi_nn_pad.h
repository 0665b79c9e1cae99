/*
 * hi_nn_pad.h - PAD for 1-byte elements (int8/uint8), matching TFLM's reference PadImpl: padded positions take
 * pad_value (the output zero point for PAD, the constant for PADV2). Shapes are right-aligned to 6 dims.
 */
#ifndef HI_NN_PAD_H
#define HI_NN_PAD_H

#include "hi_nn_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HI_NN_PAD_MAX_DIMS 6

typedef struct {
  int32_t in_shape[HI_NN_PAD_MAX_DIMS];
  int32_t before[HI_NN_PAD_MAX_DIMS];
  int32_t after[HI_NN_PAD_MAX_DIMS];
  int32_t pad_value;
} hi_nn_pad_params_t;

int hi_nn_pad_s8(const hi_nn_pad_params_t *p, const int8_t *in, int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* HI_NN_PAD_H */
