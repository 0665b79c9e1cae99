/* hi_offload_client.c - blocking HI offload protocol client over an abstract transport (see header). */
#include "hi_offload_client.h"

#include <string.h>

#include "hi_auth.h"

int hi_client_init(hi_client_t *c, const hi_transport_t *t, const char *name) {
  size_t n = name ? strlen(name) : 0u, i;
  if (c == NULL || t == NULL || t->send == NULL || t->recv == NULL || t->now_ms == NULL) return HI_CLIENT_E_ARG;
  if (n > HI_FRAME_MAX_NAME) return HI_CLIENT_E_ARG;
  for (i = 0; i < n; ++i) {
    if (name[i] < 0x21 || name[i] > 0x7E) return HI_CLIENT_E_ARG;
  }
  memset(c, 0, sizeof *c);
  c->t = *t;
  memcpy(c->name, name, n);
  c->name_len = (uint8_t)n;
  c->version = 1u;
  hi_frame_reader_init(&c->reader, c->rx, sizeof c->rx, HI_CLIENT_RX_SIZE);
  return HI_CLIENT_OK;
}

/* Next complete frame, waiting until the deadline. */
static int read_frame(hi_client_t *c, uint32_t deadline, hi_frame_t *f) {
  for (;;) {
    uint8_t buf[256];
    int got;
    uint32_t now;
    if (c->pending_len > 0u) {
      size_t used = 0u;
      int rc = hi_frame_reader_push(&c->reader, c->pending, c->pending_len, &used, f);
      memmove(c->pending, c->pending + used, c->pending_len - used);
      c->pending_len -= used;
      if (rc == 1) return HI_CLIENT_OK;
      if (rc < 0) return HI_CLIENT_E_PROTOCOL;
    }
    now = c->t.now_ms(c->t.user);
    if ((int32_t)(now - deadline) >= 0) return HI_CLIENT_E_TIMEOUT;
    got = c->t.recv(c->t.user, buf, sizeof buf, deadline - now);
    if (got < 0) return HI_CLIENT_E_IO;
    if (got == 0) continue;
    if ((size_t)got > sizeof c->pending - c->pending_len) return HI_CLIENT_E_PROTOCOL;
    memcpy(c->pending + c->pending_len, buf, (size_t)got);
    c->pending_len += (size_t)got;
  }
}

static int send_all(hi_client_t *c, const uint8_t *d, size_t n) {
  return c->t.send(c->t.user, d, n) < 0 ? HI_CLIENT_E_IO : HI_CLIENT_OK;
}

int hi_client_handshake(hi_client_t *c, const uint8_t client_nonce[16], const uint8_t *key, size_t key_len,
                        uint32_t timeout_ms) {
  uint8_t out[80], mac[HI_SHA256_SIZE], server_nonce[16];
  hi_hello_t hello;
  hi_frame_t f;
  uint32_t deadline;
  int32_t n;
  int rc;
  if (c == NULL || client_nonce == NULL) return HI_CLIENT_E_ARG;
  deadline = c->t.now_ms(c->t.user) + timeout_ms;
  c->ready = 0;
  /* a handshake starts a new connection's byte stream: nothing of the last one (a frame cut by a timeout,
   * or one an early return left decoded) may be read as this one's, or block the reader */
  hi_frame_reader_next(&c->reader);
  c->pending_len = 0u;
  memset(&hello, 0, sizeof hello);
  hello.min_version = 1u;
  hello.max_version = HI_FRAME_VERSION;
  hello.client_nonce = client_nonce;
  hello.name = c->name;
  hello.name_len = c->name_len;
  n = hi_frame_encode_hello(out, sizeof out, 0u, &hello);
  if (n < 0) return HI_CLIENT_E_ARG;
  if ((rc = send_all(c, out, (size_t)n)) != HI_CLIENT_OK) return rc;
  if ((rc = read_frame(c, deadline, &f)) != HI_CLIENT_OK) return rc;
  if (f.header.type == HI_MSG_ERROR) {
    c->last_error = f.u.error.code;
    hi_frame_reader_next(&c->reader);
    return f.u.error.code == HI_ERR_UNSUPPORTED_VERSION ? HI_CLIENT_E_VERSION : HI_CLIENT_E_SERVER;
  }
  if (f.header.type != HI_MSG_WELCOME) return HI_CLIENT_E_PROTOCOL;
  if (f.u.welcome.version != HI_FRAME_VERSION) return HI_CLIENT_E_VERSION;
  c->version = f.u.welcome.version;
  c->server_max_frame = f.u.welcome.max_frame;
  memcpy(server_nonce, f.u.welcome.server_nonce, sizeof server_nonce);
  if (!(f.u.welcome.flags & HI_WELCOME_FLAG_AUTH_REQUIRED)) {
    hi_frame_reader_next(&c->reader);
    c->ready = 1;
    return HI_CLIENT_OK;
  }
  hi_frame_reader_next(&c->reader);
  if (key == NULL || key_len == 0u) return HI_CLIENT_E_AUTH;
  hi_auth_proof(0, key, key_len, server_nonce, client_nonce, c->version, c->name, c->name_len, mac);
  n = hi_frame_encode_auth(out, sizeof out, c->version, HI_MSG_AUTH, 0u, mac);
  if ((rc = send_all(c, out, (size_t)n)) != HI_CLIENT_OK) return rc;
  rc = read_frame(c, deadline, &f);
  if (rc == HI_CLIENT_E_IO) return HI_CLIENT_E_AUTH; /* the server closes after AUTH_FAILED */
  if (rc != HI_CLIENT_OK) return rc;
  if (f.header.type == HI_MSG_ERROR) {
    c->last_error = f.u.error.code;
    hi_frame_reader_next(&c->reader);
    return HI_CLIENT_E_AUTH;
  }
  if (f.header.type != HI_MSG_AUTH_OK) return HI_CLIENT_E_PROTOCOL;
  hi_auth_proof(1, key, key_len, server_nonce, client_nonce, c->version, c->name, c->name_len, mac);
  rc = hi_auth_equal(mac, f.u.auth.mac);
  hi_frame_reader_next(&c->reader);
  if (!rc) return HI_CLIENT_E_AUTH; /* an impostor server: never offload to it */
  c->ready = 1;
  return HI_CLIENT_OK;
}

int hi_client_infer(hi_client_t *c, uint32_t request_id, const hi_infer_t *m, uint32_t timeout_ms,
                    hi_client_answer_t *answer) {
  uint8_t prefix[HI_FRAME_HEADER_SIZE + 13u + 8u + HI_FRAME_MAX_MODEL_ID];
  hi_frame_t f;
  uint32_t deadline;
  int32_t n;
  int rc;
  if (c == NULL || m == NULL || answer == NULL || request_id == 0u) return HI_CLIENT_E_ARG;
  if (!c->ready) return HI_CLIENT_E_ARG;
  memset(answer, 0, sizeof *answer);
  n = hi_frame_encode_infer_prefix(prefix, sizeof prefix, c->version, request_id, m);
  if (n < 0) return HI_CLIENT_E_ARG;
  if (c->server_max_frame && (uint32_t)n + m->payload_len > c->server_max_frame) return HI_CLIENT_E_ARG;
  deadline = c->t.now_ms(c->t.user) + timeout_ms;
  if ((rc = send_all(c, prefix, (size_t)n)) != HI_CLIENT_OK) return rc;
  if ((rc = send_all(c, m->payload, m->payload_len)) != HI_CLIENT_OK) return rc;
  for (;;) {
    if ((rc = read_frame(c, deadline, &f)) != HI_CLIENT_OK) return rc;
    if (f.header.type == HI_MSG_PING) {
      uint8_t pong[20];
      int32_t k = hi_frame_encode_ping(pong, sizeof pong, c->version, HI_MSG_PONG, f.header.request_id,
                                       f.u.ping.token);
      hi_frame_reader_next(&c->reader);
      if ((rc = send_all(c, pong, (size_t)k)) != HI_CLIENT_OK) return rc;
      continue;
    }
    if (f.header.type == HI_MSG_ERROR && f.header.request_id == 0u) { /* connection-level: it closes */
      c->last_error = answer->error_code = f.u.error.code;
      hi_frame_reader_next(&c->reader);
      c->ready = 0;
      return HI_CLIENT_E_SERVER;
    }
    if (f.header.request_id != request_id) { /* a late answer to a request we gave up on */
      hi_frame_reader_next(&c->reader);
      continue;
    }
    if (f.header.type == HI_MSG_RESULT) {
      answer->class_id = f.u.result.class_id;
      answer->batch_size = f.u.result.batch_size;
      answer->queue_us = f.u.result.queue_us;
      answer->infer_us = f.u.result.infer_us;
      answer->total_us = f.u.result.total_us;
      hi_frame_reader_next(&c->reader);
      return HI_CLIENT_OK;
    }
    if (f.header.type == HI_MSG_ERROR) {
      c->last_error = answer->error_code = f.u.error.code;
      hi_frame_reader_next(&c->reader);
      return HI_CLIENT_E_SERVER;
    }
    hi_frame_reader_next(&c->reader);
    return HI_CLIENT_E_PROTOCOL;
  }
}
