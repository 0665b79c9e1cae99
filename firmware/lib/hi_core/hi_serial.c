/*
 * hi_serial.c - serial command interface: MLPerf Tiny runner commands plus HI commands (docs/serial.md).
 */
#include "hi_serial.h"

#include <string.h>

#define FW_VERSION_DEFAULT "HI-FW 1.0 (MLPerf Tiny runner API)"

/* ---- output ----------------------------------------------------------------------------------------- */

static void flush(hi_serial_t *s) {
  if (s->out_len > 0u && s->io.write != NULL) s->io.write(s->io.user, s->out, s->out_len);
  s->out_len = 0u;
}

static void put_n(hi_serial_t *s, const char *p, size_t n) {
  while (n > 0u) {
    size_t room = HI_SERIAL_OUT_SIZE - s->out_len;
    size_t take = n < room ? n : room;
    memcpy(s->out + s->out_len, p, take);
    s->out_len += take;
    p += take;
    n -= take;
    if (s->out_len == HI_SERIAL_OUT_SIZE) flush(s);
  }
}

static void put(hi_serial_t *s, const char *str) {
  if (str != NULL) put_n(s, str, strlen(str));
}

/* Printable ASCII only: echoing a host token must not let it inject control characters. */
static void put_safe(hi_serial_t *s, const char *str, size_t max) {
  size_t i;
  for (i = 0; str != NULL && str[i] != '\0' && i < max; ++i) {
    char c = (str[i] >= 0x20 && str[i] <= 0x7E && str[i] != '[' && str[i] != ']') ? str[i] : '?';
    put_n(s, &c, 1u);
  }
  if (str != NULL && i == max && str[i] != '\0') put(s, "...");
}

static void end_line(hi_serial_t *s) {
  put_n(s, "\r\n", 2u);
  flush(s);
}

static void put_u64(hi_serial_t *s, uint64_t v) {
  char buf[21];
  int i = 20;
  buf[i] = '\0';
  do {
    buf[--i] = (char)('0' + (int)(v % 10u));
    v /= 10u;
  } while (v > 0u);
  put(s, buf + i);
}

static void put_u32(hi_serial_t *s, uint32_t v) { put_u64(s, v); }

static void put_i32(hi_serial_t *s, int32_t v) {
  if (v < 0) {
    put_n(s, "-", 1u);
    put_u64(s, (uint64_t)(-(int64_t)v));
  } else {
    put_u64(s, (uint64_t)v);
  }
}

static void put_hex_bytes(hi_serial_t *s, const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; ++i) {
    char h[2];
    h[0] = digits[p[i] >> 4];
    h[1] = digits[p[i] & 0x0Fu];
    put_n(s, h, 2u);
  }
}

static void put_hex_u32(hi_serial_t *s, uint32_t v) {
  uint8_t b[4];
  b[0] = (uint8_t)(v >> 24);
  b[1] = (uint8_t)(v >> 16);
  b[2] = (uint8_t)(v >> 8);
  b[3] = (uint8_t)v;
  put_hex_bytes(s, b, 4u);
}

/* A value with three decimals (the runner's "%0.3f"), rounded half away from zero. */
static void put_fixed3(hi_serial_t *s, double v) {
  double mag = v < 0.0 ? -v : v;
  uint64_t milli;
  if (mag > 1.0e15) mag = 1.0e15;
  milli = (uint64_t)(mag * 1000.0 + 0.5);
  if (v < 0.0 && milli > 0u) put_n(s, "-", 1u);
  put_u64(s, milli / 1000u);
  put_n(s, ".", 1u);
  {
    char d[3];
    uint32_t f = (uint32_t)(milli % 1000u);
    d[0] = (char)('0' + f / 100u);
    d[1] = (char)('0' + (f / 10u) % 10u);
    d[2] = (char)('0' + f % 10u);
    put_n(s, d, 3u);
  }
}

static uint32_t float_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  return b;
}

static void error_begin(hi_serial_t *s) {
  ++s->errors;
  put(s, "e-[");
}

static void error_msg(hi_serial_t *s, const char *msg) {
  error_begin(s);
  put(s, msg);
  put(s, "]");
  end_line(s);
}

static uint32_t now_us(hi_serial_t *s) { return s->io.timestamp_us ? s->io.timestamp_us(s->io.user) : 0u; }

static void lap(hi_serial_t *s) {
  put(s, "m-lap-us-");
  put_u32(s, now_us(s));
  end_line(s);
}

/* ---- parsing helpers -------------------------------------------------------------------------------- */

/* Strict unsigned decimal: digits only, no sign, at most UINT32_MAX. */
static int parse_u32(const char *t, uint32_t *out) {
  uint64_t v = 0u;
  size_t i;
  if (t == NULL || t[0] == '\0') return 0;
  for (i = 0; t[i] != '\0'; ++i) {
    if (t[i] < '0' || t[i] > '9' || i >= 10u) return 0;
    v = v * 10u + (uint64_t)(t[i] - '0');
  }
  if (v > 0xFFFFFFFFu) return 0;
  *out = (uint32_t)v;
  return 1;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decode hex into out (cap bytes). Returns bytes written, -1 odd length, -2 bad digit, -3 too long. */
static int32_t parse_hex(const char *t, uint8_t *out, size_t cap) {
  size_t n = strlen(t), i;
  if (n % 2u != 0u) return -1;
  if (n / 2u > cap) return -3;
  for (i = 0; i < n; i += 2u) {
    int hi = hex_value(t[i]), lo = hex_value(t[i + 1u]);
    if (hi < 0 || lo < 0) return -2;
    out[i / 2u] = (uint8_t)((hi << 4) | lo);
  }
  return (int32_t)(n / 2u);
}

static uint32_t input_bytes(const hi_serial_t *s) {
  const hi_pipeline_t *p = s->cfg.pipeline;
  return (uint32_t)p->height * p->width * p->channels;
}

/* ---- MLPerf Tiny runner commands ---------------------------------------------------------------- */

static void cmd_db(hi_serial_t *s, char **tok, int ntok) {
  if (ntok < 2) {
    error_msg(s, "Command 'db' requires a subcommand: load N, HEX or print");
    return;
  }
  if (strcmp(tok[1], "load") == 0) {
    uint32_t n;
    if (ntok != 3 || !parse_u32(tok[2], &n) || n == 0u) {
      error_msg(s, "Command 'db load' requires a byte count N > 0");
      return;
    }
    if (n > s->cfg.db_capacity) {
      error_begin(s);
      put(s, "db load: ");
      put_u32(s, n);
      put(s, " bytes exceed the buffer of ");
      put_u32(s, s->cfg.db_capacity);
      put(s, " bytes]");
      end_line(s);
      return;
    }
    s->db_expected = n;
    s->db_fill = 0u;
    put(s, "m-[Expecting ");
    put_u32(s, n);
    put(s, " bytes]");
    end_line(s);
    return;
  }
  if (strcmp(tok[1], "print") == 0) {
    uint32_t n = 16u, off = 0u, i;
    if ((ntok >= 3 && !parse_u32(tok[2], &n)) || (ntok >= 4 && !parse_u32(tok[3], &off)) || ntok > 4) {
      error_msg(s, "Command 'db print' takes [N] [offset] as decimal numbers");
      return;
    }
    if (off > s->db_fill) off = s->db_fill;
    if (n > s->db_fill - off) n = s->db_fill - off;
    for (i = 0; i < n; ++i) {
      if (i % 8u == 0u) put(s, "m-buffer-");
      put_hex_bytes(s, s->cfg.db + off + i, 1u);
      if ((i + 1u) % 8u == 0u || i + 1u == n) {
        end_line(s);
      } else {
        put(s, "-");
      }
    }
    return;
  }
  if (ntok != 2) {
    error_msg(s, "Command 'db' takes one hex string without spaces");
    return;
  }
  if (s->db_expected == 0u) {
    error_msg(s, "db: send 'db load N' before data");
    return;
  }
  {
    size_t digits = strlen(tok[1]);
    uint32_t room = s->db_expected - s->db_fill;
    int32_t got;
    if (digits % 2u != 0u) {
      error_msg(s, "Insufficent number of hex digits");
      return;
    }
    if (digits / 2u > room) {
      error_begin(s);
      put(s, "db: ");
      put_u32(s, (uint32_t)(digits / 2u));
      put(s, " bytes but only ");
      put_u32(s, room);
      put(s, " more expected]");
      end_line(s);
      return;
    }
    got = parse_hex(tok[1], s->cfg.db + s->db_fill, room);
    if (got < 0) {
      error_msg(s, "Invalid hex digit in db data");
      return;
    }
    s->db_fill += (uint32_t)got;
    if (s->db_fill == s->db_expected) {
      put(s, "m-load-done");
      end_line(s);
    }
  }
}

/* th_load_tensor: the loaded uint8 pixels become the model input. 0 when no complete sample is loaded. */
static int load_tensor(hi_serial_t *s, const char *what) {
  uint32_t need = input_bytes(s);
  if (s->db_fill != need) {
    error_begin(s);
    put(s, what);
    put(s, ": load a ");
    put_u32(s, need);
    put(s, "-byte sample with db load/db first (have ");
    put_u32(s, s->db_fill);
    put(s, " bytes)]");
    end_line(s);
    return 0;
  }
  hi_pipeline_quantize_input(s->cfg.pipeline, s->cfg.db, s->cfg.input, need);
  return 1;
}

static void print_results(hi_serial_t *s) {
  const hi_pipeline_t *p = s->cfg.pipeline;
  const hi_segment_t *seg = &p->segments[s->last.exit_index >= 0 ? s->last.exit_index : p->num_segments - 1];
  uint16_t i;
  put(s, "m-results-[");
  for (i = 0; i < p->num_classes; ++i) {
    if (i) put(s, ",");
    put_fixed3(s, ((double)p->scores[i] - (double)seg->scores_zero_point) * seg->scores_scale);
  }
  put(s, "]");
  end_line(s);
}

static int run_model(hi_serial_t *s, int mode) {
  int rc = hi_pipeline_run(s->cfg.pipeline, s->cfg.input, mode, &s->last);
  s->has_result = rc == 0;
  if (rc != 0) {
    error_begin(s);
    put(s, "model failed with status ");
    put_i32(s, rc);
    put(s, "]");
    end_line(s);
  }
  return rc == 0;
}

static void cmd_infer(hi_serial_t *s, char **tok, int ntok) {
  uint32_t n = 1u, w = 10u, i;
  if (ntok > 3 || (ntok >= 2 && (!parse_u32(tok[1], &n) || n == 0u)) || (ntok >= 3 && !parse_u32(tok[2], &w))) {
    error_msg(s, "Command 'infer' takes N > 0 inferences and W >= 0 warmup runs");
    return;
  }
  if (n > HI_SERIAL_MAX_INFER_RUNS || w > HI_SERIAL_MAX_INFER_RUNS) {
    error_begin(s);
    put(s, "infer: at most ");
    put_u32(s, HI_SERIAL_MAX_INFER_RUNS);
    put(s, " runs and warmup runs per command]");
    end_line(s);
    return;
  }
  if (!load_tensor(s, "infer")) return;
  put(s, "m-warmup-start-");
  put_u32(s, w);
  end_line(s);
  for (i = 0; i < w; ++i) {
    if (!run_model(s, HI_RUN_ALL_SEGMENTS)) return;
  }
  put(s, "m-warmup-done");
  end_line(s);
  put(s, "m-infer-start-");
  put_u32(s, n);
  end_line(s);
  lap(s);
  for (i = 0; i < n; ++i) {
    if (!run_model(s, HI_RUN_ALL_SEGMENTS)) return;
  }
  lap(s);
  put(s, "m-infer-done");
  end_line(s);
  print_results(s);
}

/* ---- HI commands --------------------------------------------------------------------------------- */

static void final_line(hi_serial_t *s, uint32_t id, int32_t cls, const char *source, int32_t error_code) {
  put(s, "m-hi-final-[id=");
  put_u32(s, id);
  put(s, ",class=");
  put_i32(s, cls);
  put(s, ",source=");
  put(s, source);
  if (error_code >= 0) {
    put(s, ",error=");
    put_i32(s, error_code);
  }
  put(s, "]");
  end_line(s);
}

/* The offload request: an INFER frame carrying the model's int8 input unchanged with its quantization,
 * streamed as hex from the input buffer (no frame-sized buffer needed). */
static void emit_offload(hi_serial_t *s, uint32_t id) {
  const hi_pipeline_t *p = s->cfg.pipeline;
  uint8_t prefix[HI_FRAME_HEADER_SIZE + 13u + 8u + HI_FRAME_MAX_MODEL_ID];
  hi_infer_t m;
  size_t id_len = s->cfg.model_id ? strlen(s->cfg.model_id) : 0u;
  int32_t n;
  memset(&m, 0, sizeof m);
  m.dtype = HI_DTYPE_INT8;
  m.layout = HI_LAYOUT_NHWC;
  m.flags = HI_INFER_FLAG_QUANT;
  m.top_k = 0u;
  m.shape[0] = 1u;
  m.shape[1] = p->height;
  m.shape[2] = p->width;
  m.shape[3] = p->channels;
  m.scale = p->input_scale;
  m.zero_point = p->input_zero_point;
  m.model_id_len = (uint8_t)(id_len > HI_FRAME_MAX_MODEL_ID ? HI_FRAME_MAX_MODEL_ID + 1u : id_len);
  m.model_id = s->cfg.model_id;
  m.payload_len = input_bytes(s);
  n = hi_frame_encode_infer_prefix(prefix, sizeof prefix, HI_FRAME_VERSION, id, &m);
  if (n < 0) {
    error_begin(s);
    put(s, "hi run: cannot encode the offload frame (status ");
    put_i32(s, n);
    put(s, "); check the model id]");
    end_line(s);
    return;
  }
  put(s, "m-hi-offload-[id=");
  put_u32(s, id);
  put(s, ",bytes=");
  put_u32(s, (uint32_t)n + m.payload_len);
  put(s, ",frame=");
  put_hex_bytes(s, prefix, (size_t)n);
  put_hex_bytes(s, (const uint8_t *)s->cfg.input, m.payload_len);
  put(s, "]");
  end_line(s);
  s->pending = 1u;
  s->pending_id = id;
  s->pending_local_class = s->last.class_id;
  ++s->offloads;
}

static void close_pending_degraded(hi_serial_t *s, int32_t error_code) {
  if (!s->pending) return;
  s->pending = 0u;
  ++s->degraded;
  final_line(s, s->pending_id, s->pending_local_class, "degraded", error_code);
}

static void cmd_hi_run(hi_serial_t *s, char **tok, int ntok) {
  const hi_pipeline_t *p = s->cfg.pipeline;
  uint32_t id, t0, t1;
  if (ntok > 3 || (ntok == 3 && (!parse_u32(tok[2], &id) || id == 0u))) {
    error_msg(s, "Command 'hi run' takes an optional request id > 0");
    return;
  }
  if (ntok < 3) {
    id = s->next_id++;
    if (s->next_id == 0u) s->next_id = 1u;
  }
  if (!load_tensor(s, "hi run")) return;
  close_pending_degraded(s, -1); /* a new sample supersedes an unanswered offload */
  t0 = now_us(s);
  if (!run_model(s, HI_RUN_POLICY)) return;
  t1 = now_us(s);
  put(s, "m-hi-local-[id=");
  put_u32(s, id);
  put(s, ",exit=");
  put_i32(s, s->last.exit_index);
  put(s, ",segments=");
  put_u32(s, s->last.segments_run);
  put(s, ",class=");
  put_i32(s, s->last.class_id);
  put(s, ",offload=");
  put_u32(s, s->last.offload);
  put(s, ",dv=");
  put_i32(s, s->last.decision_value);
  put(s, ",us=");
  put_u32(s, t1 - t0);
  put(s, ",scores=");
  put_hex_bytes(s, (const uint8_t *)p->scores, p->num_classes);
  put(s, "]");
  end_line(s);
  if (s->last.offload && s->cfg.offload != NULL) {
    int32_t server_class = -1;
    int rc;
    ++s->offloads;
    rc = s->cfg.offload(s->cfg.offload_user, id, s->cfg.input, p, &server_class);
    if (rc == 0 && server_class >= 0 && server_class < (int32_t)p->num_classes) {
      ++s->answers;
      final_line(s, id, server_class, "server", -1);
    } else {
      ++s->degraded;
      final_line(s, id, s->last.class_id, "degraded", rc == 0 ? HI_ERR_BAD_TENSOR : (rc < 0 ? -rc : rc));
    }
    return;
  }
  if (s->last.offload) {
    emit_offload(s, id);
    if (s->pending) return;
  }
  final_line(s, id, s->last.class_id, "local", -1);
}

static void cmd_hi_result(hi_serial_t *s, char **tok, int ntok) {
  uint8_t frame[(HI_SERIAL_CMD_SIZE + 1) / 2];
  hi_frame_t f;
  int32_t n;
  hi_frame_status_t st;
  if (ntok != 3) {
    error_msg(s, "Command 'hi result' takes one RESULT or ERROR frame in hex");
    return;
  }
  n = parse_hex(tok[2], frame, sizeof frame);
  if (n < 0) {
    error_msg(s, "hi result: the frame must be an even number of hex digits");
    return;
  }
  st = hi_frame_decode(frame, (size_t)n, (uint32_t)sizeof frame, &f);
  if (st != HI_FRAME_OK) {
    error_begin(s);
    put(s, "hi result: invalid frame (status ");
    put_i32(s, st);
    put(s, ")]");
    end_line(s);
    return;
  }
  if (f.header.type != HI_MSG_RESULT && f.header.type != HI_MSG_ERROR) {
    error_msg(s, "hi result: expected a RESULT or ERROR frame");
    return;
  }
  if (!s->pending) {
    error_msg(s, "hi result: no offload is pending");
    return;
  }
  if (f.header.request_id != s->pending_id) {
    error_begin(s);
    put(s, "hi result: answer for request ");
    put_u32(s, f.header.request_id);
    put(s, " but request ");
    put_u32(s, s->pending_id);
    put(s, " is pending]");
    end_line(s);
    return;
  }
  if (f.header.type == HI_MSG_ERROR) {
    close_pending_degraded(s, f.u.error.code);
    return;
  }
  if (f.u.result.class_id >= s->cfg.pipeline->num_classes) {
    error_begin(s);
    put(s, "hi result: class ");
    put_u32(s, f.u.result.class_id);
    put(s, " is outside 0..");
    put_u32(s, (uint32_t)s->cfg.pipeline->num_classes - 1u);
    put(s, "]");
    end_line(s);
    return;
  }
  s->pending = 0u;
  ++s->answers;
  final_line(s, s->pending_id, f.u.result.class_id, "server", -1);
}

static void cmd_hi_degraded(hi_serial_t *s, char **tok, int ntok) {
  uint32_t id;
  if (ntok != 3 || !parse_u32(tok[2], &id)) {
    error_msg(s, "Command 'hi degraded' takes the pending request id");
    return;
  }
  if (!s->pending || id != s->pending_id) {
    error_msg(s, "hi degraded: no offload with that id is pending");
    return;
  }
  close_pending_degraded(s, -1);
}

static void cmd_hi_config(hi_serial_t *s) {
  const hi_pipeline_t *p = s->cfg.pipeline;
  const hi_segment_t *last = &p->segments[p->num_segments - 1];
  uint8_t k;
  put(s, "m-hi-config-[model=");
  put_safe(s, s->cfg.model_version, 32u);
  put(s, ",model_id=");
  put_safe(s, s->cfg.model_id, 32u);
  put(s, ",classes=");
  put_u32(s, p->num_classes);
  put(s, ",input=");
  put_u32(s, p->height);
  put(s, "x");
  put_u32(s, p->width);
  put(s, "x");
  put_u32(s, p->channels);
  put(s, ",in_scale_bits=");
  put_hex_u32(s, float_bits(p->input_scale));
  put(s, ",in_zp=");
  put_i32(s, p->input_zero_point);
  put(s, ",out_scale_bits=");
  put_hex_u32(s, float_bits((float)last->scores_scale));
  put(s, ",out_zp=");
  put_i32(s, last->scores_zero_point);
  put(s, ",segments=");
  put_u32(s, p->num_segments);
  put(s, ",bounds=");
  for (k = 0; k + 1u < p->num_segments; ++k) {
    if (k) put(s, ":");
    put_i32(s, p->segments[k].exit_bound);
  }
  put(s, ",decider=");
  put_u32(s, p->decider != NULL);
  put(s, ",db=");
  put_u32(s, s->cfg.db_capacity);
  put(s, ",cmd=");
  put_u32(s, HI_SERIAL_CMD_SIZE);
  put(s, "]");
  end_line(s);
}

static void cmd_hi_status(hi_serial_t *s) {
  put(s, "m-hi-status-[pending=");
  put_u32(s, s->pending);
  put(s, ",pending_id=");
  put_u32(s, s->pending ? s->pending_id : 0u);
  put(s, ",commands=");
  put_u32(s, s->commands);
  put(s, ",errors=");
  put_u32(s, s->errors);
  put(s, ",offloads=");
  put_u32(s, s->offloads);
  put(s, ",answers=");
  put_u32(s, s->answers);
  put(s, ",degraded=");
  put_u32(s, s->degraded);
  put(s, "]");
  end_line(s);
}

static void cmd_hi(hi_serial_t *s, char **tok, int ntok) {
  if (ntok < 2) {
    error_msg(s, "Command 'hi' requires a subcommand: run, result, degraded, config, status");
  } else if (strcmp(tok[1], "run") == 0) {
    cmd_hi_run(s, tok, ntok);
  } else if (strcmp(tok[1], "result") == 0) {
    cmd_hi_result(s, tok, ntok);
  } else if (strcmp(tok[1], "degraded") == 0) {
    cmd_hi_degraded(s, tok, ntok);
  } else if (strcmp(tok[1], "config") == 0 && ntok == 2) {
    cmd_hi_config(s);
  } else if (strcmp(tok[1], "status") == 0 && ntok == 2) {
    cmd_hi_status(s);
  } else {
    error_begin(s);
    put(s, "Unknown hi subcommand: ");
    put_safe(s, tok[1], 32u);
    put(s, "]");
    end_line(s);
  }
}

static void cmd_help(hi_serial_t *s) {
  static const char *const lines[] = {
      "m-help-[name: print the device name]",
      "m-help-[profile: firmware and model version]",
      "m-help-[timestamp: print m-lap-us-N]",
      "m-help-[db load N: expect N bytes of uint8 pixels (NHWC)]",
      "m-help-[db HEX: append hex bytes; m-load-done when N arrived]",
      "m-help-[db print [N=16] [offset=0]: print bytes as hex]",
      "m-help-[infer N [W=10]: W warmup runs then N timed runs of the whole model; results]",
      "m-help-[results: scores of the last inference]",
      "m-help-[hi run [ID]: HI decision on the loaded sample; may emit an offload frame]",
      "m-help-[hi result HEX: the server's RESULT/ERROR frame for the pending offload]",
      "m-help-[hi degraded ID: no answer came; keep the local result]",
      "m-help-[hi config / hi status: configuration and counters]",
  };
  size_t i;
  put(s, "m-help-[");
  put(s, s->cfg.fw_version ? s->cfg.fw_version : FW_VERSION_DEFAULT);
  put(s, "]");
  end_line(s);
  for (i = 0; i < sizeof lines / sizeof lines[0]; ++i) {
    put(s, lines[i]);
    end_line(s);
  }
}

/* ---- dispatch ------------------------------------------------------------------------------------- */

void hi_serial_execute(hi_serial_t *s, char *line) {
  char *tok[HI_SERIAL_MAX_TOKENS];
  int ntok = 0;
  char *p = line;
  ++s->commands;
  while (*p != '\0') {
    while (*p == ' ') *p++ = '\0';
    if (*p == '\0') break;
    if (ntok == HI_SERIAL_MAX_TOKENS) {
      ntok = HI_SERIAL_MAX_TOKENS + 1;
      break;
    }
    tok[ntok++] = p;
    while (*p != '\0' && *p != ' ') ++p;
  }
  if (ntok == 0) {
    error_msg(s, "Empty command");
  } else if (ntok > HI_SERIAL_MAX_TOKENS) {
    error_msg(s, "Too many arguments");
  } else if (strcmp(tok[0], "name") == 0) {
    put(s, "m-name-dut-[");
    put_safe(s, s->cfg.device_name ? s->cfg.device_name : "hi-runtime", 64u);
    put(s, "]");
    end_line(s);
  } else if (strcmp(tok[0], "profile") == 0) {
    put(s, "m-profile-[");
    put(s, s->cfg.fw_version ? s->cfg.fw_version : FW_VERSION_DEFAULT);
    put(s, "]");
    end_line(s);
    put(s, "m-model-[");
    put_safe(s, s->cfg.model_version ? s->cfg.model_version : "ic01", 32u);
    put(s, "]");
    end_line(s);
  } else if (strcmp(tok[0], "help") == 0) {
    cmd_help(s);
  } else if (strcmp(tok[0], "timestamp") == 0) {
    lap(s);
  } else if (strcmp(tok[0], "db") == 0) {
    cmd_db(s, tok, ntok);
  } else if (strcmp(tok[0], "infer") == 0) {
    cmd_infer(s, tok, ntok);
  } else if (strcmp(tok[0], "results") == 0) {
    if (s->has_result) {
      print_results(s);
    } else {
      error_msg(s, "No results yet: run infer first");
    }
  } else if (strcmp(tok[0], "hi") == 0) {
    cmd_hi(s, tok, ntok);
  } else {
    error_begin(s);
    put(s, "Unknown command: ");
    put_safe(s, tok[0], 32u);
    put(s, "]");
    end_line(s);
  }
  put(s, "m-ready");
  end_line(s);
}

void hi_serial_feed(hi_serial_t *s, const char *data, size_t n) {
  size_t i;
  if (s == NULL || data == NULL) return;
  for (i = 0; i < n; ++i) {
    char c = data[i];
    if (c == HI_SERIAL_TERMINATOR) {
      if (s->overflow) {
        ++s->commands;
        error_begin(s);
        put(s, "Command longer than ");
        put_u32(s, HI_SERIAL_CMD_SIZE);
        put(s, " characters was discarded]");
        end_line(s);
        put(s, "m-ready");
        end_line(s);
      } else if (s->bad_char) {
        ++s->commands;
        error_begin(s);
        uint8_t bad = (uint8_t)(s->bad_char & 0xFFu);
        put(s, "Invalid character 0x");
        put_hex_bytes(s, &bad, 1u);
        put(s, " in command]");
        end_line(s);
        put(s, "m-ready");
        end_line(s);
      } else {
        s->cmd[s->cmd_len] = '\0';
        hi_serial_execute(s, s->cmd);
      }
      s->cmd_len = 0u;
      s->overflow = 0u;
      s->bad_char = 0u;
    } else if (c == '\r' || c == '\n') {
      /* line endings from terminals are ignored: '%' ends a command */
    } else if ((unsigned char)c < 0x20u || (unsigned char)c > 0x7Eu) {
      if (!s->bad_char) s->bad_char = (uint16_t)(0x100u | (unsigned char)c);
    } else if (s->cmd_len >= HI_SERIAL_CMD_SIZE) {
      s->overflow = 1u;
    } else {
      s->cmd[s->cmd_len++] = c;
    }
  }
}

int hi_serial_init(hi_serial_t *s, const hi_serial_io_t *io, const hi_serial_config_t *cfg) {
  if (s == NULL || io == NULL || cfg == NULL) return -1;
  memset(s, 0, sizeof *s);
  s->io = *io;
  s->cfg = *cfg;
  s->next_id = 1u;
  if (cfg->pipeline == NULL || cfg->input == NULL || cfg->db == NULL) return -1;
  if (hi_pipeline_check(cfg->pipeline) != 0) return -1;
  if (cfg->pipeline->num_classes > HI_SERIAL_MAX_CLASSES) return -1;
  if (cfg->db_capacity < input_bytes(s)) return -1;
  return 0;
}

void hi_serial_banner(hi_serial_t *s) {
  put(s, "m-timestamp-mode-performance");
  end_line(s);
  lap(s);
  put(s, "m-init-done");
  end_line(s);
  put(s, "m-ready");
  end_line(s);
}
