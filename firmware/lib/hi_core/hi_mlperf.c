/*
 * hi_mlperf.c - the MLPerf Tiny / EEMBC image-classification runner commands (the harness side, EEMBC's
 * ee_* functions): name, profile, timestamp, db load/HEX/print, infer N W, results. Everything board-specific
 * (EEMBC's th_* port functions) comes in through hi_serial_io_t (write, timestamp) and the pipeline
 * (hi_pipeline_run): no board code here. Reply conventions and m-ready are those of the runner.
 */
#include "hi_mlperf.h"

#include <string.h>

#include "hi_serial_out.h"

static void cmd_db(hi_serial_t *s, char **tok, int ntok) {
  if (ntok < 2) {
    hi_serial_error_msg(s, "Command 'db' requires a subcommand: load N, HEX or print");
    return;
  }
  if (strcmp(tok[1], "load") == 0) {
    uint32_t n;
    if (ntok != 3 || !hi_serial_parse_u32(tok[2], &n) || n == 0u) {
      hi_serial_error_msg(s, "Command 'db load' requires a byte count N > 0");
      return;
    }
    if (n > s->cfg.db_capacity) {
      hi_serial_error_begin(s);
      hi_serial_put(s, "db load: ");
      hi_serial_put_u32(s, n);
      hi_serial_put(s, " bytes exceed the buffer of ");
      hi_serial_put_u32(s, s->cfg.db_capacity);
      hi_serial_put(s, " bytes]");
      hi_serial_end_line(s);
      return;
    }
    s->mlperf.db_expected = n;
    s->mlperf.db_fill = 0u;
    hi_serial_put(s, "m-[Expecting ");
    hi_serial_put_u32(s, n);
    hi_serial_put(s, " bytes]");
    hi_serial_end_line(s);
    return;
  }
  if (strcmp(tok[1], "print") == 0) {
    uint32_t n = 16u, off = 0u, i;
    if ((ntok >= 3 && !hi_serial_parse_u32(tok[2], &n)) || (ntok >= 4 && !hi_serial_parse_u32(tok[3], &off)) || ntok > 4) {
      hi_serial_error_msg(s, "Command 'db print' takes [N] [offset] as decimal numbers");
      return;
    }
    if (off > s->mlperf.db_fill) off = s->mlperf.db_fill;
    if (n > s->mlperf.db_fill - off) n = s->mlperf.db_fill - off;
    for (i = 0; i < n; ++i) {
      if (i % 8u == 0u) hi_serial_put(s, "m-buffer-");
      hi_serial_put_hex_bytes(s, s->cfg.db + off + i, 1u);
      if ((i + 1u) % 8u == 0u || i + 1u == n) {
        hi_serial_end_line(s);
      } else {
        hi_serial_put(s, "-");
      }
    }
    return;
  }
  if (ntok != 2) {
    hi_serial_error_msg(s, "Command 'db' takes one hex string without spaces");
    return;
  }
  if (s->mlperf.db_expected == 0u) {
    hi_serial_error_msg(s, "db: send 'db load N' before data");
    return;
  }
  {
    size_t digits = strlen(tok[1]);
    uint32_t room = s->mlperf.db_expected - s->mlperf.db_fill;
    int32_t got;
    if (digits % 2u != 0u) {
      hi_serial_error_msg(s, "Insufficent number of hex digits");
      return;
    }
    if (digits / 2u > room) {
      hi_serial_error_begin(s);
      hi_serial_put(s, "db: ");
      hi_serial_put_u32(s, (uint32_t)(digits / 2u));
      hi_serial_put(s, " bytes but only ");
      hi_serial_put_u32(s, room);
      hi_serial_put(s, " more expected]");
      hi_serial_end_line(s);
      return;
    }
    got = hi_serial_parse_hex(tok[1], s->cfg.db + s->mlperf.db_fill, room);
    if (got < 0) {
      hi_serial_error_msg(s, "Invalid hex digit in db data");
      return;
    }
    s->mlperf.db_fill += (uint32_t)got;
    if (s->mlperf.db_fill == s->mlperf.db_expected) {
      hi_serial_put(s, "m-load-done");
      hi_serial_end_line(s);
    }
  }
}

/* th_load_tensor: the loaded uint8 pixels become the model input. 0 when no complete sample is loaded. */
int hi_mlperf_load_tensor(hi_serial_t *s, const char *what) {
  uint32_t need = hi_serial_input_bytes(s);
  if (s->mlperf.db_fill != need) {
    hi_serial_error_begin(s);
    hi_serial_put(s, what);
    hi_serial_put(s, ": load a ");
    hi_serial_put_u32(s, need);
    hi_serial_put(s, "-byte sample with db load/db first (have ");
    hi_serial_put_u32(s, s->mlperf.db_fill);
    hi_serial_put(s, " bytes)]");
    hi_serial_end_line(s);
    return 0;
  }
  hi_pipeline_quantize_input(s->cfg.pipeline, s->cfg.db, s->cfg.input, need);
  return 1;
}

static void print_results(hi_serial_t *s) {
  const hi_pipeline_t *p = s->cfg.pipeline;
  const hi_segment_t *seg = &p->segments[s->mlperf.last.exit_index >= 0 ? s->mlperf.last.exit_index : p->num_segments - 1];
  uint16_t i;
  hi_serial_put(s, "m-results-[");
  for (i = 0; i < p->num_classes; ++i) {
    if (i) hi_serial_put(s, ",");
    hi_serial_put_fixed3(s, ((double)p->scores[i] - (double)seg->scores_zero_point) * seg->scores_scale);
  }
  hi_serial_put(s, "]");
  hi_serial_end_line(s);
}

int hi_mlperf_run_model(hi_serial_t *s, int mode) {
  int rc = hi_pipeline_run(s->cfg.pipeline, s->cfg.input, mode, &s->mlperf.last);
  s->mlperf.has_result = rc == 0;
  if (rc != 0) {
    hi_serial_error_begin(s);
    hi_serial_put(s, "model failed with status ");
    hi_serial_put_i32(s, rc);
    hi_serial_put(s, "]");
    hi_serial_end_line(s);
  }
  return rc == 0;
}

static void cmd_infer(hi_serial_t *s, char **tok, int ntok) {
  uint32_t n = 1u, w = 10u, i;
  if (ntok > 3 || (ntok >= 2 && (!hi_serial_parse_u32(tok[1], &n) || n == 0u)) || (ntok >= 3 && !hi_serial_parse_u32(tok[2], &w))) {
    hi_serial_error_msg(s, "Command 'infer' takes N > 0 inferences and W >= 0 warmup runs");
    return;
  }
  if (n > HI_SERIAL_MAX_INFER_RUNS || w > HI_SERIAL_MAX_INFER_RUNS) {
    hi_serial_error_begin(s);
    hi_serial_put(s, "infer: at most ");
    hi_serial_put_u32(s, HI_SERIAL_MAX_INFER_RUNS);
    hi_serial_put(s, " runs and warmup runs per command]");
    hi_serial_end_line(s);
    return;
  }
  if (!hi_mlperf_load_tensor(s, "infer")) return;
  hi_serial_put(s, "m-warmup-start-");
  hi_serial_put_u32(s, w);
  hi_serial_end_line(s);
  for (i = 0; i < w; ++i) {
    if (!hi_mlperf_run_model(s, HI_RUN_ALL_SEGMENTS)) return;
  }
  hi_serial_put(s, "m-warmup-done");
  hi_serial_end_line(s);
  hi_serial_put(s, "m-infer-start-");
  hi_serial_put_u32(s, n);
  hi_serial_end_line(s);
  hi_serial_lap(s);
  for (i = 0; i < n; ++i) {
    if (!hi_mlperf_run_model(s, HI_RUN_ALL_SEGMENTS)) return;
  }
  hi_serial_lap(s);
  hi_serial_put(s, "m-infer-done");
  hi_serial_end_line(s);
  print_results(s);
}

static void cmd_name(hi_serial_t *s) {
  hi_serial_put(s, "m-name-dut-[");
  hi_serial_put_safe(s, s->cfg.device_name ? s->cfg.device_name : "hi-runtime", 64u);
  hi_serial_put(s, "]");
  hi_serial_end_line(s);
}

static void cmd_profile(hi_serial_t *s) {
  hi_serial_put(s, "m-profile-[");
  hi_serial_put(s, s->cfg.fw_version ? s->cfg.fw_version : HI_SERIAL_FW_VERSION_DEFAULT);
  hi_serial_put(s, "]");
  hi_serial_end_line(s);
  hi_serial_put(s, "m-model-[");
  hi_serial_put_safe(s, s->cfg.model_version ? s->cfg.model_version : "ic01", 32u);
  hi_serial_put(s, "]");
  hi_serial_end_line(s);
}

int hi_mlperf_execute(hi_serial_t *s, char **tok, int ntok) {
  if (strcmp(tok[0], "name") == 0) {
    cmd_name(s);
  } else if (strcmp(tok[0], "profile") == 0) {
    cmd_profile(s);
  } else if (strcmp(tok[0], "timestamp") == 0) {
    hi_serial_lap(s);
  } else if (strcmp(tok[0], "db") == 0) {
    cmd_db(s, tok, ntok);
  } else if (strcmp(tok[0], "infer") == 0) {
    cmd_infer(s, tok, ntok);
  } else if (strcmp(tok[0], "results") == 0) {
    if (s->mlperf.has_result) {
      print_results(s);
    } else {
      hi_serial_error_msg(s, "No results yet: run infer first");
    }
  } else {
    return 0;
  }
  return 1;
}

void hi_mlperf_help(hi_serial_t *s) {
  static const char *const lines[] = {
      "m-help-[name: print the device name]",
      "m-help-[profile: firmware and model version]",
      "m-help-[timestamp: print m-lap-us-N]",
      "m-help-[db load N: expect N bytes of uint8 pixels (NHWC)]",
      "m-help-[db HEX: append hex bytes; m-load-done when N arrived]",
      "m-help-[db print [N=16] [offset=0]: print bytes as hex]",
      "m-help-[infer N [W=10]: W warmup runs then N timed runs of the whole model; results]",
      "m-help-[results: scores of the last inference]",
  };
  size_t i;
  for (i = 0; i < sizeof lines / sizeof lines[0]; ++i) {
    hi_serial_put(s, lines[i]);
    hi_serial_end_line(s);
  }
}

void hi_mlperf_banner(hi_serial_t *s) {
  hi_serial_put(s, "m-timestamp-mode-performance");
  hi_serial_end_line(s);
  hi_serial_lap(s);
  hi_serial_put(s, "m-init-done");
  hi_serial_end_line(s);
}
