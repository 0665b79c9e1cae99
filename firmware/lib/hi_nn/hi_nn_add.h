/*
 * hi_nn_add.h - int8 elementwise ADD, bit-exact with TFLM's reference_integer_ops::Add / BroadcastAdd6DSlow.
 *
 * WHY a separate element function: the same arithmetic is reused when the compiler fuses a residual ADD into
 * the output stage of the convolution that produces one of its operands (saves a whole activation buffer).
 */
#ifndef HI_NN_ADD_H
#define HI_NN_ADD_H

#include "hi_nn_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HI_NN_MAX_DIMS 6

typedef struct {
  int32_t input1_offset; /* -zero_point of input 1 */
  int32_t input2_offset; /* -zero_point of input 2 */
  int32_t output_offset; /* zero_point of output */
  int32_t left_shift;    /* 20 for int8 */
  int32_t input1_multiplier;
  int32_t input1_shift;
  int32_t input2_multiplier;
  int32_t input2_shift;
  int32_t output_multiplier;
  int32_t output_shift;
  int32_t act_min;
  int32_t act_max;
} hi_nn_add_params_t;

/* One output element of TFLM's int8 AddFunc. */
HI_NN_INLINE int8_t hi_nn_add_elem_s8(int32_t x, int32_t y, const hi_nn_add_params_t *p) {
  const int32_t in1 = (int32_t)((uint32_t)(p->input1_offset + x) << p->left_shift);
  const int32_t in2 = (int32_t)((uint32_t)(p->input2_offset + y) << p->left_shift);
  const int32_t s1 = hi_nn_rdbpot(hi_nn_srdhm_mult(in1, p->input1_multiplier), (int)-p->input1_shift);
  const int32_t s2 = hi_nn_rdbpot(hi_nn_srdhm_mult(in2, p->input2_multiplier), (int)-p->input2_shift);
  const int32_t raw =
      hi_nn_rdbpot(hi_nn_srdhm_mult(s1 + s2, p->output_multiplier), (int)-p->output_shift) + p->output_offset;
  return (int8_t)hi_nn_clamp_i32(raw, p->act_min, p->act_max);
}

/* Same-shape ADD over n elements. out may alias in1 or in2 (element i only reads element i). */
int hi_nn_add_s8(const hi_nn_add_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out, int32_t n);

/* Broadcasting ADD. Shapes are right-aligned to 6 dims by the compiler; a dim of size 1 in an input
 * broadcasts. out_shape is the output shape. */
int hi_nn_add_broadcast_s8(const hi_nn_add_params_t *p, const int32_t in1_shape[HI_NN_MAX_DIMS],
                           const int32_t in2_shape[HI_NN_MAX_DIMS], const int32_t out_shape[HI_NN_MAX_DIMS],
                           const int8_t *in1, const int8_t *in2, int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* HI_NN_ADD_H */
