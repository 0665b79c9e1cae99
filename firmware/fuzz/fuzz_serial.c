/*
 * fuzz_serial.c - libFuzzer harness for the serial command interface (hi_serial.c) with a real
 * pipeline (two chained fake segments, an early exit and a decider), so `db`, `infer`, `hi run`,
 * `hi result <frame>` and every error path are reachable from the byte stream.
 *
 * Beyond the sanitizers it checks the interface's contract on every input:
 *   - exactly one "m-ready" line per '%' received;
 *   - every output line starts with "m-" or "e-[" and holds printable ASCII only.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hi_serial.h"

#define H 2
#define W 2
#define C 3
#define CLASSES 4
#define FEATURES 5

static char g_out[1 << 16];
static size_t g_out_len;
static int g_out_overflow;

static void out_write(void *user, const char *d, size_t n) {
  (void)user;
  if (n > sizeof g_out - g_out_len) {
    g_out_overflow = 1;
    n = sizeof g_out - g_out_len;
  }
  memcpy(g_out + g_out_len, d, n);
  g_out_len += n;
}

static uint32_t clock_us(void *user) {
  static uint32_t t;
  (void)user;
  return t += 3u;
}

static int seg0(const void *const *in, void *const *out) {
  const int8_t *x = (const int8_t *)in[0];
  int8_t *feat = (int8_t *)out[0], *scores = (int8_t *)out[1];
  int i;
  for (i = 0; i < FEATURES; ++i) feat[i] = (int8_t)(x[i] ^ x[(i + 3) % (H * W * C)]);
  for (i = 0; i < CLASSES; ++i) scores[i] = x[i * 2];
  return 0;
}

static int seg1(const void *const *in, void *const *out) {
  const int8_t *f = (const int8_t *)in[0];
  int8_t *scores = (int8_t *)out[0];
  int i;
  for (i = 0; i < CLASSES; ++i) scores[i] = (int8_t)(f[i] + f[i + 1]);
  return f[0] == 127 ? -3 : 0; /* a failing model is a path too */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static hi_serial_t s;
  static int8_t input[H * W * C], scores[CLASSES], features[FEATURES];
  static uint8_t db[H * W * C + 7];
  static hi_segment_t segs[2];
  static hi_decider_t dec;
  static hi_pipeline_t p;
  static const int32_t coef[2] = {5, -3};
  hi_serial_io_t io;
  hi_serial_config_t cfg;
  size_t i, terminators = 0, readies = 0, pos, start;

  memset(segs, 0, sizeof segs);
  segs[0].invoke = seg0;
  segs[0].num_outputs = 2;
  segs[0].features_output = 0;
  segs[0].scores_output = 1;
  segs[0].features_bytes = FEATURES;
  segs[0].features = features;
  segs[0].features_scale = 0.5;
  segs[0].next_input_scale = 0.25; /* forces requantization */
  segs[0].next_input_zero_point = 3;
  segs[0].scores_scale = 1.0 / 256;
  segs[0].scores_zero_point = -128;
  segs[0].exit_bound = 200;
  segs[1].invoke = seg1;
  segs[1].num_outputs = 1;
  segs[1].features_output = -1;
  segs[1].scores_scale = 1.0 / 256;
  segs[1].scores_zero_point = -128;
  hi_decider_init(&dec, 2, -128, coef, -300);
  memset(&p, 0, sizeof p);
  p.segments = segs;
  p.num_segments = 2;
  p.decider = &dec;
  p.num_classes = CLASSES;
  p.scores = scores;
  p.height = H;
  p.width = W;
  p.channels = C;
  p.input_scale = (size > 0 && (data[0] & 1)) ? 1.0f : 0.7f;
  p.input_zero_point = -128;
  io.write = out_write;
  io.timestamp_us = clock_us;
  io.user = NULL;
  memset(&cfg, 0, sizeof cfg);
  cfg.device_name = "fuzz";
  cfg.model_version = "ic01";
  cfg.model_id = "m";
  cfg.pipeline = &p;
  cfg.input = input;
  cfg.db = db;
  cfg.db_capacity = sizeof db;
  g_out_len = 0;
  g_out_overflow = 0;
  if (hi_serial_init(&s, &io, &cfg) != 0) abort();

  /* feed in pieces whose sizes come from the data itself, as a UART delivers them */
  for (pos = 0; pos < size;) {
    size_t n = 1u + (data[pos] % 17u);
    if (n > size - pos) n = size - pos;
    hi_serial_feed(&s, (const char *)data + pos, n);
    pos += n;
  }
  for (i = 0; i < size; ++i) terminators += data[i] == '%';
  if (g_out_overflow) return 0; /* very long outputs are not checked line by line */
  for (start = 0, i = 0; i + 1 < g_out_len; ++i) {
    if (g_out[i] == '\r' && g_out[i + 1] == '\n') {
      size_t len = i - start, k;
      const char *line = g_out + start;
      if (len == 7 && memcmp(line, "m-ready", 7) == 0) ++readies;
      if (!(len >= 2 && line[0] == 'm' && line[1] == '-') && !(len >= 3 && memcmp(line, "e-[", 3) == 0)) abort();
      for (k = 0; k < len; ++k) {
        if (line[k] < 0x20 || line[k] > 0x7E) abort();
      }
      start = i + 2;
      ++i;
    }
  }
  if (start != g_out_len) abort(); /* output always ends with a complete line */
  if (readies != terminators) abort();
  return 0;
}
