/*
 * hi_nn_softmax.h - int8 SOFTMAX (int8 in, int8 out with scale 1/256 and zero point -128), bit-exact with
 * TFLM's reference_ops::Softmax for int8: the gemmlowp fixed-point path (Q5.26 scaled differences,
 * exp_on_negative_values, a Q12 accumulator and a Newton-Raphson reciprocal). The compiler computes
 * input_multiplier/input_left_shift (PreprocessSoftmaxScaling) and diff_min (CalculateInputRadius).
 * out may alias in: each row is fully read before the element it overwrites is needed again.
 */
#ifndef HI_NN_SOFTMAX_H
#define HI_NN_SOFTMAX_H

#include "hi_nn_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int32_t outer, depth;
  int32_t input_multiplier;
  int32_t input_left_shift;
  int32_t diff_min;
} hi_nn_softmax_params_t;

int hi_nn_softmax_s8(const hi_nn_softmax_params_t *p, const int8_t *in, int8_t *out);

/* Exposed for the kernel's own tests: exp(x) for x <= 0, x in Q5.26, result in Q0.31. */
int32_t hi_nn_exp_on_negative_values_q5(int32_t a);
/* 1 / (1 + x) for x in [0, 1) in Q0.31 (gemmlowp one_over_one_plus_x_for_x_in_0_1). */
int32_t hi_nn_one_over_one_plus_x(int32_t a);

#ifdef __cplusplus
}
#endif

#endif /* HI_NN_SOFTMAX_H */
