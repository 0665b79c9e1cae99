/*
 * hi_serial.c - the serial command interface (protocol: docs/serial.md): the line discipline (commands end
 * with '%', over-long or invalid commands are discarded with one error), the tokenizer, and the dispatch to
 * the two command sets: the MLPerf Tiny runner (hi_mlperf.c) and the HI offload session
 * (hi_offload_session.c). Every command ends with m-ready.
 */
#include "hi_serial.h"

#include <string.h>

#include "hi_mlperf.h"
#include "hi_offload_session.h"
#include "hi_serial_out.h"

static void cmd_help(hi_serial_t *s) {
  hi_serial_put(s, "m-help-[");
  hi_serial_put(s, s->cfg.fw_version ? s->cfg.fw_version : HI_SERIAL_FW_VERSION_DEFAULT);
  hi_serial_put(s, "]");
  hi_serial_end_line(s);
  hi_mlperf_help(s);
  hi_offload_session_help(s);
}

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
    hi_serial_error_msg(s, "Empty command");
  } else if (ntok > HI_SERIAL_MAX_TOKENS) {
    hi_serial_error_msg(s, "Too many arguments");
  } else if (strcmp(tok[0], "hi") == 0) {
    hi_offload_session_execute(s, tok, ntok);
  } else if (strcmp(tok[0], "help") == 0) {
    cmd_help(s);
  } else if (hi_mlperf_execute(s, tok, ntok)) {
    /* an MLPerf Tiny runner command */
  } else {
    hi_serial_error_begin(s);
    hi_serial_put(s, "Unknown command: ");
    hi_serial_put_safe(s, tok[0], 32u);
    hi_serial_put(s, "]");
    hi_serial_end_line(s);
  }
  hi_serial_put(s, "m-ready");
  hi_serial_end_line(s);
}

void hi_serial_feed(hi_serial_t *s, const char *data, size_t n) {
  size_t i;
  if (s == NULL || data == NULL) return;
  for (i = 0; i < n; ++i) {
    char c = data[i];
    if (c == HI_SERIAL_TERMINATOR) {
      if (s->overflow) {
        ++s->commands;
        hi_serial_error_begin(s);
        hi_serial_put(s, "Command longer than ");
        hi_serial_put_u32(s, HI_SERIAL_CMD_SIZE);
        hi_serial_put(s, " characters was discarded]");
        hi_serial_end_line(s);
        hi_serial_put(s, "m-ready");
        hi_serial_end_line(s);
      } else if (s->bad_char) {
        ++s->commands;
        hi_serial_error_begin(s);
        uint8_t bad = (uint8_t)(s->bad_char & 0xFFu);
        hi_serial_put(s, "Invalid character 0x");
        hi_serial_put_hex_bytes(s, &bad, 1u);
        hi_serial_put(s, " in command]");
        hi_serial_end_line(s);
        hi_serial_put(s, "m-ready");
        hi_serial_end_line(s);
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
  s->hi.next_id = 1u;
  if (cfg->pipeline == NULL || cfg->input == NULL || cfg->db == NULL) return -1;
  if (hi_pipeline_check(cfg->pipeline) != 0) return -1;
  if (cfg->pipeline->num_classes > HI_SERIAL_MAX_CLASSES) return -1;
  if (cfg->db_capacity < hi_serial_input_bytes(s)) return -1;
  return 0;
}

void hi_serial_banner(hi_serial_t *s) {
  hi_mlperf_banner(s);
  hi_serial_put(s, "m-ready");
  hi_serial_end_line(s);
}
