/*
 * hi_serial_out.c - what both command sets of the serial interface share (hi_serial_out.h): the chunked
 * output buffer, number/hex formatting without printf, the runner's error convention, strict parsers.
 */
#include "hi_serial_out.h"

#include <string.h>

void hi_serial_flush(hi_serial_t *s) {
  if (s->out_len > 0u && s->io.write != NULL) s->io.write(s->io.user, s->out, s->out_len);
  s->out_len = 0u;
}

void hi_serial_put_n(hi_serial_t *s, const char *p, size_t n) {
  while (n > 0u) {
    size_t room = HI_SERIAL_OUT_SIZE - s->out_len;
    size_t take = n < room ? n : room;
    memcpy(s->out + s->out_len, p, take);
    s->out_len += take;
    p += take;
    n -= take;
    if (s->out_len == HI_SERIAL_OUT_SIZE) hi_serial_flush(s);
  }
}

void hi_serial_put(hi_serial_t *s, const char *str) {
  if (str != NULL) hi_serial_put_n(s, str, strlen(str));
}

/* Printable ASCII only: echoing a host token must not let it inject control characters. */
void hi_serial_put_safe(hi_serial_t *s, const char *str, size_t max) {
  size_t i;
  for (i = 0; str != NULL && str[i] != '\0' && i < max; ++i) {
    char c = (str[i] >= 0x20 && str[i] <= 0x7E && str[i] != '[' && str[i] != ']') ? str[i] : '?';
    hi_serial_put_n(s, &c, 1u);
  }
  if (str != NULL && i == max && str[i] != '\0') hi_serial_put(s, "...");
}

void hi_serial_end_line(hi_serial_t *s) {
  hi_serial_put_n(s, "\r\n", 2u);
  hi_serial_flush(s);
}

void hi_serial_put_u64(hi_serial_t *s, uint64_t v) {
  char buf[21];
  int i = 20;
  buf[i] = '\0';
  do {
    buf[--i] = (char)('0' + (int)(v % 10u));
    v /= 10u;
  } while (v > 0u);
  hi_serial_put(s, buf + i);
}

void hi_serial_put_u32(hi_serial_t *s, uint32_t v) { hi_serial_put_u64(s, v); }

void hi_serial_put_i32(hi_serial_t *s, int32_t v) {
  if (v < 0) {
    hi_serial_put_n(s, "-", 1u);
    hi_serial_put_u64(s, (uint64_t)(-(int64_t)v));
  } else {
    hi_serial_put_u64(s, (uint64_t)v);
  }
}

void hi_serial_put_hex_bytes(hi_serial_t *s, const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; ++i) {
    char h[2];
    h[0] = digits[p[i] >> 4];
    h[1] = digits[p[i] & 0x0Fu];
    hi_serial_put_n(s, h, 2u);
  }
}

void hi_serial_put_hex_u32(hi_serial_t *s, uint32_t v) {
  uint8_t b[4];
  b[0] = (uint8_t)(v >> 24);
  b[1] = (uint8_t)(v >> 16);
  b[2] = (uint8_t)(v >> 8);
  b[3] = (uint8_t)v;
  hi_serial_put_hex_bytes(s, b, 4u);
}

/* A value with three decimals (the runner's "%0.3f"), rounded half away from zero. */
void hi_serial_put_fixed3(hi_serial_t *s, double v) {
  double mag = v < 0.0 ? -v : v;
  uint64_t milli;
  if (mag > 1.0e15) mag = 1.0e15;
  milli = (uint64_t)(mag * 1000.0 + 0.5);
  if (v < 0.0 && milli > 0u) hi_serial_put_n(s, "-", 1u);
  hi_serial_put_u64(s, milli / 1000u);
  hi_serial_put_n(s, ".", 1u);
  {
    char d[3];
    uint32_t f = (uint32_t)(milli % 1000u);
    d[0] = (char)('0' + f / 100u);
    d[1] = (char)('0' + (f / 10u) % 10u);
    d[2] = (char)('0' + f % 10u);
    hi_serial_put_n(s, d, 3u);
  }
}

uint32_t hi_serial_float_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  return b;
}

void hi_serial_error_begin(hi_serial_t *s) {
  ++s->errors;
  hi_serial_put(s, "e-[");
}

void hi_serial_error_msg(hi_serial_t *s, const char *msg) {
  hi_serial_error_begin(s);
  hi_serial_put(s, msg);
  hi_serial_put(s, "]");
  hi_serial_end_line(s);
}

uint32_t hi_serial_now_us(hi_serial_t *s) { return s->io.timestamp_us ? s->io.timestamp_us(s->io.user) : 0u; }

void hi_serial_lap(hi_serial_t *s) {
  hi_serial_put(s, "m-lap-us-");
  hi_serial_put_u32(s, hi_serial_now_us(s));
  hi_serial_end_line(s);
}

/* Strict unsigned decimal: digits only, no sign, at most UINT32_MAX. */
int hi_serial_parse_u32(const char *t, uint32_t *out) {
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

static int hi_serial_hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decode hex into out (cap bytes). Returns bytes written, -1 odd length, -2 bad digit, -3 too long. */
int32_t hi_serial_parse_hex(const char *t, uint8_t *out, size_t cap) {
  size_t n = strlen(t), i;
  if (n % 2u != 0u) return -1;
  if (n / 2u > cap) return -3;
  for (i = 0; i < n; i += 2u) {
    int hi = hi_serial_hex_value(t[i]), lo = hi_serial_hex_value(t[i + 1u]);
    if (hi < 0 || lo < 0) return -2;
    out[i / 2u] = (uint8_t)((hi << 4) | lo);
  }
  return (int32_t)(n / 2u);
}

uint32_t hi_serial_input_bytes(const hi_serial_t *s) {
  const hi_pipeline_t *p = s->cfg.pipeline;
  return (uint32_t)p->height * p->width * p->channels;
}
