/* hi_serial_test.c - a scripted serial session with a fake one-segment model (the full parser is also
 * driven from Python with random and hostile input: tests/firmware/test_core_serial.py). */
#include "hi_serial.h"
#include "hi_test.h"

static char out[16384];
static size_t out_len;
static uint32_t clock_us;

static void wr(void *user, const char *d, size_t n) {
  (void)user;
  if (out_len + n < sizeof out) {
    memcpy(out + out_len, d, n);
    out_len += n;
    out[out_len] = '\0';
  }
}
static uint32_t ts(void *user) {
  (void)user;
  return clock_us += 100;
}

/* scores: class = first pixel % 4 gets the pixel's value; confident iff pixel >= 200 */
static int model(const void *const *in, void *const *o) {
  const int8_t *x = (const int8_t *)in[0];
  int8_t *s = (int8_t *)o[0];
  int i;
  uint8_t px = (uint8_t)(x[0] + 128);
  for (i = 0; i < 4; ++i) s[i] = -128;
  s[px % 4] = x[0];
  return 0;
}

static void send(hi_serial_t *s, const char *text) {
  out_len = 0;
  out[0] = '\0';
  hi_serial_feed(s, text, strlen(text));
}

static int count(const char *needle) {
  int c = 0;
  const char *p = out;
  while ((p = strstr(p, needle)) != NULL) {
    ++c;
    p += strlen(needle);
  }
  return c;
}

int main(void) {
  static hi_serial_t s;
  hi_segment_t seg;
  hi_pipeline_t p;
  hi_decider_t dec;
  hi_serial_io_t io;
  hi_serial_config_t cfg;
  int8_t scores[4], input[4];
  uint8_t db[8];
  const int32_t a[1] = {1};
  char big[600];
  memset(&seg, 0, sizeof seg);
  seg.invoke = model;
  seg.num_outputs = 1;
  seg.features_output = -1;
  seg.scores_scale = 1.0 / 256;
  seg.scores_zero_point = -128;
  hi_decider_init(&dec, 1, -128, a, -200); /* accept iff max(q) + 128 >= 200 */
  memset(&p, 0, sizeof p);
  p.segments = &seg;
  p.num_segments = 1;
  p.decider = &dec;
  p.num_classes = 4;
  p.scores = scores;
  p.height = 1;
  p.width = 2;
  p.channels = 2;
  p.input_scale = 1.0f;
  p.input_zero_point = -128;
  io.write = wr;
  io.timestamp_us = ts;
  io.user = NULL;
  memset(&cfg, 0, sizeof cfg);
  cfg.device_name = "test-dut";
  cfg.model_version = "ic01";
  cfg.model_id = "m";
  cfg.pipeline = &p;
  cfg.input = input;
  cfg.db = db;
  cfg.db_capacity = sizeof db;
  CHECK(hi_serial_init(&s, &io, &cfg) == 0);
  out_len = 0;
  hi_serial_banner(&s);
  CHECK(strstr(out, "m-timestamp-mode-performance\r\nm-lap-us-") != NULL && strstr(out, "m-init-done\r\nm-ready\r\n"));

  send(&s, "name%");
  CHECK(strcmp(out, "m-name-dut-[test-dut]\r\nm-ready\r\n") == 0);
  send(&s, "profile%");
  CHECK(strstr(out, "m-model-[ic01]") != NULL && count("m-ready") == 1);
  send(&s, "bogus%");
  CHECK(strcmp(out, "e-[Unknown command: bogus]\r\nm-ready\r\n") == 0);
  send(&s, "results%");
  CHECK(strstr(out, "e-[No results yet") != NULL);
  send(&s, "infer 1 0%");
  CHECK(strstr(out, "e-[infer: load a 4-byte sample") != NULL && count("m-ready") == 1);

  /* db load beyond the buffer, then valid loading in two pieces, then overflow of the announced size */
  send(&s, "db load 9%");
  CHECK(strstr(out, "e-[db load: 9 bytes exceed the buffer of 8 bytes]") != NULL);
  send(&s, "db load 4%");
  CHECK(strstr(out, "m-[Expecting 4 bytes]") != NULL);
  send(&s, "db f0%");
  CHECK(strcmp(out, "m-ready\r\n") == 0);
  send(&s, "db 01020304%");
  CHECK(strstr(out, "e-[db: 4 bytes but only 3 more expected]") != NULL);
  send(&s, "db 0g%");
  CHECK(strstr(out, "e-[Invalid hex digit") != NULL);
  send(&s, "db 010%");
  CHECK(strstr(out, "e-[Insufficent number of hex digits]") != NULL);
  send(&s, "db 010203%");
  CHECK(strstr(out, "m-load-done") != NULL);
  send(&s, "db print%");
  CHECK(strstr(out, "m-buffer-f0-01-02-03\r\n") != NULL);

  /* MLPerf infer: pixel 0xf0 = 240 -> class 0, q = 112 */
  send(&s, "infer 2 1%");
  CHECK(strstr(out, "m-warmup-start-1\r\nm-warmup-done\r\nm-infer-start-2\r\nm-lap-us-") != NULL);
  CHECK(strstr(out, "m-infer-done\r\nm-results-[0.938,0.000,0.000,0.000]\r\nm-ready\r\n") != NULL);
  CHECK(count("m-lap-us-") == 2);
  send(&s, "results%");
  CHECK(strstr(out, "m-results-[0.938,0.000,0.000,0.000]") != NULL);

  /* HI: confident sample stays local */
  send(&s, "hi run 5%");
  CHECK(strstr(out, "m-hi-local-[id=5,exit=0,segments=1,class=0,offload=0,dv=40,us=") != NULL);
  CHECK(strstr(out, ",scores=70808080]") != NULL);
  CHECK(strstr(out, "m-hi-final-[id=5,class=0,source=local]") != NULL && count("m-hi-offload") == 0);

  /* unconfident sample (pixel 0x81 = 129 -> class 1, q = 1, 1+128 < 200) is offloaded */
  send(&s, "db load 4%db 81000000%");
  send(&s, "hi run%");
  CHECK(strstr(out, "m-hi-local-[id=1,exit=0,segments=1,class=1,offload=1,dv=-71,") != NULL);
  /* INFER frame: header(12) + 13 + quant 8 + model id 1 + 4 payload bytes = 38 */
  CHECK(strstr(out, "m-hi-offload-[id=1,bytes=38,frame=4849011001000000") != NULL);
  CHECK(strstr(out, "0000803f80ffffff6d") != NULL); /* scale 1.0f, zp -128, model id 'm' */
  CHECK(strstr(out, "6d01808080]") != NULL);         /* payload q = pixel - 128 */
  CHECK(count("m-hi-final") == 0);
  send(&s, "hi status%");
  CHECK(strstr(out, "pending=1,pending_id=1") != NULL);
  /* wrong request id, then the right RESULT (class 3) */
  send(&s, "hi result 4849011102000000140000000300000001000000000000000000000000000000%");
  CHECK(strstr(out, "e-[hi result: answer for request 2 but request 1 is pending]") != NULL);
  send(&s, "hi result 4849011101000000140000000300000001000000000000000000000000000000%");
  CHECK(strstr(out, "m-hi-final-[id=1,class=3,source=server]") != NULL);
  send(&s, "hi result 4849011101000000140000000300000001000000000000000000000000000000%");
  CHECK(strstr(out, "e-[hi result: no offload is pending]") != NULL);
  /* an ERROR answer degrades to the local class */
  send(&s, "hi run 9%");
  send(&s, "hi result 4849012009000000050000000600010078%");
  CHECK(strstr(out, "m-hi-final-[id=9,class=1,source=degraded,error=6]") != NULL);
  /* explicit degraded notice; a new run supersedes an unanswered offload */
  send(&s, "hi run 10%");
  send(&s, "hi degraded 11%");
  CHECK(strstr(out, "e-[hi degraded: no offload with that id is pending]") != NULL);
  send(&s, "hi run 12%");
  CHECK(strstr(out, "m-hi-final-[id=10,class=1,source=degraded]") != NULL);
  send(&s, "hi degraded 12%");
  CHECK(strstr(out, "m-hi-final-[id=12,class=1,source=degraded]") != NULL);
  send(&s, "hi result 4849%");
  CHECK(strstr(out, "e-[hi result: invalid frame") != NULL);
  send(&s, "hi config%");
  CHECK(strstr(out, "m-hi-config-[model=ic01,model_id=m,classes=4,input=1x2x2,in_scale_bits=3f800000,in_zp=-128,") != NULL);
  CHECK(strstr(out, ",segments=1,bounds=,exit_quant=,decider=1,") != NULL);
  {
    /* two segments: the early exit's own scores quantization is reported beside the final head's */
    hi_segment_t two[2];
    two[0] = seg;
    two[0].scores_scale = 1.0 / 128;
    two[0].scores_zero_point = -100;
    two[0].exit_bound = 77;
    two[1] = seg;
    p.segments = two;
    p.num_segments = 2;
    send(&s, "hi config%");
    CHECK(strstr(out, ",out_scale_bits=3b800000,out_zp=-128,segments=2,bounds=77,exit_quant=3c000000/-100,") != NULL);
    p.segments = &seg;
    p.num_segments = 1;
  }

  /* hostile input: an over-long command is discarded whole, control characters are refused */
  memset(big, 'a', sizeof big);
  big[sizeof big - 2] = '%';
  big[sizeof big - 1] = '\0';
  send(&s, big);
  CHECK(strstr(out, "e-[Command longer than 256 characters was discarded]\r\nm-ready\r\n") != NULL);
  CHECK(count("m-ready") == 1);
  send(&s, "na\001me%");
  CHECK(strstr(out, "e-[Invalid character 0x01 in command]") != NULL);
  send(&s, "name\r\n%");
  CHECK(strstr(out, "m-name-dut-[test-dut]") != NULL);
  send(&s, "%");
  CHECK(strstr(out, "e-[Empty command]") != NULL);
  send(&s, "db load 99999999999%");
  CHECK(strstr(out, "e-[Command 'db load' requires a byte count N > 0]") != NULL);
  send(&s, "a b c d e f g%");
  CHECK(strstr(out, "e-[Too many arguments]") != NULL);
  send(&s, "infer 0%");
  CHECK(strstr(out, "e-[Command 'infer' takes N > 0") != NULL);
  send(&s, "xyz[]%");
  CHECK(strstr(out, "e-[Unknown command: xyz??]") != NULL);
  TEST_END("hi_serial_test");
}
