/* hi_decider.c - exact integer offload decider (see hi_decider.h and docs/decider.md). */
#include "hi_decider.h"

#include <stddef.h>

int hi_decider_init(hi_decider_t *d, int top_k, int32_t zero_point, const int32_t *coef, int32_t bias) {
  int r;
  if (d == NULL || coef == NULL || top_k < 1 || top_k > HI_DECIDER_MAX_TOP_K) return -1;
  d->top_k = (uint8_t)top_k;
  d->zero_point = zero_point;
  d->bias = bias;
  for (r = 0; r < HI_DECIDER_MAX_TOP_K; ++r) d->coef[r] = r < top_k ? coef[r] : 0;
  return 0;
}

uint16_t hi_top_k_s8(const int8_t *scores, uint16_t n, int32_t *top, uint16_t k) {
  uint16_t filled = 0, i;
  if (scores == NULL || top == NULL) return 0;
  for (i = 0; i < n; ++i) {
    int32_t v = scores[i];
    uint16_t j;
    if (filled < k) {
      j = filled++;
    } else {
      if (k == 0 || v <= top[k - 1]) continue;
      j = (uint16_t)(k - 1);
    }
    while (j > 0 && top[j - 1] < v) {
      top[j] = top[j - 1];
      --j;
    }
    top[j] = v;
  }
  return filled;
}

static int64_t decision64(const hi_decider_t *d, const int8_t *scores, uint16_t n) {
  int32_t top[HI_DECIDER_MAX_TOP_K];
  uint16_t k = d->top_k > HI_DECIDER_MAX_TOP_K ? HI_DECIDER_MAX_TOP_K : d->top_k;
  uint16_t filled = hi_top_k_s8(scores, n, top, k), r;
  int64_t acc = d->bias;
  for (r = 0; r < filled; ++r) acc += (int64_t)d->coef[r] * ((int64_t)top[r] - d->zero_point);
  return acc;
}

int32_t hi_decider_value(const hi_decider_t *d, const int8_t *scores, uint16_t n) {
  int64_t acc;
  if (d == NULL || scores == NULL) return 0;
  acc = decision64(d, scores, n);
  if (acc > INT32_MAX) return INT32_MAX;
  if (acc < INT32_MIN) return INT32_MIN;
  return (int32_t)acc;
}

int hi_decider_accept(const hi_decider_t *d, const int8_t *scores, uint16_t n) {
  if (d == NULL) return 1;
  if (scores == NULL) return 0;
  return decision64(d, scores, n) >= 0;
}
