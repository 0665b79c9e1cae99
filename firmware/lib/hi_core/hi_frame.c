/*
 * hi_frame.c - frame codec of the HI offload protocol (see hi_frame.h and docs/protocol.md).
 *
 * The checks run in the same order as hi_runtime/protocol_codec.py so that an invalid frame yields the
 * same error class on both sides; every length is checked before the bytes it covers are touched.
 */
#include "hi_frame.h"

#include <float.h>
#include <string.h>

void hi_put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v & 0xFFu);
  p[1] = (uint8_t)(v >> 8);
}

void hi_put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v & 0xFFu);
  p[1] = (uint8_t)((v >> 8) & 0xFFu);
  p[2] = (uint8_t)((v >> 16) & 0xFFu);
  p[3] = (uint8_t)(v >> 24);
}

void hi_put_f32(uint8_t *p, float v) {
  uint32_t bits;
  memcpy(&bits, &v, sizeof bits);
  hi_put_u32(p, bits);
}

uint16_t hi_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }

uint32_t hi_get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

float hi_get_f32(const uint8_t *p) {
  uint32_t bits = hi_get_u32(p);
  float v;
  memcpy(&v, &bits, sizeof v);
  return v;
}

static void put_u64(uint8_t *p, uint64_t v) {
  hi_put_u32(p, (uint32_t)(v & 0xFFFFFFFFu));
  hi_put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t get_u64(const uint8_t *p) { return (uint64_t)hi_get_u32(p) | ((uint64_t)hi_get_u32(p + 4) << 32); }

uint32_t hi_frame_dtype_size(uint8_t dtype) {
  switch (dtype) {
    case HI_DTYPE_UINT8:
    case HI_DTYPE_INT8:
      return 1u;
    case HI_DTYPE_FLOAT32:
      return 4u;
    default:
      return 0u;
  }
}

static int known_type(uint8_t t) {
  switch (t) {
    case HI_MSG_HELLO:
    case HI_MSG_WELCOME:
    case HI_MSG_AUTH:
    case HI_MSG_AUTH_OK:
    case HI_MSG_INFER:
    case HI_MSG_RESULT:
    case HI_MSG_ERROR:
    case HI_MSG_PING:
    case HI_MSG_PONG:
      return 1;
    default:
      return 0;
  }
}

static int printable(const uint8_t *s, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) {
    if (s[i] < 0x21u || s[i] > 0x7Eu) return 0;
  }
  return 1;
}

/* A finite, strictly positive binary32 (NaN fails both comparisons). */
static int valid_scale(float s) { return s > 0.0f && s <= FLT_MAX; }

hi_frame_status_t hi_frame_decode_header(const uint8_t *buf, size_t len, uint32_t max_frame,
                                         hi_frame_header_t *out) {
  uint32_t limit;
  if (buf == NULL || out == NULL) return HI_FRAME_E_ARG;
  if (len < HI_FRAME_HEADER_SIZE) return HI_FRAME_E_LENGTH;
  if (buf[0] != HI_FRAME_MAGIC0 || buf[1] != HI_FRAME_MAGIC1) return HI_FRAME_E_BAD_MAGIC;
  if (buf[2] != HI_FRAME_VERSION) return HI_FRAME_E_VERSION;
  if (!known_type(buf[3])) return HI_FRAME_E_TYPE;
  out->version = buf[2];
  out->type = buf[3];
  out->request_id = hi_get_u32(buf + 4);
  out->body_length = hi_get_u32(buf + 8);
  limit = max_frame < HI_FRAME_ABSOLUTE_MAX ? max_frame : HI_FRAME_ABSOLUTE_MAX;
  /* compare without overflowing: HEADER + body_length > limit */
  if (limit < HI_FRAME_HEADER_SIZE || out->body_length > limit - HI_FRAME_HEADER_SIZE) return HI_FRAME_E_TOO_LARGE;
  return HI_FRAME_OK;
}

/* Short string at body[off]: u8 length (<= max_len) then exactly that many printable bytes ending the body. */
static hi_frame_status_t short_str(const uint8_t *body, uint32_t blen, uint32_t off, uint8_t *len_out,
                                   const char **str_out) {
  uint8_t n;
  if (blen < off + 1u) return HI_FRAME_E_LENGTH;
  n = body[off];
  if (n > HI_FRAME_MAX_NAME) return HI_FRAME_E_FIELD;
  if (blen != off + 1u + n) return HI_FRAME_E_LENGTH;
  if (!printable(body + off + 1u, n)) return HI_FRAME_E_FIELD;
  *len_out = n;
  *str_out = (const char *)(body + off + 1u);
  return HI_FRAME_OK;
}

static hi_frame_status_t decode_infer(const uint8_t *b, uint32_t blen, hi_infer_t *m) {
  uint32_t off = 13u, i, elem;
  uint64_t expected;
  if (blen < 13u) return HI_FRAME_E_LENGTH;
  m->dtype = b[0];
  m->layout = b[1];
  m->flags = b[2];
  m->top_k = b[3];
  for (i = 0; i < 4u; ++i) m->shape[i] = hi_get_u16(b + 4u + 2u * i);
  m->model_id_len = b[12];
  elem = hi_frame_dtype_size(m->dtype);
  if (elem == 0u) return HI_FRAME_E_FIELD;
  if (m->layout != HI_LAYOUT_NHWC && m->layout != HI_LAYOUT_NCHW) return HI_FRAME_E_FIELD;
  if ((m->flags & (uint8_t)~HI_INFER_FLAG_QUANT) != 0u) return HI_FRAME_E_FIELD;
  for (i = 0; i < 4u; ++i) {
    if (m->shape[i] == 0u) return HI_FRAME_E_FIELD;
  }
  if (m->model_id_len > HI_FRAME_MAX_MODEL_ID) return HI_FRAME_E_FIELD;
  m->scale = 0.0f;
  m->zero_point = 0;
  if (m->flags & HI_INFER_FLAG_QUANT) {
    if (m->dtype == HI_DTYPE_FLOAT32) return HI_FRAME_E_FIELD;
    if (blen < off + 8u) return HI_FRAME_E_LENGTH;
    m->scale = hi_get_f32(b + off);
    m->zero_point = (int32_t)hi_get_u32(b + off + 4u);
    if (!valid_scale(m->scale)) return HI_FRAME_E_FIELD;
    off += 8u;
  }
  if (blen < off + m->model_id_len) return HI_FRAME_E_LENGTH;
  if (!printable(b + off, m->model_id_len)) return HI_FRAME_E_FIELD;
  m->model_id = (const char *)(b + off);
  off += m->model_id_len;
  m->payload = b + off;
  m->payload_len = blen - off;
  /* shape product x element size, stopping as soon as it exceeds the payload (no overflow possible:
   * each factor is <= 65535 and the running value stays <= 16 MiB before the multiplication). */
  expected = elem;
  for (i = 0; i < 4u; ++i) {
    expected *= m->shape[i];
    if (expected > m->payload_len) return HI_FRAME_E_PAYLOAD;
  }
  if (expected != m->payload_len) return HI_FRAME_E_PAYLOAD;
  return HI_FRAME_OK;
}

static hi_frame_status_t decode_body(const hi_frame_header_t *h, const uint8_t *b, hi_frame_t *out) {
  uint32_t blen = h->body_length;
  hi_frame_status_t st;
  switch (h->type) {
    case HI_MSG_HELLO: {
      hi_hello_t *m = &out->u.hello;
      if (blen < 20u) return HI_FRAME_E_LENGTH;
      m->min_version = b[0];
      m->max_version = b[1];
      m->flags = hi_get_u16(b + 2);
      m->client_nonce = b + 4;
      if (!(1u <= m->min_version && m->min_version <= m->max_version)) return HI_FRAME_E_FIELD;
      return short_str(b, blen, 20u, &m->name_len, &m->name);
    }
    case HI_MSG_WELCOME: {
      hi_welcome_t *m = &out->u.welcome;
      if (blen < 24u) return HI_FRAME_E_LENGTH;
      m->version = b[0];
      m->flags = b[1];
      m->max_inflight = hi_get_u16(b + 2);
      m->max_frame = hi_get_u32(b + 4);
      m->server_nonce = b + 8;
      return short_str(b, blen, 24u, &m->name_len, &m->name);
    }
    case HI_MSG_AUTH:
    case HI_MSG_AUTH_OK:
      if (blen != HI_FRAME_MAC_SIZE) return HI_FRAME_E_LENGTH;
      out->u.auth.mac = b;
      return HI_FRAME_OK;
    case HI_MSG_INFER:
      return decode_infer(b, blen, &out->u.infer);
    case HI_MSG_RESULT: {
      hi_result_t *m = &out->u.result;
      if (blen < 20u) return HI_FRAME_E_LENGTH;
      m->class_id = hi_get_u16(b);
      m->top_k_count = b[2];
      m->flags = b[3];
      m->batch_size = hi_get_u16(b + 4);
      m->queue_us = hi_get_u32(b + 8);
      m->infer_us = hi_get_u32(b + 12);
      m->total_us = hi_get_u32(b + 16);
      m->top_k = b + 20;
      if (blen != 20u + HI_FRAME_TOPK_ENTRY_SIZE * (uint32_t)m->top_k_count) return HI_FRAME_E_LENGTH;
      return HI_FRAME_OK;
    }
    case HI_MSG_ERROR: {
      hi_error_t *m = &out->u.error;
      if (blen < 4u) return HI_FRAME_E_LENGTH;
      m->code = hi_get_u16(b);
      m->message_len = hi_get_u16(b + 2);
      if (m->message_len > HI_FRAME_MAX_ERROR_MESSAGE) return HI_FRAME_E_FIELD;
      if (blen != 4u + (uint32_t)m->message_len) return HI_FRAME_E_LENGTH;
      m->message = (const char *)(b + 4);
      return HI_FRAME_OK;
    }
    case HI_MSG_PING:
    case HI_MSG_PONG:
      if (blen != 8u) return HI_FRAME_E_LENGTH;
      out->u.ping.token = get_u64(b);
      return HI_FRAME_OK;
    default:
      st = HI_FRAME_E_TYPE;
      return st;
  }
}

hi_frame_status_t hi_frame_decode(const uint8_t *buf, size_t len, uint32_t max_frame, hi_frame_t *out) {
  hi_frame_status_t st;
  if (buf == NULL || out == NULL) return HI_FRAME_E_ARG;
  memset(out, 0, sizeof *out);
  st = hi_frame_decode_header(buf, len, max_frame, &out->header);
  if (st != HI_FRAME_OK) return st;
  if (len != (size_t)HI_FRAME_HEADER_SIZE + out->header.body_length) return HI_FRAME_E_LENGTH;
  return decode_body(&out->header, buf + HI_FRAME_HEADER_SIZE, out);
}

void hi_frame_result_top_k(const hi_result_t *r, uint8_t i, uint16_t *class_id, float *score) {
  const uint8_t *e;
  if (r == NULL || i >= r->top_k_count) return;
  e = r->top_k + (size_t)HI_FRAME_TOPK_ENTRY_SIZE * i;
  if (class_id) *class_id = hi_get_u16(e);
  if (score) *score = hi_get_f32(e + 2);
}

/* ---- encoding ------------------------------------------------------------------------------------- */

static int32_t put_header(uint8_t *out, size_t cap, uint8_t version, uint8_t type, uint32_t request_id,
                          uint32_t body_len) {
  if (out == NULL) return HI_FRAME_E_ARG;
  if (body_len > HI_FRAME_ABSOLUTE_MAX - HI_FRAME_HEADER_SIZE) return HI_FRAME_E_TOO_LARGE;
  if (cap < (size_t)HI_FRAME_HEADER_SIZE + body_len) return HI_FRAME_E_BUFFER;
  out[0] = HI_FRAME_MAGIC0;
  out[1] = HI_FRAME_MAGIC1;
  out[2] = version;
  out[3] = type;
  hi_put_u32(out + 4, request_id);
  hi_put_u32(out + 8, body_len);
  return (int32_t)(HI_FRAME_HEADER_SIZE + body_len);
}

static int name_ok(const char *s, uint8_t n) {
  if (n > HI_FRAME_MAX_NAME) return 0;
  if (n > 0u && s == NULL) return 0;
  return printable((const uint8_t *)s, n);
}

int32_t hi_frame_encode_hello(uint8_t *out, size_t cap, uint32_t request_id, const hi_hello_t *m) {
  int32_t total;
  uint8_t *b;
  if (m == NULL || m->client_nonce == NULL) return HI_FRAME_E_ARG;
  if (!(1u <= m->min_version && m->min_version <= m->max_version)) return HI_FRAME_E_FIELD;
  if (!name_ok(m->name, m->name_len)) return HI_FRAME_E_FIELD;
  total = put_header(out, cap, HI_FRAME_VERSION, HI_MSG_HELLO, request_id, 21u + m->name_len);
  if (total < 0) return total;
  b = out + HI_FRAME_HEADER_SIZE;
  b[0] = m->min_version;
  b[1] = m->max_version;
  hi_put_u16(b + 2, 0u); /* flags: reserved */
  memcpy(b + 4, m->client_nonce, HI_FRAME_NONCE_SIZE);
  b[20] = m->name_len;
  if (m->name_len) memcpy(b + 21, m->name, m->name_len);
  return total;
}

int32_t hi_frame_encode_welcome(uint8_t *out, size_t cap, uint32_t request_id, const hi_welcome_t *m) {
  int32_t total;
  uint8_t *b;
  if (m == NULL || m->server_nonce == NULL) return HI_FRAME_E_ARG;
  if (!name_ok(m->name, m->name_len)) return HI_FRAME_E_FIELD;
  total = put_header(out, cap, HI_FRAME_VERSION, HI_MSG_WELCOME, request_id, 25u + m->name_len);
  if (total < 0) return total;
  b = out + HI_FRAME_HEADER_SIZE;
  b[0] = m->version;
  b[1] = (uint8_t)(m->flags & HI_WELCOME_FLAG_AUTH_REQUIRED);
  hi_put_u16(b + 2, m->max_inflight);
  hi_put_u32(b + 4, m->max_frame);
  memcpy(b + 8, m->server_nonce, HI_FRAME_NONCE_SIZE);
  b[24] = m->name_len;
  if (m->name_len) memcpy(b + 25, m->name, m->name_len);
  return total;
}

int32_t hi_frame_encode_auth(uint8_t *out, size_t cap, uint8_t version, uint8_t type, uint32_t request_id,
                             const uint8_t mac[32]) {
  int32_t total;
  if (mac == NULL) return HI_FRAME_E_ARG;
  if (type != HI_MSG_AUTH && type != HI_MSG_AUTH_OK) return HI_FRAME_E_ARG;
  total = put_header(out, cap, version, type, request_id, HI_FRAME_MAC_SIZE);
  if (total < 0) return total;
  memcpy(out + HI_FRAME_HEADER_SIZE, mac, HI_FRAME_MAC_SIZE);
  return total;
}

/* Validates an INFER and returns the size of its body without payload, or a negative status. */
static int32_t infer_prefix_size(const hi_infer_t *m) {
  uint32_t elem, i;
  uint64_t expected;
  if (m == NULL) return HI_FRAME_E_ARG;
  elem = hi_frame_dtype_size(m->dtype);
  if (elem == 0u) return HI_FRAME_E_FIELD;
  if (m->layout != HI_LAYOUT_NHWC && m->layout != HI_LAYOUT_NCHW) return HI_FRAME_E_FIELD;
  if ((m->flags & (uint8_t)~HI_INFER_FLAG_QUANT) != 0u) return HI_FRAME_E_FIELD;
  if (m->model_id_len > HI_FRAME_MAX_MODEL_ID) return HI_FRAME_E_FIELD;
  if (m->model_id_len > 0u && m->model_id == NULL) return HI_FRAME_E_ARG;
  if (!printable((const uint8_t *)m->model_id, m->model_id_len)) return HI_FRAME_E_FIELD;
  expected = elem;
  for (i = 0; i < 4u; ++i) {
    if (m->shape[i] == 0u) return HI_FRAME_E_FIELD;
    expected *= m->shape[i];
    if (expected > HI_FRAME_ABSOLUTE_MAX) return HI_FRAME_E_TOO_LARGE;
  }
  if (expected != m->payload_len) return HI_FRAME_E_PAYLOAD;
  if (m->flags & HI_INFER_FLAG_QUANT) {
    if (m->dtype == HI_DTYPE_FLOAT32) return HI_FRAME_E_FIELD;
    if (!valid_scale(m->scale)) return HI_FRAME_E_FIELD;
  }
  return (int32_t)(13u + ((m->flags & HI_INFER_FLAG_QUANT) ? 8u : 0u) + m->model_id_len);
}

int32_t hi_frame_encode_infer_prefix(uint8_t *out, size_t cap, uint8_t version, uint32_t request_id,
                                     const hi_infer_t *m) {
  int32_t fixed = infer_prefix_size(m), total;
  uint8_t *b;
  uint32_t off = 13u, i;
  if (fixed < 0) return fixed;
  if (m->payload_len > HI_FRAME_ABSOLUTE_MAX - HI_FRAME_HEADER_SIZE - (uint32_t)fixed) return HI_FRAME_E_TOO_LARGE;
  /* check room for the prefix only; the caller streams the payload */
  if (out == NULL) return HI_FRAME_E_ARG;
  if (cap < (size_t)HI_FRAME_HEADER_SIZE + (uint32_t)fixed) return HI_FRAME_E_BUFFER;
  total = put_header(out, (size_t)-1, version, HI_MSG_INFER, request_id, (uint32_t)fixed + m->payload_len);
  if (total < 0) return total;
  b = out + HI_FRAME_HEADER_SIZE;
  b[0] = m->dtype;
  b[1] = m->layout;
  b[2] = m->flags;
  b[3] = m->top_k;
  for (i = 0; i < 4u; ++i) hi_put_u16(b + 4u + 2u * i, m->shape[i]);
  b[12] = m->model_id_len;
  if (m->flags & HI_INFER_FLAG_QUANT) {
    hi_put_f32(b + off, m->scale);
    hi_put_u32(b + off + 4u, (uint32_t)m->zero_point);
    off += 8u;
  }
  if (m->model_id_len) memcpy(b + off, m->model_id, m->model_id_len);
  return (int32_t)HI_FRAME_HEADER_SIZE + fixed;
}

int32_t hi_frame_encode_infer(uint8_t *out, size_t cap, uint8_t version, uint32_t request_id,
                              const hi_infer_t *m) {
  int32_t prefix;
  if (m == NULL) return HI_FRAME_E_ARG;
  if (m->payload_len > 0u && m->payload == NULL) return HI_FRAME_E_ARG;
  prefix = hi_frame_encode_infer_prefix(out, cap, version, request_id, m);
  if (prefix < 0) return prefix;
  if (cap - (size_t)prefix < m->payload_len) return HI_FRAME_E_BUFFER;
  memcpy(out + prefix, m->payload, m->payload_len);
  return prefix + (int32_t)m->payload_len;
}

int32_t hi_frame_encode_result(uint8_t *out, size_t cap, uint8_t version, uint32_t request_id,
                               const hi_result_t *m, const uint16_t *top_k_classes, const float *top_k_scores) {
  int32_t total;
  uint8_t *b;
  uint32_t i;
  if (m == NULL) return HI_FRAME_E_ARG;
  if (m->top_k_count > 0u && (top_k_classes == NULL || top_k_scores == NULL)) return HI_FRAME_E_ARG;
  total = put_header(out, cap, version, HI_MSG_RESULT, request_id,
                     20u + HI_FRAME_TOPK_ENTRY_SIZE * (uint32_t)m->top_k_count);
  if (total < 0) return total;
  b = out + HI_FRAME_HEADER_SIZE;
  hi_put_u16(b, m->class_id);
  b[2] = m->top_k_count;
  b[3] = 0u;
  hi_put_u16(b + 4, m->batch_size);
  hi_put_u16(b + 6, 0u);
  hi_put_u32(b + 8, m->queue_us);
  hi_put_u32(b + 12, m->infer_us);
  hi_put_u32(b + 16, m->total_us);
  for (i = 0; i < m->top_k_count; ++i) {
    hi_put_u16(b + 20u + 6u * i, top_k_classes[i]);
    hi_put_f32(b + 22u + 6u * i, top_k_scores[i]);
  }
  return total;
}

int32_t hi_frame_encode_error(uint8_t *out, size_t cap, uint8_t version, uint32_t request_id,
                              const hi_error_t *m) {
  int32_t total;
  if (m == NULL) return HI_FRAME_E_ARG;
  if (m->message_len > HI_FRAME_MAX_ERROR_MESSAGE) return HI_FRAME_E_FIELD;
  if (m->message_len > 0u && m->message == NULL) return HI_FRAME_E_ARG;
  total = put_header(out, cap, version, HI_MSG_ERROR, request_id, 4u + m->message_len);
  if (total < 0) return total;
  hi_put_u16(out + HI_FRAME_HEADER_SIZE, m->code);
  hi_put_u16(out + HI_FRAME_HEADER_SIZE + 2, m->message_len);
  if (m->message_len) memcpy(out + HI_FRAME_HEADER_SIZE + 4, m->message, m->message_len);
  return total;
}

int32_t hi_frame_encode_ping(uint8_t *out, size_t cap, uint8_t version, uint8_t type, uint32_t request_id,
                             uint64_t token) {
  int32_t total;
  if (type != HI_MSG_PING && type != HI_MSG_PONG) return HI_FRAME_E_ARG;
  total = put_header(out, cap, version, type, request_id, 8u);
  if (total < 0) return total;
  put_u64(out + HI_FRAME_HEADER_SIZE, token);
  return total;
}

/* ---- incremental reader --------------------------------------------------------------------------- */

void hi_frame_reader_init(hi_frame_reader_t *r, uint8_t *buf, size_t cap, uint32_t max_frame) {
  if (r == NULL) return;
  r->buf = buf;
  r->cap = cap;
  r->fill = 0u;
  r->max_frame = max_frame;
  r->frame_size = 0u;
  r->ready = 0;
}

void hi_frame_reader_next(hi_frame_reader_t *r) {
  if (r == NULL) return;
  r->fill = 0u;
  r->frame_size = 0u;
  r->ready = 0;
}

int hi_frame_reader_push(hi_frame_reader_t *r, const uint8_t *data, size_t n, size_t *consumed, hi_frame_t *out) {
  size_t used = 0u;
  if (consumed) *consumed = 0u;
  if (r == NULL || r->buf == NULL || out == NULL || (data == NULL && n > 0u)) return HI_FRAME_E_ARG;
  if (r->ready) return HI_FRAME_E_ARG; /* previous frame not released */
  if (r->cap < HI_FRAME_HEADER_SIZE) return HI_FRAME_E_ARG;
  while (used < n) {
    size_t want, take;
    if (r->frame_size == 0u) {
      want = HI_FRAME_HEADER_SIZE - r->fill;
    } else {
      want = r->frame_size - r->fill;
    }
    take = n - used < want ? n - used : want;
    memcpy(r->buf + r->fill, data + used, take);
    r->fill += take;
    used += take;
    if (r->frame_size == 0u && r->fill == HI_FRAME_HEADER_SIZE) {
      hi_frame_header_t h;
      uint32_t limit = r->max_frame;
      hi_frame_status_t st;
      if ((size_t)limit > r->cap) limit = (uint32_t)r->cap;
      st = hi_frame_decode_header(r->buf, r->fill, limit, &h);
      if (st != HI_FRAME_OK) {
        if (consumed) *consumed = used;
        return st;
      }
      r->frame_size = HI_FRAME_HEADER_SIZE + h.body_length;
    }
    if (r->frame_size != 0u && r->fill == r->frame_size) {
      hi_frame_status_t st = hi_frame_decode(r->buf, r->fill, r->frame_size, out);
      if (consumed) *consumed = used;
      if (st != HI_FRAME_OK) return st;
      r->ready = 1;
      return 1;
    }
  }
  if (consumed) *consumed = used;
  return 0;
}
