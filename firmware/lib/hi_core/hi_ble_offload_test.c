/* hi_ble_offload_test.c - the device side of the BLE contract on hand-checked cases (the full exchange with
 * the real gateway logic runs in tests/firmware/test_core_ble.py). */
#include "hi_ble_offload.h"
#include "hi_frame.h"
#include "hi_test.h"

int main(void) {
  static uint8_t img[3072];
  uint8_t out[600], want[18];
  hi_ble_session_t s;
  hi_ble_result_t r;
  int ch = 0, n, chunks = 0;
  size_t i;
  for (i = 0; i < sizeof img; ++i) img[i] = (uint8_t)i;
  hi_ble_init(&s);
  CHECK(hi_ble_chunk_size(23) == 16 && hi_ble_chunk_size(247) == 240 && hi_ble_chunk_size(5) == 16);
  CHECK(hi_ble_begin(&s, 7, img, 3072, HI_DTYPE_INT8, 0, 32, 32, 3, 1.0f, -128, 1000, 3000) == 0);
  CHECK(hi_ble_begin(&s, 8, img, 3072, HI_DTYPE_INT8, 0, 32, 32, 3, 1.0f, -128, 1000, 3000) == HI_BLE_E_BUSY);
  /* START example from docs/ble.md: 01 0700 000c 02 00 20 20 03 0000803f 80ffffff */
  CHECK(hi_test_unhex("010700000c0200202003" "0000803f80ffffff", want, sizeof want) == 18);
  n = hi_ble_next(&s, out, sizeof out, &ch, 1000);
  CHECK(n == 18 && ch == HI_BLE_CONTROL && memcmp(out, want, 18) == 0);
  while ((n = hi_ble_next(&s, out, sizeof out, &ch, 1000)) > 0 && ch == HI_BLE_IMAGE) {
    CHECK(n == 20 && hi_get_u16(out) == chunks && hi_get_u16(out + 2) == chunks * 16);
    CHECK(memcmp(out + 4, img + chunks * 16, 16) == 0);
    ++chunks;
  }
  CHECK(chunks == 192 && n == 5 && ch == HI_BLE_CONTROL && out[0] == HI_BLE_OP_END && hi_get_u16(out + 3) == 192);
  CHECK(hi_ble_next(&s, out, sizeof out, &ch, 1000) == 0);
  CHECK(hi_ble_poll(&s, 1500, &r) == HI_BLE_PENDING);
  /* NACK 20 bytes at 40: resend the chunks covering 32..63 (grid of 16), then END again */
  {
    const uint8_t nack[7] = {HI_BLE_OP_NACK, 7, 0, 40, 0, 20, 0};
    CHECK(hi_ble_on_write(&s, HI_BLE_CONTROL, nack, 7) == 0);
  }
  n = hi_ble_next(&s, out, sizeof out, &ch, 1600);
  CHECK(n == 20 && hi_get_u16(out + 2) == 32 && hi_get_u16(out) == 2);
  n = hi_ble_next(&s, out, sizeof out, &ch, 1600);
  CHECK(n == 20 && hi_get_u16(out + 2) == 48);
  n = hi_ble_next(&s, out, sizeof out, &ch, 1600);
  CHECK(n == 5 && out[0] == HI_BLE_OP_END && hi_get_u16(out + 3) == 192);
  /* a RESULT for another sample is ignored; the right one completes it */
  {
    const uint8_t other[6] = {8, 0, 0, 3, 10, 0}, res[6] = {7, 0, 0, 3, 12, 0};
    CHECK(hi_ble_on_write(&s, HI_BLE_RESULT, other, 6) == HI_BLE_E_MESSAGE);
    CHECK(hi_ble_on_write(&s, HI_BLE_RESULT, res, 6) == 0);
  }
  CHECK(hi_ble_poll(&s, 1700, &r) == HI_BLE_DONE && r.status == HI_BLE_STATUS_OK && r.class_id == 3 && r.server_ms == 12);
  CHECK(hi_ble_poll(&s, 1700, &r) == HI_BLE_IDLE);
  /* a NACK in the middle of the first pass (the gateway stalled after chunk 1 was lost): the device resends
   * chunk 1, then finishes the pass from chunk 4 on, and sends END once, counting each first-pass chunk once */
  CHECK(hi_ble_begin(&s, 11, img, 3072, HI_DTYPE_INT8, 0, 32, 32, 3, 1.0f, -128, 2000, 3000) == 0);
  CHECK(hi_ble_next(&s, out, sizeof out, &ch, 2000) == 18); /* START */
  for (chunks = 0; chunks < 4; ++chunks) CHECK(hi_ble_next(&s, out, sizeof out, &ch, 2000) == 20);
  {
    const uint8_t nack[7] = {HI_BLE_OP_NACK, 11, 0, 16, 0, 16, 0}; /* chunk 1 */
    int seen[192] = {0}, resent = 0;
    CHECK(hi_ble_on_write(&s, HI_BLE_CONTROL, nack, 7) == 0);
    while ((n = hi_ble_next(&s, out, sizeof out, &ch, 2100)) > 0 && ch == HI_BLE_IMAGE) {
      const int seq = hi_get_u16(out);
      if (seq == 1) ++resent;
      CHECK(seq == 1 || seq >= 4);
      ++seen[seq];
    }
    CHECK(resent == 1 && n == 5 && out[0] == HI_BLE_OP_END && hi_get_u16(out + 3) == 192);
    for (i = 4; i < 192; ++i) CHECK(seen[i] == 1);
  }
  {
    const uint8_t res[6] = {11, 0, 0, 5, 9, 0};
    CHECK(hi_ble_on_write(&s, HI_BLE_RESULT, res, 6) == 0);
    CHECK(hi_ble_poll(&s, 2200, &r) == HI_BLE_DONE && r.class_id == 5);
  }
  /* CONFIG: larger chunks; then a timeout queues ABORT and keeps the local answer */
  {
    const uint8_t cfg[3] = {HI_BLE_OP_CONFIG, 247, 0};
    CHECK(hi_ble_on_write(&s, HI_BLE_CONTROL, cfg, 3) == 0 && s.mtu == 247);
  }
  CHECK(hi_ble_begin(&s, 9, img, 3072, HI_DTYPE_INT8, 0, 32, 32, 3, 1.0f, -128, 0xFFFFFF00u, 500) == 0);
  n = hi_ble_next(&s, out, sizeof out, &ch, 0xFFFFFF00u);
  n = hi_ble_next(&s, out, sizeof out, &ch, 0xFFFFFF00u);
  CHECK(n == 244 && ch == HI_BLE_IMAGE);
  CHECK(hi_ble_poll(&s, 0xFFFFFFF0u, &r) == HI_BLE_PENDING);
  CHECK(hi_ble_poll(&s, 0x00000100u, &r) == HI_BLE_DONE && r.status == HI_BLE_STATUS_TIMEOUT); /* across the wrap */
  n = hi_ble_next(&s, out, sizeof out, &ch, 0x100u);
  CHECK(n == 3 && out[0] == HI_BLE_OP_ABORT && hi_get_u16(out + 1) == 9);
  CHECK(hi_ble_next(&s, out, sizeof out, &ch, 0x100u) == 0);
  /* malformed writes and arguments */
  CHECK(hi_ble_on_write(&s, HI_BLE_CONTROL, out, 2) == HI_BLE_E_MESSAGE);
  CHECK(hi_ble_begin(&s, 1, img, 3000, HI_DTYPE_INT8, 0, 32, 32, 3, 1.0f, -128, 0, 10) == HI_BLE_E_ARG);
  TEST_END("hi_ble_offload_test");
}
