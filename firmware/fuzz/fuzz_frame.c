/*
 * fuzz_frame.c - libFuzzer harness for the frame decoder (hi_frame.c): one-shot decoding with a maximum
 * frame size taken from the input, the incremental stream reader fed in input-chosen chunk sizes, and
 * re-encoding of every frame that decodes (which must decode again to the same fields).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hi_frame.h"

static uint8_t g_enc[1u << 17];

static void reencode(const hi_frame_t *f) {
  const hi_frame_header_t *h = &f->header;
  int32_t n = -1;
  hi_frame_t g;
  switch (h->type) {
    case HI_MSG_HELLO: n = hi_frame_encode_hello(g_enc, sizeof g_enc, h->request_id, &f->u.hello); break;
    case HI_MSG_WELCOME: n = hi_frame_encode_welcome(g_enc, sizeof g_enc, h->request_id, &f->u.welcome); break;
    case HI_MSG_AUTH:
    case HI_MSG_AUTH_OK: n = hi_frame_encode_auth(g_enc, sizeof g_enc, h->version, h->type, h->request_id, f->u.auth.mac); break;
    case HI_MSG_INFER: n = hi_frame_encode_infer(g_enc, sizeof g_enc, h->version, h->request_id, &f->u.infer); break;
    case HI_MSG_RESULT: {
      uint16_t cls[255];
      float sc[255];
      uint8_t i;
      for (i = 0; i < f->u.result.top_k_count; ++i) hi_frame_result_top_k(&f->u.result, i, &cls[i], &sc[i]);
      n = hi_frame_encode_result(g_enc, sizeof g_enc, h->version, h->request_id, &f->u.result, cls, sc);
      break;
    }
    case HI_MSG_ERROR: n = hi_frame_encode_error(g_enc, sizeof g_enc, h->version, h->request_id, &f->u.error); break;
    case HI_MSG_PING:
    case HI_MSG_PONG: n = hi_frame_encode_ping(g_enc, sizeof g_enc, h->version, h->type, h->request_id, f->u.ping.token); break;
    default: abort();
  }
  if (n <= 0) {
    /* payloads above the encoder's buffer are the only legitimate refusal */
    if (n == HI_FRAME_E_BUFFER) return;
    abort();
  }
  if (hi_frame_decode(g_enc, (size_t)n, (uint32_t)n, &g) != HI_FRAME_OK) abort();
  if (g.header.type != h->type || g.header.request_id != h->request_id || g.header.body_length != h->body_length)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t rbuf[4096];
  hi_frame_t f;
  hi_frame_reader_t r;
  uint32_t max_frame;
  size_t pos = 0;
  if (size < 2) return 0;
  max_frame = 16u + ((uint32_t)data[0] << 6); /* 16 .. 16336 */
  data += 1;
  size -= 1;
  if (hi_frame_decode(data, size, max_frame, &f) == HI_FRAME_OK) {
    if ((size_t)HI_FRAME_HEADER_SIZE + f.header.body_length != size || size > max_frame) abort();
    reencode(&f);
  }
  /* stream: chunk sizes from the data; after an error the stream is abandoned, as a receiver must */
  hi_frame_reader_init(&r, rbuf, sizeof rbuf, max_frame);
  while (pos < size) {
    size_t n = 1u + (data[pos] % 61u), used = 0;
    int rc;
    if (n > size - pos) n = size - pos;
    rc = hi_frame_reader_push(&r, data + pos, n, &used, &f);
    if (used > n) abort();
    pos += used;
    if (rc == 1) {
      if (r.fill > sizeof rbuf || r.fill > max_frame) abort();
      reencode(&f);
      hi_frame_reader_next(&r);
    } else if (rc < 0) {
      break;
    } else if (used != n) {
      abort();
    }
  }
  return 0;
}
