/* hi_frame_test.c - frame codec round trips, error order and the stream reader (shared vectors and
 * random frames vs Python: tests/firmware/test_core_frame.py). */
#include "hi_frame.h"
#include "hi_test.h"

int main(void) {
  uint8_t buf[256], payload[12];
  hi_frame_t f;
  hi_infer_t m;
  int32_t n;
  size_t i, used;
  for (i = 0; i < sizeof payload; ++i) payload[i] = (uint8_t)(i * 20u);
  memset(&m, 0, sizeof m);
  m.dtype = HI_DTYPE_INT8;
  m.layout = HI_LAYOUT_NHWC;
  m.flags = HI_INFER_FLAG_QUANT;
  m.shape[0] = 1; m.shape[1] = 2; m.shape[2] = 2; m.shape[3] = 3;
  m.scale = 1.0f;
  m.zero_point = -128;
  m.model_id = "resnet56";
  m.model_id_len = 8;
  m.payload = payload;
  m.payload_len = 12;
  n = hi_frame_encode_infer(buf, sizeof buf, 1, 7, &m);
  CHECK(n == 12 + 13 + 8 + 8 + 12);
  CHECK(buf[0] == 'H' && buf[1] == 'I' && buf[2] == 1 && buf[3] == HI_MSG_INFER && buf[4] == 7);
  CHECK(hi_frame_decode(buf, (size_t)n, 4096, &f) == HI_FRAME_OK);
  CHECK(f.header.request_id == 7 && f.u.infer.zero_point == -128 && f.u.infer.scale == 1.0f);
  CHECK(f.u.infer.payload_len == 12 && memcmp(f.u.infer.payload, payload, 12) == 0);
  CHECK(memcmp(f.u.infer.model_id, "resnet56", 8) == 0);
  /* too small an output buffer is refused, never overrun */
  CHECK(hi_frame_encode_infer(buf, (size_t)n - 1, 1, 7, &m) == HI_FRAME_E_BUFFER);
  /* size limit before the body */
  CHECK(hi_frame_decode(buf, (size_t)n, (uint32_t)n - 1, &f) == HI_FRAME_E_TOO_LARGE);
  /* error order: magic, version, type */
  buf[0] = 'X';
  CHECK(hi_frame_decode(buf, (size_t)n, 4096, &f) == HI_FRAME_E_BAD_MAGIC);
  buf[0] = 'H';
  buf[2] = 2;
  CHECK(hi_frame_decode(buf, (size_t)n, 4096, &f) == HI_FRAME_E_VERSION);
  buf[2] = 1;
  buf[3] = 0x7F;
  CHECK(hi_frame_decode(buf, (size_t)n, 4096, &f) == HI_FRAME_E_TYPE);
  buf[3] = HI_MSG_INFER;
  CHECK(hi_frame_decode(buf, (size_t)n - 1, 4096, &f) == HI_FRAME_E_LENGTH);
  /* payload/shape mismatch */
  m.shape[3] = 4;
  CHECK(hi_frame_encode_infer(buf, sizeof buf, 1, 7, &m) == HI_FRAME_E_PAYLOAD);
  m.shape[3] = 3;
  /* model id must be printable */
  m.model_id = "res net";
  m.model_id_len = 7;
  CHECK(hi_frame_encode_infer(buf, sizeof buf, 1, 7, &m) == HI_FRAME_E_FIELD);
  m.model_id = "resnet56";
  m.model_id_len = 8;
  /* float32 never carries quant params */
  m.dtype = HI_DTYPE_FLOAT32;
  m.payload_len = 48;
  CHECK(hi_frame_encode_infer(buf, sizeof buf, 1, 7, &m) == HI_FRAME_E_FIELD);
  m.dtype = HI_DTYPE_INT8;
  m.payload_len = 12;

  /* RESULT with top-k round trip */
  {
    hi_result_t r;
    const uint16_t cls[2] = {8, 0};
    const float sc[2] = {0.75f, 0.125f};
    uint16_t c;
    float s;
    memset(&r, 0, sizeof r);
    r.class_id = 8;
    r.top_k_count = 2;
    r.batch_size = 3;
    r.queue_us = 10;
    r.infer_us = 900;
    r.total_us = 1000;
    n = hi_frame_encode_result(buf, sizeof buf, 1, 9, &r, cls, sc);
    CHECK(n == 12 + 20 + 12);
    CHECK(hi_frame_decode(buf, (size_t)n, 4096, &f) == HI_FRAME_OK);
    CHECK(f.header.type == HI_MSG_RESULT && f.u.result.class_id == 8 && f.u.result.top_k_count == 2);
    hi_frame_result_top_k(&f.u.result, 1, &c, &s);
    CHECK(c == 0 && s == 0.125f);
    /* the stream reader: byte by byte, then two frames in one push */
    {
      uint8_t rb[64], two[128];
      hi_frame_reader_t rd;
      int got = 0, rc;
      hi_frame_reader_init(&rd, rb, sizeof rb, 4096);
      for (i = 0; i < (size_t)n; ++i) {
        rc = hi_frame_reader_push(&rd, buf + i, 1, &used, &f);
        if (rc == 1) {
          got = 1;
          CHECK(i + 1 == (size_t)n && f.u.result.infer_us == 900);
          hi_frame_reader_next(&rd);
        } else {
          CHECK(rc == 0 && used == 1);
        }
      }
      CHECK(got);
      memcpy(two, buf, (size_t)n);
      memcpy(two + n, buf, (size_t)n);
      rc = hi_frame_reader_push(&rd, two, 2u * (size_t)n, &used, &f);
      CHECK(rc == 1 && used == (size_t)n);
      hi_frame_reader_next(&rd);
      rc = hi_frame_reader_push(&rd, two + used, 2u * (size_t)n - used, &used, &f);
      CHECK(rc == 1 && used == (size_t)n);
      hi_frame_reader_next(&rd);
      /* a frame larger than the reader's buffer is refused from its header alone */
      hi_frame_reader_init(&rd, rb, 32, 4096);
      rc = hi_frame_reader_push(&rd, buf, (size_t)n, &used, &f);
      CHECK(rc == HI_FRAME_E_TOO_LARGE && used == 12);
    }
  }
  /* ERROR, PING */
  {
    hi_error_t e;
    e.code = HI_ERR_UNKNOWN_MODEL;
    e.message = "unknown model 'x'";
    e.message_len = 17;
    n = hi_frame_encode_error(buf, sizeof buf, 1, 5, &e);
    CHECK(n == 12 + 4 + 17 && hi_frame_decode(buf, (size_t)n, 4096, &f) == HI_FRAME_OK);
    CHECK(f.u.error.code == 6 && f.u.error.message_len == 17);
    e.message_len = 513;
    CHECK(hi_frame_encode_error(buf, sizeof buf, 1, 5, &e) == HI_FRAME_E_FIELD);
    n = hi_frame_encode_ping(buf, sizeof buf, 1, HI_MSG_PONG, 0, 0x0123456789abcdefULL);
    CHECK(n == 20 && hi_frame_decode(buf, 20, 4096, &f) == HI_FRAME_OK && f.u.ping.token == 0x0123456789abcdefULL);
  }
  TEST_END("hi_frame_test");
}
