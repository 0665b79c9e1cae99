/*
 * hi_exit_policy.h - the early-exit (EE) policy over chained model segments, plus the final offload
 * decision: the whole per-sample HI decision of a device (math defined once in hi_runtime/early_exit.py
 * and hi_runtime/decider.py; this is its exact integer form).
 *
 * A model is a chain of segments (a plain model is a chain of one). Segment k runs the trunk from the
 * previous exit to exit k and returns the trunk features (input of segment k+1) and exit k's class scores.
 * After non-final exit k the sample stops iff
 *     max(q_k) - zero_point_k >= M_k        (M_k = exit_bound, computed at export so it equals the float
 *                                             rule "max softmax >= threshold" on every int8 value)
 * and otherwise, when the exit has an offload rule (the three-way policy), the sample is offloaded right
 * away iff
 *     max(q_k) - zero_point_k < O_k         (O_k = offload_bound, exact like M_k: "max softmax < o_k")
 * skipping the remaining segments; otherwise it continues. At the final exit the local answer is kept
 * iff the decider accepts (no decider: always kept); otherwise the sample is offloaded. The class is the
 * first index of the maximum score (for an offloaded sample: the fallback answer). No control flow lives
 * inside any model; the chain stops after the exit the policy takes.
 *
 * Segments are called through the generated models' uniform entry point
 * `int hi_model_NAME_invoke_generic(const void *const *inputs, void *const *outputs)` so that the policy
 * does not depend on how many outputs a segment has or in which order TFLite listed them (the board's
 * generated configuration maps the output names to indices). No allocation: every buffer is caller-owned.
 */
#ifndef HI_EXIT_POLICY_H
#define HI_EXIT_POLICY_H

#include <stdint.h>

#include "hi_decider.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HI_MAX_SEGMENTS 8

typedef int (*hi_segment_invoke_fn)(const void *const *inputs, void *const *outputs);

typedef struct {
  hi_segment_invoke_fn invoke;
  uint8_t num_outputs;     /* 1 (scores only: last segment) or 2 (features and scores) */
  int8_t features_output;  /* index of the features output in invoke order, -1 when there is none */
  uint8_t scores_output;   /* index of the class-scores output */
  uint32_t features_bytes; /* size of the features output */
  int8_t *features;        /* caller-owned buffer of features_bytes; becomes the next segment's input */
  double features_scale;   /* quantization of this segment's features output ... */
  int32_t features_zero_point;
  double next_input_scale; /* ... and of the next segment's input: requantized when they differ */
  int32_t next_input_zero_point;
  double scores_scale;     /* quantization of the class scores (for reporting; the policy is integer) */
  int32_t scores_zero_point;
  int32_t exit_bound;      /* M_k for a non-final exit (ignored for the last segment) */
  /* three-way policy (zero-initialized: off, i.e. the two-way policy): offload at this non-final exit iff
   * it does not exit and max(q) - zero_point < offload_bound */
  uint8_t offload_enabled;
  int32_t offload_bound;   /* O_k */
} hi_segment_t;

typedef struct {
  const hi_segment_t *segments;
  uint8_t num_segments;        /* 1..HI_MAX_SEGMENTS */
  const hi_decider_t *decider; /* final-exit decider; NULL keeps every final answer (no offload) */
  uint16_t num_classes;
  int8_t *scores;              /* caller-owned, num_classes: the scores of the exit taken */
  /* model input: uint8 pixels are quantized to it as q = round_half_even(pixel / scale) + zero_point */
  uint16_t height, width, channels;
  float input_scale;
  int32_t input_zero_point;
} hi_pipeline_t;

typedef struct {
  int status;             /* 0, or the negative error of the segment that failed */
  int8_t exit_index;      /* exit taken (0-based); num_segments-1 is the final exit */
  uint8_t segments_run;
  int16_t class_id;       /* local class: first argmax of the scores of the exit taken */
  uint8_t offload;        /* 1 when the final decider rejected the local answer, or an early exit's offload
                             rule fired (exit_index < num_segments-1) */
  int32_t decision_value; /* non-final exit: max(q)-zp-M_k (>= 0); offload at a non-final exit:
                             max(q)-zp-O_k (< 0); final: decider value (0 without one) */
} hi_outcome_t;

enum { HI_RUN_POLICY = 0, HI_RUN_ALL_SEGMENTS = 1 };
enum { HI_PIPELINE_E_ARG = -100, HI_PIPELINE_E_CONFIG = -101 };

/* Run one sample (int8 model input of height*width*channels bytes). HI_RUN_POLICY stops at the first exit
 * the policy takes; HI_RUN_ALL_SEGMENTS runs the whole chain (benchmarks; results of the final exit). */
int hi_pipeline_run(const hi_pipeline_t *p, const int8_t *input, int mode, hi_outcome_t *out);

/* Check a configuration (pointers, counts, output indices). Returns 0 or HI_PIPELINE_E_CONFIG. */
int hi_pipeline_check(const hi_pipeline_t *p);

/* uint8 pixels (NHWC, as the MLPerf Tiny runner and the serial bridge send them) to the model input. */
void hi_pipeline_quantize_input(const hi_pipeline_t *p, const uint8_t *pixels, int8_t *q, uint32_t n);

/* Building blocks, exported for tests. */
int hi_argmax_s8(const int8_t *x, uint16_t n);
int hi_exit_taken(const int8_t *scores, uint16_t n, int32_t zero_point, int32_t bound, int32_t *margin);
/* 1 iff max(scores) - zero_point < bound (the offload rule); *margin = max - zero_point - bound. */
int hi_offload_taken(const int8_t *scores, uint16_t n, int32_t zero_point, int32_t bound, int32_t *margin);
/* real = (q - zp_src) * s_src / s_dst (double); q' = round_half_away(real) + zp_dst, saturated to int8.
 * In place is allowed (dst == src). */
void hi_requantize_s8(const int8_t *src, int8_t *dst, uint32_t n, double s_src, int32_t zp_src, double s_dst,
                      int32_t zp_dst);

#ifdef __cplusplus
}
#endif

#endif /* HI_EXIT_POLICY_H */
