/*
 * hi_offload_session.c - the HI offload state machine behind the `hi` commands: run the HI decision on the
 * loaded sample, emit the offload request as a protocol INFER frame in hex (or hand it to the board's
 * on-device offload hook), and close it with the server's RESULT/ERROR frame, a degraded notice, or a newer
 * sample. At most one offload is pending; every `hi run` ends with exactly one m-hi-final line.
 */
#include "hi_offload_session.h"

#include <string.h>

#include "hi_mlperf.h"
#include "hi_serial_out.h"

static void final_line(hi_serial_t *s, uint32_t id, int32_t cls, const char *source, int32_t error_code) {
  hi_serial_put(s, "m-hi-final-[id=");
  hi_serial_put_u32(s, id);
  hi_serial_put(s, ",class=");
  hi_serial_put_i32(s, cls);
  hi_serial_put(s, ",source=");
  hi_serial_put(s, source);
  if (error_code >= 0) {
    hi_serial_put(s, ",error=");
    hi_serial_put_i32(s, error_code);
  }
  hi_serial_put(s, "]");
  hi_serial_end_line(s);
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
  m.payload_len = hi_serial_input_bytes(s);
  n = hi_frame_encode_infer_prefix(prefix, sizeof prefix, HI_FRAME_VERSION, id, &m);
  if (n < 0) {
    hi_serial_error_begin(s);
    hi_serial_put(s, "hi run: cannot encode the offload frame (status ");
    hi_serial_put_i32(s, n);
    hi_serial_put(s, "); check the model id]");
    hi_serial_end_line(s);
    return;
  }
  hi_serial_put(s, "m-hi-offload-[id=");
  hi_serial_put_u32(s, id);
  hi_serial_put(s, ",bytes=");
  hi_serial_put_u32(s, (uint32_t)n + m.payload_len);
  hi_serial_put(s, ",frame=");
  hi_serial_put_hex_bytes(s, prefix, (size_t)n);
  hi_serial_put_hex_bytes(s, (const uint8_t *)s->cfg.input, m.payload_len);
  hi_serial_put(s, "]");
  hi_serial_end_line(s);
  s->hi.pending = 1u;
  s->hi.pending_id = id;
  s->hi.pending_local_class = s->mlperf.last.class_id;
  ++s->hi.offloads;
}

static void close_pending_degraded(hi_serial_t *s, int32_t error_code) {
  if (!s->hi.pending) return;
  s->hi.pending = 0u;
  ++s->hi.degraded;
  final_line(s, s->hi.pending_id, s->hi.pending_local_class, "degraded", error_code);
}

static void cmd_hi_run(hi_serial_t *s, char **tok, int ntok) {
  const hi_pipeline_t *p = s->cfg.pipeline;
  uint32_t id, t0, t1;
  if (ntok > 3 || (ntok == 3 && (!hi_serial_parse_u32(tok[2], &id) || id == 0u))) {
    hi_serial_error_msg(s, "Command 'hi run' takes an optional request id > 0");
    return;
  }
  if (ntok < 3) {
    id = s->hi.next_id++;
    if (s->hi.next_id == 0u) s->hi.next_id = 1u;
  }
  if (!hi_mlperf_load_tensor(s, "hi run")) return;
  close_pending_degraded(s, -1); /* a new sample supersedes an unanswered offload */
  t0 = hi_serial_now_us(s);
  if (!hi_mlperf_run_model(s, HI_RUN_POLICY)) return;
  t1 = hi_serial_now_us(s);
  hi_serial_put(s, "m-hi-local-[id=");
  hi_serial_put_u32(s, id);
  hi_serial_put(s, ",exit=");
  hi_serial_put_i32(s, s->mlperf.last.exit_index);
  hi_serial_put(s, ",segments=");
  hi_serial_put_u32(s, s->mlperf.last.segments_run);
  hi_serial_put(s, ",class=");
  hi_serial_put_i32(s, s->mlperf.last.class_id);
  hi_serial_put(s, ",offload=");
  hi_serial_put_u32(s, s->mlperf.last.offload);
  hi_serial_put(s, ",dv=");
  hi_serial_put_i32(s, s->mlperf.last.decision_value);
  hi_serial_put(s, ",us=");
  hi_serial_put_u32(s, t1 - t0);
  hi_serial_put(s, ",scores=");
  hi_serial_put_hex_bytes(s, (const uint8_t *)p->scores, p->num_classes);
  hi_serial_put(s, "]");
  hi_serial_end_line(s);
  if (s->mlperf.last.offload && s->cfg.offload != NULL) {
    int32_t server_class = -1;
    int rc;
    ++s->hi.offloads;
    rc = s->cfg.offload(s->cfg.offload_user, id, s->cfg.input, p, &server_class);
    if (rc == 0 && server_class >= 0 && server_class < (int32_t)p->num_classes) {
      ++s->hi.answers;
      final_line(s, id, server_class, "server", -1);
    } else {
      ++s->hi.degraded;
      final_line(s, id, s->mlperf.last.class_id, "degraded", rc == 0 ? HI_ERR_BAD_TENSOR : (rc < 0 ? -rc : rc));
    }
    return;
  }
  if (s->mlperf.last.offload) {
    emit_offload(s, id);
    if (s->hi.pending) return;
  }
  final_line(s, id, s->mlperf.last.class_id, "local", -1);
}

static void cmd_hi_result(hi_serial_t *s, char **tok, int ntok) {
  uint8_t frame[(HI_SERIAL_CMD_SIZE + 1) / 2];
  hi_frame_t f;
  int32_t n;
  hi_frame_status_t st;
  if (ntok != 3) {
    hi_serial_error_msg(s, "Command 'hi result' takes one RESULT or ERROR frame in hex");
    return;
  }
  n = hi_serial_parse_hex(tok[2], frame, sizeof frame);
  if (n < 0) {
    hi_serial_error_msg(s, "hi result: the frame must be an even number of hex digits");
    return;
  }
  st = hi_frame_decode(frame, (size_t)n, (uint32_t)sizeof frame, &f);
  if (st != HI_FRAME_OK) {
    hi_serial_error_begin(s);
    hi_serial_put(s, "hi result: invalid frame (status ");
    hi_serial_put_i32(s, st);
    hi_serial_put(s, ")]");
    hi_serial_end_line(s);
    return;
  }
  if (f.header.type != HI_MSG_RESULT && f.header.type != HI_MSG_ERROR) {
    hi_serial_error_msg(s, "hi result: expected a RESULT or ERROR frame");
    return;
  }
  if (!s->hi.pending) {
    hi_serial_error_msg(s, "hi result: no offload is pending");
    return;
  }
  if (f.header.request_id != s->hi.pending_id) {
    hi_serial_error_begin(s);
    hi_serial_put(s, "hi result: answer for request ");
    hi_serial_put_u32(s, f.header.request_id);
    hi_serial_put(s, " but request ");
    hi_serial_put_u32(s, s->hi.pending_id);
    hi_serial_put(s, " is pending]");
    hi_serial_end_line(s);
    return;
  }
  if (f.header.type == HI_MSG_ERROR) {
    close_pending_degraded(s, f.u.error.code);
    return;
  }
  if (f.u.result.class_id >= s->cfg.pipeline->num_classes) {
    hi_serial_error_begin(s);
    hi_serial_put(s, "hi result: class ");
    hi_serial_put_u32(s, f.u.result.class_id);
    hi_serial_put(s, " is outside 0..");
    hi_serial_put_u32(s, (uint32_t)s->cfg.pipeline->num_classes - 1u);
    hi_serial_put(s, "]");
    hi_serial_end_line(s);
    return;
  }
  s->hi.pending = 0u;
  ++s->hi.answers;
  final_line(s, s->hi.pending_id, f.u.result.class_id, "server", -1);
}

static void cmd_hi_degraded(hi_serial_t *s, char **tok, int ntok) {
  uint32_t id;
  if (ntok != 3 || !hi_serial_parse_u32(tok[2], &id)) {
    hi_serial_error_msg(s, "Command 'hi degraded' takes the pending request id");
    return;
  }
  if (!s->hi.pending || id != s->hi.pending_id) {
    hi_serial_error_msg(s, "hi degraded: no offload with that id is pending");
    return;
  }
  close_pending_degraded(s, -1);
}

static void cmd_hi_config(hi_serial_t *s) {
  const hi_pipeline_t *p = s->cfg.pipeline;
  const hi_segment_t *last = &p->segments[p->num_segments - 1];
  uint8_t k;
  hi_serial_put(s, "m-hi-config-[model=");
  hi_serial_put_safe(s, s->cfg.model_version, 32u);
  hi_serial_put(s, ",model_id=");
  hi_serial_put_safe(s, s->cfg.model_id, 32u);
  hi_serial_put(s, ",classes=");
  hi_serial_put_u32(s, p->num_classes);
  hi_serial_put(s, ",input=");
  hi_serial_put_u32(s, p->height);
  hi_serial_put(s, "x");
  hi_serial_put_u32(s, p->width);
  hi_serial_put(s, "x");
  hi_serial_put_u32(s, p->channels);
  hi_serial_put(s, ",in_scale_bits=");
  hi_serial_put_hex_u32(s, hi_serial_float_bits(p->input_scale));
  hi_serial_put(s, ",in_zp=");
  hi_serial_put_i32(s, p->input_zero_point);
  hi_serial_put(s, ",out_scale_bits=");
  hi_serial_put_hex_u32(s, hi_serial_float_bits((float)last->scores_scale));
  hi_serial_put(s, ",out_zp=");
  hi_serial_put_i32(s, last->scores_zero_point);
  hi_serial_put(s, ",segments=");
  hi_serial_put_u32(s, p->num_segments);
  hi_serial_put(s, ",bounds=");
  for (k = 0; k + 1u < p->num_segments; ++k) {
    if (k) hi_serial_put(s, ":");
    hi_serial_put_i32(s, p->segments[k].exit_bound);
  }
  /* each early exit's own scores quantization (scale bits/zero point), so the host reads an exit's
   * confidence with the exit's scale, not the final head's */
  hi_serial_put(s, ",exit_quant=");
  for (k = 0; k + 1u < p->num_segments; ++k) {
    if (k) hi_serial_put(s, ":");
    hi_serial_put_hex_u32(s, hi_serial_float_bits((float)p->segments[k].scores_scale));
    hi_serial_put(s, "/");
    hi_serial_put_i32(s, p->segments[k].scores_zero_point);
  }
  hi_serial_put(s, ",decider=");
  hi_serial_put_u32(s, p->decider != NULL);
  hi_serial_put(s, ",db=");
  hi_serial_put_u32(s, s->cfg.db_capacity);
  hi_serial_put(s, ",cmd=");
  hi_serial_put_u32(s, HI_SERIAL_CMD_SIZE);
  hi_serial_put(s, "]");
  hi_serial_end_line(s);
}

static void cmd_hi_status(hi_serial_t *s) {
  hi_serial_put(s, "m-hi-status-[pending=");
  hi_serial_put_u32(s, s->hi.pending);
  hi_serial_put(s, ",pending_id=");
  hi_serial_put_u32(s, s->hi.pending ? s->hi.pending_id : 0u);
  hi_serial_put(s, ",commands=");
  hi_serial_put_u32(s, s->commands);
  hi_serial_put(s, ",errors=");
  hi_serial_put_u32(s, s->errors);
  hi_serial_put(s, ",offloads=");
  hi_serial_put_u32(s, s->hi.offloads);
  hi_serial_put(s, ",answers=");
  hi_serial_put_u32(s, s->hi.answers);
  hi_serial_put(s, ",degraded=");
  hi_serial_put_u32(s, s->hi.degraded);
  hi_serial_put(s, "]");
  hi_serial_end_line(s);
}

void hi_offload_session_execute(hi_serial_t *s, char **tok, int ntok) {
  if (ntok < 2) {
    hi_serial_error_msg(s, "Command 'hi' requires a subcommand: run, result, degraded, config, status");
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
    hi_serial_error_begin(s);
    hi_serial_put(s, "Unknown hi subcommand: ");
    hi_serial_put_safe(s, tok[1], 32u);
    hi_serial_put(s, "]");
    hi_serial_end_line(s);
  }
}

void hi_offload_session_help(hi_serial_t *s) {
  static const char *const lines[] = {
      "m-help-[hi run [ID]: HI decision on the loaded sample; may emit an offload frame]",
      "m-help-[hi result HEX: the server's RESULT/ERROR frame for the pending offload]",
      "m-help-[hi degraded ID: no answer came; keep the local result]",
      "m-help-[hi config / hi status: configuration and counters]",
  };
  size_t i;
  for (i = 0; i < sizeof lines / sizeof lines[0]; ++i) {
    hi_serial_put(s, lines[i]);
    hi_serial_end_line(s);
  }
}
