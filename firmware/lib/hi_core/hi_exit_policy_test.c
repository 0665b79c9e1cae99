/* hi_exit_policy_test.c - chain runner and exit rule with two fake segments (random cases: tests/firmware). */
#include "hi_exit_policy.h"
#include "hi_test.h"

static int calls[2];
static int8_t seg0_scores[4];

/* segment 0: outputs = {scores, features} (scores first, as TFLite may order them); features = input + 1 */
static int seg0(const void *const *in, void *const *out) {
  const int8_t *x = (const int8_t *)in[0];
  int8_t *scores = (int8_t *)out[0], *feat = (int8_t *)out[1];
  int i;
  ++calls[0];
  memcpy(scores, seg0_scores, 4);
  for (i = 0; i < 3; ++i) feat[i] = (int8_t)(x[i] + 1);
  return 0;
}

/* segment 1: scores = features as four classes */
static int seg1(const void *const *in, void *const *out) {
  const int8_t *f = (const int8_t *)in[0];
  int8_t *scores = (int8_t *)out[0];
  ++calls[1];
  scores[0] = f[0];
  scores[1] = f[1];
  scores[2] = f[2];
  scores[3] = -128;
  return f[0] == 99 ? -7 : 0;
}

int main(void) {
  int8_t feat[3], scores[4], input[3] = {10, 50, 20};
  hi_segment_t segs[2];
  hi_decider_t dec;
  const int32_t a[1] = {1};
  hi_pipeline_t p;
  hi_outcome_t o;
  memset(segs, 0, sizeof segs);
  segs[0].invoke = seg0;
  segs[0].num_outputs = 2;
  segs[0].features_output = 1;
  segs[0].scores_output = 0;
  segs[0].features_bytes = 3;
  segs[0].features = feat;
  segs[0].features_scale = segs[0].next_input_scale = 0.5;
  segs[0].scores_scale = 1.0 / 256;
  segs[0].scores_zero_point = -128;
  segs[0].exit_bound = 200; /* exit iff max(q) + 128 >= 200, i.e. max(q) >= 72 */
  segs[1].invoke = seg1;
  segs[1].num_outputs = 1;
  segs[1].features_output = -1;
  segs[1].scores_scale = 1.0 / 256;
  segs[1].scores_zero_point = -128;
  hi_decider_init(&dec, 1, -128, a, -170); /* accept iff max(q) + 128 >= 170 */
  memset(&p, 0, sizeof p);
  p.segments = segs;
  p.num_segments = 2;
  p.decider = &dec;
  p.num_classes = 4;
  p.scores = scores;
  p.height = 1;
  p.width = 1;
  p.channels = 3;
  p.input_scale = 1.0f;
  p.input_zero_point = -128;
  CHECK(hi_pipeline_check(&p) == 0);

  /* exits early: max 72 */
  seg0_scores[0] = -100; seg0_scores[1] = 72; seg0_scores[2] = 72; seg0_scores[3] = 0;
  CHECK(hi_pipeline_run(&p, input, HI_RUN_POLICY, &o) == 0);
  CHECK(o.exit_index == 0 && o.class_id == 1 && o.offload == 0 && o.segments_run == 1 && o.decision_value == 0);
  CHECK(calls[0] == 1 && calls[1] == 0);
  /* the same sample with every segment forced */
  CHECK(hi_pipeline_run(&p, input, HI_RUN_ALL_SEGMENTS, &o) == 0);
  CHECK(o.exit_index == 1 && o.segments_run == 2 && o.class_id == 1 && calls[1] == 1);
  CHECK(o.decision_value == 51 + 128 - 170 && o.offload == 0);

  /* continues: max 71 -> segment 1 sees features input+1 = {11, 51, 21} */
  seg0_scores[1] = 71; seg0_scores[2] = 71;
  CHECK(hi_pipeline_run(&p, input, HI_RUN_POLICY, &o) == 0);
  CHECK(o.exit_index == 1 && o.class_id == 1 && o.segments_run == 2);
  CHECK(scores[0] == 11 && scores[1] == 51 && scores[2] == 21);
  CHECK(o.offload == 0); /* 51+128 = 179 >= 170 */
  input[1] = 30; /* features 31 -> 159 < 170: offload */
  CHECK(hi_pipeline_run(&p, input, HI_RUN_POLICY, &o) == 0);
  CHECK(o.offload == 1 && o.decision_value == 31 + 128 - 170 && o.class_id == 1);

  /* three-way: offload at exit 0 iff max(q) + 128 < offload_bound (max 71 -> 199), without running segment 1 */
  segs[0].offload_enabled = 1;
  segs[0].offload_bound = 200; /* 199 < 200: offload now */
  calls[1] = 0;
  CHECK(hi_pipeline_run(&p, input, HI_RUN_POLICY, &o) == 0);
  CHECK(o.exit_index == 0 && o.offload == 1 && o.segments_run == 1 && o.class_id == 1 && o.decision_value == -1);
  CHECK(calls[1] == 0);
  segs[0].offload_bound = 199; /* 199 < 199 is false: continue */
  CHECK(hi_pipeline_run(&p, input, HI_RUN_POLICY, &o) == 0);
  CHECK(o.exit_index == 1 && o.segments_run == 2 && calls[1] == 1);
  segs[0].offload_bound = 255; /* a confident sample still exits: the exit rule comes first */
  seg0_scores[1] = 72;
  CHECK(hi_pipeline_run(&p, input, HI_RUN_POLICY, &o) == 0);
  CHECK(o.exit_index == 0 && o.offload == 0 && o.decision_value == 0);
  seg0_scores[1] = 71;
  CHECK(hi_pipeline_run(&p, input, HI_RUN_ALL_SEGMENTS, &o) == 0); /* benchmarks run everything */
  CHECK(o.exit_index == 1 && o.segments_run == 2);
  segs[0].offload_enabled = 0;
  {
    const int8_t t[4] = {3, 9, 9, -1};
    int32_t m = 0;
    CHECK(hi_offload_taken(t, 4, -128, 138, &m) == 1 && m == -1);
    CHECK(hi_offload_taken(t, 4, -128, 137, &m) == 0 && m == 0);
  }

  /* requantization between segments when the quantizations differ: 0.5 -> 0.25 doubles, zp 0 -> 1 */
  segs[1 - 1].next_input_scale = 0.25;
  segs[0].next_input_zero_point = 1;
  CHECK(hi_pipeline_run(&p, input, HI_RUN_POLICY, &o) == 0);
  CHECK(scores[0] == 23 && scores[1] == 63 && scores[2] == 43);
  segs[0].next_input_scale = 0.5;
  segs[0].next_input_zero_point = 0;

  /* a failing segment reports its status */
  input[0] = 98;
  CHECK(hi_pipeline_run(&p, input, HI_RUN_POLICY, &o) == -7 && o.status == -7);
  input[0] = 10;

  /* configuration errors */
  segs[0].features_output = 0;
  CHECK(hi_pipeline_check(&p) == HI_PIPELINE_E_CONFIG);
  CHECK(hi_pipeline_run(&p, input, HI_RUN_POLICY, &o) == HI_PIPELINE_E_CONFIG);
  segs[0].features_output = 1;
  CHECK(hi_pipeline_run(NULL, input, HI_RUN_POLICY, &o) == HI_PIPELINE_E_ARG);

  /* building blocks */
  {
    const int8_t t[4] = {3, 9, 9, -1};
    int32_t m = 0;
    CHECK(hi_argmax_s8(t, 4) == 1);
    CHECK(hi_exit_taken(t, 4, -128, 137, &m) == 1 && m == 0);
    CHECK(hi_exit_taken(t, 4, -128, 138, &m) == 0 && m == -1);
  }
  {
    int8_t q[5] = {-128, -3, 0, 3, 127}, r[5];
    hi_requantize_s8(q, r, 5, 1.0, 0, 2.0, 0); /* halves: -64, -1.5 -> -2, 0, 1.5 -> 2, 63.5 -> 64 */
    CHECK(r[0] == -64 && r[1] == -2 && r[2] == 0 && r[3] == 2 && r[4] == 64);
    hi_requantize_s8(q, r, 5, 1.0, 0, 0.5, 10); /* doubles and saturates */
    CHECK(r[0] == -128 && r[1] == 4 && r[2] == 10 && r[3] == 16 && r[4] == 127);
  }
  {
    const uint8_t px[4] = {0, 1, 128, 255};
    int8_t q[4];
    p.input_scale = 1.0f;
    hi_pipeline_quantize_input(&p, px, q, 4);
    CHECK(q[0] == -128 && q[1] == -127 && q[2] == 0 && q[3] == 127);
    p.input_scale = 2.0f;
    p.input_zero_point = 0;
    hi_pipeline_quantize_input(&p, px, q, 4); /* 0, 0.5 -> 0 (even), 64, 127.5 -> 128 -> 127 */
    CHECK(q[0] == 0 && q[1] == 0 && q[2] == 64 && q[3] == 127);
    p.input_scale = 1e-9f; /* 255 / 1e-9 overflows int32: saturates like numpy instead of undefined behaviour */
    hi_pipeline_quantize_input(&p, px, q, 4);
    CHECK(q[0] == 0 && q[1] == 127 && q[2] == 127 && q[3] == 127);
  }
  TEST_END("hi_exit_policy_test");
}
