/*
 * hi_decider.h - the offload decider's exact integer form on a device (math defined once in
 * hi_runtime/decider.py; C header exported by `hi-train decider`, e.g. models/cifar10/decider_resnet8.h).
 *
 *   accept (keep the local answer)  <=>  sum_{r < top_k} A[r] * (q(r) - zero_point) + B >= 0
 *
 * where q(0) >= q(1) >= ... are the local model's raw int8 softmax scores in descending order. The
 * exported header carries A, B, TOP_K and ZERO_POINT; hi_decider_init() copies them into this struct so
 * board code needs no copy of the numbers. Accumulation is done in int64 so that the
 * result equals Python's even for coefficients that were not exported with the int32 bound.
 */
#ifndef HI_DECIDER_H
#define HI_DECIDER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HI_DECIDER_MAX_TOP_K 8

typedef struct {
  uint8_t top_k;      /* 1..HI_DECIDER_MAX_TOP_K */
  int32_t zero_point; /* output zero point the integers were computed for */
  int32_t bias;       /* B */
  int32_t coef[HI_DECIDER_MAX_TOP_K]; /* A[r] */
} hi_decider_t;

/* Fill *d from the numbers of an exported header, e.g. with the default prefix:
 *   hi_decider_init(&d, HI_DECIDER_TOP_K, HI_DECIDER_ZERO_POINT, HI_DECIDER_A, HI_DECIDER_B);
 * Returns 0, or -1 when top_k is 0 or above HI_DECIDER_MAX_TOP_K. */
int hi_decider_init(hi_decider_t *d, int top_k, int32_t zero_point, const int32_t *coef, int32_t bias);

/* The integer decision value sum A[r]*(q(r)-zp) + B, saturated to int32 for reporting. If n < top_k only
 * the n available ranks are used (as the exported reference function does). */
int32_t hi_decider_value(const hi_decider_t *d, const int8_t *scores, uint16_t n);

/* 1 to accept the local answer, 0 to offload. A NULL decider always accepts. */
int hi_decider_accept(const hi_decider_t *d, const int8_t *scores, uint16_t n);

/* The k largest values of scores[0..n) in descending order into top[] (k <= n; ties keep any order since
 * only values matter). Returns how many were written (min(k, n)). */
uint16_t hi_top_k_s8(const int8_t *scores, uint16_t n, int32_t *top, uint16_t k);

#ifdef __cplusplus
}
#endif

#endif /* HI_DECIDER_H */
