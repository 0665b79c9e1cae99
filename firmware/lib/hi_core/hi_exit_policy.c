/* hi_exit_policy.c - early-exit policy over chained segments and the final offload decision
 * (see hi_exit_policy.h, hi_runtime/early_exit.py). */
#include "hi_exit_policy.h"

#include <stddef.h>

int hi_argmax_s8(const int8_t *x, uint16_t n) {
  uint16_t i;
  int best = 0;
  if (x == NULL || n == 0) return -1;
  for (i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = (int)i;
  }
  return best;
}

int hi_exit_taken(const int8_t *scores, uint16_t n, int32_t zero_point, int32_t bound, int32_t *margin) {
  int best = hi_argmax_s8(scores, n);
  int64_t m;
  if (best < 0) return 0;
  m = (int64_t)scores[best] - zero_point - bound;
  if (margin) *margin = (int32_t)m; /* |m| < 2^31 for any int8 score and int32 bound below 2^30 */
  return m >= 0;
}

int hi_offload_taken(const int8_t *scores, uint16_t n, int32_t zero_point, int32_t bound, int32_t *margin) {
  int best = hi_argmax_s8(scores, n);
  int64_t m;
  if (best < 0) return 0;
  m = (int64_t)scores[best] - zero_point - bound;
  if (margin) *margin = (int32_t)m; /* as in hi_exit_taken */
  return m < 0;
}

void hi_requantize_s8(const int8_t *src, int8_t *dst, uint32_t n, double s_src, int32_t zp_src, double s_dst,
                      int32_t zp_dst) {
  uint32_t i;
  for (i = 0; i < n; ++i) {
    double real = ((double)src[i] - (double)zp_src) * s_src / s_dst;
    double mag = real < 0.0 ? -real : real;
    int64_t r;
    if (mag > 1.0e6) mag = 1.0e6; /* saturates below anyway; keeps the cast defined */
    r = (int64_t)(mag + 0.5);     /* floor(|real| + 0.5) for a non-negative value */
    if (real < 0.0) r = -r;
    r += zp_dst;
    dst[i] = (int8_t)(r < -128 ? -128 : (r > 127 ? 127 : r));
  }
}

static int8_t quantize_pixel(uint8_t pixel, float scale, int32_t zp) {
  float v = (float)pixel / scale; /* float32 division then round half to even, like numpy's np.round */
  int32_t i;
  if (v > 65536.0f) v = 65536.0f; /* a tiny scale: saturates below anyway, and keeps the cast defined */
  i = (int32_t)v;                  /* v >= 0: truncation is floor */
  float frac = v - (float)i;
  int32_t q;
  if (frac > 0.5f || (frac == 0.5f && (i & 1))) ++i;
  q = i + zp;
  return (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
}

void hi_pipeline_quantize_input(const hi_pipeline_t *p, const uint8_t *pixels, int8_t *q, uint32_t n) {
  uint32_t i;
  if (p == NULL || pixels == NULL || q == NULL) return;
  if (p->input_scale == 1.0f) {
    for (i = 0; i < n; ++i) {
      int32_t v = (int32_t)pixels[i] + p->input_zero_point;
      q[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
    }
    return;
  }
  for (i = 0; i < n; ++i) q[i] = quantize_pixel(pixels[i], p->input_scale, p->input_zero_point);
}

int hi_pipeline_check(const hi_pipeline_t *p) {
  uint8_t k;
  if (p == NULL || p->segments == NULL || p->scores == NULL) return HI_PIPELINE_E_CONFIG;
  if (p->num_segments == 0 || p->num_segments > HI_MAX_SEGMENTS || p->num_classes == 0) return HI_PIPELINE_E_CONFIG;
  if (!(p->input_scale > 0.0f)) return HI_PIPELINE_E_CONFIG;
  for (k = 0; k < p->num_segments; ++k) {
    const hi_segment_t *s = &p->segments[k];
    int last = k + 1 == p->num_segments;
    if (s->invoke == NULL || s->num_outputs < 1 || s->num_outputs > 2) return HI_PIPELINE_E_CONFIG;
    if (s->scores_output >= s->num_outputs) return HI_PIPELINE_E_CONFIG;
    if (s->num_outputs == 2) {
      if (s->features_output < 0 || s->features_output >= 2 || (uint8_t)s->features_output == s->scores_output)
        return HI_PIPELINE_E_CONFIG;
      if (s->features == NULL || s->features_bytes == 0) return HI_PIPELINE_E_CONFIG;
    } else if (s->features_output != -1) {
      return HI_PIPELINE_E_CONFIG;
    }
    if (!last && s->num_outputs != 2) return HI_PIPELINE_E_CONFIG; /* a middle segment must pass features on */
  }
  return 0;
}

int hi_pipeline_run(const hi_pipeline_t *p, const int8_t *input, int mode, hi_outcome_t *out) {
  const int8_t *in = input;
  uint8_t k, last;
  if (out == NULL) return HI_PIPELINE_E_ARG;
  out->status = 0;
  out->exit_index = -1;
  out->segments_run = 0;
  out->class_id = -1;
  out->offload = 0;
  out->decision_value = 0;
  if (p == NULL || input == NULL) return out->status = HI_PIPELINE_E_ARG;
  if (hi_pipeline_check(p) != 0) return out->status = HI_PIPELINE_E_CONFIG;
  last = (uint8_t)(p->num_segments - 1u);
  for (k = 0; k <= last; ++k) {
    const hi_segment_t *s = &p->segments[k];
    const void *ins[1];
    void *outs[2];
    int rc;
    ins[0] = in;
    outs[s->scores_output] = p->scores;
    if (s->num_outputs == 2) outs[s->features_output] = s->features;
    rc = s->invoke(ins, outs);
    out->segments_run = (uint8_t)(k + 1u);
    if (rc != 0) return out->status = rc;
    out->class_id = (int16_t)hi_argmax_s8(p->scores, p->num_classes);
    if (k < last) {
      int32_t margin = 0;
      int here = hi_exit_taken(p->scores, p->num_classes, s->scores_zero_point, s->exit_bound, &margin);
      if (here && mode == HI_RUN_POLICY) {
        out->exit_index = (int8_t)k;
        out->decision_value = margin;
        return 0;
      }
      if (!here && s->offload_enabled && mode == HI_RUN_POLICY &&
          hi_offload_taken(p->scores, p->num_classes, s->scores_zero_point, s->offload_bound, &margin)) {
        out->exit_index = (int8_t)k;
        out->offload = 1;
        out->decision_value = margin;
        return 0;
      }
      if (s->features_scale != s->next_input_scale || s->features_zero_point != s->next_input_zero_point) {
        hi_requantize_s8(s->features, s->features, s->features_bytes, s->features_scale, s->features_zero_point,
                         s->next_input_scale, s->next_input_zero_point);
      }
      in = s->features;
      continue;
    }
    out->exit_index = (int8_t)k;
    if (p->decider != NULL) {
      out->decision_value = hi_decider_value(p->decider, p->scores, p->num_classes);
      out->offload = (uint8_t)!hi_decider_accept(p->decider, p->scores, p->num_classes);
    }
  }
  return 0;
}
